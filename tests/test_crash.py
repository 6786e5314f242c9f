"""Crash safety end to end: SIGKILL and Ctrl-C mid-training, then --resume; a search killed
mid-way and rerun; two trainings started together. The runs that are killed, and the runs
started together, are real subprocesses; the runs that only finish what was killed (or compare
with it) run in-process, except the resume pasted into a new shell as printed."""

from __future__ import annotations

import json
import os
import re
import signal
import zipfile
from pathlib import Path

import pytest
from helpers import (
    csv_epochs,
    in_new_shell,
    kill_when,
    one_epoch_done,
    run_main,
    start_cli,
    synthetic_mnist,
    write_idx_folder,
)

from mnist_keras.runs import RunDir
from mnist_keras.tune import trial_rows

pytestmark = pytest.mark.slow

# Real digits, so that a resume that trained otherwise would score otherwise; a small network
# and a few steps an epoch (about half a second each, the data repeating), enough for a kill to
# land while training. No XLA, no LiteRT: neither is what these tests are about.
TRAIN_ARGS = (
    *("--epochs", "4", "--steps-per-epoch", "40", "--hidden-units", "64"),
    *("--validation-size", "500", "--no-jit-compile", "--export-formats", "saved_model"),
    *("--runs-dir", "runs"),
)
# The first images of real MNIST, written where --data reads them (quick to load).
REAL_HEAD = (3000, 2000)  # training (the validation split included), test


def _only_run(runs: Path) -> RunDir:
    (path,) = runs.iterdir()
    return RunDir(path)


def _test_accuracy(run_dir: RunDir) -> float:
    metrics = json.loads(run_dir.metrics_json.read_text())
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 4
    return metrics["test_accuracy"]


@pytest.fixture(scope="module")
def real_head(real_mnist, tmp_path_factory) -> Path:
    """A folder of the first real MNIST images, read by every run here, never written."""
    folder = tmp_path_factory.mktemp("mnist")
    return write_idx_folder(folder, real_mnist.head(*REAL_HEAD), gz=False)


@pytest.fixture(scope="module")
def uninterrupted(real_head, tmp_path_factory) -> float:
    """The test accuracy of the same training never stopped (in-process: the same seeded run)."""
    cwd = tmp_path_factory.mktemp("whole")
    result = run_main("train", "--data", str(real_head), *TRAIN_ARGS, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return _test_accuracy(_only_run(cwd / "runs"))


def _resume_and_check(
    run_dir: RunDir, cwd: Path, data: Path, whole: float, command: str | None = None
) -> None:
    """Resume the run, by `command` pasted into a new shell if given, and check it finishes as
    the uninterrupted run did."""
    assert not run_dir.export.exists() and not run_dir.keras_model.exists()
    done = csv_epochs(run_dir)
    assert done and done == list(range(len(done)))
    if command is None:
        result = run_main("train", "--resume", str(run_dir.path), "--data", str(data), cwd=cwd)
    else:  # as printed: the run reads the data it read before
        result = in_new_shell(command, cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert csv_epochs(run_dir) == [0, 1, 2, 3]  # continued: no finished epoch ran again
    assert abs(_test_accuracy(run_dir) - whole) <= 0.005
    assert (run_dir.export / "mnist" / "1" / "saved_model.pb").is_file()


def test_sigkill_mid_epoch_then_resume(real_head, tmp_path, uninterrupted):
    proc = start_cli("train", "--data", str(real_head), *TRAIN_ARGS, cwd=tmp_path)
    code, _ = kill_when(proc, one_epoch_done(tmp_path / "runs"), signal.SIGKILL)
    assert code == -signal.SIGKILL
    run_dir = _only_run(tmp_path / "runs")
    best = run_dir.best_checkpoint  # absent if the kill came before the first was in place
    assert not best.exists() or zipfile.ZipFile(best).testzip() is None  # never half-written
    _resume_and_check(run_dir, tmp_path, real_head, uninterrupted)


def test_ctrl_c_saves_says_how_to_resume_and_exits_130(real_head, tmp_path, uninterrupted):
    proc = start_cli("train", "--data", str(real_head), *TRAIN_ARGS, cwd=tmp_path)
    code, stderr = kill_when(proc, one_epoch_done(tmp_path / "runs"), signal.SIGINT)
    run_dir = _only_run(tmp_path / "runs")
    assert code == 130, stderr[-3000:]
    assert f"--resume {run_dir.path.relative_to(tmp_path)}" in stderr
    assert "Traceback" not in stderr
    assert not run_dir.metrics_json.exists()
    (command,) = re.findall(r"resume with: (.*)", stderr)
    _resume_and_check(run_dir, tmp_path, real_head, uninterrupted, command)


def test_two_trainings_started_together_both_finish_intact(tmp_path):
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=400, n_test=100))
    args = (
        *("--data", str(data), "--epochs", "2", "--validation-size", "100", "--runs-dir", "runs"),
        *("--hidden-units", "32", "--no-jit-compile", "--export-formats", "saved_model"),
    )
    procs = [start_cli("train", *args, cwd=tmp_path) for _ in range(2)]
    try:
        results = [proc.communicate(timeout=240) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    runs = [RunDir(p) for p in sorted((tmp_path / "runs").iterdir())]
    assert len(runs) == 2
    for run_dir in runs:
        assert json.loads(run_dir.metrics_json.read_text())["status"] == "completed"
        assert (run_dir.export / "mnist" / "1" / "saved_model.pb").is_file()
        assert len(csv_epochs(run_dir)) == 2


def test_search_killed_mid_way_resumes_without_repeating_trials(tmp_path):
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=1200, n_test=200))
    args = (
        *("--data", str(data), "--tuner", "random", "--max-trials", "4", "--max-epochs", "2"),
        *("--validation-size", "200", "--directory", "tuning", "--runs-dir", "runs"),
        *("--no-jit-compile", "--export-formats", "saved_model"),
    )
    project = tmp_path / "tuning" / "mnist"

    def completed() -> list[str]:
        rows = trial_rows(project) if project.is_dir() else []
        return [row.trial_id for row in rows if row.status == "COMPLETED"]

    proc = start_cli("tune", *args, cwd=tmp_path)
    code, _ = kill_when(proc, lambda: len(completed()) >= 2, signal.SIGKILL)
    assert code == -signal.SIGKILL
    before = {row.trial_id: row for row in trial_rows(project) if row.status == "COMPLETED"}
    assert 2 <= len(before) < 4

    result = run_main("tune", *args, cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = trial_rows(project)
    assert len(rows) == 4 and all(row.status == "COMPLETED" for row in rows)
    after = {row.trial_id: row for row in rows}
    for trial_id, row in before.items():  # no finished trial ran again
        assert (after[trial_id].ran_by, after[trial_id].score) == (row.ran_by, row.score)
        assert trial_id in result.stdout  # the final table lists the trials from before
