"""evaluate(): the figures, the misread digits, and the two pictures every run writes."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tensorboard_tags
from matplotlib.colors import to_rgba

from mnist_keras.errors import DataError
from mnist_keras.evaluate import (
    CONFUSION_TAG,
    MISREAD_LIMIT,
    MISREAD_TAG,
    Evaluation,
    confusion_figure,
    evaluate,
    find_misread,
    misread_caption,
    misread_figure,
    png_bytes,
    save_pictures,
)
from mnist_keras.runs import RunDir

# Six test images, three misread: image 1 (a 3 read as 8 at 0.6), image 3 (a 4 read as 9 at 0.9)
# and image 4 (a 7 read as 1 at 0.75). Most confident first: 3, 4, 1.
LABELS = np.array([0, 3, 5, 4, 7, 2])
READ_AS = {0: (0, 0.8), 1: (8, 0.6), 2: (5, 0.99), 3: (9, 0.9), 4: (1, 0.75), 5: (2, 0.5)}


def _probabilities(read_as: dict[int, tuple[int, float]]) -> np.ndarray:
    """Each row gives `probability` to its chosen class and shares the rest among the others."""
    rows = np.zeros((len(read_as), 10))
    for row, (chosen, probability) in read_as.items():
        rows[row] = (1 - probability) / 9
        rows[row, chosen] = probability
    return rows


def _images(n: int) -> np.ndarray:
    """Images that tell themselves apart: image i is the value i everywhere but one pixel."""
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 28, axis=1).repeat(28, axis=2)
    images[:, 0, 0] = 255
    return images


def _digit_axes(figure) -> list:
    return [axes for axes in figure.axes if axes.images]


def test_find_misread_lists_the_mistakes_most_confident_first():
    misread = find_misread(_probabilities(READ_AS), LABELS)
    assert misread.indices.tolist() == [3, 4, 1]
    assert misread.labels.tolist() == [4, 7, 3]
    assert misread.predicted.tolist() == [9, 1, 8]
    assert misread.confidence == pytest.approx([0.9, 0.75, 0.6])


def test_find_misread_rejects_probabilities_that_do_not_match_the_labels():
    with pytest.raises(DataError, match="6 labels"):
        find_misread(_probabilities(READ_AS)[:5], LABELS)


def test_misread_caption():
    assert misread_caption(7, 1, 0.93) == "7 → 1 (0.93)"
    assert misread_caption(2, 7, 0.9991) == "2 → 7 (>0.99)"  # not "(1.00)": it was not certain


def test_misread_figure_shows_exactly_the_misread_images_most_confident_first():
    images = _images(len(LABELS))
    figure = misread_figure(images, find_misread(_probabilities(READ_AS), LABELS))
    digits = _digit_axes(figure)
    assert len(digits) == 3
    for axes, index in zip(digits, [3, 4, 1], strict=True):
        assert np.array_equal(axes.images[0].get_array(), images[index])
    assert [axes.get_title() for axes in digits] == ["4 → 9 (0.90)", "7 → 1 (0.75)", "3 → 8 (0.60)"]
    assert "all 3" in figure.get_suptitle() and "of 6" in figure.get_suptitle()


def test_misread_figure_keeps_only_the_most_confident_mistakes():
    n = MISREAD_LIMIT + 10
    labels = np.zeros(n, dtype=int)
    # Every image is misread as a 1; image i with probability 0.2 + i / 100 (the last most sure).
    read_as = {i: (1, 0.2 + i / 100) for i in range(n)}
    figure = misread_figure(_images(n), find_misread(_probabilities(read_as), labels))
    digits = _digit_axes(figure)
    assert len(digits) == MISREAD_LIMIT
    assert [int(axes.images[0].get_array()[5, 5]) for axes in digits] == list(
        range(n - 1, n - 1 - MISREAD_LIMIT, -1)
    )
    assert f"the {MISREAD_LIMIT} most confident of {n}" in figure.get_suptitle()


def test_misread_figure_without_mistakes_says_so():
    right = {i: (int(label), 0.9) for i, label in enumerate(LABELS)}
    figure = misread_figure(_images(len(LABELS)), find_misread(_probabilities(right), LABELS))
    assert not _digit_axes(figure)
    (text,) = figure.texts
    assert text.get_text() == "No misread digits: all 6 test images read correctly"
    assert png_bytes(figure).startswith(b"\x89PNG")


CONFUSION = np.array(
    [[980 if t == p else (t * 10 + p) % 7 for p in range(10)] for t in range(10)], dtype=np.int64
)


def _cell_texts(axes) -> dict[tuple[int, int], object]:
    """The text drawn in each cell, by (true, predicted)."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in axes.texts}


