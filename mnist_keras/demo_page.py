"""Drive the demo page from Python: serve an app (or a static folder) on a free port, draw on the
page in Chromium, with every request outside this machine refused.

The demo's browser tests and scripts (`demo_screenshot.py`, `static_page_latency.py`) share
this. The browser is Debian's Chromium (`CHROMIUM` names another), driven through Playwright
(the `dev` extra), which is imported only when a browser starts.
"""

from __future__ import annotations

import base64
import functools
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnist_keras.contract import MODEL_NAME
from mnist_keras.demo import Backend, create_app
from mnist_keras.errors import RunError
from mnist_keras.handwriting import Point
from mnist_keras.runs import write_bytes
from mnist_keras.runtimes import Classifier, version_of

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # the Makefile exports it
# Headless in a container: no sandbox, no GPU, nothing that phones home.
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-frame-rate-limit",
    "--disable-gpu-vsync",
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


def served(classifier: Classifier) -> Server:
    """The demo over a loaded export, as `python -m mnist_keras.demo` serves it."""
    backend = Backend(MODEL_NAME, classifier=classifier, version=version_of(classifier.path))
    return Server(create_app(backend))


class StaticServer:
    """Python's own static file server (`python -m http.server`) over `folder`, in a process of
    its own: what any static host does, no code of this package answering."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> StaticServer:
        command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--directory", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.__exit__()
                    raise RunError(f"a static server for {self.folder} did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


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
            page.refused = []  # what the page asked of other machines: nothing, on this demo
            page.route("**/*", functools.partial(_this_machine_only, page.refused))
            page.goto(url)
            yield page
        finally:
            browser.close()


def _this_machine_only(refused: list[str], route: Any) -> None:
    if urllib.parse.urlsplit(route.request.url).hostname == "127.0.0.1":
        route.continue_()
    else:
        refused.append(route.request.url)
        route.abort("internetdisconnected")


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


def seen(page: Any) -> np.ndarray:
    """The 28x28 the page shows the model saw, as uint8 grey levels."""
    return _canvas(page, "seen")


def drawing(page: Any) -> np.ndarray:
    """The pad's drawing as uint8 grey levels (its red channel: the pen is white on black)."""
    return _canvas(page, "pad")


# A canvas's red channel as base64: as a list, 78,400 numbers take most of a second to cross.
CANVAS_RED = """(id) => {
    const canvas = document.getElementById(id);
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    const red = data.filter((_, i) => i % 4 === 0);
    let text = "";
    for (let i = 0; i < red.length; i += 8192) {
        text += String.fromCharCode(...red.subarray(i, i + 8192));
    }
    return [btoa(text), canvas.width];
}"""


def _canvas(page: Any, element_id: str) -> np.ndarray:
    encoded, side = page.evaluate(CANVAS_RED, element_id)
    return np.frombuffer(base64.b64decode(encoded), np.uint8).reshape(-1, side)


def save_screenshot(page: Any, path: Path) -> Path:
    """The whole page as a PNG at `path`, written beside it first and renamed into place, so
    `path` is never a half-written picture."""
    write_bytes(path, page.screenshot(full_page=True))
    return path
