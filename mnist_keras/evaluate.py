"""Test-set evaluation and its pictures: the confusion matrix and the digits the model misreads.

The pictures are drawn on a `matplotlib.figure.Figure` with the Agg canvas, never pyplot, so
nothing touches a display or matplotlib's global figure list; each becomes a PNG in the run
folder and the same PNG, decoded, an image in TensorBoard.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import matplotlib
import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, LogNorm, to_rgba
from matplotlib.figure import Figure

from mnist_keras.data import NUM_CLASSES
from mnist_keras.errors import DataError
from mnist_keras.runs import RunDir, write_bytes

CONFUSION_TAG = "test/confusion_matrix"
MISREAD_TAG = "test/misread_digits"
MISREAD_LIMIT = 40  # the most confident mistakes shown; more would shrink each digit too far
MISREAD_COLUMNS = 8

# Off the diagonal a cell is shaded by the share of its true digit's images read as its
# predicted digit, on a log scale: one image in a thousand is already visible, one in ten is the
# darkest. A linear scale would leave nearly every error white beside the ~99% diagonal.
ERROR_RATES = LogNorm(vmin=1e-3, vmax=1e-1, clip=True)
# Reds minus its near-white start, so that the rarest error still differs from an empty cell.
ERROR_CMAP = ListedColormap(matplotlib.colormaps["Reds"](np.linspace(0.2, 1.0, 256)))
CORRECT_COLOR = "#3b6ea5"  # the diagonal: one colour, so the eye goes to the red errors
EMPTY_COLOR = "white"


@dataclass(frozen=True)
class Misread:
    """The test images the model gets wrong, the most confident mistake first."""

    indices: np.ndarray  # positions in the test set
    labels: np.ndarray  # the true digit
    predicted: np.ndarray  # the digit the model chose
    confidence: np.ndarray  # the probability the model gave `predicted`

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    confusion: np.ndarray  # [true class, predicted class] counts
    misread: Misread

    @property
    def per_class_accuracy(self) -> np.ndarray:
        return np.diag(self.confusion) / np.maximum(self.confusion.sum(axis=1), 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_loss": self.loss,
            "test_accuracy": self.accuracy,
            "per_class_accuracy": self.per_class_accuracy.round(6).tolist(),
            "confusion_matrix": self.confusion.tolist(),
            "misread_indices": self.misread.indices.tolist(),
        }


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> Evaluation:
    """Keras's own test loss and accuracy, plus the confusion matrix and the misread images."""
    scores = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    probabilities = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    predicted = np.argmax(probabilities, axis=-1)
    confusion = tf.math.confusion_matrix(y, predicted, num_classes=NUM_CLASSES).numpy()
    misread = find_misread(probabilities, y)
    return Evaluation(float(scores["loss"]), float(scores["accuracy"]), confusion, misread)


