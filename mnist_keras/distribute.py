"""How training is spread: the distribution a run asks for, and which process writes the run.

An existing engine does all the communication; this module only picks it, says how many replicas
share a step, and tells the process that writes the run folder from the others:
- `mirrored` and, on Keras 2, `multi-worker`: `tf.distribute` (TensorFlow backend, TF_CONFIG);
- `multi-worker` on Keras 3: `keras.distribution.DataParallel` over `jax.distributed` (JAX
  backend, Keras's KERAS_DISTRIBUTION_* variables); Keras 3 cannot fit under TensorFlow's
  MultiWorkerMirroredStrategy (keras-team/keras#20585), whose maintainers point to this route.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import keras

from mnist_keras.backend import BACKEND, TENSORFLOW
from mnist_keras.compat import MULTI_WORKER_FIT, MULTI_WORKER_ISSUE
from mnist_keras.errors import ConfigError, PeerLost, TrainingInterrupted, first_line
from mnist_keras.quiet import native_output
from mnist_keras.runs import RunDir, scratch_run_dir

# Keras's own names for a process's place in a multi-process run (keras.distribution.initialize).
JOB_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
JAX_CLUSTER = (JOB_ADDRESSES, NUM_PROCESSES, PROCESS_ID)


@dataclass(frozen=True)
class Distribution:
    """A run's distribution, made by `make_distribution` before any other backend work."""

    name: str  # the --distribute value
    replicas: int  # model copies that share each step; --batch-size is one copy's batch
    # Every batch the same size: a JAX multi-process step splits each global batch evenly
    # between the processes, so the short last batch of a pass is left out.
    whole_batches: bool
    compile_allowed: bool  # whether the step may be XLA-compiled (see make_distribution)
    scope: Callable[[], AbstractContextManager]  # build and fit the model inside it
    # What a step raises when another process stopped (the collective between them broke).
    peer_lost: tuple[type[Exception], ...] = ()

    def global_batch(self, batch_size: int) -> int:
        return batch_size * self.replicas


def make_distribution(name: str) -> Distribution:
    """The distribution for `--distribute name`; make it before any other backend work.

    MultiWorkerMirroredStrategy sets up collective ops, which TensorFlow allows only before its
    runtime starts; jax.distributed must start before any JAX computation.
    """
    if name == "multi-worker" and not MULTI_WORKER_FIT:
        return _keras_distribution() if BACKEND == "jax" else _refuse_keras_3_multi_worker()
    if name != "none" and not TENSORFLOW:
        raise ConfigError(
            f"--distribute {name}: tf.distribute needs Keras's TensorFlow backend, and this "
            f"run is on {BACKEND} (KERAS_BACKEND); unset it or set it to tensorflow"
        )
    return _tf_distribution(name) if TENSORFLOW else Distribution(name, 1, False, True, _nothing)


def _tf_distribution(name: str) -> Distribution:
    import tensorflow as tf

    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()  # every local GPU, or the CPU when none
    elif name == "multi-worker":
        _check_cluster("tf.distribute", ("TF_CONFIG",))
        strategy = tf.distribute.MultiWorkerMirroredStrategy()  # cluster from TF_CONFIG
    else:
        strategy = tf.distribute.get_strategy()  # the default: one device, no distribution
    # TensorFlow cannot XLA-compile the collectives between CPU workers ("Collectives are not
    # yet implemented for CPU devices when compiling with XLA").
    multi_cpu = name == "multi-worker" and not tf.config.list_physical_devices("GPU")
    replicas = strategy.num_replicas_in_sync
    return Distribution(name, replicas, False, not multi_cpu, strategy.scope)


def _keras_distribution() -> Distribution:
    """Data parallelism over every device of every process (jax.distributed; on CPUs, gloo)."""
    _check_cluster("keras.distribution on JAX", JAX_CLUSTER)
    try:
        # It reads the KERAS_DISTRIBUTION_* variables; gloo prints its connection on stdout.
        with native_output(1):
            keras.distribution.initialize()
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"--distribute multi-worker: {first_line(exc)}") from exc
    import jax

    data_parallel = keras.distribution.DataParallel()
    replicas = data_parallel.num_model_replicas
    # JAX ends the survivors of a process that died soon after (its distributed service's
    # health check); until then their step fails with this error.
    lost = (jax.errors.JaxRuntimeError,)
    return Distribution("multi-worker", replicas, True, True, data_parallel.scope, lost)


def _refuse_keras_3_multi_worker() -> Distribution:
    why = (
        f": it cannot fit under MultiWorkerMirroredStrategy ({MULTI_WORKER_ISSUE}); or use a "
        "Keras 2.15 environment (pip install -c constraints-keras2.txt -e .)"
        if TENSORFLOW
        else ""
    )
    raise ConfigError(
        f"--distribute multi-worker: Keras {keras.__version__} trains across processes on the "
        f"JAX backend (KERAS_BACKEND=jax, keras.distribution), not on {BACKEND}{why}"
    )


def _check_cluster(engine: str, names: tuple[str, ...]) -> None:
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise ConfigError(
            f"--distribute multi-worker ({engine}) needs {', '.join(missing)} describing the "
            "cluster (scripts/launch_workers.py sets it for processes on this machine)"
        )


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def is_chief() -> bool:
    """Whether this process writes the run: on Keras 3, process 0 of the keras.distribution
    cluster; on Keras 2, TF_CONFIG's chief task, else its worker 0 (TensorFlow's convention)."""
    if not MULTI_WORKER_FIT:
        return not os.environ.get(PROCESS_ID) or _int_variable(PROCESS_ID) == 0
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


def _int_variable(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError as exc:
        raise ConfigError(f"{name}={os.environ[name]!r} is not a whole number") from exc


def is_worker(name: str) -> bool:
    """Whether this process trains with the others and leaves the run folder to the chief."""
    return name == "multi-worker" and not is_chief()


@contextlib.contextmanager
def worker_scratch(resume: Path | None) -> Iterator[RunDir]:
    """A worker's run folder: it trains with the others and saves what the chief saves, into a
    scratch folder that nobody reads and that is removed at the end."""
    run = scratch_run_dir(resume)
    chief_run = str(resume or "CHIEF_RUN_DIR")  # what to resume: the chief's run, not this
    try:
        yield run
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(run, chief_run) from exc
    except PeerLost as exc:
        raise PeerLost(run, exc.reason, chief_run) from exc
    finally:
        shutil.rmtree(run.path, ignore_errors=True)
