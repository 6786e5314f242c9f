"""tf.distribute for training: the strategy a run asks for, and which process writes the run.

TensorFlow does all the communication; this module only picks the strategy, says how many
replicas share a step, and tells the chief (which writes the run folder) from the other workers.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from mnist_keras.compat import KERAS_3
from mnist_keras.errors import ConfigError

KERAS_MULTI_WORKER_ISSUE = "https://github.com/keras-team/keras/issues/20585"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy for `--distribute name`; create it before any other TensorFlow work.

    MultiWorkerMirroredStrategy sets up collective ops, which TensorFlow allows only before its
    runtime starts, so callers make the strategy first.
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()  # every local GPU, or the CPU when none
    if name == "multi-worker":
        check_multi_worker()
        return tf.distribute.MultiWorkerMirroredStrategy()  # cluster from TF_CONFIG
    return tf.distribute.get_strategy()  # the default: one device, no distribution


def check_multi_worker() -> None:
    """Refuse multi-worker training where Keras cannot do it, and without a cluster."""
    if KERAS_3:
        # The one place that knows: fit under MultiWorkerMirroredStrategy failed on every Keras 3
        # release tried: 3.3.3 (TF 2.16.2, "Invalid reduction dimension 0"), 3.10.0 (TF 2.19.1)
        # and 3.15.1 (TF 2.21.0, the newest), both "Attempt to convert a value (PerReplica...)".
        raise ConfigError(
            f"--distribute multi-worker: Keras {keras.__version__} cannot fit under "
            f"MultiWorkerMirroredStrategy ({KERAS_MULTI_WORKER_ISSUE}); use a Keras 2.15 "
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
