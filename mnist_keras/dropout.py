"""Dropout whose mask is a hash of (seed, step, position): the same masks as Keras's `Dropout`
would give in distribution, at a fraction of the cost under XLA, and reproducible everywhere.

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
import tensorflow as tf

from mnist_keras.compat import FIRST_REPLICA

_GOLDEN = 0x9E3779B9  # spreads consecutive seeds over the 32-bit range


def lowbias32(x: tf.Tensor) -> tf.Tensor:
    """A bijective 32-bit integer mixer (Chris Wellons' lowbias32): every output bit depends on
    every input bit, so hashed counters look independent."""
    for shift, multiplier in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(shift, tf.uint32)))
        x = x * tf.constant(multiplier, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def keep_mask(
    shape: tf.Tensor, seed: int, step: tf.Tensor, rate: float, replica: tf.Tensor | int = 0
) -> tf.Tensor:
    """True where an element is kept: each with probability 1 - rate, independently.

    Args:
        replica: which model copy draws the mask (tf.distribute): each replica's part of the
            batch gets its own mask.
    """
    stream = lowbias32(tf.cast(replica, tf.uint32) + tf.constant(seed * _GOLDEN % 2**32, tf.uint32))
    key = lowbias32(tf.bitwise.bitwise_xor(tf.cast(step, tf.uint32), stream))
    position = tf.cast(tf.range(tf.reduce_prod(shape)), tf.uint32)
    bits = lowbias32(tf.bitwise.bitwise_xor(lowbias32(position), key))
    threshold = tf.constant(min(int(rate * 2**32), 2**32 - 1), tf.uint32)
    return tf.reshape(bits >= threshold, shape)


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
            dtype="int64",
            initializer="zeros",
            trainable=False,
            aggregation=FIRST_REPLICA,
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if not training or self.rate == 0:
            return inputs
        self.step.assign_add(1)
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        keep = keep_mask(tf.shape(inputs), self.seed, self.step, self.rate, replica_id)
        return tf.where(keep, inputs / (1.0 - self.rate), tf.zeros_like(inputs))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
