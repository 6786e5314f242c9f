"""run() in-process on small synthetic data: artifacts, resume, divergence, reproducibility."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import small_config, tensorboard_tags

from mnist_keras.callbacks import interrupt_between_steps
from mnist_keras.config import TrainConfig
from mnist_keras.errors import RunError, TrainingDiverged, TrainingInterrupted
from mnist_keras.model import build_model
from mnist_keras.runs import RunDir, read_history, scratch_run_dir, start_run
from mnist_keras.train import build_parser, config_from_args, run


class AtEpoch(keras.callbacks.Callback):
    """Do `action(model)` as epoch `epoch` (0-based) begins."""

    def __init__(self, epoch: int, action) -> None:
        super().__init__()
        self.epoch, self.action = epoch, action

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.action(self.model)


def _ctrl_c(model) -> None:
    raise KeyboardInterrupt


def _poison(model) -> None:
    """Every weight NaN: the loss turns NaN at once."""
    for weight in model.trainable_weights:
        weight.assign(tf.fill(weight.shape, float("nan")))


def stop_at_epoch(epoch: int) -> AtEpoch:
    """Press Ctrl-C, in effect, as epoch `epoch` (0-based) begins."""
    return AtEpoch(epoch, _ctrl_c)


class EpochsSeen(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from helpers import synthetic_mnist

    keras.utils.set_random_seed(0)
    return run(small_config(), tmp_path_factory.mktemp("runs"), datasets=synthetic_mnist())


def test_run_writes_every_artifact(finished):
    run_dir = finished.run
    record = json.loads(run_dir.config_json.read_text())
    assert TrainConfig.from_dict(record["config"]) == finished.config
    assert record["versions"]["keras"] == keras.__version__
    metrics = json.loads(run_dir.metrics_json.read_text())
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 3
    assert [row["epoch"] for row in metrics["history"]] == [1, 2, 3]
    assert metrics["samples_per_second"] > 0 and metrics["train_seconds"] > 0
    assert np.array(metrics["confusion_matrix"]).sum() == 200
    assert run_dir.best_checkpoint.is_file() and run_dir.keras_model.is_file()
    assert (finished.export_path / "saved_model.pb").is_file()
    assert finished.export_path == run_dir.export / "mnist" / "1"
    # BackupAndRestore deletes its state after a finished run (Keras 2 keeps the empty folder).
    assert not any(p.is_file() for p in run_dir.backup.rglob("*"))


def test_run_learns(finished):
    assert finished.evaluation.accuracy > 0.8  # chance is 0.1
    assert finished.history[-1]["loss"] < finished.history[0]["loss"]


def test_tensorboard_logs(finished):
    logs = finished.run.tensorboard
    train = tensorboard_tags(logs / "train")
    assert {"epoch_loss", "epoch_accuracy", "<graph>"} <= train
    assert any("hidden" in tag and "kernel" in tag for tag in train)  # weight histograms
    assert {"epoch_loss", "epoch_accuracy"} <= tensorboard_tags(logs / "validation")
    assert {"test/confusion_matrix", "test/misread_digits"} <= tensorboard_tags(logs / "test")
    for png in (finished.run.confusion_png, finished.run.misread_png):
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), png


class WreckLastEpoch(keras.callbacks.Callback):
    """Make the last epoch much worse than the ones before: zero weights that cannot learn."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.params["epochs"] - 1:
            self.model.optimizer.learning_rate.assign(0.0)
            for weight in self.model.weights:
                weight.assign(tf.zeros_like(weight))


def test_the_best_epoch_not_the_last_is_evaluated_and_exported(tmp_path, tiny):
    result = run(
        small_config(epochs=3, optimizer="sgd", learning_rate=0.05, schedule="constant"),
        tmp_path,
        datasets=tiny,
        callbacks=[WreckLastEpoch()],
    )
    val = [row["val_accuracy"] for row in result.history]
    assert val[-1] < max(val)  # the wrecked last epoch is worse
    best = keras.saving.load_model(str(result.run.best_checkpoint))
    serve = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    exported = serve(images=tf.constant(tiny.x_test))["probabilities"].numpy()
    assert np.abs(exported - np.asarray(best(tiny.x_test))).max() < 1e-5
    assert result.evaluation.accuracy > 0.8
    assert json.loads(result.run.metrics_json.read_text())["best_val_accuracy"] == max(val)


@pytest.mark.slow
def test_two_runs_of_one_seed_share_their_history_not_their_folder(tmp_path, tiny):
    # XLA on, as by default: its training step, dropout included, is reproducible with --seed
    # (its help says so).
    config = small_config(epochs=2, jit_compile=True)
    a = run(config, tmp_path, datasets=tiny)
    b = run(config, tmp_path, datasets=tiny)
    assert a.run.path != b.run.path
    assert len(list(tmp_path.iterdir())) == 2
    for row_a, row_b in zip(a.history, b.history, strict=False):
        assert row_a["loss"] == pytest.approx(row_b["loss"], rel=1e-5)
    assert a.evaluation.accuracy == b.evaluation.accuracy


