"""Time the demo page two ways in headless Chromium: served (the model in Python) and static.

    python scripts/static_page_latency.py [--model PATH] [--loads 5] [--drawings 20] [--json]

Writes the static folder for `--model` (default: the newest export) into a temporary folder and
serves it with Python's plain static server; serves the same model with `mnist_keras.demo`.
For each way, from the page's own User Timing marks (app.js):
- page load to first answer: from navigation to the model being ready, plus the answer to the
  first digit drawn then (median over `--loads` cold loads, each in a new browser);
- per-drawing latency: from asking about a drawing to its answer shown, after the pen is lifted
  and the page's 120 ms pause (median and 90th percentile over `--drawings` hand-drawn digits);
- what the page downloaded (bytes, as the Resource Timing API reports them).
The static folder's size is printed too. Nothing else should run meanwhile: it times a browser.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from mnist_keras import console, demo_page
from mnist_keras.errors import RunError
from mnist_keras.handwriting import pen_path
from mnist_keras.predict import add_model_flag
from mnist_keras.runs import DEFAULT_RUNS_DIR, newest_export
from mnist_keras.runtimes import load_classifier
from mnist_keras.static_site import DEFAULT_RUNTIME_DIR, write_static

# Milliseconds from the navigation to a mark, and between the last two marks of a drawing.
MARK = "(name) => performance.getEntriesByName(name).at(-1).startTime"
BYTES = """() => performance.getEntriesByType("resource")
    .concat(performance.getEntriesByType("navigation"))
    .reduce((sum, entry) => sum + entry.encodedBodySize, 0)"""


def build_parser() -> console.Parser:
    p = console.Parser(prog="scripts/static_page_latency.py", description=__doc__.splitlines()[0])
    add_model_flag(p, f"the newest SavedModel under {DEFAULT_RUNS_DIR}")
    p.add_argument("--runtime-dir", type=Path, default=DEFAULT_RUNTIME_DIR, metavar="DIR")
    p.add_argument("--loads", type=int, default=5, help="cold page loads a way (5)")
    p.add_argument("--drawings", type=int, default=20, help="drawings timed a way (20)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p


def answer_ms(page: Any, digit: int, seed: int) -> float:
    """Draw `digit` on the pad; the milliseconds from asking the model to showing its answer."""
    demo_page.clear(page)
    demo_page.draw(page, pen_path(digit, seed, step=6.0))
    if demo_page.wait_for_answer(page).digit == "–":
        raise RunError(f"the page did not answer: {page.inner_text('#status')}")
    return page.evaluate(MARK, "mnist:answered") - page.evaluate(MARK, "mnist:asked")


def measure(url: str, loads: int, drawings: int) -> dict[str, float]:
    """The figures of the page at `url` (see the module's docstring)."""
    first, downloaded, latencies = [], [], []
    for load in range(loads):  # a new browser each time: nothing cached
        with demo_page.chromium_page(url) as page:
            page.wait_for_function("document.body.dataset.model === 'ready'")
            ready = page.evaluate(MARK, "mnist:ready")
            first.append(ready + answer_ms(page, load % 10, seed=100 + load))
            downloaded.append(page.evaluate(BYTES))
            if load == 0:
                latencies = [answer_ms(page, i % 10, seed=i) for i in range(drawings)]
            if page.refused:
                raise RunError(f"the page asked for {page.refused[0]}, off this machine")
    return {
        "load_to_first_answer_ms": float(np.median(first)),
        "downloaded_bytes": float(np.median(downloaded)),
        "answer_ms_p50": float(np.median(latencies)),
        "answer_ms_p90": float(np.percentile(latencies, 90)),
    }


def servers(model: Path, folder: Path, runtime_dir: Path) -> dict[str, AbstractContextManager]:
    """The served demo over `model`, and its static folder written to `folder`."""
    site = write_static(folder, model, runtime_dir)
    return {
        "served": demo_page.served(load_classifier(model)),
        "static": demo_page.StaticServer(site.path),
    }


@console.cli()
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model = args.model if args.model is not None else newest_export()
    results: dict[str, Any] = {"model": str(model)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "site"
        for name, server in servers(model, folder, args.runtime_dir).items():
            with server:
                results[name] = measure(server.url, args.loads, args.drawings)
        results["static"]["folder_bytes"] = sum(
            f.stat().st_size for f in folder.rglob("*") if f.is_file()
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    console.print_line(f"model: {model}")
    for name in ("served", "static"):
        r = results[name]
        console.print_line(
            f"{name}: load to first answer {r['load_to_first_answer_ms']:.0f} ms, answer "
            f"{r['answer_ms_p50']:.1f} ms (p90 {r['answer_ms_p90']:.1f}), downloaded "
            f"{r['downloaded_bytes'] / 1e6:.2f} MB"
        )
    console.print_line(f"the static folder: {results['static']['folder_bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
