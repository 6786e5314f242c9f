"""The drawing demo: its TF Serving REST API in-process, its CLI and the model it picks, a load
test, the screenshot script, and the page in a real headless Chromium drawing real test digits and
hand-drawn ones with the mouse."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_clean_failure, load_script, run_cli, run_main
from starlette.testclient import TestClient

from mnist_keras import demo, demo_page
from mnist_keras.compat import write_saved_model
from mnist_keras.contract import SIGNATURE, SIGNATURE_FLOAT
from mnist_keras.demo import MAX_BODY, Backend, create_app
from mnist_keras.demo_page import Server, free_port
from mnist_keras.errors import NoExportError
from mnist_keras.export import export_model, serving_functions
from mnist_keras.handwriting import DIGIT_STROKES, pen_path
from mnist_keras.predict import to_mnist
from mnist_keras.runs import newest_export
from mnist_keras.runtimes import Classifier, load_classifier
from mnist_keras.static_site import DEFAULT_RUNTIME_DIR, write_static

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def classifier(trained) -> Classifier:
    return load_classifier(trained.export_path)


@pytest.fixture(scope="module")
def client(classifier) -> TestClient:
    return TestClient(create_app(Backend("mnist", classifier=classifier)))


def _predict(client: TestClient, body, name: str = "mnist"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(f"/v1/models/{name}:predict", content=content)


def test_predict_matches_the_saved_model(client, classifier, real_mnist):
    images = real_mnist.x_test[:50]
    answer = _predict(client, {"instances": images.tolist()})
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    direct = classifier(images)
    assert [p["classes"] for p in predictions] == direct.argmax(axis=1).tolist()
    np.testing.assert_allclose([p["probabilities"] for p in predictions], direct, atol=1e-6)


def test_float_signature_answers_as_the_uint8_one(client, real_mnist):
    images = real_mnist.x_test[:20]
    answers = {
        name: _predict(client, {"signature_name": name, "instances": pixels.tolist()})
        for name, pixels in (("", images), (SIGNATURE, images), (SIGNATURE_FLOAT, images / 255))
    }
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
    served = {name: answer.json()["predictions"] for name, answer in answers.items()}
    classes = {name: [p["classes"] for p in rows] for name, rows in served.items()}
    assert classes[SIGNATURE_FLOAT] == classes[SIGNATURE] == classes[""]
    np.testing.assert_allclose(
        [p["probabilities"] for p in served[SIGNATURE_FLOAT]],
        [p["probabilities"] for p in served[SIGNATURE]],
        atol=1e-5,
    )


def test_unknown_signature_gets_tf_servings_error(client):
    answer = _predict(client, {"signature_name": "serving_nope", "instances": [[[0] * 28] * 28]})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": 'Serving signature name: "serving_nope" not found in signature def'
    }


def test_saved_model_without_the_float_signature_says_so_as_tf_serving(trained, tmp_path):
    model = keras.saving.load_model(str(trained.run.keras_model))
    write_saved_model(model, {SIGNATURE: serving_functions(model)[SIGNATURE]}, tmp_path / "1")
    client = TestClient(create_app(Backend("mnist", classifier=load_classifier(tmp_path / "1"))))
    body = {"signature_name": SIGNATURE_FLOAT, "instances": [[[0.0] * 28] * 28]}
    answer = _predict(client, body)
    assert answer.status_code == 400
    assert answer.json()["error"] == (
        f'Serving signature name: "{SIGNATURE_FLOAT}" not found in signature def'
    )
    assert _predict(client, {"instances": [[[0] * 28] * 28]}).status_code == 200


def test_model_status_as_tf_serving_reports_it(client, classifier):
    answer = client.get("/v1/models/mnist")
    assert answer.status_code == 200
    (status,) = answer.json()["model_version_status"]
    assert status["state"] == "AVAILABLE" and status["version"] == classifier.path.name
    assert status["status"]["error_code"] == "OK"


@pytest.fixture(scope="module")
def file_exports(trained, tmp_path_factory) -> dict[str, Path]:
    """The trained model's LiteRT files (train writes them) and an ONNX file."""
    files = {e.format: e.path for e in trained.exports if e.format != "saved_model"}
    model = keras.saving.load_model(str(trained.run.keras_model))
    (onnx,) = export_model(model, tmp_path_factory.mktemp("demo_onnx"), ["onnx"])
    return {**files, "onnx": onnx.path}


