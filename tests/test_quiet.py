"""A plain run of each command prints only the package's own lines: nothing on stderr."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_cli, synthetic_mnist, write_idx_folder

from mnist_keras.formats import FORMATS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("quiet") / "data"
    return str(write_idx_folder(folder, synthetic_mnist(n_train=600, n_test=100)))


def _quiet(result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]  # TensorFlow's start-up log included


def test_train_export_and_predict_in_every_format(data, tmp_path):
    _quiet(
        run_cli(
            "train",
            "--data",
            data,
            "--epochs",
            "2",
            "--validation-size",
            "100",
            "--runs-dir",
            "runs",
            cwd=tmp_path,
        )
    )
    (run,) = (tmp_path / "runs").iterdir()
    _quiet(
        run_cli(
            "export",
            str(run / "model.keras"),
            "--out",
            "served",
            "--data",
            data,
            "--format",
            *FORMATS,
            cwd=tmp_path,
        )
    )
    np.save(tmp_path / "digits.npy", synthetic_mnist(n_train=1, n_test=3).x_test)
    for model in ("1", "1.onnx", "1.tflite", "1.int8.tflite"):
        _quiet(run_cli("predict", "--model", f"served/mnist/{model}", "digits.npy", cwd=tmp_path))


def test_tune_and_its_rerun(data, tmp_path):
    args = (
        *("--data", data, "--tuner", "random", "--max-trials", "1", "--max-epochs", "1"),
        *("--validation-size", "100", "--directory", "tuning", "--runs-dir", "runs"),
    )
    _quiet(run_cli("tune", *args, cwd=tmp_path))
    rerun = run_cli("tune", *args, cwd=tmp_path)  # the search is over: nothing left to run
    _quiet(rerun)
    assert "Reloading" not in rerun.stdout  # keras-tuner's own line
