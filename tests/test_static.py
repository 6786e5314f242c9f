"""The demo as a static folder (`demo --static`): what it writes, what it refuses, and the page in
headless Chromium served by a plain static server: mnist.js against predict.to_mnist, the model
in ONNX Runtime Web against ONNX Runtime, and a broken model file. The folder reading drawn
digits is test_demo.py's browser tests, which run on the served page and on the static one."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_clean_failure, load_script, run_main

from mnist_keras import demo_page, static_site
from mnist_keras.errors import RunError
from mnist_keras.handwriting import pen_path
from mnist_keras.predict import to_mnist
from mnist_keras.runtimes import load_classifier
from mnist_keras.static_site import MANIFEST, MODEL_FILE, write_static

ROOT = Path(__file__).parents[1]
RUNTIME_DIR = ROOT / static_site.DEFAULT_RUNTIME_DIR  # installed by the Makefile (npm ci)


@pytest.fixture(scope="module")
def mlp_site(trained, tmp_path_factory) -> Path:
    """The static folder for the briefly trained MLP, converted from its SavedModel."""
    out = tmp_path_factory.mktemp("static") / "site"
    write_static(out, trained.export_path, RUNTIME_DIR)
    return out


def _static(*args: str, cwd: Path):
    return run_main("demo", "--runtime-dir", str(RUNTIME_DIR), "--static", *args, cwd=cwd)


def test_the_folder_holds_the_served_page_the_runtime_and_the_model(mlp_site, trained, real_mnist):
    files = sorted(str(p.relative_to(mlp_site)) for p in mlp_site.rglob("*") if p.is_file())
    runtime = [f"static/{name}" for name in static_site.RUNTIME_FILES]
    page = [f"static/{name}" for name in static_site.PAGE_FILES]
    assert files == sorted(["index.html", MANIFEST, MODEL_FILE, *page, *runtime])
    manifest = json.loads((mlp_site / MANIFEST).read_text())
    assert manifest["model"] == str(trained.export_path)
    assert manifest["runtime"].startswith("onnxruntime-web 1.")
    assert manifest["files"][MODEL_FILE]["bytes"] == (mlp_site / MODEL_FILE).stat().st_size

    # The served page, but for the tag that names the model and loads the runtime first.
    html = (mlp_site / "index.html").read_text()
    served = (static_site.PAGE / "index.html").read_text()
    head, tail = served.split(static_site.APP_TAG)
    assert html.startswith(head) and html.endswith(tail)
    tags = html[len(head) : len(html) - len(tail)]
    assert tags.index("ort.wasm.min.js") < tags.index("mnist.js") < tags.index('data-model="')

    # The ONNX the page runs answers as the SavedModel it came from.
    images = real_mnist.x_test[:50]
    onnx = load_classifier(mlp_site / MODEL_FILE)(images)
    np.testing.assert_allclose(onnx, load_classifier(trained.export_path)(images), atol=1e-5)


def test_an_onnx_export_goes_in_as_it_is_and_the_folder_is_rewritten(mlp_site, tmp_path):
    model = tmp_path / "3.onnx"
    model.write_bytes((mlp_site / MODEL_FILE).read_bytes())
    out = tmp_path / "site"
    for _ in range(2):  # the second time over the folder it wrote the first time
        result = _static(str(out), "--model", str(model), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (out / MODEL_FILE).read_bytes() == model.read_bytes()
    assert f"static page in {out}" in result.stdout
    assert "-m http.server -d" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3.onnx", "site"]  # no temporary


def test_the_newest_export_without_model(trained, tmp_path):
    version = tmp_path / "artifacts" / "runs" / "20260101-000000-aaaaaa" / "export" / "mnist"
    version.mkdir(parents=True)
    (version / "1").symlink_to(trained.export_path, target_is_directory=True)
    result = _static("site", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    chosen = Path("artifacts", "runs", "20260101-000000-aaaaaa", "export", "mnist", "1")
    assert json.loads((tmp_path / "site" / MANIFEST).read_text())["model"] == str(chosen)


BAD_INPUT = {
    "foreign folder": (["--model", "{onnx}"], "holds what this did not write (notes.txt)"),
    "ours, a file added": (["--model", "{onnx}"], "holds what this did not write (CNAME)"),
    "ours, a file edited": (["--model", "{onnx}"], "did not write (index.html)"),
    "ours, a folder added": (["--model", "{onnx}"], "did not write (drafts)"),
    "ours, a link added": (["--model", "{onnx}"], "did not write (photos)"),
    "a file": (["--model", "{onnx}"], "out is a file, not a folder"),
    "below a file": (["--model", "{onnx}"], "out is a file, not a folder"),
    "the current folder": (["--model", "{onnx}"], "the current folder or one above it"),
    "tflite": (["--model", "m.tflite"], "the static page runs ONNX in the browser"),
    "corrupt onnx": (["--model", "{corrupt}"], "not a loadable ONNX model"),
    "no model": (["--model", "nowhere"], "--model nowhere: no SavedModel"),
    "serving url": (["--serving-url", "http://127.0.0.1:8501"], "give --model PATH, not"),
    "no runtime": (["--model", "{onnx}", "--runtime-dir", "nowhere"], "run `make static`"),
}


def _make_target(case: str, out: Path, onnx: Path) -> Path:
    """The --static argument for `case`, with what the case puts there first."""
    if case.startswith("ours"):
        write_static(out, onnx, RUNTIME_DIR)
    if case == "foreign folder":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "ours, a file added":
        (out / "CNAME").write_text("digits.example.org")
    elif case == "ours, a file edited":
        (out / "index.html").write_text((out / "index.html").read_text() + "<!-- mine -->")
    elif case == "ours, a folder added":
        (out / "drafts").mkdir()
    elif case == "ours, a link added":
        (out.parent / "elsewhere").mkdir()
        (out / "photos").symlink_to(out.parent / "elsewhere", target_is_directory=True)
    elif case in ("a file", "below a file"):
        out.write_text("mine")
        return out / "site" if case == "below a file" else out
    elif case == "the current folder":
        return Path(".")
    return out


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_refused_and_nothing_is_written(mlp_site, tmp_path, case):
    args, message = BAD_INPUT[case]
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf")
    onnx = mlp_site / MODEL_FILE
    args = [a.format(onnx=onnx, corrupt=tmp_path / "bad.onnx") for a in args]
    target = _make_target(case, tmp_path / "out", onnx)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    listing = sorted(tmp_path.rglob("*"))
    result = _static(str(target), *args, cwd=tmp_path)
    assert_clean_failure(result, message)
    # Nothing written, nothing changed, nothing left behind.
    assert sorted(tmp_path.rglob("*")) == listing
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_failed_write_keeps_the_folder_there_was(mlp_site, tmp_path, monkeypatch):
    out = tmp_path / "site"
    write_static(out, mlp_site / MODEL_FILE, RUNTIME_DIR)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def fail(self, content):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(static_site, "write_bytes", fail)
    with pytest.raises(RunError, match="No space left on device"):
        write_static(out, mlp_site / MODEL_FILE, RUNTIME_DIR)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["site"]


@pytest.mark.parametrize("failing", [(2,), (2, 3)])
def test_a_failed_rename_puts_the_old_folder_back_or_says_where_it_is(
    mlp_site, tmp_path, monkeypatch, failing
):
    """The renames: the old folder aside (1), the new one in place (2), the old one back (3)."""
    out = tmp_path / "site"
    write_static(out, mlp_site / MODEL_FILE, RUNTIME_DIR)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls, real_rename = [], os.rename

    def rename(source, target):
        calls.append(source)
        if len(calls) in failing:
            raise OSError(5, "Input/output error")
        real_rename(source, target)

    monkeypatch.setattr(static_site.os, "rename", rename)
    with pytest.raises(RunError) as error:
        write_static(out, mlp_site / MODEL_FILE, RUNTIME_DIR)
    monkeypatch.undo()
    if failing == (2,):
        kept = out
    else:  # the old folder stays where it was moved, and the error says where
        kept = next(p for p in tmp_path.iterdir() if ".old-" in p.name)
        assert str(kept) in str(error.value)
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == [kept.name]  # no temporary left


def _pictures(real_mnist) -> list[np.ndarray]:
    """Dark digits on unevenly lit paper, of several sizes (some over 512 pixels, so shrunk
    first): to_mnist's every step runs on them."""
    rng = np.random.default_rng(7)
    pictures = []
    for digit, side in zip(real_mnist.x_test[20:26], (90, 300, 513, 700, 1000, 1400), strict=True):
        rows = int(side * rng.uniform(0.7, 1.3))
        big = np.kron(255.0 - digit, np.ones((rows // 28 + 1, side // 28 + 1)))[:rows, :side]
        lighting = np.linspace(0, 70, side)[None, :] + np.linspace(0, 40, rows)[:, None]
        noise = rng.normal(0, 6, big.shape)
        pictures.append(np.clip(big - lighting + noise, 0, 255).astype(np.uint8))
    return pictures


def _shapes(real_mnist) -> list[np.ndarray]:
    """Drawings where the two implementations could part: straight strokes whose centre falls
    exactly between two pixels, a lone pixel, slivers, and traced digits at the pad's size."""
    shapes = []
    for top, left in ((20, 100), (23, 131), (41, 140), (56, 100)):
        bar = np.zeros((280, 280), np.uint8)
        bar[top:230, left : left + 18] = 255  # a 1 dragged straight down
        shapes += [bar, bar.T.copy()]
    dot = np.zeros((50, 50), np.uint8)
    dot[20, 30] = 200
    shapes += [dot, np.full((5, 1), 255, np.uint8), np.arange(12, dtype=np.uint8).reshape(3, 4)]
    shapes += [np.kron(digit, np.ones((10, 10), np.uint8)) for digit in real_mnist.x_test[:8]]
    return shapes


def test_mnist_js_gives_to_mnists_28x28(real_mnist, tmp_path):
    """mnist.js in Node (which the Makefile installs with npm) against predict.to_mnist."""
    node = shutil.which("node")
    assert node, "Node is missing: make test installs it (the Makefile's node target)"
    shapes = _shapes(real_mnist)
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps([[*s.shape, s.ravel().tolist()] for s in shapes]))
    script = (
        f"const mnist = require({json.dumps(str(static_site.PAGE / 'mnist.js'))});"
        f"const cases = require({json.dumps(str(cases))});"
        "console.log(JSON.stringify(cases.map(([h, w, data]) =>"
        " Array.from(mnist.toMnist(mnist.image(h, w, data))))));"
    )
    result = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for shape, seen in zip(shapes, json.loads(result.stdout), strict=True):
        expected = to_mnist(shape).astype(int)
        assert np.abs(np.reshape(seen, (28, 28)) - expected).max() <= 1, shape.shape


def _to_mnist_in_page(page, picture: np.ndarray) -> np.ndarray:
    """mnist.js's toMnist of a grayscale picture, in the page (pixels go in and out as base64:
    as a list, a picture of a million pixels takes seconds to cross)."""
    script = """([height, width, encoded]) => {
        const pixels = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
        return btoa(String.fromCharCode(...mnist.toMnist(mnist.image(height, width, pixels))));
    }"""
    encoded = base64.b64encode(picture.tobytes()).decode()
    seen = page.evaluate(script, [*picture.shape, encoded])
    return np.frombuffer(base64.b64decode(seen), np.uint8).reshape(28, 28)


@pytest.mark.slow
def test_the_page_in_chromium_answers_as_python_and_says_what_is_broken(
    mlp_site, real_mnist, tmp_path
):
    """One browser: mnist.js against to_mnist on pictures; the MLP's answers against ONNX
    Runtime's on drawn digits; a corrupt and a missing model file each shown in one line."""
    classifier = load_classifier(mlp_site / MODEL_FILE)
    with demo_page.StaticServer(mlp_site) as server, demo_page.chromium_page(server.url) as page:
        page.wait_for_function("document.body.dataset.model === 'ready'")
        for picture in _pictures(real_mnist):
            seen = _to_mnist_in_page(page, picture)
            assert np.abs(seen.astype(int) - to_mnist(picture)).max() <= 1, picture.shape

        for digit in (2, 5, 8):
            demo_page.clear(page)
            demo_page.draw(page, pen_path(digit, seed=3))
            answer = demo_page.wait_for_answer(page)
            seen = demo_page.seen(page)
            probabilities = classifier(seen[None])[0]
            assert answer.digit == str(probabilities.argmax())
            assert answer.probability == f"{probabilities.max():.1%}"
        assert page.refused == []

    sites = []
    for broken in (b"garbage", None):
        sites.append(tmp_path / f"site-{len(sites)}")
        write_static(sites[-1], mlp_site / MODEL_FILE, RUNTIME_DIR)
        if broken is None:
            (sites[-1] / MODEL_FILE).unlink()
        else:
            (sites[-1] / MODEL_FILE).write_bytes(broken)
    with demo_page.StaticServer(tmp_path) as server, demo_page.chromium_page(server.url) as page:
        for site, message in zip(sites, ("not a model ONNX Runtime can load", "404"), strict=True):
            page.goto(f"{server.url}/{site.name}/")
            page.wait_for_function("document.body.dataset.model === 'failed'")
            line = page.inner_text("#status")
            assert line.startswith(f"{MODEL_FILE}: ") and message in line and "\n" not in line
            demo_page.draw(page, pen_path(1))
            assert demo_page.wait_for_answer(page).digit == "–"  # no answer, the same line
            assert page.inner_text("#status") == line


@pytest.mark.slow
def test_latency_script_times_the_page(mlp_site):
    """scripts/static_page_latency.py's measurement, briefly, of the static page: the figures
    the README quotes come out of it."""
    measure = load_script("static_page_latency").measure
    with demo_page.StaticServer(mlp_site) as server:
        figures = measure(server.url, loads=1, drawings=2)
    assert 0 < figures["answer_ms_p50"] <= figures["answer_ms_p90"]
    assert figures["load_to_first_answer_ms"] > figures["answer_ms_p50"]
    # The page downloads the whole folder but its manifest.
    folder = sum(p.stat().st_size for p in mlp_site.rglob("*") if p.name != MANIFEST)
    assert figures["downloaded_bytes"] == pytest.approx(folder, rel=1e-3)
