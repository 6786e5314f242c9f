"""Keras 3's JAX and PyTorch backends: the same masks, training (both networks), the exports as
one product, resume, Ctrl-C, the NaN stop, a search, quiet output, and one seed giving one result.

Each backend runs in its own process (`KERAS_BACKEND` is read when Keras is imported); this
process, on TensorFlow, checks what they wrote with the same checks as a TensorFlow run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    assert_clean_failure,
    csv_epochs,
    kill_when,
    one_epoch_done,
    run_cli,
    start_cli,
    tensorboard_tags,
    write_idx_folder,
)

from mnist_keras.compat import KERAS_3
from mnist_keras.contract import (
    INPUT_NAME,
    OUTPUT_CLASSES,
    OUTPUT_PROBABILITIES,
    SIGNATURE,
    SIGNATURE_FLOAT,
)
from mnist_keras.dropout import keep_mask
from mnist_keras.runs import RunDir
from mnist_keras.runtimes import load_classifier

pytestmark = [
    pytest.mark.backends,
    pytest.mark.slow,
    pytest.mark.skipif(not KERAS_3, reason="Keras 2 has one backend, TensorFlow"),
]

BACKENDS = ("jax", "torch")
# Each backend's tests in one xdist worker, so its training fixture is made once.
ON_EACH = [pytest.param(b, marks=pytest.mark.xdist_group(f"backend-{b}")) for b in BACKENDS]
# A small MLP, a few steps an epoch on real digits: long enough for a kill to land mid-run.
TRAIN_ARGS = (
    *("--epochs", "3", "--steps-per-epoch", "30", "--hidden-units", "64"),
    *("--validation-size", "500", "--runs-dir", "runs"),
)
ALL_FORMATS = ("--export-formats", "saved_model", "onnx", "litert", "litert_int8")


def _env(backend: str) -> dict[str, str]:
    # 2: a common setting, at which TensorFlow would log a CUDA error on this GPU-less machine.
    return {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _finished(command: str, backend: str, cwd: Path, *args: str) -> tuple[RunDir, str, str]:
    """Run `command` on `backend` in `cwd`, check it succeeded; its one run folder, stdout and
    stderr."""
    result = run_cli(command, *args, cwd=cwd, env=_env(backend))
    assert result.returncode == 0, result.stderr[-3000:]
    return _only_run(cwd), result.stdout, result.stderr


def _only_run(cwd: Path) -> RunDir:
    (path,) = (cwd / "runs").iterdir()
    return RunDir(path)


def _metrics(run: RunDir) -> dict:
    return json.loads(run.metrics_json.read_text())


@pytest.fixture(scope="module")
def head(real_mnist, tmp_path_factory) -> Path:
    """The first 3,000 training and 1,000 test images of real MNIST, as IDX files."""
    return write_idx_folder(tmp_path_factory.mktemp("mnist"), real_mnist.head(3000, 1000), gz=False)


@pytest.fixture(scope="module", params=ON_EACH)
def backend_run(request, head, tmp_path_factory) -> tuple[str, tuple[str, str], RunDir]:
    """One training on the backend, every format exported; what it printed (stdout, stderr)."""
    backend, cwd = request.param, tmp_path_factory.mktemp(request.param)
    args = ("--data", str(head), *TRAIN_ARGS, *ALL_FORMATS)
    run, out, err = _finished("train", backend, cwd, *args)
    return backend, (out, err), run


@pytest.mark.parametrize("backend", ON_EACH)
def test_hash_dropout_draws_the_same_masks_as_on_tensorflow(backend):
    program = (
        "import numpy as np, keras; from mnist_keras.dropout import keep_mask; "
        "m = keras.ops.convert_to_numpy(keep_mask(keras.ops.zeros((64, 300)), 3, 7, 0.3, 1)); "
        "print(np.packbits(m).tobytes().hex())"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env={**os.environ, **_env(backend)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    mine = keep_mask(tf.zeros((64, 300)), 3, tf.constant(7), 0.3, tf.constant(1)).numpy()
    theirs = np.unpackbits(np.frombuffer(bytes.fromhex(done.stdout.strip()), np.uint8))
    assert mine.mean() == pytest.approx(0.7, abs=0.02)
    np.testing.assert_array_equal(theirs.astype(bool), mine.ravel())


def test_a_run_prints_only_our_lines_and_names_its_backend(backend_run):
    backend, (out, err), run = backend_run
    assert err == ""
    assert "│ backend" in out and backend in out
    assert f"model graph: none in TensorBoard on {backend}" in out
    config = json.loads(run.config_json.read_text())
    assert config["versions"]["keras_backend"] == backend
    assert _metrics(run)["backend"] == backend
    assert _metrics(run)["compiled"] == (backend == "jax")  # the MLP asks; PyTorch never


def test_exports_keep_the_serving_contract(backend_run, real_mnist):
    """The SavedModel's signatures, names and answers; ONNX and LiteRT as accurate as it."""
    _, _, run = backend_run
    metrics = _metrics(run)
    version = run.export / "mnist" / "1"
    signatures = tf.saved_model.load(str(version)).signatures
    assert set(signatures) == {SIGNATURE, SIGNATURE_FLOAT}
    x = real_mnist.x_test[:200]
    outputs = signatures[SIGNATURE](**{INPUT_NAME: tf.constant(x)})
    assert set(outputs) == {OUTPUT_PROBABILITIES, OUTPUT_CLASSES}
    keras_model = keras.saving.load_model(str(run.keras_model))
    np.testing.assert_allclose(
        outputs[OUTPUT_PROBABILITIES].numpy(), keras_model.predict(x, verbose=0), atol=1e-5
    )
    floats = signatures[SIGNATURE_FLOAT](**{INPUT_NAME: tf.constant(x / 255.0, tf.float32)})
    np.testing.assert_array_equal(floats[OUTPUT_CLASSES].numpy(), outputs[OUTPUT_CLASSES].numpy())
    accuracy = {e["format"]: e["test_accuracy"] for e in metrics["exports"]}
    assert set(accuracy) == {"saved_model", "onnx", "litert", "litert_int8"}
    assert accuracy["saved_model"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    for name, value in accuracy.items():
        assert value == pytest.approx(metrics["test_accuracy"], abs=0.01), name
    onnx = load_classifier(next(run.export.glob("mnist/1.onnx")))
    np.testing.assert_array_equal(onnx(x).argmax(1), outputs[OUTPUT_CLASSES].numpy())


def test_tensorboard_has_scalars_and_pictures_and_no_graph(backend_run):
    _, _, run = backend_run
    assert {"epoch_loss", "epoch_accuracy"} <= tensorboard_tags(run.tensorboard / "train")
    assert "<graph>" not in tensorboard_tags(run.tensorboard / "train")  # TensorFlow's alone
    assert run.confusion_png.is_file() and run.misread_png.is_file()


# SIGKILL on one backend, Ctrl-C on the other (both on TensorFlow: test_crash.py).
STOPS = {"jax": signal.SIGKILL, "torch": signal.SIGINT}


def test_stopped_run_resumes_to_the_very_run_never_stopped(backend_run, head, tmp_path):
    backend, _, whole = backend_run
    stop = STOPS[backend]
    proc = start_cli("train", "--data", str(head), *TRAIN_ARGS, cwd=tmp_path, env=_env(backend))
    code, stderr = kill_when(proc, one_epoch_done(tmp_path / "runs"), stop)
    assert code == (130 if stop == signal.SIGINT else -stop), stderr[-3000:]
    assert "Traceback" not in stderr
    run = _only_run(tmp_path)
    assert not run.export.exists()
    resumed = run_cli("train", "--resume", str(run.path), cwd=tmp_path, env=_env(backend))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert csv_epochs(run) == [0, 1, 2]  # no finished epoch ran again
    # One seed, one run: the same history and result as the run never stopped (JAX and
    # PyTorch replay exactly on a CPU).
    assert run.history_csv.read_text() == whole.history_csv.read_text()
    assert _metrics(run)["test_accuracy"] == _metrics(whole)["test_accuracy"]


@pytest.mark.parametrize("backend", ON_EACH)
def test_nan_stops_the_run_with_one_line(backend, head, tmp_path):
    args = ("--data", str(head), "--epochs", "2", "--steps-per-epoch", "5", "--runs-dir", "runs")
    args += ("--validation-size", "500", "--optimizer", "sgd", "--learning-rate", "1e30")
    result = run_cli("train", *args, cwd=tmp_path, env=_env(backend))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "loss became NaN" in result.stderr and "Traceback" not in result.stderr
    assert _metrics(_only_run(tmp_path))["status"] == "diverged"


@pytest.mark.parametrize("backend", ON_EACH)
def test_augmented_convnet_trains_and_exports(backend, head, tmp_path):
    """Eight steps of the augmented convnet: it learns, and its SavedModel answers."""
    args = ("--data", str(head), "--arch", "cnn", "--epochs", "1", "--runs-dir", "runs")
    args += ("--train-samples", "1300", "--validation-size", "300", "--test-samples", "500")
    run, _, _ = _finished("train", backend, tmp_path, *args)
    assert _metrics(run)["test_accuracy"] > 0.3
    classifier = load_classifier(run.export / "mnist" / "1")
    assert classifier(np.zeros((2, 28, 28), np.uint8)).shape == (2, 10)


@pytest.mark.parametrize("backend", ON_EACH)
def test_a_search_trains_and_exports_its_best_model(backend, head, tmp_path):
    args = ("--data", str(head), "--max-trials", "2", "--max-epochs", "1", "--runs-dir", "runs")
    args += ("--directory", "tuning", "--train-samples", "1500", "--validation-size", "300")
    run, _, err = _finished("tune", backend, tmp_path, *args)
    assert err == ""
    assert _metrics(run)["backend"] == backend
    assert (run.export / "mnist" / "1" / "saved_model.pb").is_file()


def test_bench_trains_each_network_on_each_backend(tmp_path, capsys):
    from test_bench import run_bench

    flags = ("--no-throughput", "--recipes", "none", "--no-architectures", "--backends")
    report, out = run_bench(tmp_path, capsys, *flags, "--backend-epochs", "2")
    rows = {(r["arch"], r["backend"]): r for r in report["backends"]}
    expected = {(a, b) for a in ("mlp", "cnn") for b in ("tensorflow", "jax", "torch")}
    assert set(rows) == expected | {("mlp", "PyTorch eager (peer)")}
    for (arch, backend), row in rows.items():
        assert not row.get("skipped"), row
        assert row["samples_per_second"] > 0 and 0 < row["test_accuracy"] <= 1, row
        if arch == "mlp":
            assert 0 < row["fraction_of_ceiling"] < 1, row
        if backend in ("jax", "torch", "tensorflow"):
            assert row["epochs"] == 2 and row["fit_seconds"] > 0
    assert not rows[("mlp", "torch")]["jit_compile"]  # torch.compile: see backend.py
    assert "Keras backends, trained as `train` does" in out


# Training across processes on JAX (keras.distribution over jax.distributed), started by the
# launcher on 127.0.0.1. 2,500 training and 500 validation images in global batches of 100:
# no short batch, so one process with the same global batch sees the very same batches.
LAUNCHER = Path(__file__).parents[1] / "scripts" / "launch_workers.py"
MULTI = pytest.mark.xdist_group("multi-process")
ACROSS_ARGS = (
    *("--epochs", "3", "--hidden-units", "64", "--validation-size", "500"),
    *("--export-formats", "saved_model", "--runs-dir", "runs"),
)


def _launch(cwd: Path, *train_args: str) -> subprocess.Popen:
    """The launcher with two JAX processes; its scratch under cwd/tmp, to see it removed."""
    (cwd / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, **_env("jax"), "COLUMNS": "200", "TMPDIR": str(cwd / "tmp")}
    return subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--workers", "2", "--logs", "logs", "--", *train_args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: the test can end it and its processes
    )