@pytest.mark.slow
def test_interrupted_run_resumes_from_last_finished_epoch(tmp_path, tiny):
    with pytest.raises(TrainingInterrupted) as info:
        run(small_config(epochs=4), tmp_path, datasets=tiny, callbacks=[stop_at_epoch(2)])
    run_dir = info.value.run
    assert "--resume" in str(info.value)
    assert [row["epoch"] for row in read_history(run_dir.history_csv)] == [1, 2]
    assert not run_dir.metrics_json.exists() and not run_dir.export.exists()
    seen = EpochsSeen()
    result = run(small_config(epochs=4), resume=run_dir.path, datasets=tiny, callbacks=[seen])
    assert seen.epochs == [2, 3]  # continued, not restarted
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.evaluation.accuracy > 0.8


class CtrlCInCallback(keras.callbacks.Callback):
    """Press Ctrl-C for real as epoch 1 begins, then note whether this callback still ran on."""

    ran_on = False

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # Python would raise KeyboardInterrupt here, at once
            self.ran_on = True


def test_ctrl_c_stops_fit_at_a_step_boundary(tmp_path, tiny):
    handler = signal.getsignal(signal.SIGINT)
    press = CtrlCInCallback()
    with pytest.raises(TrainingInterrupted) as info:
        run(small_config(epochs=3), tmp_path, datasets=tiny, callbacks=[press])
    assert press.ran_on  # deferred: not raised inside the callback, nor mid-write
    assert [row["epoch"] for row in read_history(info.value.run.history_csv)] == [1]
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C acts at once again


def test_ctrl_c_after_the_last_check_still_interrupts():
    with pytest.raises(KeyboardInterrupt), interrupt_between_steps():
        os.kill(os.getpid(), signal.SIGINT)  # as if pressed after fit's last epoch end
        time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_ctrl_c_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job
    try:
        with interrupt_between_steps() as interrupt:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        assert not interrupt.pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def test_resume_after_training_only_evaluates_and_exports(tmp_path, tiny, finished):
    # A copy of the finished run as if killed while exporting: training finished,
    # BackupAndRestore already removed its state.
    copy = RunDir(shutil.copytree(finished.run.path, tmp_path / finished.run.path.name))
    for path in (copy.metrics_json, copy.keras_model):
        path.unlink()
    shutil.rmtree(copy.export)
    seen = EpochsSeen()
    again = run(small_config(), resume=copy.path, datasets=tiny, callbacks=[seen])
    assert seen.epochs == []  # no epoch trained again
    assert [row["epoch"] for row in again.history] == [1, 2, 3]
    assert again.evaluation.accuracy == finished.evaluation.accuracy
    assert (again.export_path / "saved_model.pb").is_file() and again.run.keras_model.is_file()


def test_resume_reads_the_data_the_run_read(tmp_path, monkeypatch):
    # The first run found its data through $MNIST_KERAS_DATA; the shell that resumes it has
    # another value, or none.
    read = tmp_path / "mnist"
    read.mkdir()
    run_dir = start_run(
        tmp_path / "runs", {"config": small_config().to_dict(), "data_source": str(read)}
    )
    monkeypatch.setenv("MNIST_KERAS_DATA", str(tmp_path / "other"))
    resume = ["--resume", str(run_dir.path)]
    assert config_from_args(build_parser().parse_args(resume)).data == str(read)
    given = config_from_args(build_parser().parse_args([*resume, "--data", "moved"]))
    assert given.data == "moved"  # --data still wins: the files moved


def test_resume_refuses_a_folder_without_a_run_and_a_finished_run(tmp_path, tiny, finished):
    with pytest.raises(RunError, match="not a run folder"):
        run(small_config(), resume=tmp_path, datasets=tiny)
    with pytest.raises(RunError, match="already completed"):
        run(small_config(), resume=finished.run.path, datasets=tiny)


