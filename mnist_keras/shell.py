"""Commands the package prints for people to paste: each runs as printed in a new shell, from the
folder the program ran in, whether or not the virtual environment is activated there."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def python_module(module: str, *args: str | Path | int) -> str:
    """`python -m MODULE ARGS`, naming the interpreter that runs this package."""
    return shlex.join([_program(Path(sys.executable), "python"), "-m", module, *map(str, args)])


def tensorboard(logdir: Path) -> str:
    """The TensorBoard command for `logdir`, from the environment that has this package."""
    script = Path(sys.executable).parent / "tensorboard"
    if not script.is_file():  # TensorBoard installed without its script
        return python_module("tensorboard.main", "--logdir", logdir)
    return shlex.join([_program(script, "tensorboard"), "--logdir", str(logdir)])


def _program(path: Path, name: str) -> str:
    """`name` where a new shell finds this very program by it; otherwise its path.

    Inside a virtual environment the path: a new shell has not activated it."""
    in_venv = sys.prefix != sys.base_prefix
    found = shutil.which(name)
    if not in_venv and found and Path(found).absolute() == path.absolute():
        return name
    return _shortest(path.absolute())


def _shortest(path: Path) -> str:
    """`path` relative to the current folder when it lies below it, else absolute."""
    try:
        return str(path.relative_to(Path(os.getcwd())))
    except ValueError:
        return str(path)
