"""Screenshot the demo page with a digit drawn on it by mouse, as a person would draw it.

    python scripts/demo_screenshot.py --model artifacts/runs/<run-id>/export/mnist --digit 4 \\
        --out docs/demo.png
    python scripts/demo_screenshot.py --static --digit 4 --out docs/static_demo.png

Serves the demo over `--model` (default: the newest export under artifacts/runs) on a free port,
or with `--static` writes its static folder (`demo --static`) into a temporary folder and serves
that with Python's plain static server. Opens the page in headless Chromium (`CHROMIUM`, default
/usr/bin/chromium), draws `--digit` with the mouse in a few hand-made strokes
(`mnist_keras.handwriting`), waits for the answer, saves the page as a PNG and prints the class
the page shows and its probability.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from mnist_keras import console, demo_page
from mnist_keras.errors import ConfigError, RunError, first_line
from mnist_keras.handwriting import pen_path
from mnist_keras.predict import add_model_flag
from mnist_keras.runs import DEFAULT_RUNS_DIR, newest_export
from mnist_keras.runtimes import Classifier, load_classifier
from mnist_keras.static_site import write_static


def build_parser() -> console.Parser:
    p = console.Parser(prog="scripts/demo_screenshot.py", description=__doc__.splitlines()[0])
    add_model_flag(p, f"the newest SavedModel under {DEFAULT_RUNS_DIR}")
    p.add_argument("--digit", type=int, default=4, choices=range(10), help="what to draw (4)")
    p.add_argument("--seed", type=int, default=0, help="picks the hand's irregularity (0)")
    p.add_argument("--out", type=Path, required=True, metavar="PNG", help="where to save it")
    p.add_argument(
        "--static",
        action="store_true",
        help="the static page (demo --static), the model running in the browser",
    )
    return p


def check_setup(out: Path) -> None:
    """Fail with one line, before loading the model, when the screenshot cannot be taken."""
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: expected a .png file name")
    if not Path(demo_page.CHROMIUM).is_file():
        raise ConfigError(
            f"no Chromium at {demo_page.CHROMIUM}: apt-get install chromium, or set CHROMIUM"
        )
    try:
        import playwright  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{exc.name} is missing: pip install -e '.[dev,demo]'") from exc


def screenshot(
    server: AbstractContextManager, digit: int, seed: int, out: Path
) -> demo_page.Answer:
    """Open the page `server` serves, draw `digit` on it, save the page at `out`."""
    with server, demo_page.chromium_page(server.url) as page:
        demo_page.draw(page, pen_path(digit, seed))
        answer = demo_page.wait_for_answer(page)
        demo_page.save_screenshot(page, out)
        if answer.digit == "–":
            raise RunError(f"the page did not answer: {page.inner_text('#status')}")
    return answer


def served(classifier: Classifier) -> demo_page.Server:
    console.print_line(f"model: {classifier.path}")
    return demo_page.served(classifier)


def static(model: Path, tmp: Path) -> demo_page.StaticServer:
    site = write_static(tmp / "site", model)
    console.print_line(f"model: {site.model}, as ONNX in the browser ({site.runtime})")
    return demo_page.StaticServer(site.path)


@console.cli()
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_setup(args.out)
    model = args.model if args.model is not None else newest_export()
    from playwright.sync_api import Error as PlaywrightError

    with tempfile.TemporaryDirectory() as tmp:
        server = static(model, Path(tmp)) if args.static else served(load_classifier(model))
        try:
            answer = screenshot(server, args.digit, args.seed, args.out)
        except PlaywrightError as exc:  # Chromium would not start, or the page did not answer
            console.print_error(f"Chromium: {first_line(exc)}")
            return 1
        except (RunError, OSError) as exc:  # the server did not start; --out could not be written
            console.print_error(first_line(exc))
            return 1
    console.print_line(f"drew {args.digit}; the page shows {answer.digit} ({answer.probability})")
    console.print_line(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
