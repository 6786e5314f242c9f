"""Which Keras backend runs, and everything that differs between the backends, in one place.

The backend is Keras's own switch: `KERAS_BACKEND` (tensorflow, jax or torch), else
`~/.keras/keras.json`; Keras 2 is TensorFlow only. Model code speaks `ops` below (`keras.ops`
on Keras 3, the same names over TensorFlow on Keras 2, which has no `keras.ops`).

What each backend cannot do, and what the package does instead:
- TensorBoard's graph of the model is a TensorFlow graph: drawn on TensorFlow, skipped elsewhere
  with one line (`callbacks.GraphWriter`).
- `tf.distribute` strategies place TensorFlow variables: off TensorFlow, `multi-worker` runs on
  JAX through `keras.distribution`, and the rest is refused with one line
  (`distribute.make_distribution`).
- PyTorch runs one batch per call: `--steps-per-execution` becomes 1 there (`data.whole_epochs`,
  recorded in config.json). `compiled` says when the step is compiled, on each backend
  (metrics.json records it).
- The exports are TensorFlow programs (SavedModel, then LiteRT and ONNX converted from it).
  Keras's own export on JAX goes through jax2tf, ties the SavedModel to the platform it was
  written on and is refused for LiteRT; on PyTorch it has no SavedModel at all. So a JAX or
  PyTorch run saves its `.keras` file and a TensorFlow-backend process exports that file: the same
  product, by the same code, whatever trained the model (`export_in_tensorflow`).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import keras

from mnist_keras.compat import KERAS_3

BACKEND: str = keras.backend.backend()
BACKENDS = ("tensorflow", "jax", "torch")
TENSORFLOW = BACKEND == "tensorflow"

if KERAS_3:
    from keras import ops
else:  # Keras 2.15: the few operations the model code uses, under keras.ops's names
    import tensorflow as tf

    ops = SimpleNamespace(
        add=tf.add,
        arange=tf.range,
        bitwise_and=tf.bitwise.bitwise_and,
        bitwise_xor=tf.bitwise.bitwise_xor,
        cast=tf.cast,
        greater_equal=tf.greater_equal,
        multiply=tf.multiply,
        reshape=tf.reshape,
        right_shift=tf.bitwise.right_shift,
        shape=tf.shape,
        size=tf.size,
        where=tf.where,
        zeros_like=tf.zeros_like,
    )

# Keras's PyTorch trainer runs one batch per call (`steps_per_execution` must be 1 there).
MULTI_STEP_CALLS = BACKEND != "torch"


def compiled(asked: bool) -> bool:
    """Whether the training step is compiled, `--jit-compile` being `asked`: as asked on
    TensorFlow and JAX (XLA either way, and the same trade: on JAX the plain convnet trained 1.9x
    faster compiled, 2 epochs of 9,000 images in 29.4 s against 56.9 s, and the augmented one no
    faster, 2 epochs of 55,000 in 321 s against 300 s); never on PyTorch, where it means
    torch.compile, which trained the default MLP 30x slower here (3 epochs of 10,800 images:
    109.6 s against 3.7 s)."""
    return asked and BACKEND != "torch"


# HashDropout's step counter: JAX computes in 32 bits unless told otherwise (and warns when
# asked for int64); 2**31 steps is more than any run takes.
STEP_DTYPE = "int32" if BACKEND == "jax" else "int64"

# The unsigned 32-bit arithmetic of the dropout hash: native on TensorFlow and JAX; Keras's
# PyTorch backend turns uint32 into int64, where a product is masked back to 32 bits.
HASH_DTYPE = "int64" if BACKEND == "torch" else "uint32"


def replica_id() -> object:
    """Which model copy runs this step under tf.distribute (each draws its own dropout mask);
    0 where one copy sees the whole batch (no strategy, JAX, PyTorch)."""
    if not TENSORFLOW:
        return 0
    import tensorflow as tf

    replica = tf.distribute.get_replica_context()
    return replica.replica_id_in_sync_group if replica is not None else 0


def tensorflow_backend_env() -> dict[str, str]:
    """The environment of a child process that runs on Keras's TensorFlow backend."""
    return {**os.environ, "KERAS_BACKEND": "tensorflow"}
