"""Measure an exported model on digits in the wild: printed, pen-stroke and photo-style pictures.

python scripts/wild_bench.py --model artifacts/runs/<run-id>/export/mnist [--sheet wild.png]

The pictures are generated offline from the seed (fonts installed by `make fonts`, MNIST *test*
digits) and go through the same preprocessing as `python -m mnist_keras.predict`.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from rich.table import Table

from mnist_keras import console, wild
from mnist_keras.data import load_mnist
from mnist_keras.errors import ConfigError, DataError, first_line
from mnist_keras.predict import add_model_flag
from mnist_keras.runs import write_bytes
from mnist_keras.runtimes import load_classifier

DESCRIBE = {
    "printed": "digits 0-9 in every usable font face, 112x112",
    "strokes": "MNIST test digits redrawn with the demo's round pen, 280x280",
    "photo": "printed and pen digits on uneven paper, tilted, blurred, noisy",
}


def build_parser() -> console.Parser:
    p = console.Parser(prog="python scripts/wild_bench.py", description=__doc__.splitlines()[0])
    add_model_flag(p)
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="picks and draws the pictures (0)"
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="MNIST_DIR",
        help="MNIST folder or .npz for the test digits (default: $MNIST_KERAS_DATA, then Keras)",
    )
    p.add_argument("--sheet", type=Path, metavar="PNG", help="also write a contact sheet here")
    p.add_argument(
        "--per-class",
        type=int,
        default=wild.PER_CLASS,
        metavar="N",
        help=f"pen and photo pictures per digit ({wild.PER_CLASS})",
    )
    p.add_argument(
        "--fonts",
        type=Path,
        action="append",
        metavar="DIR",
        help="a folder of .ttf/.otf faces (repeatable; default: Debian's, see `make fonts`)",
    )
    return p


def check_flags(args) -> None:
    if args.per_class < 1:
        raise ConfigError(f"--per-class must be at least 1, got {args.per_class}")
    if args.sheet is not None and not args.sheet.parent.is_dir():
        raise DataError(f"--sheet {args.sheet}: folder {args.sheet.parent} does not exist")


def find_faces(dirs: Sequence[Path] | None) -> list[wild.Face]:
    try:
        return wild.find_faces(dirs or wild.FONT_DIRS)
    except DataError as exc:
        raise DataError(f"--fonts: {exc}" if dirs else str(exc)) from exc


def load_test_digits(path: Path | None):
    try:
        mnist = load_mnist(path)
    except DataError as exc:
        raise DataError(f"--data {exc}" if path else str(exc)) from exc
    return mnist.x_test, mnist.y_test


def write_sheet(image: Image.Image, path: Path) -> None:
    """Write the PNG whole or not at all: a temporary file beside it, then a rename."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    try:
        write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise DataError(f"--sheet {path}: cannot write ({first_line(exc)})") from exc


def scores_table(scores: wild.WildScores, model: Path) -> Table:
    table = Table(title=f"Digits in the wild: {model}", title_justify="left")
    for column in ("kind", "pictures", "right", "accuracy", "what"):
        table.add_column(column, justify="left" if column in ("kind", "what") else "right")
    for kind in scores.kinds:
        table.add_row(
            kind.kind,
            f"{kind.total:,}",
            f"{kind.correct:,}",
            f"[bold]{kind.accuracy:.1%}[/]",
            DESCRIBE[kind.kind],
        )
    return table


def run(args) -> int:
    check_flags(args)
    faces = find_faces(args.fonts)
    x_test, y_test = load_test_digits(args.data)
    classifier = load_classifier(args.model)
    with console.status("drawing the pictures") as status:
        sets = wild.build(
            x_test,
            y_test,
            args.seed,
            args.per_class,
            faces,
            on_kind=lambda kind: status.update(f"drawing the {kind} pictures"),
        )
        status.update("classifying")
        predictions = [wild.classify(classifier, s) for s in sets]
    console.print_line(f"fonts: {wild.describe(faces)}; seed {args.seed}")
    console.console.print(scores_table(wild.tally(sets, predictions), classifier.path))
    note = wild.font_set_note(faces)
    if note is not None:
        console.print_line(f"note: {note}")
    if args.sheet is not None:
        write_sheet(wild.contact_sheet(sets, predictions, args.seed), args.sheet)
        console.print_line(f"contact sheet: {args.sheet}")
    return 0


@console.cli()
def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
