"""ONNX and LiteRT exports: each runs in its own runtime, in a process without this package."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import assert_clean_failure, run_main

from mnist_keras import export as export_mod
from mnist_keras import runtimes
from mnist_keras.errors import ConfigError, ExportError, ModelError
from mnist_keras.export import Exported, export_model
from mnist_keras.formats import FORMATS, calibration_images, check_formats
from mnist_keras.predict import main as predict_main

CHECKED = 1000  # real test digits each runtime classifies

# Each script imports its runtime and numpy, nothing else of ours or Keras's, and saves what
# the export answers for the images in argv[2].
RUNTIME_SCRIPTS = {
    "saved_model": """
        import tensorflow as tf
        serve = tf.saved_model.load(path).signatures["serving_default"]
        out = {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
        """,
    "onnx": """
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        out = dict(zip(names, session.run(names, {"images": images})))
        assert [(i.name, i.type) for i in session.get_inputs()] == [("images", "tensor(uint8)")]
        """,
    "litert": """
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=path)
        assert interpreter.get_signature_list() == {
            "serving_default": {"inputs": ["images"], "outputs": ["classes", "probabilities"]}
        }
        out = interpreter.get_signature_runner("serving_default")(images=images)
        """,
}
RUNTIME_SCRIPTS["litert_int8"] = RUNTIME_SCRIPTS["litert"]
# Modules a script must not have loaded: TensorFlow itself imports Keras, the others need neither.
FORBIDDEN = {"saved_model": ("mnist_keras",)}


def run_in_runtime(fmt: str, path: Path, images: np.ndarray, tmp: Path) -> dict[str, np.ndarray]:
    np.save(tmp / "images.npy", images)
    forbidden = FORBIDDEN.get(fmt, ("mnist_keras", "keras", "tensorflow"))
    script = tmp / f"run_{fmt}.py"
    script.write_text(
        "import sys\nimport numpy as np\npath, images = sys.argv[1], np.load(sys.argv[2])\n"
        + textwrap.dedent(RUNTIME_SCRIPTS[fmt])
        + f"loaded = [m for m in {forbidden!r} if m in sys.modules]\n"
        + "assert not loaded, f'imported {loaded}'\n"
        + "np.savez(sys.argv[3], **out)\n"
    )
    subprocess.run(
        [sys.executable, str(script), str(path), str(tmp / "images.npy"), str(tmp / "out.npz")],
        check=True,
        timeout=180,
        cwd=tmp,  # not the checkout: `import mnist_keras` would need the installed package
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return dict(np.load(tmp / "out.npz"))


def _exports(result, real_mnist, folder: Path) -> tuple[keras.Model, dict[str, Exported]]:
    model = keras.saving.load_model(str(result.run.keras_model))
    calibration = calibration_images(real_mnist.x_train, 0)
    exports = export_model(model, folder / "mnist", FORMATS, calibration)
    return model, {e.format: e for e in exports}


@pytest.fixture(scope="module")
def mlp_exports(trained, real_mnist, tmp_path_factory):
    return _exports(trained, real_mnist, tmp_path_factory.mktemp("formats_mlp"))


@pytest.fixture(scope="module")
def cnn_exports(trained_cnn, real_mnist, tmp_path_factory):
    """The convnet, whose augmentation layers must leave every format."""
    return _exports(trained_cnn, real_mnist, tmp_path_factory.mktemp("formats_cnn"))


# The convnet's cases join its fixture's xdist group (conftest.SHARED_ONCE), which pytest cannot
# see through getfixturevalue; its half-minute training keeps them out of `make test-fast`.
CNN = pytest.param("cnn", marks=[pytest.mark.xdist_group("trained_cnn"), pytest.mark.slow])


@pytest.fixture(params=["mlp", CNN])
def exports(request):
    return request.getfixturevalue(f"{request.param}_exports")


def test_one_version_in_every_format_beside_the_saved_model(mlp_exports):
    _, exports = mlp_exports
    folder = exports["saved_model"].path.parent
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["1", "1.int8.tflite", "1.onnx", "1.tflite"]  # no temporaries left
    for e in exports.values():
        assert e.path.parent == folder
        assert e.size_bytes == e.path.stat().st_size or e.path.is_dir()
    assert oct((folder / "1.onnx").stat().st_mode & 0o044) == oct(0o044 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# TensorFlow's import makes the SavedModel's process the slow one.
@pytest.mark.parametrize(
    "fmt", [pytest.param("saved_model", marks=pytest.mark.slow), "onnx", "litert"]
)
def test_float_formats_agree_with_keras_in_their_own_runtime(exports, fmt, real_mnist, tmp_path):
    model, files = exports
    images = real_mnist.x_test[:CHECKED]
    out = run_in_runtime(fmt, files[fmt].path, images, tmp_path)
    expected = np.asarray(model(images, training=False))
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (CHECKED, 10)
    assert np.abs(out["probabilities"] - expected).max() < 1e-5
    assert out["classes"].dtype == np.int64
    np.testing.assert_array_equal(out["classes"], expected.argmax(axis=1))


def test_int8_litert_reads_99_percent_of_digits_as_keras_does(exports, real_mnist, tmp_path):
    model, files = exports
    images = real_mnist.x_test[:CHECKED]
    out = run_in_runtime("litert_int8", files["litert_int8"].path, images, tmp_path)
    expected = np.asarray(model(images, training=False)).argmax(axis=1)
    assert np.mean(out["classes"] == expected) >= 0.99
    assert out["probabilities"].dtype == np.float32
    # Weights and activations in int8: a quarter of the float file, plus the graph.
    assert files["litert_int8"].size_bytes <= files["litert"].size_bytes / 3


def test_each_runtime_loads_by_the_file_and_measures_the_same_accuracy(mlp_exports, real_mnist):
    model, files = mlp_exports
    images, labels = real_mnist.x_test, real_mnist.y_test
    measured = {e.format: e.test_accuracy for e in runtimes.measure(files.values(), images, labels)}
    keras_accuracy = float(np.mean(model.predict(images, verbose=0).argmax(axis=1) == labels))
    for fmt in ("saved_model", "onnx", "litert"):
        assert measured[fmt] == pytest.approx(keras_accuracy, abs=1e-4)
    assert abs(measured["litert_int8"] - keras_accuracy) <= 0.003  # the budget


def test_train_exports_the_default_formats_and_records_them(trained):
    metrics = json.loads(trained.run.metrics_json.read_text())
    assert [e["format"] for e in metrics["exports"]] == ["saved_model", "litert", "litert_int8"]
    assert metrics["exports"][0]["path"] == metrics["export_path"]
    for row in metrics["exports"]:
        assert Path(row["path"]).exists() and row["size_bytes"] > 0
        assert abs(row["test_accuracy"] - metrics["test_accuracy"]) <= 0.003, row


def test_check_formats_names_the_flag_and_the_extra(monkeypatch):
    with pytest.raises(ConfigError, match="--format 'pb': must be one of"):
        check_formats(["saved_model", "pb"], "--format")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "tf2onnx" else find_spec(name)
    )
    with pytest.raises(ConfigError, match=r"--export-formats onnx needs tf2onnx: pip install"):
        check_formats(["onnx"], "--export-formats")


def test_full_disk_while_writing_a_file_leaves_nothing(mlp_exports, tmp_path, monkeypatch):
    model, _ = mlp_exports
    first = export_model(model, tmp_path, ["saved_model"])
    before = sorted(p.name for p in tmp_path.iterdir())
    calls = []

    def fill_up(fd):  # the second file hits a full disk: the first must go too
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fill_up)
    with pytest.raises(ExportError, match="No space left on device"):
        export_model(model, tmp_path, FORMATS, np.zeros((9, 28, 28), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == before == [first[0].path.name]


def test_export_cli_on_a_full_disk_is_one_error_line(trained, tmp_path, monkeypatch, capsys):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    args = [str(trained.run.keras_model), "--out", str(tmp_path / "served"), "--format", "onnx"]
    assert export_mod.main([*args, "litert_int8"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "No space left on device" in err
    assert list((tmp_path / "served" / "mnist").iterdir()) == []


def test_runtimes_refuse_files_they_cannot_run(tmp_path):
    for name in ("junk.onnx", "junk.tflite"):
        (tmp_path / name).write_bytes(b"not a model")
        with pytest.raises(ModelError, match=f"--model {tmp_path / name}: not a loadable"):
            runtimes.load_classifier(tmp_path / name)
    with pytest.raises(ModelError, match="no such file"):
        runtimes.load_classifier(tmp_path / "absent.onnx")


def test_predict_cli_runs_every_format_alike(mlp_exports, real_mnist, tmp_path, capsys):
    _, files = mlp_exports
    np.save(tmp_path / "digits.npy", real_mnist.x_test[:20])
    answers = {}
    for fmt, e in files.items():
        code = predict_main([str(tmp_path / "digits.npy"), "--model", str(e.path), "--json"])
        assert code == 0
        answers[fmt] = [row["top"][0]["class"] for row in json.loads(capsys.readouterr().out)]
    assert answers["onnx"] == answers["litert"] == answers["saved_model"]
    assert np.mean(np.equal(answers["litert_int8"], answers["saved_model"])) >= 0.9


def test_export_cli_writes_every_format_with_its_accuracy(trained, tmp_path):
    # In this process: test_quiet runs this command in every format in a process of its own.
    result = run_main(
        "export",
        str(trained.run.keras_model),
        "--out",
        "served",
        "--format",
        *FORMATS,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("1/", "1.onnx", "1.tflite", "1.int8.tflite", "served/mnist"):
        assert name in result.stdout
    accuracies = [float(x) for x in re.findall(r"(\d+\.\d+)%", result.stdout)]
    assert len(accuracies) == 4 and min(accuracies) > 90


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "pb"], "argument --format: invalid choice: 'pb'"),
        (["--out", "file/served"], "export failed"),
    ],
)
def test_export_cli_refuses_bad_formats_and_unwritable_folders(trained, tmp_path, args, message):
    (tmp_path / "file").write_text("a file where the export folder would go")
    before = sorted(p.name for p in tmp_path.iterdir())
    out = [] if "--out" in args else ["--out", "served"]
    result = run_main("export", str(trained.run.keras_model), *out, *args, cwd=tmp_path)
    assert_clean_failure(result, message, [tmp_path / "served"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before
