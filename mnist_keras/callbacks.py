"""One factory for the training callbacks; each is deep-copyable, as keras-tuner needs."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mnist_keras.backend import TENSORFLOW
from mnist_keras.compat import backup_options
from mnist_keras.data import IMAGE_SHAPE
from mnist_keras.export import copy_weights, keras_only_copy, save_keras_model
from mnist_keras.runs import RunDir


def make_callbacks(
    run: RunDir, best_val_accuracy: float | None = None, validate: bool = True
) -> list[keras.callbacks.Callback]:
    """Backup for --resume, NaN guard, TensorBoard, best checkpoint, per-epoch CSV, timing.

    Args:
        run: the run folder the callbacks write into.
        best_val_accuracy: on resume, the validation accuracy of the best checkpoint already
            written, so it is only replaced by a better model.
        validate: whether fit has validation data; without it the checkpoint is the last epoch.
    """
    run.best_checkpoint.parent.mkdir(parents=True, exist_ok=True)
    return [
        # The backup, then at once the history row: a resumed run counts finished epochs in
        # history.csv to skip the batches they used, so the two must not drift apart.
        keras.callbacks.BackupAndRestore(str(run.backup), **backup_options()),
        keras.callbacks.CSVLogger(str(run.history_csv), append=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(
            log_dir=str(run.tensorboard), histogram_freq=1, write_graph=False
        ),
        *([GraphWriter(run.tensorboard / "train")] if TENSORFLOW else []),  # backend.py
        # Keras decides which epoch is best; PublishCheckpoint turns its weights into the model.
        keras.callbacks.ModelCheckpoint(
            str(run.checkpoint_partial),
            monitor="val_accuracy",
            mode="max",
            save_best_only=validate,
            save_weights_only=True,
            initial_value_threshold=best_val_accuracy,
        ),
        PublishCheckpoint(run.checkpoint_partial, run.best_checkpoint),
        EpochTimer(),
    ]


class PublishCheckpoint(keras.callbacks.Callback):
    """Each time ModelCheckpoint saved the weights of a new best epoch, publish the model as the
    best checkpoint: written beside and renamed into place, so a kill leaves the old complete file
    or the new one; with Keras's own layers only, so it loads without this package; and never
    with a weight that is not finite, so a diverged epoch cannot pass for a good one.
    """

    def __init__(self, partial: Path, final: Path) -> None:
        super().__init__()
        self.partial, self.final = partial, final
        self._copy: keras.Model | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.partial.unlink(missing_ok=True)  # a save cut off before the last stop
        # Made here, where every multi-worker process is, not at a save, which only the chief
        # makes: creating variables is a collective operation there.
        self._copy = keras_only_copy(self.model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._copy is None or not self.partial.exists():
            return
        self.partial.unlink()
        if all_finite(self.model):
            copy_weights(self.model, self._copy)
            save_keras_model(self._copy, self.final)


def all_finite(model: keras.Model) -> bool:
    """Whether every weight of `model` is a finite number (no NaN, no infinity)."""
    return all(np.isfinite(w).all() for w in model.get_weights())


class GraphWriter(keras.callbacks.Callback):
    """Write the model's op graph to TensorBoard once.

    Keras 2's TensorBoard callback draws the graph of `fit`, Keras 3's draws none; tracing the
    forward pass ourselves gives the same Graphs tab on both.
    """

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir

    def on_train_begin(self, logs: dict | None = None) -> None:
        spec = tf.TensorSpec((None, *IMAGE_SHAPE), tf.uint8, name="images")
        forward = tf.function(lambda images: self.model(images, training=False))
        graph = forward.get_concrete_function(spec).graph
        with tf.summary.create_file_writer(str(self.log_dir)).as_default():
            tf.summary.graph(graph)


class EpochTimer(keras.callbacks.Callback):
    """Seconds each epoch spent on its training steps (validation excluded), for throughput."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = self._last_step = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = self._last_step = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._last_step = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(self._last_step - self._start)

    def samples_per_second(self, per_epoch: int) -> float:
        """Over the epochs after the first (tracing and warm-up), or the first alone."""
        steady = self.seconds[1:] or self.seconds
        return per_epoch * len(steady) / max(sum(steady), 1e-9)


class RaiseOnInterrupt(keras.callbacks.Callback):
    """Raise KeyboardInterrupt at the first batch or epoch end after Ctrl-C was pressed."""

    def __init__(self) -> None:
        super().__init__()
        self.pressed = False

    def raise_if_pressed(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.raise_if_pressed()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.raise_if_pressed()


@contextlib.contextmanager
def interrupt_between_steps() -> Iterator[RaiseOnInterrupt]:
    """While in the block, Ctrl-C only marks the callback it yields, which interrupts `fit` when
    the running batch call (`steps_per_execution` steps) or the epoch's validation ends, or at the
    block's end if `fit` already returned; a second Ctrl-C interrupts at once.

    Python raises KeyboardInterrupt wherever the main thread happens to be: inside a checkpoint
    write, or in a finaliser, where it prints an "Exception ignored ... Traceback". Between steps
    nothing is in flight. Put the callback last, so an epoch's backup and checkpoint come first.
    """
    callback = RaiseOnInterrupt()
    previous = signal.getsignal(signal.SIGINT)
    # Only the main thread may set handlers; and a SIGINT that is ignored (a background job)
    # or handled by someone else stays theirs.
    if (
        threading.current_thread() is not threading.main_thread()
        or previous is not signal.default_int_handler
    ):
        yield callback
        return

    def press(signum: int, frame: object) -> None:
        callback.pressed = True
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, press)
    try:
        yield callback
    finally:
        signal.signal(signal.SIGINT, previous)
    callback.raise_if_pressed()  # pressed after the last check: still stop, before the export
