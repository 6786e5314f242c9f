"""predict: reading files, MNIST-style preprocessing, classifying, and the CLI's bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_clean_failure, error_lines, idx_bytes, run_cli, run_main

from mnist_keras.errors import DataError, ModelError
from mnist_keras.predict import (
    Failure,
    Prediction,
    classify_files,
    decode_picture,
    read_images,
    to_mnist,
)
from mnist_keras.predict import (
    main as predict_main,
)
from mnist_keras.runtimes import Classifier, load_classifier, resolve_model_dir


def _photo(digit: np.ndarray, light: bool, shape=(200, 160), at=(30, 10), scale=5) -> np.ndarray:
    """A large RGB picture of an MNIST digit, off centre; dark ink on white paper if `light`."""
    big = np.kron(digit, np.ones((scale, scale), np.uint8))
    canvas = np.zeros(shape, np.uint8)
    canvas[at[0] : at[0] + big.shape[0], at[1] : at[1] + big.shape[1]] = big
    rgb = np.stack([canvas] * 3, axis=-1)
    return 255 - rgb if light else rgb


def _lit(paper: np.ndarray, light: np.ndarray, seed: int) -> np.ndarray:
    """A grayscale picture of `paper` under `light` (0..1 a pixel), with a camera's noise."""
    noise = np.random.default_rng(seed).normal(0, 3, paper.shape)
    return np.clip(np.round(paper * light + noise), 0, 255).astype(np.uint8)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = (x.astype(np.float64).ravel() - x.mean() for x in (a, b))
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _ink_box(image: np.ndarray) -> tuple[int, ...]:
    rows, cols = np.nonzero(image > 51)
    return rows.min(), rows.max(), cols.min(), cols.max()


SHAPE = (240, 200)  # a photo's picture, the digit in its upper left part
_ROWS, _COLS = np.indices(SHAPE) / np.array(SHAPE)[:, None, None]
LIGHTING = {  # how much of the light reaches each pixel of the paper
    "shadowed corner": 1 - 0.7 * np.clip((_ROWS + _COLS - 1.3) / 0.1, 0, 1),
    "gradient": 1 - 0.65 * (_ROWS + _COLS) / 2,
}


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    tf.io.write_file(str(path), tf.io.encode_png(pixels))
    return path


@pytest.fixture(scope="module")
def classifier(trained) -> Classifier:
    return load_classifier(trained.export_path.parent)  # the model folder: newest version


def test_to_mnist_centres_the_digit_in_a_20_box(real_mnist):
    out = to_mnist(_photo(real_mnist.x_test[0], light=False)[..., 0])
    assert out.shape == (28, 28) and out.dtype == np.uint8 and out.max() == 255
    rows, cols = np.nonzero(out)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 20
    weights = out.astype(float) / out.sum()
    centre = (np.indices(out.shape) * weights).sum(axis=(1, 2))
    assert np.all(np.abs(centre - 14) <= 1.0)


def test_to_mnist_inverts_light_paper(real_mnist):
    dark = to_mnist(_photo(real_mnist.x_test[1], light=False)[..., 0])
    light = to_mnist(_photo(real_mnist.x_test[1], light=True)[..., 0])
    assert np.abs(dark.astype(int) - light.astype(int)).max() <= 1
    assert to_mnist(np.full((50, 40), 255, np.uint8)).max() == 0  # blank paper: nothing drawn


@pytest.mark.parametrize("lighting", sorted(LIGHTING))
def test_to_mnist_finds_the_digit_on_unevenly_lit_paper(classifier, real_mnist, lighting):
    # Issue 23: a 9 on paper with a dark corner was cropped with the corner and read as 7.
    x, y = real_mnist.x_test[:10], real_mnist.y_test[:10]
    papers = [_photo(digit, light=True, shape=SHAPE, at=(10, 10))[..., 0] for digit in x]
    clean = np.stack([to_mnist(paper) for paper in papers])
    seen = np.stack([to_mnist(_lit(p, LIGHTING[lighting], i)) for i, p in enumerate(papers)])
    for even, uneven in zip(clean, seen, strict=True):
        box = np.subtract(_ink_box(even), _ink_box(uneven))
        assert np.abs(box).max() <= 1  # the digit's box, not the shadow's
        assert _correlation(even, uneven) >= 0.7  # ink a pixel off at worst
    assert np.mean([_correlation(a, b) for a, b in zip(clean, seen, strict=True)]) >= 0.9
    assert (classifier(seen).argmax(axis=1) == y).sum() >= 9


