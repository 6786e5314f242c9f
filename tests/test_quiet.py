"""A plain run of each command prints only the package's own lines: nothing on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pytest
from helpers import run_cli, synthetic_mnist, write_idx_folder

from mnist_keras.formats import FORMATS

pytestmark = pytest.mark.slow
# The tests of what `served` made: made once a worker (a session fixture, so another module's
# tests in between do not remake it), and once in all where --dist loadgroup groups them.
uses_served = pytest.mark.xdist_group("quiet_served")


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("quiet") / "data"
    return str(write_idx_folder(folder, synthetic_mnist(n_train=600, n_test=100)))


@pytest.fixture(scope="session")
def served(data, tmp_path_factory) -> tuple[Path, CompletedProcess, CompletedProcess]:
    """A folder where `train` ran and then `export` in every format (to served/), with
    digits.npy to predict; and those two runs. The predict tests only read it."""
    folder = tmp_path_factory.mktemp("served")
    train = run_cli(
        *("train", "--data", data, "--epochs", "2", "--validation-size", "100"),
        # The other formats are made and measured quietly by `export` below, the same code.
        *("--runs-dir", "runs", "--export-formats", "saved_model"),
        cwd=folder,
    )
    models = sorted(folder.glob("runs/*/model.keras"))  # none when train failed
    export = run_cli(
        *("export", str(models[0]) if models else "runs/model.keras", "--out", "served"),
        *("--data", data, "--format", *FORMATS),
        cwd=folder,
    )
    np.save(folder / "digits.npy", synthetic_mnist(n_train=1, n_test=3).x_test)
    return folder, train, export


def _quiet(result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]  # TensorFlow's start-up log included


@uses_served
def test_train_and_export_in_every_format(served):
    folder, train, export = served
    _quiet(train)
    (run,) = (folder / "runs").iterdir()
    assert (run / "model.keras").is_file()  # what export read
    _quiet(export)


@uses_served
@pytest.mark.parametrize("model", ["1", "1.onnx", "1.tflite", "1.int8.tflite"])
def test_predict_in_every_format(served, model):
    folder = served[0]
    _quiet(run_cli("predict", "--model", f"served/mnist/{model}", "digits.npy", cwd=folder))


def test_tune_and_its_rerun(data, tmp_path):
    args = (
        *("--data", data, "--tuner", "random", "--max-trials", "1", "--max-epochs", "1"),
        *("--validation-size", "100", "--directory", "tuning", "--runs-dir", "runs"),
        # XLA and the other formats are `train`'s and `export`'s above; this is about the search.
        *("--no-jit-compile", "--export-formats", "saved_model"),
    )
    _quiet(run_cli("tune", *args, cwd=tmp_path))
    rerun = run_cli("tune", *args, cwd=tmp_path)  # the search is over: nothing left to run
    _quiet(rerun)
    assert "Reloading" not in rerun.stdout  # keras-tuner's own line


def test_the_package_and_its_configuration_do_not_import_tensorflow():
    """TensorFlow is imported where it is used (Keras's TensorFlow backend, tf.data, exports),
    captured then: not by `import mnist_keras` or the configuration, which a JAX or PyTorch
    run, or a command's --help, reads first."""
    program = (
        "import sys, mnist_keras, mnist_keras.config, mnist_keras.flags; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