def _strict_json(path: Path) -> dict:
    """The file's JSON, refusing NaN and Infinity as JavaScript's JSON.parse does."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, tiny):
    with pytest.raises(TrainingDiverged, match=r"before it \(epoch 1, .*\) is in .*best.keras"):
        run(small_config(epochs=3), tmp_path, datasets=tiny, callbacks=[AtEpoch(1, _poison)])
    (run_path,) = tmp_path.iterdir()
    best = keras.saving.load_model(str(RunDir(run_path).best_checkpoint))
    assert all(np.isfinite(np.asarray(w)).all() for w in best.weights)
    assert np.asarray(best(tiny.x_test[:5])).argmax(axis=1).shape == (5,)


def test_divergence_in_the_first_epoch_keeps_no_checkpoint(tmp_path, tiny):
    # A NaN model still scores some validation accuracy, and the first score is the best yet.
    with pytest.raises(TrainingDiverged, match="epoch 1: .*no checkpoint was kept"):
        run(small_config(epochs=3), tmp_path, datasets=tiny, callbacks=[AtEpoch(0, _poison)])
    (run_path,) = tmp_path.iterdir()
    run_dir = RunDir(run_path)
    assert not run_dir.best_checkpoint.exists() and not run_dir.checkpoint_partial.exists()
    metrics = _strict_json(run_dir.metrics_json)
    assert metrics["status"] == "diverged" and "NaN" in metrics["reason"]
    assert metrics["history"][0]["loss"] is None


@pytest.mark.slow
def test_resumed_run_repeats_an_uninterrupted_one(tmp_path, tiny):
    # The same batches and, with dropout on the input and the hidden layer, the same masks: the
    # dropout layers count their steps in a variable the backup restores, with XLA or without
    # (test_dropout: the same masks either way).
    config = small_config(epochs=4, input_dropout=0.2, dropout=0.5)
    whole = run(config, tmp_path / "whole", datasets=tiny)
    with pytest.raises(TrainingInterrupted) as info:
        run(config, tmp_path / "cut", datasets=tiny, callbacks=[stop_at_epoch(2)])
    resumed = run(config, resume=info.value.run.path, datasets=tiny)
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["val_accuracy"] == b["val_accuracy"]


def _freeze(model) -> None:
    """Nothing learned from here: every later epoch scores what this one starts with (a
    constant learning rate is a variable to set; a schedule is not)."""
    model.optimizer.learning_rate.assign(0.0)


def _zero_weights(model) -> None:
    """Every weight zero and frozen: the model answers one class."""
    for weight in model.weights:
        weight.assign(tf.zeros_like(weight))
    _freeze(model)


FROZEN = small_config(epochs=4, schedule="constant")  # a constant learning rate _freeze can set


def _cut_after_two_epochs(tmp_path, tiny) -> RunDir:
    with pytest.raises(TrainingInterrupted) as info:
        run(FROZEN, tmp_path, datasets=tiny, callbacks=[stop_at_epoch(2)])
    return info.value.run


@pytest.mark.slow
def test_resume_when_the_kill_came_before_the_first_checkpoint(tmp_path, tiny):
    run_dir = _cut_after_two_epochs(tmp_path, tiny)
    # A kill after the history rows were written and before the first checkpoint was renamed
    # into place; the epochs after the resume are worse than those before.
    run_dir.best_checkpoint.unlink()
    result = run(FROZEN, resume=run_dir.path, datasets=tiny, callbacks=[AtEpoch(2, _zero_weights)])
    assert max(row["val_accuracy"] for row in result.history[2:]) < 0.5
    assert result.evaluation.accuracy < 0.5  # the checkpoint written after the resume
    assert (result.export_path / "saved_model.pb").is_file()


@pytest.mark.slow
def test_resume_measures_the_checkpoint_it_must_beat(tmp_path, tiny):
    run_dir = _cut_after_two_epochs(tmp_path, tiny)
    # A checkpoint worse than history.csv says, as after a kill between an epoch's history row
    # and its checkpoint: an untrained model. The epochs after the resume score exactly as the
    # last one before it, never above the history's best, yet well above this checkpoint.
    build_model(small_config(), steps_per_epoch=10).save(str(run_dir.best_checkpoint))
    result = run(FROZEN, resume=run_dir.path, datasets=tiny, callbacks=[AtEpoch(2, _freeze)])
    assert max(r["val_accuracy"] for r in result.history[2:]) <= max(
        r["val_accuracy"] for r in result.history[:2]
    )
    assert result.evaluation.accuracy > 0.8  # the untrained checkpoint was replaced


def test_worker_scratch_folder_starts_from_the_chiefs_run(tmp_path, tiny):
    with pytest.raises(TrainingInterrupted) as info:
        run(small_config(epochs=3), tmp_path, datasets=tiny, callbacks=[stop_at_epoch(1)])
    chief = info.value.run
    worker = scratch_run_dir(chief.path)
    try:
        for name in ("history_csv", "best_checkpoint"):
            assert getattr(worker, name).read_bytes() == getattr(chief, name).read_bytes()
        assert sorted(p.name for p in worker.backup.iterdir()) == sorted(
            p.name for p in chief.backup.iterdir()
        )
    finally:
        shutil.rmtree(worker.path)


@pytest.mark.skipif(
    keras.__version__.startswith("2."),
    reason="Keras 2.15's BackupAndRestore writes each backup beside the last, never over it",
)
@pytest.mark.slow
def test_resume_after_a_kill_while_the_backup_was_written(tmp_path, tiny):
    with pytest.raises(TrainingInterrupted) as info:
        run(small_config(epochs=4), tmp_path, datasets=tiny, callbacks=[stop_at_epoch(2)])
    run_dir = info.value.run
    # As if killed while epoch 2's backup was written over epoch 1's: the weights file cut
    # short, its metadata and history.csv still those of epoch 1.
    weights = next(run_dir.backup.glob("*.weights.h5"))
    weights.write_bytes(weights.read_bytes()[:1000])
    (run_dir.backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    lines = run_dir.history_csv.read_text().splitlines(keepends=True)
    run_dir.history_csv.write_text("".join(lines[:-1]))
    seen = EpochsSeen()
    result = run(small_config(epochs=4), resume=run_dir.path, datasets=tiny, callbacks=[seen])
    assert seen.epochs == [1, 2, 3]  # back to the previous backup, not to zero
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]


class WatchCheckpoint(keras.callbacks.Callback):
    """Record, after the checkpoint callbacks ran, whether a partial file is left over."""

    def __init__(self, run_dir: RunDir) -> None:
        super().__init__()
        self.run_dir, self.partial_seen = run_dir, []

    def on_train_begin(self, logs=None):
        self.partial_seen.append(self.run_dir.checkpoint_partial.exists())

    def on_epoch_end(self, epoch, logs=None):
        self.partial_seen.append(self.run_dir.checkpoint_partial.exists())


@pytest.mark.slow
def test_checkpoint_is_written_beside_and_renamed_into_place(tmp_path, tiny):
    with pytest.raises(TrainingInterrupted) as info:
        run(small_config(epochs=3), tmp_path, datasets=tiny, callbacks=[stop_at_epoch(1)])
    run_dir = info.value.run
    run_dir.checkpoint_partial.write_bytes(b"half a file from a save cut off by a kill")
    watch = WatchCheckpoint(run_dir)
    run(small_config(epochs=3), resume=run_dir.path, datasets=tiny, callbacks=[watch])
    assert watch.partial_seen == [False, False, False]  # the stale part removed, saves renamed
    keras.saving.load_model(str(run_dir.best_checkpoint))


def test_diverging_run_stops_and_says_so(tmp_path, tiny):
    config = small_config(epochs=3, optimizer="sgd", learning_rate=1e12)
    with pytest.raises(TrainingDiverged, match="NaN"):
        run(config, tmp_path, datasets=tiny)
    (run_path,) = tmp_path.iterdir()
    metrics = _strict_json(RunDir(run_path).metrics_json)
    assert metrics["status"] == "diverged"
    assert not RunDir(run_path).export.exists()


def test_compare_runs_script_reads_a_finished_run(finished):
    script = Path(__file__).parents[1] / "scripts" / "compare_runs.py"
    out = subprocess.run(
        [sys.executable, str(script), str(finished.run.path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert finished.run.path.name in out
    assert f"{finished.evaluation.accuracy:.4f}" in out and keras.__version__ in out


class Iterations(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(int(self.model.optimizer.iterations.numpy()))


@pytest.mark.slow
def test_every_epoch_trains_exactly_one_pass(tmp_path, tiny):
    # 700 training images in batches of 64: 11 steps, fewer than the 32 asked per execution,
    # which Keras 3 would round up to 32 steps an epoch.
    iterations = Iterations()
    result = run(
        small_config(epochs=2, steps_per_execution=32),
        tmp_path,
        datasets=tiny,
        callbacks=[iterations],
    )
    assert iterations.seen == [11, 22]
    assert result.config.steps_per_execution == 11
    record = json.loads(result.run.config_json.read_text())["config"]
    assert record["steps_per_execution"] == 11  # what ran, not what was asked


@pytest.mark.slow  # the session convnet takes half a minute
def test_augmented_convnet_learns_real_digits_and_exports_the_contract(trained_cnn, real_mnist):
    # The session's convnet (conftest): the SavedModel is the contract; the LiteRT files are
    # test_formats' to check.
    result = trained_cnn
    record = json.loads(result.run.config_json.read_text())["config"]
    assert (record["arch"], record["augment"], record["jit_compile"]) == ("cnn", True, False)
    # One epoch on 30,000 images: 0.98 on Keras 2 and 3; chance is 0.1.
    assert result.evaluation.accuracy > 0.85
    serve = tf.saved_model.load(str(result.export_path)).signatures["serving_default"]
    images = real_mnist.x_test[:200]
    outputs = serve(images=tf.constant(images))
    best = keras.saving.load_model(str(result.run.best_checkpoint))
    expected = np.asarray(best(images, training=False))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    assert outputs["classes"].numpy().tolist() == expected.argmax(axis=1).tolist()
