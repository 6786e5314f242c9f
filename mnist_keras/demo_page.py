"""Drive the demo page from Python: serve an app on a free port, draw on the page in Chromium.

The demo's browser test and `scripts/demo_screenshot.py` share this. The browser is Debian's
Chromium (`CHROMIUM` names another), driven through Playwright (the `dev` extra), which is
imported only when a browser starts.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from mnist_keras.errors import RunError
from mnist_keras.handwriting import Point
from mnist_keras.runs import write_bytes

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # the Makefile exports it
# Headless in a container: no sandbox, no GPU, nothing that phones home.
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VIEWPORT = {"width": 820, "height": 560}  # the page's two columns side by side
PAD_SIDE = 280  # the drawing pad's canvas, in its own pixels (index.html)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A uvicorn server for an app, on a free port, in a thread of this process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RunError("the demo server did not start within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def chromium_page(url: str, executable: str = CHROMIUM) -> Iterator[Any]:
    """A Playwright page in headless Chromium, open at `url`; the browser closes afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS)
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            yield page
        finally:
            browser.close()


def draw(page: Any, strokes: Sequence[Sequence[Point]], steps: int = 1) -> None:
    """Draw on the pad with the mouse: for each stroke (points in pad pixels) press, move
    through its points (each move in `steps` pointer events), release."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / PAD_SIDE  # should CSS ever show the pad at another size

    def at(point: Point) -> tuple[float, float]:
        return box["x"] + point[0] * scale, box["y"] + point[1] * scale

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(point), steps=steps)
        page.mouse.up()


def clear(page: Any) -> None:
    page.click("#clear")


class Answer(NamedTuple):
    """What the page shows for the latest drawing: the top class and its probability."""

    digit: str  # "–" when it shows none
    probability: str  # as shown, e.g. "98.7%"


def wait_for_answer(page: Any, timeout_ms: int = 20_000) -> Answer:
    """The page's answer, once it has answered the latest drawing (not an earlier one)."""
    page.wait_for_function(
        "document.body.dataset.drawn === document.body.dataset.predicted", timeout=timeout_ms
    )
    return Answer(page.inner_text("#top-class"), page.inner_text("#top-prob"))


def save_screenshot(page: Any, path: Path) -> Path:
    """The whole page as a PNG at `path`, written beside it first and renamed into place, so
    `path` is never a half-written picture."""
    write_bytes(path, page.screenshot(full_page=True))
    return path
