"""Command-line flags made from configuration dataclasses: one generator for `train`, `tune` and
the benchmark, and the README's flag tables made from the same parsers, so neither drifts.

A field becomes a flag when it is declared with `option(default, help)`. Its flag defaults to
None, so that a preset or a saved configuration can fill what the command line left out; the
help text ends with the dataclass default, written nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from mnist_keras.errors import ConfigError

HELP, METAVAR = "help", "metavar"


def option(default: Any, help: str, metavar: str = "") -> Any:
    """A dataclass field that is also a flag, with its help text and metavar."""
    return dataclasses.field(default=default, metadata={HELP: help, METAVAR: metavar})


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def check(ok: bool, field: str, problem: str) -> None:
    """Raise ConfigError naming the field's flag and the `problem`, unless `ok`."""
    if not ok:
        raise ConfigError(f"{flag_name(field)} {problem}")


def option_fields(cls: type) -> tuple[str, ...]:
    """The fields of `cls` declared with `option`, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if HELP in f.metadata)


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    names: Sequence[str] | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """One flag per option field of `cls` in `names` (default: all of them).

    Args:
        choices: the allowed values of a field, by name.
        variants: other starting points (e.g. {"cnn": {...}}): their defaults join the help.
    """
    choices, variants = choices or {}, variants or {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for name in option_fields(cls) if names is None else names:
        field = fields[name]
        text = f"{field.metadata[HELP]}{_defaults(name, field.default, variants)}"
        kind, item = _base_type(hints[name]), _item_type(hints[name])
        kwargs: dict[str, Any] = {"help": text}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif name in choices and kind is not tuple:
            kwargs["choices"] = choices[name]
        else:
            kwargs["metavar"] = field.metadata[METAVAR]
            if kind is tuple:  # several values, of `choices` when given
                kwargs.update(nargs="+", choices=choices.get(name), type=item)
            else:
                kwargs["type"] = kind
        parser.add_argument(flag_name(name), **kwargs)


def given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The values of `names` that the command line set (a flag left out is None)."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def markdown_table(parser: argparse.ArgumentParser) -> str:
    """Every flag of `parser` with its help, as the README's table."""
    rows = ["| flag | what it does (default) |", "|---|---|"]
    for action in parser._actions:  # argparse keeps its actions there, in order
        if isinstance(action, argparse._HelpAction):
            continue
        text = action.help.replace("|", r"\|")
        rows.append(f"| `{_invocation(action)}` | {text} |")
    return "\n".join(rows) + "\n"


def _invocation(action: argparse.Action) -> str:
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return names
    if action.choices and not action.metavar:
        return f"{names} {{{','.join(action.choices)}}}"
    many = "..." if action.nargs == "+" else ""
    return f"{names} {action.metavar or action.dest.upper()}{many}"


def _defaults(name: str, default: Any, variants: Mapping[str, Mapping[str, Any]]) -> str:
    shown = [_show(default)] if default is not None else []
    shown += [f"{label}: {_show(v[name])}" for label, v in variants.items() if name in v]
    return f" (default: {'; '.join(shown)})" if shown else ""


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _base_type(hint: Any) -> type:
    """int for `int | None`, tuple for `tuple[str, ...]`."""
    hint = _not_none(hint)
    return typing.get_origin(hint) or hint


def _item_type(hint: Any) -> type | None:
    """int for `tuple[int, ...]`; None for a hint that is not a tuple."""
    hint = _not_none(hint)
    return typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else None


def _not_none(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint
