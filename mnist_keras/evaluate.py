"""Test-set evaluation: loss, accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mnist_keras.data import NUM_CLASSES

CELL_PX = 24  # each confusion-matrix cell becomes a CELL_PX square in the TensorBoard image


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    confusion: np.ndarray  # [true class, predicted class] counts

    @property
    def per_class_accuracy(self) -> np.ndarray:
        return np.diag(self.confusion) / np.maximum(self.confusion.sum(axis=1), 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_loss": self.loss,
            "test_accuracy": self.accuracy,
            "per_class_accuracy": self.per_class_accuracy.round(6).tolist(),
            "confusion_matrix": self.confusion.tolist(),
        }


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> Evaluation:
    """Evaluate `model` on (x, y) with Keras's own loss and accuracy, plus the confusion matrix."""
    scores = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    predicted = np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)
    confusion = tf.math.confusion_matrix(y, predicted, num_classes=NUM_CLASSES).numpy()
    return Evaluation(float(scores["loss"]), float(scores["accuracy"]), confusion)


def confusion_image(confusion: np.ndarray) -> np.ndarray:
    """An RGB heat map [1, H, W, 3] of the row-normalised matrix, white (0) to dark blue (1).

    The square root lifts the small off-diagonal error counts into view next to the diagonal.
    """
    rates = np.sqrt(confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1))
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    cells = white + rates[..., None] * (blue - white)
    pixels = np.kron(cells, np.ones((CELL_PX, CELL_PX, 1)))
    return pixels.astype(np.uint8)[None]


def log_confusion_image(confusion: np.ndarray, log_dir: Path, step: int) -> None:
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        tf.summary.image("test/confusion_matrix", confusion_image(confusion), step=step)
