"""Distribution: mirrored training matches undistributed training; multi-worker runs on Keras 2
through the launcher (only the chief writes) and is refused, clearly, on Keras 3's TensorFlow
backend; the launcher's cluster and failures. Keras 3 on JAX across processes: test_backends.py."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from helpers import (
    assert_clean_failure,
    run_main,
    small_config,
    synthetic_mnist,
    write_idx_folder,
)

from mnist_keras.compat import KERAS_3, MULTI_WORKER_ISSUE
from mnist_keras.config import TrainConfig
from mnist_keras.distribute import PROCESS_ID, is_chief, worker_scratch
from mnist_keras.errors import ConfigError, PeerLost
from mnist_keras.train import run

LAUNCHER = Path(__file__).parents[1] / "scripts" / "launch_workers.py"


@pytest.mark.slow
def test_mirrored_matches_an_undistributed_run(tmp_path, tiny):
    config = small_config(epochs=2)
    plain = run(config, tmp_path / "none", datasets=tiny)
    mirrored = run(
        TrainConfig(**{**config.to_dict(), "distribute": "mirrored"}), tmp_path / "m", datasets=tiny
    )
    replicas = mirrored.replicas
    assert (
        replicas >= 1 and json.loads(mirrored.run.metrics_json.read_text())["replicas"] == replicas
    )
    if replicas == 1:  # the CPU: one replica, the same global batch as the plain run
        assert abs(mirrored.evaluation.accuracy - plain.evaluation.accuracy) <= 0.01
    assert mirrored.evaluation.accuracy > 0.8


def _launcher():
    spec = importlib.util.spec_from_file_location("launch_workers", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launcher_ends_every_worker_when_any_one_fails():
    launcher = _launcher()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    failing = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1); exit(3)"])
    try:
        assert launcher.wait_all([sleeper, failing]) == 3  # a non-chief failing is noticed
        assert sleeper.poll() is not None  # and the chief is ended, not waited for
    finally:
        for proc in (sleeper, failing):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_launcher_reports_a_killed_process_with_the_shells_exit_code(capsys):
    launcher = _launcher()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed.kill()
        assert launcher.wait_all([sleeper, killed]) == 128 + signal.SIGKILL
        assert sleeper.poll() is not None
        assert "process 1 was killed by SIGKILL; ending the others" in capsys.readouterr().err
    finally:
        for proc in (sleeper, killed):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_launcher_gives_each_worker_its_task():
    launcher = _launcher()
    ports = launcher.free_ports(3)
    assert len(set(ports)) == 3
    configs = [json.loads(launcher.tf_config(ports, i)) for i in range(3)]
    assert {c["task"]["index"] for c in configs} == {0, 1, 2}
    addresses = [f"127.0.0.1:{port}" for port in ports]
    assert configs[0]["cluster"]["worker"] == addresses
    # The same cluster in Keras's own variables (keras.distribution.initialize reads them).
    for index in range(3):
        keras_vars = launcher.keras_cluster(ports, index)
        assert keras_vars["KERAS_DISTRIBUTION_JOB_ADDRESSES"] == ",".join(addresses)
        assert keras_vars["KERAS_DISTRIBUTION_NUM_PROCESSES"] == "3"
        assert keras_vars["KERAS_DISTRIBUTION_PROCESS_ID"] == str(index)


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        (None, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
        (
            {
                "cluster": {"chief": ["a:1"], "worker": ["b:2"]},
                "task": {"type": "worker", "index": 0},
            },
            False,
        ),
        (
            {
                "cluster": {"chief": ["a:1"], "worker": ["b:2"]},
                "task": {"type": "chief", "index": 0},
            },
            True,
        ),
    ],
)
@pytest.mark.skipif(KERAS_3, reason="Keras 3 names its chief by KERAS_DISTRIBUTION_PROCESS_ID")
def test_is_chief_follows_tensorflow_convention(monkeypatch, tf_config, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert is_chief() is chief


@pytest.mark.skipif(KERAS_3, reason="Keras 3 names its chief by KERAS_DISTRIBUTION_PROCESS_ID")
def test_bad_tf_config_is_a_config_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        is_chief()


@pytest.mark.skipif(not KERAS_3, reason="Keras 2 names its chief in TF_CONFIG")
@pytest.mark.parametrize("process_id, chief", [(None, True), ("0", True), ("1", False)])
def test_process_0_is_the_chief_on_keras_3(monkeypatch, process_id, chief):
    # TF_CONFIG says otherwise: Keras 3 trains across processes with keras.distribution.
    tf_config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    if process_id is None:
        monkeypatch.delenv(PROCESS_ID, raising=False)
    else:
        monkeypatch.setenv(PROCESS_ID, process_id)
    assert is_chief() is chief


@pytest.mark.skipif(not KERAS_3, reason="Keras 2 names its chief in TF_CONFIG")
def test_bad_process_id_is_a_config_error(monkeypatch):
    monkeypatch.setenv(PROCESS_ID, "first")
    with pytest.raises(ConfigError, match="KERAS_DISTRIBUTION_PROCESS_ID='first' is not a whole"):
        is_chief()


@pytest.mark.slow
@pytest.mark.skipif(not KERAS_3, reason=f"Keras {keras.__version__} runs multi-worker training")
def test_keras_3_refuses_multi_worker_at_once(tmp_path, tiny):
    # In-process: test_cli proves, in a subprocess, that train's errors leave one line on stderr.
    data = write_idx_folder(tmp_path / "data", tiny)
    result = run_main(
        "train",
        *("--data", str(data), "--distribute", "multi-worker", "--runs-dir", "runs"),
        cwd=tmp_path,
        env={"TF_CONFIG": json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {}})},
    )
    assert_clean_failure(result, MULTI_WORKER_ISSUE, [tmp_path / "runs"])
    assert "KERAS_BACKEND=jax" in result.stderr and "constraints-keras2.txt" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    KERAS_3, reason=f"Keras {keras.__version__} cannot fit multi-worker (keras#20585)"
)
def test_multi_worker_needs_tf_config(tmp_path, tiny):
    data = write_idx_folder(tmp_path / "data", tiny)
    args = ("--data", str(data), "--distribute", "multi-worker", "--runs-dir", "runs")
    result = run_main("train", *args, cwd=tmp_path, env={"TF_CONFIG": ""})  # as above
    assert_clean_failure(result, "needs TF_CONFIG", [tmp_path / "runs"])


@pytest.mark.slow
@pytest.mark.skipif(
    KERAS_3, reason=f"Keras {keras.__version__} cannot fit multi-worker (keras#20585)"
)
def test_two_workers_through_the_launcher(tmp_path):
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=1200, n_test=200))
    train_args = ["--data", str(data), "--epochs", "2", "--hidden-units", "32"]
    train_args += ["--validation-size", "200", "--batch-size", "32", "--runs-dir", "runs"]
    train_args += ["--export-formats", "saved_model"]  # XLA left on: the chief must turn it off
    scratch = tmp_path / "tmp"  # where the other worker's scratch run folder goes
    scratch.mkdir()
    launcher = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--workers", "2", "--logs", "logs", "--", *train_args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", "TMPDIR": str(scratch)},
        start_new_session=True,  # its own process group: the test can end it and its workers
    )
    try:
        out, _ = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert launcher.returncode == 0, out[-4000:]
    (run_dir,) = (tmp_path / "runs").iterdir()  # only the chief wrote a run folder
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["test_accuracy"] > 0.5  # chance is 0.1
    assert (run_dir / "export" / "mnist" / "1" / "saved_model.pb").is_file()
    # XLA cannot compile collectives between CPU workers: the run says it trained without.
    assert json.loads((run_dir / "config.json").read_text())["config"]["jit_compile"] is False
    worker_log = (tmp_path / "logs" / "worker-1.log").read_text()
    (final_loss,) = re.findall(
        r"worker done: 2 epochs, final loss ([0-9.]+), 2 replicas", worker_log
    )
    assert float(final_loss) == round(metrics["history"][-1]["loss"], 6)  # the workers agree
    assert not list(scratch.glob("mnist-keras-worker-*"))  # removed at the end


def test_a_worker_that_lost_a_peer_names_the_chiefs_run_to_resume():
    # The worker's own folder is scratch, removed at once: the run to resume is the chief's.
    with pytest.raises(PeerLost) as info, worker_scratch(None) as run:
        raise PeerLost(run, "JaxRuntimeError in a collective")
    assert "--resume CHIEF_RUN_DIR" in str(info.value) and str(run.path) not in str(info.value)
    assert not run.path.exists()