def _finish(launcher: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    try:
        return launcher.communicate(timeout=timeout)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()


@pytest.fixture(scope="module")
def across(head, tmp_path_factory) -> tuple[RunDir, tuple[str, str], Path]:
    """A run trained by two JAX processes, --batch-size 50 each; the chief's output (stdout,
    stderr); its folder."""
    cwd = tmp_path_factory.mktemp("across")
    launcher = _launch(cwd, "--data", str(head), *ACROSS_ARGS, "--batch-size", "50")
    out, err = _finish(launcher)
    assert launcher.returncode == 0, (out + err)[-4000:]
    return _only_run(cwd), (out, err), cwd


@MULTI
def test_two_processes_train_as_one_process_with_their_global_batch(across, head, tmp_path):
    run, (out, err), cwd = across
    assert err == "" and "[Gloo]" not in out  # quiet: gloo's connection notice included
    one, _, _ = _finished("train", "jax", tmp_path, "--data", str(head), *ACROSS_ARGS,
                          "--batch-size", "100")  # fmt: skip
    assert "global_batch" in out and "100 (2 replicas)" in out
    config = json.loads(run.config_json.read_text())
    assert config["config"]["distribute"] == "multi-worker" and config["config"]["batch_size"] == 50
    two, single = _metrics(run), _metrics(one)
    assert two["replicas"] == 2 and single["replicas"] == 1
    # The same batches, masks and initial weights: the same run, to float rounding.
    assert two["test_accuracy"] == pytest.approx(single["test_accuracy"], abs=0.003)
    for mine, theirs in zip(two["history"], single["history"], strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-4)
    assert (run.export / "mnist" / "1" / "saved_model.pb").is_file()
    # Process 0 alone wrote: one run folder, the other's scratch gone, its output in its log.
    assert [p.name for p in (cwd / "runs").iterdir()] == [run.path.name]
    assert not list((cwd / "tmp").iterdir())
    assert "worker done: 3 epochs" in (cwd / "logs" / "worker-1.log").read_text()


def _process(launcher: subprocess.Popen, index: int) -> int:
    """The pid of the launcher's training process `index`."""
    for pid in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"KERAS_DISTRIBUTION_PROCESS_ID={index}".encode() in environ:
            return int(pid)
    raise AssertionError(f"no process {index}")


@MULTI
def test_a_killed_process_ends_the_run_and_resume_replays_it(across, head, tmp_path):
    whole, _, _ = across
    launcher = _launch(tmp_path, "--data", str(head), *ACROSS_ARGS, "--batch-size", "50")
    try:
        deadline = time.monotonic() + 240
        while not one_epoch_done(tmp_path / "runs")():
            assert launcher.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(_process(launcher, 1), signal.SIGKILL)
        killed = time.monotonic()
        out, err = _finish(launcher, timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert launcher.returncode == 128 + signal.SIGKILL, err[-3000:]
    assert time.monotonic() - killed < 30  # the chief is ended, never left hanging
    assert "process 1 was killed by SIGKILL; ending the others" in err
    run = _only_run(tmp_path)
    assert not run.export.exists() and not list((tmp_path / "tmp").iterdir())
    # Every process continues from the chief's last finished epoch, to the run never killed.
    launcher = _launch(tmp_path, "--resume", str(run.path))
    out, err = _finish(launcher)
    assert launcher.returncode == 0, (out + err)[-4000:]
    assert csv_epochs(run) == [0, 1, 2]  # no finished epoch ran again
    assert run.history_csv.read_text() == whole.history_csv.read_text()
    assert _metrics(run)["test_accuracy"] == _metrics(whole)["test_accuracy"]


@pytest.mark.parametrize(
    "backend, env, message",
    [
        ("jax", {}, "needs KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES"),
        ("torch", {}, "KERAS_BACKEND=jax"),
    ],
)
def test_multi_worker_is_refused_in_one_line_where_it_cannot_run(backend, env, message, tmp_path):
    args = ("--distribute", "multi-worker", "--runs-dir", "runs")
    result = run_cli("train", *args, cwd=tmp_path, env={**_env(backend), **env})
    assert_clean_failure(result, message, [tmp_path / "runs"])
