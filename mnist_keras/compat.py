"""Every difference between Keras 2.15 and Keras 3, and every workaround for a keras-tuner 1.4
behaviour, named in one place with its upstream reference. Only this module reads a version:
other modules use the names below.

Differences that the same code already covers on both lines, for the record:
- Keras 3's TensorBoard callback draws no graph of `fit`: `callbacks.GraphWriter` draws it.
- Keras 3 runs only whole `steps_per_execution` calls: `data.execution_size` divides the epoch.
- Keras 2's `Dropout` ignored the seed under XLA and Keras 3's is slow there: `dropout.py`.
- Keras 3's `model.export(format="litert" | "onnx")` drops the contract's names
  (keras-team/keras#18430, tensorflow/tensorflow#63867): `formats.py` converts the SavedModel.

keras-tuner is imported inside the functions that patch it, so training does not load it.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mnist_keras import __version__
from mnist_keras.runs import write_json

KERAS_3 = int(keras.__version__.split(".")[0]) >= 3
TF_MINOR = int(tf.__version__.split(".")[1])

# A variable that every replica updates identically (a step counter): Keras 3 takes the
# aggregation as a string, Keras 2 as TensorFlow's enum.
FIRST_REPLICA = "only_first_replica" if KERAS_3 else tf.VariableAggregation.ONLY_FIRST_REPLICA

# Keras 3 cannot fit under MultiWorkerMirroredStrategy (3.3 to 3.15 tried); Keras 2.15 can.
MULTI_WORKER_FIT = not KERAS_3
MULTI_WORKER_ISSUE = "https://github.com/keras-team/keras/issues/20585"

# TF 2.15 logs "Compiled cluster using XLA!" at the first XLA compilation whatever the log level,
# once per process (quiet.spend_xla_notice); TF 2.16 and later do not.
XLA_NOTICE = TF_MINOR < 16


def write_saved_model(model: keras.Model, signatures: dict, path: Path) -> None:
    """Keras 3: ExportArchive, the only route every loader (TF Serving too) reads correctly.
    Keras 2: no ExportArchive; tf.saved_model.save of a tf.Module holding the model."""
    if KERAS_3:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, function in signatures.items():
            archive.add_endpoint(name, function)
        archive.write_out(str(path), verbose=False)
    else:
        module = tf.Module()
        module.model = model
        tf.saved_model.save(module, str(path), signatures=signatures)


def backup_options() -> dict[str, bool]:
    """Keras 3 writes its BackupAndRestore backup over the last one, so a kill mid-write would
    leave none that loads; `double_checkpoint` keeps the previous one and falls back to it.
    Keras 2's checkpoint manager writes each backup beside the last and has no such option."""
    parameters = inspect.signature(keras.callbacks.BackupAndRestore).parameters
    return {"double_checkpoint": True} if "double_checkpoint" in parameters else {}


def versions() -> dict[str, str]:
    """What this process runs on, recorded beside every result."""
    return {
        "mnist_keras": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


# --- keras-tuner 1.4 ---


def inclusive_high(low: float, high: float, step: float) -> float:
    """The `max_value` that makes keras-tuner 1.4's stepped `hp.Float` reach `high`.

    keras-tuner counts the values as `(high - low) // step + 1` in floating point, so (0.6 - 0.2)
    // 0.1 gives 3 and 0.6 is never drawn; half a step more keeps `high` and adds no value.
    """
    return high + step / 2


def atomic_tuner_writes() -> None:
    """Make keras-tuner write oracle.json, tuner.json and each trial.json with our atomic
    `write_json` (temp file, then rename). keras-tuner 1.4 writes them in place through its one
    `save_json`, so a search killed during a write would leave a file its rerun cannot read."""
    from keras_tuner.src import utils

    original = utils.save_json
    if getattr(original, "atomic", False):
        return

    def save_json(path: str, obj: Any) -> str:
        if "://" in str(path):  # a remote file system (gs://...): keras-tuner's own writer
            return original(path, obj)
        write_json(Path(path), obj)
        return json.dumps(obj)

    save_json.atomic = True
    utils.save_json = save_json


@contextlib.contextmanager
def reload_notice_captured() -> Iterator[None]:
    """Keep keras-tuner 1.4's "Reloading Tuner from <project>/<tuner id>.json" off the console.

    `BaseTuner.__init__` (keras_tuner/src/engine/base_tuner.py) prints it with print() whenever
    it resumes a project, with no setting to turn it off. Made inside this block, a tuner's
    other output, if any, is passed on after it.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        lines = captured.getvalue().splitlines(keepends=True)
        sys.stdout.write("".join(s for s in lines if not s.startswith("Reloading Tuner from ")))


def repair_reloaded_oracle(oracle: Any) -> None:
    """Undo what a kill between two of keras-tuner 1.4's writes leaves in a reloaded oracle.

    It writes each trial.json and then oracle.json, and a search is reloaded from both as they
    were:
    - a trial `end_trial` wrote COMPLETED that oracle.json still lists as ongoing would run
      again (`reload` sends ongoing trials back to run);
    - a RUNNING trial `create_trial` wrote that oracle.json never recorded starting would never
      run and would count against `--max-trials`; forgetting it lets the oracle create it again.
    Reads and sets the oracle's private retry queue: this state has no API.
    """
    from keras_tuner.engine.trial import TrialStatus

    trials = oracle.trials
    done = (TrialStatus.COMPLETED, TrialStatus.FAILED)
    finished = {t for t, trial in trials.items() if trial.status in done}
    oracle._retry_queue = [t for t in oracle._retry_queue if t not in finished]
    oracle.end_order += sorted(finished - set(oracle.end_order))
    started = set(oracle.start_order)
    for trial_id in [t for t, trial in trials.items() if trial.status == TrialStatus.RUNNING]:
        if trial_id not in started:
            del trials[trial_id]
            # Its trial.json too, lest a search that then stops short of it list it as running.
            (Path(oracle._project_dir) / f"trial_{trial_id}" / "trial.json").unlink(missing_ok=True)