def test_a_drawing_that_touches_the_edge_keeps_its_ink(real_mnist):
    # The canvas is evenly dark: nothing there is lighting, even ink along its edge.
    for digit in real_mnist.x_test[:10]:
        rows, cols = np.nonzero(digit)
        tight = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        drawn = np.kron(tight, np.ones((10, 10), np.uint8))  # as big as the demo's canvas
        assert _correlation(to_mnist(drawn), to_mnist(digit)) >= 0.95


def test_when_no_file_can_be_read_only_their_errors_are_printed(trained, tmp_path, capsys):
    (tmp_path / "a.png").write_text("not a picture")
    assert predict_main(["--model", str(trained.export_path), str(tmp_path / "a.png")]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no empty table
    assert err.splitlines() == [
        f"error: {tmp_path / 'a.png'}: not a readable image (not a PNG, JPEG, GIF or BMP picture)"
    ]


def test_to_mnist_keeps_mnist_digits_recognisable(classifier, real_mnist):
    x, y = real_mnist.x_test[:500], real_mnist.y_test[:500]
    raw = classifier(x).argmax(axis=1)
    prepared = classifier(np.stack([to_mnist(img) for img in x])).argmax(axis=1)
    assert (prepared == raw).mean() >= 0.95
    assert (prepared == y).mean() >= 0.9


def test_pngs_light_and_dark_give_the_same_right_class(classifier, real_mnist, tmp_path):
    paths, labels = [], []
    for i in range(10):
        digit, label = real_mnist.x_test[i], int(real_mnist.y_test[i])
        at = (5 + 5 * i, 2 * i)
        for light in (False, True):
            name = f"digit{i}-{'light' if light else 'dark'}.png"
            paths.append(_write_png(tmp_path / name, _photo(digit, light, at=at)))
        labels.append(label)
    results = classify_files(classifier, paths)
    classes = [r.top(1)[0][0] for r in results]
    dark, light = classes[0::2], classes[1::2]
    assert dark == light
    assert sum(c == y for c, y in zip(dark, labels, strict=True)) >= 9


def test_transparent_png_reads_as_white_paper(classifier, real_mnist, tmp_path):
    digit = real_mnist.x_test[2]
    ink = np.kron(digit, np.ones((3, 3), np.uint8))
    rgba = np.zeros((*ink.shape, 4), np.uint8)  # black ink whose alpha is the stroke
    rgba[..., 3] = ink
    path = _write_png(tmp_path / "alpha.png", rgba)
    assert read_images(path)[0, 0, 0] == 255  # transparent corner = white paper
    (result,) = classify_files(classifier, [path])
    assert result.top(1)[0][0] == real_mnist.y_test[2]


def test_npy_and_idx_files_hold_many_images(classifier, real_mnist, tmp_path):
    x = real_mnist.x_test[:5]
    np.save(tmp_path / "uint8.npy", x)
    np.save(tmp_path / "float.npy", x / 255.0)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(x))
    expected = classifier(x).argmax(axis=1)
    for name in ("uint8.npy", "float.npy", "t10k-images-idx3-ubyte"):
        results = classify_files(classifier, [tmp_path / name], preprocess=False)
        assert [r.source for r in results] == [f"{tmp_path / name}[{i}]" for i in range(5)]
        assert [r.top(1)[0][0] for r in results] == list(expected)


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("digit.png", b"a text file, renamed", "not a PNG, JPEG, GIF or BMP picture"),
        ("empty.png", b"", "the file is empty"),
        ("cut.png", "the first half of a PNG", "a truncated or damaged PNG file"),
    ],
)
def test_a_picture_that_does_not_decode_is_named_in_our_words(tmp_path, name, content, problem):
    if content == "the first half of a PNG":
        png = tf.io.encode_png(np.full((28, 28, 1), 255, np.uint8)).numpy()
        content = png[: len(png) // 2]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_images(path)
    # Exactly our line: TensorFlow's own ("{{function_node __wrapped__DecodeImage...") is gone.
    assert str(caught.value) == f"{path}: not a readable image ({problem})"
    with pytest.raises(DataError) as caught:  # the demo's uploads go through the same decoder
        decode_picture(content, "the picture")
    assert str(caught.value) == f"the picture: not a readable image ({problem})"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.png", b"not a png", "not a readable image"),
        ("flat.npy", None, "expected (H, W) or (N, H, W)"),
        ("neg.npy", "negative", "expected pixels 0..255"),
        ("notes.txt", b"hello", "unknown file type"),
    ],
)
def test_bad_files_fail_alone(classifier, tmp_path, name, content, message, real_mnist):
    path = tmp_path / name
    if name == "flat.npy":
        np.save(path, np.zeros(784, np.uint8))
    elif content == "negative":
        np.save(path, -np.ones((28, 28), np.int16))
    else:
        path.write_bytes(content)
    np.save(tmp_path / "good.npy", real_mnist.x_test[0])
    results = classify_files(classifier, [path, tmp_path / "good.npy"])
    assert isinstance(results[0], Failure) and message in results[0].message
    assert str(path) in results[0].message
    assert isinstance(results[1], Prediction)


