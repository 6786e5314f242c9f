"""Dropout whose mask is a hash of (seed, step, position): the same masks as Keras's `Dropout`
would give in distribution, at a fraction of the cost under XLA, and the same masks on every
backend (TensorFlow, JAX, PyTorch) and on Keras 2 and 3.

Keras's `Dropout` draws its mask from TensorFlow's stateless Philox generator. Under XLA on a
CPU that generator is expanded into scalar code, many times slower than TensorFlow's own kernel,
which made `--jit-compile` slow a dropout model down instead of speeding it up (figures:
docs/results.md, "Dropout under XLA"). A counter-based integer hash (lowbias32) is a handful of
element-wise ops that XLA fuses into the surrounding step, so the mask costs next to nothing.
The layer counts its own training steps in a variable, so `BackupAndRestore` restores the mask
stream with the weights and a resumed run draws the masks the uninterrupted one would have drawn;
on Keras 2, where dropout under XLA ignored the seed, the masks follow `--seed` too.
"""

from __future__ import annotations

from typing import Any

import keras

from mnist_keras.backend import HASH_DTYPE, STEP_DTYPE, ops, replica_id
from mnist_keras.compat import FIRST_REPLICA

_GOLDEN = 0x9E3779B9  # spreads consecutive seeds over the 32-bit range
_LOW_32 = 0xFFFFFFFF


def _u32(value: int) -> Any:
    return ops.cast(value, HASH_DTYPE)


def _wrap(x: Any) -> Any:
    """`x` modulo 2**32: a no-op on uint32, the wrap-around where the hash runs in int64."""
    return ops.bitwise_and(x, _u32(_LOW_32))


def lowbias32(x: Any) -> Any:
    """A bijective 32-bit integer mixer (Chris Wellons' lowbias32): every output bit depends on
    every input bit, so hashed counters look independent."""
    for shift, multiplier in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = ops.bitwise_xor(x, ops.right_shift(x, _u32(shift)))
        x = _wrap(ops.multiply(x, _u32(multiplier)))
    return ops.bitwise_xor(x, ops.right_shift(x, _u32(16)))


def keep_mask(inputs: Any, seed: int, step: Any, rate: float, replica: Any = 0) -> Any:
    """True where an element of `inputs` is kept: each with probability 1 - rate, independently.

    Args:
        replica: which model copy draws the mask (tf.distribute): each replica's part of the
            batch gets its own mask.
    """
    start = _wrap(ops.add(ops.cast(replica, HASH_DTYPE), _u32(seed * _GOLDEN % 2**32)))
    key = lowbias32(ops.bitwise_xor(_wrap(ops.cast(step, HASH_DTYPE)), lowbias32(start)))
    position = ops.cast(ops.arange(ops.size(inputs)), HASH_DTYPE)
    bits = lowbias32(ops.bitwise_xor(lowbias32(position), key))
    threshold = _u32(min(int(rate * 2**32), 2**32 - 1))
    return ops.reshape(ops.greater_equal(bits, threshold), ops.shape(inputs))


@keras.saving.register_keras_serializable(package="mnist_keras")
class HashDropout(keras.layers.Layer):
    """`keras.layers.Dropout(rate)` with a hashed mask; identity outside training."""

    def __init__(self, rate: float, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), int(seed)

    def build(self, input_shape: Any) -> None:
        # Every replica counts the same steps, so the first replica's count stands for all.
        self.step = self.add_weight(
            name="step",
            shape=(),
            dtype=STEP_DTYPE,
            initializer="zeros",
            trainable=False,
            aggregation=FIRST_REPLICA,
        )
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.rate == 0:
            return inputs
        self.step.assign_add(1)
        keep = keep_mask(inputs, self.seed, self.step, self.rate, replica_id())
        return ops.where(keep, inputs / (1.0 - self.rate), ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