def test_confusion_figure_shows_every_count_the_axis_names_and_the_accuracy():
    (axes, _colorbar) = confusion_figure(CONFUSION).axes
    texts = _cell_texts(axes)
    assert len(texts) == 100
    for (true, predicted), count in np.ndenumerate(CONFUSION):
        assert texts[true, predicted].get_text() == str(count)
    assert axes.get_xlabel() == "predicted digit" and axes.get_ylabel() == "true digit"
    digits = [str(d) for d in range(10)]
    assert [label.get_text() for label in axes.get_xticklabels()] == digits
    assert [label.get_text() for label in axes.get_yticklabels()] == digits
    accuracy = 9800 / CONFUSION.sum()
    assert f"{accuracy:.2%}" in axes.get_title() and f"{CONFUSION.sum():,}" in axes.get_title()


def _luminance(color) -> float:
    """WCAG relative luminance."""
    rgb = np.array(to_rgba(color)[:3])
    linear = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def _contrast(a, b) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_confusion_counts_are_readable_on_dark_and_light_cells():
    confusion = CONFUSION.copy()
    confusion[2, 5] = 900  # a cell as dark as an error can be, beside light and empty ones
    (axes, _colorbar) = confusion_figure(confusion).axes
    cells = axes.images[0].get_array()
    for (true, predicted), text in _cell_texts(axes).items():
        cell = cells[true, predicted]
        wanted = 4.5 if confusion[true, predicted] else 2.0  # zeros are meant to recede
        assert _contrast(text.get_color(), cell) >= wanted, (true, predicted)


def test_confusion_shading_lets_rare_errors_stand_out():
    (axes, colorbar) = confusion_figure(CONFUSION).axes
    cells = axes.images[0].get_array()
    empty, one_error, diagonal = cells[0, 7], cells[1, 1 + 1], cells[3, 3]  # counts 0, 5, 980
    assert CONFUSION[0, 7] == 0 and CONFUSION[3, 3] == 980
    assert _contrast(one_error, empty) > 1.3  # an error of 0.5% is not white
    assert not np.allclose(diagonal, one_error)
    assert "log scale" in colorbar.get_ylabel()


class CountingModel(keras.Model):
    """A fixed linear softmax model that counts its predict calls."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(10, activation="softmax")
        self.predict_calls = 0

    def call(self, x):
        return self.dense(self.flatten(x))

    def predict(self, *args, **kwargs):
        self.predict_calls += 1
        return super().predict(*args, **kwargs)


def test_evaluate_predicts_once_and_finds_what_the_model_misreads(tiny):
    model = CountingModel()
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = tiny.x_test.astype("float32") / 255, tiny.y_test
    evaluation = evaluate(model, x, y, batch_size=64)
    assert model.predict_calls == 1
    probabilities = np.asarray(model(x))
    predicted = probabilities.argmax(axis=-1)
    assert sorted(evaluation.misread.indices.tolist()) == np.flatnonzero(predicted != y).tolist()
    assert np.all(np.diff(evaluation.misread.confidence) <= 0)
    assert evaluation.confusion.sum() == len(y)
    assert len(evaluation.misread) == len(y) - np.trace(evaluation.confusion)


def test_to_dict_keeps_its_keys_and_adds_the_misread_indices():
    misread = find_misread(_probabilities(READ_AS), LABELS)
    record = Evaluation(0.5, 0.5, CONFUSION, misread).to_dict()
    assert list(record) == [
        "test_loss",
        "test_accuracy",
        "per_class_accuracy",
        "confusion_matrix",
        "misread_indices",
    ]
    assert record["misread_indices"] == [3, 4, 1]
    assert record["confusion_matrix"] == CONFUSION.tolist()
    json.dumps(record)


def _assert_png(path, min_width: int, max_width: int) -> None:
    image = tf.image.decode_png(path.read_bytes())
    height, width, _channels = image.shape
    assert min_width <= width <= max_width and 150 <= height <= 1000, (path, image.shape)


def test_save_pictures_writes_both_pngs_and_both_tensorboard_images(tmp_path):
    run_dir = RunDir(tmp_path)
    misread = find_misread(_probabilities(READ_AS), LABELS)
    save_pictures(Evaluation(0.5, 0.5, CONFUSION, misread), _images(6), run_dir, step=3)
    _assert_png(run_dir.confusion_png, 600, 900)
    _assert_png(run_dir.misread_png, 400, 900)
    assert {CONFUSION_TAG, MISREAD_TAG} <= tensorboard_tags(run_dir.tensorboard / "test")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "confusion_matrix.png",
        "misread_digits.png",
        "tensorboard",
    ]  # no temporary files left behind


def test_a_trained_run_writes_both_pictures(trained):
    run_dir = trained.run
    _assert_png(run_dir.confusion_png, 600, 900)
    _assert_png(run_dir.misread_png, 600, 900)  # a ~95% model misreads more than a row's worth
    assert {CONFUSION_TAG, MISREAD_TAG} <= tensorboard_tags(run_dir.tensorboard / "test")
    metrics = json.loads(run_dir.metrics_json.read_text())
    confusion = np.array(metrics["confusion_matrix"])
    assert len(metrics["misread_indices"]) == confusion.sum() - np.trace(confusion) > 0