@pytest.mark.parametrize("fmt", ["onnx", "litert", "litert_int8"])
def test_demo_serves_onnx_and_litert_files_as_tf_serving_would(
    file_exports, fmt, classifier, real_mnist
):
    args = demo.build_parser().parse_args(["--model", str(file_exports[fmt])])
    client = TestClient(create_app(demo.backend_from_args(args)))
    (status,) = client.get("/v1/models/mnist").json()["model_version_status"]
    assert status["version"] == "1"
    images = real_mnist.x_test[:50]
    predictions = _predict(client, {"instances": images.tolist()}).json()["predictions"]
    served, direct = np.array([p["probabilities"] for p in predictions]), classifier(images)
    if fmt == "litert_int8":  # quantized: the same reading of nearly every digit
        assert np.mean(served.argmax(axis=1) == direct.argmax(axis=1)) >= 0.9
    else:
        np.testing.assert_allclose(served, direct, atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_float_signature_on_onnx_and_litert_files_asks_for_the_saved_model(file_exports, fmt):
    args = demo.build_parser().parse_args(["--model", str(file_exports[fmt])])
    client = TestClient(create_app(demo.backend_from_args(args)))
    answer = _predict(client, {"signature_name": SIGNATURE_FLOAT, "instances": [[[0.5] * 28] * 28]})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert f'"{SIGNATURE_FLOAT}" needs the SavedModel' in error
    assert file_exports[fmt].name in error


def _float_body(pixel) -> dict:
    return {"signature_name": SIGNATURE_FLOAT, "instances": [[[pixel] * 28] * 28]}


BAD_BODIES = {
    "malformed JSON": (b"{not json", "malformed JSON"),
    "no instances": ({"inputs": []}, '"instances"'),
    "wrong shape": ({"instances": [[[0] * 28] * 27]}, "shape [N, 28, 28]"),
    "float pixels": ({"instances": [[[0.5] * 28] * 28]}, "integers 0..255"),
    "out of range": ({"instances": [[[256] * 28] * 28]}, "outside 0..255"),
    "negative": ({"instances": [[[-1] * 28] * 28]}, "outside 0..255"),
    "ragged": ({"instances": [[[0] * 28] * 27 + [[0] * 3]]}, "rectangular"),
    "empty": ({"instances": []}, "shape [N, 28, 28]"),
    "over 1 MB": (b'{"instances": [' + b"0," * MAX_BODY + b"0]}", "byte limit"),
    "float above 1": (_float_body(1.5), "outside 0.0..1.0"),
    "float negative": (_float_body(-0.1), "outside 0.0..1.0"),
    "float NaN": (_float_body(float("nan")), "outside 0.0..1.0"),
    "0..255 to the float signature": (_float_body(255), "outside 0.0..1.0"),
    "float text": (_float_body("a"), "numbers 0.0..1.0"),
    "float wrong shape": ({**_float_body(0.5), "instances": [[[0.5] * 28] * 27]}, "[N, 28, 28]"),
    "signature_name not a string": ({**_float_body(0.5), "signature_name": 3}, "string value"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_requests_get_400_and_the_server_goes_on(client, real_mnist, case):
    body, message = BAD_BODIES[case]
    answer = _predict(client, body)
    assert answer.status_code == 400 and message in answer.json()["error"]
    good = _predict(client, {"instances": real_mnist.x_test[:1].tolist()})
    assert good.status_code == 200


def test_unknown_model_is_404(client):
    assert _predict(client, {"instances": []}, name="other").status_code == 404
    answer = client.get("/v1/models/other")
    assert answer.status_code == 404 and "other" in answer.json()["error"]


def test_preprocess_a_drawing_is_to_mnist_of_it(client, real_mnist):
    # A test digit as the page would send it: 280x280, ten canvas pixels to an MNIST pixel.
    drawing = np.kron(real_mnist.x_test[0], np.ones((10, 10), np.uint8))
    answer = client.post("/demo/preprocess", json={"image": drawing.tolist()})
    assert answer.status_code == 200
    np.testing.assert_array_equal(np.array(answer.json()["image"]), to_mnist(drawing))


def test_preprocess_a_picture_inverts_dark_ink_on_paper(client, classifier, real_mnist):
    digit = real_mnist.x_test[1]
    png = tf.io.encode_png((255 - digit)[..., None]).numpy()  # dark ink on white paper
    answer = client.post("/demo/preprocess", content=png, headers={"Content-Type": "image/png"})
    image = np.array(answer.json()["image"], np.uint8)
    assert classifier(image[None]).argmax() == real_mnist.y_test[1]
    bad = client.post("/demo/preprocess", content=b"junk", headers={"Content-Type": "image/png"})
    assert bad.status_code == 400 and "not a readable image" in bad.json()["error"]


def test_picture_that_would_decode_too_large_is_refused_unread(client):
    png = bytearray(tf.io.encode_png(np.zeros((28, 28, 1), np.uint8)).numpy())
    png[16:24] = (100_000).to_bytes(4, "big") * 2  # the header now says 100,000 x 100,000
    answer = client.post(
        "/demo/preprocess", content=bytes(png), headers={"Content-Type": "image/png"}
    )
    assert answer.status_code == 400 and "10,000,000,000 pixels" in answer.json()["error"]


def test_absurdly_nested_json_is_a_400(client):
    answer = _predict(client, b"[" * 100_000 + b"]" * 100_000)
    assert answer.status_code == 400 and "malformed JSON" in answer.json()["error"]


def test_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="pad"' in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/demo/config").json() == {"model": "mnist"}


def test_serving_url_forwards_to_tf_serving(classifier, real_mnist):
    """The page's API answered by another TF-Serving-speaking server, as a real one would."""
    upstream = create_app(Backend("mnist", classifier=classifier))
    with Server(upstream) as serving:
        proxy = TestClient(create_app(Backend("mnist", serving_url=serving.url)))
        answer = _predict(proxy, {"instances": real_mnist.x_test[:5].tolist()})
        assert answer.status_code == 200
        classes = [p["classes"] for p in answer.json()["predictions"]]
        assert classes == classifier(real_mnist.x_test[:5]).argmax(axis=1).tolist()
        assert proxy.get("/v1/models/mnist").json()["model_version_status"][0]["state"] == (
            "AVAILABLE"
        )
    down = TestClient(create_app(Backend("mnist", serving_url="http://127.0.0.1:9")))
    answer = _predict(down, {"instances": real_mnist.x_test[:1].tolist()})
    assert answer.status_code == 502 and "did not answer" in answer.json()["error"]


def test_serving_url_forwards_the_float_signature(classifier, real_mnist):
    upstream = create_app(Backend("mnist", classifier=classifier))
    with Server(upstream) as serving:
        proxy = TestClient(create_app(Backend("mnist", serving_url=serving.url)))
        body = {
            "signature_name": SIGNATURE_FLOAT,
            "instances": (real_mnist.x_test[:5] / 255).tolist(),
        }
        answer = _predict(proxy, body)
    assert answer.status_code == 200
    classes = [p["classes"] for p in answer.json()["predictions"]]
    assert classes == classifier(real_mnist.x_test[:5]).argmax(axis=1).tolist()


DEMO_BAD_INPUT = {
    "no model": (["--model", "nowhere"], "--model nowhere: no SavedModel"),
    "no export": ([], "no exported model under artifacts/runs: train one with `make train`"),
    "both": (["--model", "m", "--serving-url", "http://localhost:8501"], "not both"),
    "port": (["--port", "70000"], "--port 70000 must be in 1..65535"),
    "url": (
        ["--serving-url", "localhost:8501"],
        "--serving-url 'localhost:8501': expected http://",
    ),
}


@pytest.mark.parametrize("case", sorted(DEMO_BAD_INPUT))
def test_cli_bad_input(tmp_path, case):
    args, message = DEMO_BAD_INPUT[case]
    assert_clean_failure(run_main("demo", *args, cwd=tmp_path), message)


@pytest.mark.slow
def test_cli_bad_input_in_a_process(tmp_path):
    """demo's one bad input in a real process: exit 2, one line on stderr, no TensorFlow log."""
    args, message = DEMO_BAD_INPUT["no model"]
    assert_clean_failure(run_cli("demo", *args, cwd=tmp_path), message)


def test_cli_port_in_use(tmp_path, trained):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        args = ["--model", str(trained.export_path), "--port", port]
        result = run_main("demo", *args, cwd=tmp_path)
    assert_clean_failure(result, f"--port {port}: cannot listen there (Address already in use)")


def _fake_export(runs_dir: Path, run: str, version: int, mtime: float) -> Path:
    """An export's version folder with an empty saved_model.pb written at `mtime`."""
    folder = runs_dir / run / "export" / "mnist" / str(version)
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").touch()
    os.utime(folder / "saved_model.pb", (mtime, mtime))
    return folder


def test_newest_export_is_the_one_written_last(tmp_path):
    now = time.time()
    resumed = _fake_export(tmp_path, "20260101-000000-aaaaaa", 1, now)  # started first, ended last
    _fake_export(tmp_path, "20260102-000000-bbbbbb", 1, now - 300)
    _fake_export(tmp_path, "20260102-000000-bbbbbb", 2, now - 200)
    partial = tmp_path / "20260103-000000-cccccc" / "export" / "mnist" / ".tmp-1-0f0f0f0f"
    partial.mkdir(parents=True)  # an export being written: never served
    (partial / "saved_model.pb").touch()
    (tmp_path / "20260104-000000-dddddd").mkdir()  # a run that has not exported yet
    assert newest_export(tmp_path) == resumed


def test_no_export_is_a_typed_error_naming_make_train(tmp_path):
    (tmp_path / "20260101-000000-aaaaaa" / "export" / "mnist").mkdir(parents=True)
    for runs_dir in (tmp_path, tmp_path / "missing"):
        with pytest.raises(NoExportError, match=r"no exported model under .*`make train`"):
            newest_export(runs_dir)


@pytest.fixture
def no_serving(monkeypatch) -> list:
    """demo.main's calls to uvicorn.run, recorded instead of serving forever."""
    calls = []
    monkeypatch.setattr(demo.uvicorn, "run", lambda app, **kw: calls.append(kw))
    return calls


def test_cli_serves_the_newest_export_and_says_which(
    trained, tmp_path, monkeypatch, capsys, no_serving
):
    monkeypatch.chdir(tmp_path)
    runs = Path("artifacts", "runs")
    for run, age in (("20260101-000000-aaaaaa", 0), ("20260102-000000-bbbbbb", 600)):
        version = runs / run / "export" / "mnist" / "1"
        shutil.copytree(trained.export_path, version)
        mtime = time.time() - age
        os.utime(version / "saved_model.pb", (mtime, mtime))
    port = free_port()
    assert demo.main(["--port", str(port)]) == 0
    chosen = runs / "20260101-000000-aaaaaa" / "export" / "mnist" / "1"
    out = capsys.readouterr().out
    assert f"model: {chosen} (the newest export under {runs})" in out
    assert no_serving == [{"host": "127.0.0.1", "port": port, "log_level": "warning"}]


def test_cli_without_an_export_fails_in_one_line(tmp_path, monkeypatch, capsys, no_serving):
    monkeypatch.chdir(tmp_path)
    assert demo.main(["--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: no exported model under artifacts/runs: train one with `make train`, "
        "or pass --model DIR"
    ]
    assert no_serving == []


def test_cli_serving_url_looks_for_no_export(tmp_path, monkeypatch, capsys, no_serving):
    monkeypatch.chdir(tmp_path)  # no artifacts/runs here
    assert demo.main(["--serving-url", "http://127.0.0.1:9", "--port", str(free_port())]) == 0
    assert "predictions from TensorFlow Serving at http://127.0.0.1:9" in capsys.readouterr().out
    assert len(no_serving) == 1


def test_hand_drawn_strokes_for_every_digit_stay_on_the_pad():
    assert sorted(DIGIT_STROKES) == list(range(10))
    for digit in range(10):
        for seed in range(5):
            strokes = pen_path(digit, seed)
            assert len(strokes) == len(DIGIT_STROKES[digit])
            for stroke in strokes:
                points = np.array(stroke)
                assert len(points) >= 10  # many small mouse moves, not a jump
                assert (points > 9).all() and (points < 280 - 9).all()  # the 18 px pen fits
                assert np.linalg.norm(np.diff(points, axis=0), axis=1).max() <= 3.01
    assert pen_path(4, seed=1) == pen_path(4, seed=1) != pen_path(4, seed=2)


@pytest.mark.slow
def test_screenshot_script_bad_model(tmp_path):
    """The script's bad input in a real process: exit 2, one line on stderr, nothing saved."""
    script = ROOT / "scripts" / "demo_screenshot.py"
    out = tmp_path / "shot.png"
    result = subprocess.run(
        [sys.executable, str(script), "--model", "nowhere", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert_clean_failure(result, "--model nowhere: no SavedModel", untouched=[out])


@pytest.mark.slow
def test_screenshot_script_draws_and_saves(trained, tmp_path):
    # In a process of its own: in this one, the uvicorn server it starts reconfigures logging,
    # which closes the stream of TensorFlow's absl handler (pytest's own capture file) whenever
    # capsys has replaced sys.stderr.
    script = ROOT / "scripts" / "demo_screenshot.py"
    out = tmp_path / "shot.png"
    args = ["--model", str(trained.export_path), "--digit", "7", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "drew 7; the page shows 7 (" in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [path.name for path in tmp_path.iterdir()] == ["shot.png"]  # no temporary left


@pytest.fixture(scope="module")
def demo_server(trained_cnn, tmp_path_factory):
    """`python -m mnist_keras.demo` in a subprocess, serving the augmented convnet (the model to
    draw for); yields its URL, ends it with Ctrl-C."""
    port = free_port()
    model = str(trained_cnn.export_path.parent)  # the model folder: the newest version is served
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_keras.demo", "--model", model, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the demo did not start"
            try:
                urllib.request.urlopen(f"{url}/v1/models/mnist", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def static_url(trained_cnn, tmp_path_factory):
    """The same convnet as a static folder (`demo --static`), served by Python's plain static
    file server: no code of ours answers."""
    out = tmp_path_factory.mktemp("static") / "site"
    write_static(out, trained_cnn.export_path, ROOT / DEFAULT_RUNTIME_DIR)
    with demo_page.StaticServer(out) as server:
        yield server.url


@pytest.fixture(scope="module", params=["served", "static"])
def page_url(request, trained_cnn) -> str:
    """The demo page two ways: served with the model in Python, or static with it in the page."""
    if request.param == "served":
        return request.getfixturevalue("demo_server")[0]
    return request.getfixturevalue("static_url")


def _row_strokes(digit: np.ndarray, scale: int = 10) -> list[list[tuple[float, float]]]:
    """Mouse strokes that redraw a 28x28 digit: one horizontal drag per run of ink in a row."""
    strokes = []
    for row, pixels in enumerate(digit > 100):
        col = 0
        while col < 28:
            if pixels[col]:
                end = col
                while end + 1 < 28 and pixels[end + 1]:
                    end += 1
                y = (row + 0.5) * scale
                strokes.append([((col + 0.5) * scale, y), ((end + 0.5) * scale, y)])
                col = end + 1
            else:
                col += 1
    return strokes


def _read_as_python_would(page, classifier: Classifier) -> str:
    """The page's answer once it is shown; first, the 28x28 the page saw is to_mnist's of the
    pad within one grey level a pixel, and the model reads the same digit in both."""
    answer = demo_page.wait_for_answer(page)
    seen, expected = demo_page.seen(page), to_mnist(demo_page.drawing(page))
    assert np.abs(seen.astype(int) - expected).max() <= 1
    assert str(classifier(expected[None])[0].argmax()) == answer.digit
    return answer.digit


@pytest.mark.slow
def test_drawing_real_digits_in_chromium(page_url, trained_cnn, real_mnist, tmp_path, request):
    classifier = load_classifier(trained_cnn.export_path)
    with demo_page.chromium_page(page_url) as page:
        right = 0
        for digit, label in zip(real_mnist.x_test[:10], real_mnist.y_test[:10], strict=True):
            demo_page.clear(page)
            demo_page.draw(page, _row_strokes(digit))
            right += _read_as_python_would(page, classifier) == str(label)
        assert page.locator("#bars li").count() == 10
        name = request.node.callspec.params["page_url"]
        demo_page.save_screenshot(page, ROOT / "artifacts" / "demo" / f"screenshot-{name}.png")
        assert right == 10, f"{right}/10 drawn digits recognised"

        picture = tmp_path / "digit.png"  # dark ink on white paper, picked as a file
        picture.write_bytes(tf.io.encode_png((255 - real_mnist.x_test[11])[..., None]).numpy())
        page.set_input_files("#file", str(picture))
        assert demo_page.wait_for_answer(page).digit == str(real_mnist.y_test[11])
        expected = to_mnist(255 - real_mnist.x_test[11])
        assert np.abs(demo_page.seen(page).astype(int) - expected).max() <= 1
        assert page.refused == []


@pytest.mark.slow
def test_drawing_digits_by_hand_in_chromium(page_url, trained_cnn):
    """0-9 in a person's strokes (a 4: down-stroke, crossbar, long vertical), not traced rows."""
    classifier = load_classifier(trained_cnn.export_path)
    answers = {}
    with demo_page.chromium_page(page_url) as page:
        for digit in range(10):
            demo_page.clear(page)
            # A pen position every 6 pixels, as a brisk hand's mouse reports them: each position
            # is a round trip to the browser, and this test runs on both pages.
            demo_page.draw(page, pen_path(digit, step=6.0))
            answers[digit] = _read_as_python_would(page, classifier)
        assert page.refused == []
    assert answers == {digit: str(digit) for digit in range(10)}


@pytest.mark.slow
def test_load_from_eight_clients_without_an_error(demo_server, real_mnist_dir, capsys):
    url, _ = demo_server
    args = ["--url", url, "--data", str(real_mnist_dir), "--requests", "300", "--json"]
    code = load_script("load_demo").main(args)  # the clients in this process, the server in its own
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    report = json.loads(printed.out.splitlines()[-1])
    assert report["errors"] == 0 and report["requests"] == 300 and report["concurrency"] == 8
    assert 0 < report["p50_ms"] <= report["p99_ms"]


@pytest.mark.slow
def test_ctrl_c_stops_the_server_cleanly(demo_server):
    url, proc = demo_server  # last: it ends the module's server
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in stderr
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/v1/models/mnist", timeout=2)