def find_misread(probabilities: np.ndarray, labels: np.ndarray) -> Misread:
    """The images whose most probable class is not their label, the most confident first."""
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise DataError(
            f"probabilities of shape {probabilities.shape} do not match {len(labels)} labels"
        )
    predicted = np.argmax(probabilities, axis=-1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = np.argsort(-confidence, kind="stable")  # ties keep test-set order: reproducible
    indices = wrong[order]
    return Misread(indices, np.asarray(labels)[indices], predicted[indices], confidence[order])


def save_pictures(evaluation: Evaluation, images: np.ndarray, run_dir: RunDir, step: int) -> None:
    """Write the confusion matrix and the misread digits as PNGs and as TensorBoard images."""
    pictures = {
        CONFUSION_TAG: (run_dir.confusion_png, confusion_figure(evaluation.confusion)),
        MISREAD_TAG: (run_dir.misread_png, misread_figure(images, evaluation.misread)),
    }
    pngs = {tag: png_bytes(figure) for tag, (_, figure) in pictures.items()}
    for tag, (path, _) in pictures.items():
        write_bytes(path, pngs[tag])
    log_images(pngs, run_dir.tensorboard / "test", step)


def log_images(pngs: dict[str, bytes], log_dir: Path, step: int) -> None:
    """Log each PNG under its tag, as TensorFlow's guide logs a confusion-matrix figure."""
    writer = tf.summary.create_file_writer(str(log_dir))
    try:
        with writer.as_default():
            for tag, png in pngs.items():
                tf.summary.image(tag, tf.image.decode_png(png, channels=3)[None], step=step)
    finally:
        writer.close()


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def confusion_figure(confusion: np.ndarray) -> Figure:
    """The confusion matrix, labelled: digits on both axes, every count, errors shaded by rate."""
    total = int(confusion.sum())
    accuracy = np.trace(confusion) / max(total, 1)
    figure = Figure(figsize=(7.6, 6.6), dpi=110, facecolor="white", layout="constrained")
    axes = figure.add_subplot()
    colors = _cell_colors(confusion)
    axes.imshow(colors, interpolation="nearest")
    _write_counts(axes, confusion, colors)
    classes = range(len(confusion))
    axes.set_xticks(classes, [str(c) for c in classes])
    axes.set_yticks(classes, [str(c) for c in classes])
    axes.tick_params(length=0)
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    axes.set_title(f"Confusion matrix: test accuracy {accuracy:.2%} on {total:,} images")
    bar = figure.colorbar(ScalarMappable(ERROR_RATES, ERROR_CMAP), ax=axes, shrink=0.8)
    bar.set_ticks([1e-3, 1e-2, 1e-1], labels=["0.1%", "1%", "≥10%"])
    bar.set_label("off the diagonal: share of the true digit's images (log scale)")
    figure.text(0.01, 0.005, "blue diagonal: read correctly", fontsize=8, color="#555555")
    return figure


def _cell_colors(confusion: np.ndarray) -> np.ndarray:
    """RGBA per cell: the diagonal one colour, errors by their row rate, empty cells white."""
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    colors = ERROR_CMAP(ERROR_RATES(rates))
    colors[confusion == 0] = to_rgba(EMPTY_COLOR)
    colors[np.eye(len(confusion), dtype=bool)] = to_rgba(CORRECT_COLOR)
    return colors


def _write_counts(axes: Any, confusion: np.ndarray, colors: np.ndarray) -> None:
    for (true, predicted), count in np.ndenumerate(confusion):
        rgb = colors[true, predicted, :3]
        dark = rgb @ np.array([0.299, 0.587, 0.114]) < 0.55  # perceived brightness
        color = "white" if dark else ("#b0b0b0" if count == 0 else "black")
        weight = "bold" if count and true != predicted else "normal"
        axes.text(
            predicted,
            true,
            str(count),
            ha="center",
            va="center",
            color=color,
            fontsize=9,
            fontweight=weight,
        )


def misread_caption(label: int, predicted: int, confidence: float) -> str:
    """'7 → 1 (0.93)': the true digit, the model's reading and the probability it gave it."""
    # Two decimals would round a near-certain mistake up to a claim of certainty, "(1.00)".
    probability = ">0.99" if confidence > 0.99 else f"{confidence:.2f}"
    return f"{label} → {predicted} ({probability})"


def misread_figure(images: np.ndarray, misread: Misread, limit: int = MISREAD_LIMIT) -> Figure:
    """The misread test digits as a grid, the most confident mistake first, each captioned."""
    if len(misread) == 0:
        return _no_mistakes_figure(len(images))
    shown = min(len(misread), limit)
    columns = min(shown, MISREAD_COLUMNS)
    rows = math.ceil(shown / columns)
    # Sizes in inches at 100 dpi: eight columns make the 880 px TensorBoard shows without scaling.
    width, height, header = 1.1 * max(columns, 5), 1.45 * rows, 0.8
    figure = Figure(figsize=(width, height + header), dpi=100, facecolor="white")
    figure.suptitle(_misread_title(len(misread), shown, len(images)), fontsize=11, y=0.995)
    grid = figure.subplots(rows, columns, squeeze=False)
    for cell, axes in enumerate(grid.flat):
        axes.set_axis_off()
        if cell < shown:
            _draw_digit(axes, images, misread, cell)
    top = height / (height + header)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.04, top=top, hspace=0.5, wspace=0.2)
    return figure


def _draw_digit(axes: Any, images: np.ndarray, misread: Misread, cell: int) -> None:
    index = int(misread.indices[cell])
    axes.imshow(images[index], cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    caption = misread_caption(
        int(misread.labels[cell]), int(misread.predicted[cell]), float(misread.confidence[cell])
    )
    axes.set_title(caption, fontsize=9.5, pad=3)
    # The test-set index, under the digit, to find the image again (metrics.json lists them all).
    axes.text(
        0.5,
        -0.03,
        f"#{index}",
        transform=axes.transAxes,
        ha="center",
        va="top",
        fontsize=7,
        color="#888888",
    )


def _misread_title(mistakes: int, shown: int, total: int) -> str:
    which = f"all {mistakes}" if shown == mistakes else f"the {shown} most confident of {mistakes}"
    return (
        f"Misread test digits: {which} ({mistakes / max(total, 1):.2%} of {total:,})\n"
        "true → predicted (probability the model gave its prediction)"
    )


def _no_mistakes_figure(total: int) -> Figure:
    figure = Figure(figsize=(6.4, 1.6), dpi=110, facecolor="white")
    figure.text(
        0.5,
        0.5,
        f"No misread digits: all {total:,} test images read correctly",
        ha="center",
        va="center",
        fontsize=12,
    )
    return figure
