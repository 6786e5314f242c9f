"""tf.distribute for training: the strategy a run asks for, and which process writes the run.

TensorFlow does all the communication; this module only picks the strategy, says how many
replicas share a step, and tells the chief (which writes the run folder) from the other workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import keras
import tensorflow as tf

from mnist_keras.backend import BACKEND, TENSORFLOW
from mnist_keras.compat import MULTI_WORKER_FIT, MULTI_WORKER_ISSUE
from mnist_keras.errors import ConfigError, TrainingInterrupted
from mnist_keras.runs import RunDir, scratch_run_dir


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy for `--distribute name`; create it before any other TensorFlow work.

    MultiWorkerMirroredStrategy sets up collective ops, which TensorFlow allows only before its
    runtime starts, so callers make the strategy first.
    """
    if name != "none" and not TENSORFLOW:
        raise ConfigError(
            f"--distribute {name}: tf.distribute needs Keras's TensorFlow backend, and this "
            f"run is on {BACKEND} (KERAS_BACKEND); unset it or set it to tensorflow"
        )
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()  # every local GPU, or the CPU when none
    if name == "multi-worker":
        check_multi_worker()
        return tf.distribute.MultiWorkerMirroredStrategy()  # cluster from TF_CONFIG
    return tf.distribute.get_strategy()  # the default: one device, no distribution


def check_multi_worker() -> None:
    """Refuse multi-worker training where Keras cannot do it, and without a cluster."""
    if not MULTI_WORKER_FIT:
        raise ConfigError(
            f"--distribute multi-worker: Keras {keras.__version__} cannot fit under "
            f"MultiWorkerMirroredStrategy ({MULTI_WORKER_ISSUE}); use a Keras 2.15 "
            "environment (pip install -c constraints-keras2.txt -e .), or --distribute mirrored "
            "on one machine and `mnist_keras.tune --role chief|worker` across machines"
        )
    if not os.environ.get("TF_CONFIG"):
        raise ConfigError(
            "--distribute multi-worker needs TF_CONFIG describing the cluster "
            "(scripts/launch_workers.py sets it for local workers)"
        )


def xla_allowed(strategy: tf.distribute.Strategy) -> bool:
    """Whether the training step may be XLA-compiled under `strategy`: TensorFlow cannot compile
    the collectives between CPU workers ("Collectives are not yet implemented for CPU devices when
    compiling with XLA"), so a multi-worker run on CPUs trains without XLA."""
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    return not multi_worker or bool(tf.config.list_physical_devices("GPU"))


def is_chief() -> bool:
    """Whether this process writes the run: the chief task, else worker 0 (TF's convention)."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc})") from exc
    task = tf_config.get("task", {})
    if not task:
        return True
    if "chief" in tf_config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def is_worker(name: str) -> bool:
    """Whether this process is a multi-worker worker that leaves the run folder to the chief."""
    return name == "multi-worker" and not is_chief()


@contextlib.contextmanager
def worker_scratch(resume: Path | None) -> Iterator[RunDir]:
    """A worker's run folder: it trains with the others and saves what the chief saves, into a
    scratch folder that nobody reads and that is removed at the end."""
    run = scratch_run_dir(resume)
    try:
        yield run
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(run, str(resume or "CHIEF_RUN_DIR")) from exc
    finally:
        shutil.rmtree(run.path, ignore_errors=True)
