"""Differences between Keras 2.15 and Keras 3 that the model code needs, named in one place."""

from __future__ import annotations

import keras
import tensorflow as tf

KERAS_3 = int(keras.__version__.split(".")[0]) >= 3

# A variable that every replica updates identically (a step counter): Keras 3 takes the
# aggregation as a string, Keras 2 as TensorFlow's enum.
FIRST_REPLICA = "only_first_replica" if KERAS_3 else tf.VariableAggregation.ONLY_FIRST_REPLICA


def inclusive_high(low: float, high: float, step: float) -> float:
    """The `max_value` that makes keras-tuner 1.4's stepped `hp.Float` reach `high`.

    keras-tuner counts the values as `(high - low) // step + 1` in floating point, so (0.6 - 0.2)
    // 0.1 gives 3 and 0.6 is never drawn; half a step more keeps `high` and adds no value.
    """
    return high + step / 2