def test_no_preprocess_needs_28x28(classifier, tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((40, 40), np.uint8))
    (result,) = classify_files(classifier, [tmp_path / "big.npy"], preprocess=False)
    assert isinstance(result, Failure) and "--no-preprocess needs 28x28" in result.message


def test_model_folder_resolution(tmp_path, trained):
    for version in ("1", "2", "10"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    assert resolve_model_dir(tmp_path) == tmp_path / "10"
    assert resolve_model_dir(trained.export_path) == trained.export_path
    with pytest.raises(ModelError, match="no SavedModel"):
        resolve_model_dir(tmp_path / "1" / "nothing")


def test_model_without_the_signature_is_refused(tmp_path):
    module = tf.Module()
    module.f = tf.function(
        lambda x: {"y": x * 2}, input_signature=[tf.TensorSpec([None], tf.float32)]
    )
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"other": module.f})
    with pytest.raises(ModelError, match="no 'serving_default' signature"):
        load_classifier(tmp_path / "other")


@pytest.mark.slow
def test_cli_table_json_and_partial_failure(trained, real_mnist, tmp_path):
    """predict's bad input in a real process: exit 2, each file's line and nothing else on
    stderr (libjpeg's own complaint, written natively, included)."""
    png = _write_png(tmp_path / "seven.png", _photo(real_mnist.x_test[0], light=True))
    missing = tmp_path / "missing.png"
    text = tmp_path / "digit.png"
    text.write_text("not a picture")
    jpeg = tmp_path / "cut.jpg"  # libjpeg prints its own complaint about this one
    jpeg.write_bytes(tf.io.encode_jpeg(_photo(real_mnist.x_test[1], light=True)).numpy()[:300])
    bad = [missing, text, jpeg]
    result = run_cli(
        "predict", "--model", str(trained.export_path), str(png), *map(str, bad), "--json"
    )
    assert result.returncode == 2  # three files failed; the other was still classified
    problems = [
        "no such file",
        "not a readable image (not a PNG, JPEG, GIF or BMP picture)",
        "not a readable image (a truncated or damaged JPEG file)",
    ]
    messages = [f"{path}: {problem}" for path, problem in zip(bad, problems, strict=True)]
    assert error_lines(result) == [f"error: {message}" for message in messages]
    assert result.stderr.splitlines() == error_lines(result)  # nothing else: no traceback
    good, *failed = json.loads(result.stdout)
    assert good["source"] == str(png) and good["top"][0]["class"] == real_mnist.y_test[0]
    probabilities = [entry["probability"] for entry in good["top"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    expected = [{"source": str(p), "error": m} for p, m in zip(bad, messages, strict=True)]
    assert failed == expected
    # The picture's name as given, short: the table folds a long path over lines at the width
    # the console was made with (80 in a pytest-xdist worker, whatever run_main asks).
    table = run_main("predict", "--model", str(trained.export_path), png.name, cwd=tmp_path)
    assert table.returncode == 0 and "seven.png" in table.stdout and "Predictions" in table.stdout


def test_cli_model_folder_without_a_model(tmp_path):
    result = run_main("predict", "--model", str(tmp_path), str(tmp_path / "x.png"))
    assert_clean_failure(result, "no SavedModel")
