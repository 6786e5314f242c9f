"""`python -m mnist_keras.train` end to end: the smoke run, a failing run's exit codes and stderr
in real processes, and every other bad input through `main(argv)` in this process."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_clean_failure,
    error_lines,
    idx_bytes,
    run_cli,
    run_main,
    tensorboard_tags,
    write_idx_folder,
)
from test_data import CORRUPTIONS, GOOD, NPZ_CASES

from mnist_keras.runs import RunDir


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """train's `main(ARGS)` in this process: its messages and exit code without a TensorFlow
    start-up. What only a real process shows (native stderr, the exit status) is proven by the
    tests marked slow, which use `run_cli`."""
    return run_main("train", *args, cwd=cwd)


@pytest.mark.slow
def test_smoke_one_epoch_on_a_slice_of_real_mnist(real_mnist_dir, tmp_path):
    # No XLA and only the SavedModel: neither is what this run is about (the `trained` fixture
    # exports the default formats, test_formats checks what train records of them).
    result = run_cli(
        "train",
        "--data",
        str(real_mnist_dir),
        "--epochs",
        "1",
        "--train-samples",
        "3000",
        "--validation-size",
        "500",
        "--test-samples",
        "1000",
        "--input-dropout",
        "0.1",
        "--schedule",
        "constant",
        "--runs-dir",
        "runs",
        "--no-jit-compile",
        "--export-formats",
        "saved_model",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout and "Confusion matrix" in result.stdout
    (run_path,) = (tmp_path / "runs").iterdir()
    run_dir = RunDir(run_path)
    metrics = json.loads(run_dir.metrics_json.read_text())
    assert metrics["test_accuracy"] > 0.5  # chance is 0.1
    config = json.loads(run_dir.config_json.read_text())["config"]
    assert (config["train_samples"], config["input_dropout"], config["schedule"]) == (
        3000,
        0.1,
        "constant",
    )
    assert run_dir.best_checkpoint.is_file() and run_dir.keras_model.is_file()
    assert {"epoch_loss", "epoch_accuracy", "<graph>"} <= tensorboard_tags(
        run_dir.tensorboard / "train"
    )
    assert any("kernel" in tag for tag in tensorboard_tags(run_dir.tensorboard / "train"))
    assert {"epoch_loss", "epoch_accuracy"} <= tensorboard_tags(run_dir.tensorboard / "validation")
    assert {"test/confusion_matrix", "test/misread_digits"} <= tensorboard_tags(
        run_dir.tensorboard / "test"
    )
    assert run_dir.confusion_png.is_file() and run_dir.misread_png.is_file()
    for path in (run_dir.best_checkpoint, run_dir.keras_model):
        model = keras.saving.load_model(str(path))
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == 784 * 768 + 768 + 7690
        assert model.get_layer("input_dropout").rate == pytest.approx(0.1)
    serve = tf.saved_model.load(str(run_dir.export / "mnist" / "1")).signatures["serving_default"]
    images = np.zeros((2, 28, 28), np.uint8)
    assert serve(images=tf.constant(images))["probabilities"].shape == (2, 10)


@pytest.mark.slow
def test_no_data_anywhere_fails_fast_and_clearly(tmp_path):
    """train's one bad input in a real process: exit 2, one line on stderr, no TensorFlow log.
    A process also reads $KERAS_HOME afresh (Keras 3 reads it once, at import)."""
    env = {"MNIST_KERAS_DATA": "", "KERAS_HOME": str(tmp_path / "keras-home")}
    # Stop the download at once, whatever the machine's network: no proxy will answer.
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    result = run_cli("train", "--epochs", "1", "--runs-dir", "runs", cwd=tmp_path, env=env)
    assert_clean_failure(result, "--data", [tmp_path / "runs"])
    assert "MNIST_KERAS_DATA" in result.stderr


def _bad_data(tmp_path: Path, tiny) -> dict[str, tuple[list[str], str]]:
    empty = tmp_path / "empty"
    empty.mkdir()
    truncated = write_idx_folder(tmp_path / "truncated", tiny, gz=False)
    labels = truncated / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(tiny.y_test)[:-1])
    one_missing = write_idx_folder(tmp_path / "one-missing", tiny)
    (one_missing / "train-labels-idx1-ubyte.gz").unlink()
    arrays = {k: getattr(tiny, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    np.savez(tmp_path / "short.npz", **{**arrays, "y_test": tiny.y_test[:-1]})
    return {
        "missing path": (["--data", str(tmp_path / "nope")], "no such file or folder"),
        "empty folder": (["--data", str(empty)], "missing train-images-idx3-ubyte"),
        "one file missing": (["--data", str(one_missing)], "missing train-labels-idx1-ubyte"),
        "truncated idx": (["--data", str(truncated)], f"{labels}: 207 bytes, but its header"),
        "npz counts": (
            ["--data", str(tmp_path / "short.npz")],
            "short.npz [x_test] has 200 images but",
        ),
    }


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, str]:
    """The data path for a corruption case from test_data ("idx: ..." or "npz: ..."), its defect."""
    kind, name = case.split(": ")
    if kind == "idx":
        file, content, defect = CORRUPTIONS[name]
        folder = write_idx_folder(tmp_path / "mnist", GOOD)
        (folder / file).write_bytes(content)
        return folder / file, defect
    arrays, defect = NPZ_CASES[name]
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if k != "source"})
    return tmp_path / "bad.npz", defect


BAD_FLAGS = {
    "zero epochs": (["--epochs", "0"], "--epochs must be a positive integer"),
    "negative batch": (["--batch-size", "-4"], "--batch-size must be a positive integer"),
    "zero hidden": (["--hidden-units", "0"], "--hidden-units must be a positive integer"),
    "learning rate": (["--learning-rate", "0"], "--learning-rate must be a positive number"),
    "dropout": (["--dropout", "1"], "--dropout must be in [0, 1)"),
    "input dropout": (["--input-dropout", "-0.1"], "--input-dropout must be in [0, 1)"),
    "schedule": (["--schedule", "linear"], "--schedule: invalid choice"),
    "validation size": (["--validation-size", "-1"], "--validation-size must be 0 or a positive"),
    "optimizer": (["--optimizer", "adagrad"], "--optimizer: invalid choice"),
    "preset": (["--preset", "huge"], "--preset: invalid choice"),
    "not a number": (["--epochs", "many"], "--epochs: invalid int value"),
    "validation too big": (
        ["--train-samples", "100", "--validation-size", "100"],
        "--validation-size 100 must be smaller than --train-samples 100: use at most 99",
    ),
    "resume nothing": (["--resume", "."], "not a run folder"),
    "resume with flags": (["--resume", ".", "--epochs", "3"], "drop the other flags"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flags(case, tmp_path, tiny):
    args, message = BAD_FLAGS[case]
    data = write_idx_folder(tmp_path / "data", tiny)
    result = _train("--data", str(data), "--runs-dir", "runs", *args, cwd=tmp_path)
    assert_clean_failure(result, message, [tmp_path / "runs"])


@pytest.mark.parametrize(
    "case", ["missing path", "empty folder", "one file missing", "truncated idx", "npz counts"]
)
def test_bad_data(case, tmp_path, tiny):
    args, message = _bad_data(tmp_path, tiny)[case]
    result = _train("--runs-dir", "runs", *args, cwd=tmp_path)
    assert_clean_failure(result, message, [tmp_path / "runs"])


@pytest.mark.parametrize(
    "case", [f"idx: {c}" for c in sorted(CORRUPTIONS)] + [f"npz: {c}" for c in sorted(NPZ_CASES)]
)
def test_corrupt_data_file(case, tmp_path):
    path, defect = _bad_file(tmp_path, case)
    data = path.parent if path.suffix != ".npz" else path
    result = _train("--data", str(data), "--runs-dir", "runs", cwd=tmp_path)
    assert_clean_failure(result, str(path), [tmp_path / "runs"])
    assert re.search(defect, error_lines(result)[0])


def test_runs_dir_that_cannot_be_written(tmp_path, tiny):
    # Tests may run as root, whom file modes do not stop; a regular file where the runs folder
    # should be is unwritable for everyone.
    data = write_idx_folder(tmp_path / "data", tiny)
    (tmp_path / "runs").write_text("not a folder")
    args = ["--data", str(data), "--validation-size", "100", "--runs-dir", "runs/inner"]
    result = _train(*args, cwd=tmp_path)
    assert_clean_failure(result, "runs/inner: cannot create a run folder")
    assert (tmp_path / "runs").read_text() == "not a folder"


@pytest.mark.slow
def test_diverging_run_exits_1_and_says_so(tmp_path, tiny):
    """In a process: the only test that the shell sees exit status 1. A narrow network without
    XLA diverges as surely, and sooner."""
    data = write_idx_folder(tmp_path / "data", tiny)
    args = ["--data", str(data), "--runs-dir", "runs", "--validation-size", "100"]
    bad = ["--epochs", "3", "--optimizer", "sgd", "--learning-rate", "1e12"]
    small = ["--hidden-units", "8", "--no-jit-compile"]
    result = run_cli("train", *args, *bad, *small, cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "loss became NaN" in error_lines(result)[0] and "Traceback" not in result.stderr
    run_dir = RunDir(next((tmp_path / "runs").iterdir()))
    assert json.loads(run_dir.metrics_json.read_text())["status"] == "diverged"
    assert not run_dir.export.exists()
