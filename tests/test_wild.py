"""The digits-in-the-wild benchmark: its pictures, its scoring, and scripts/wild_bench.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_clean_failure
from PIL import Image, ImageFont

from mnist_keras import wild
from mnist_keras.errors import ConfigError, DataError, ModelError
from mnist_keras.predict import to_mnist

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "wild_bench.py"
PER_CLASS = 5  # small sets: 50 pen and 50 photo pictures
SEED = 7
NOT_DIGIT_FACES = {"D050000L.otf", "StandardSymbolsPS.otf", "DejaVuMathTeXGyre.ttf"}


@pytest.fixture(scope="module")
def faces() -> list[wild.Face]:
    try:
        return wild.find_faces()
    except DataError as exc:  # `make test` installs them: a missing face is a broken setup
        pytest.fail(f"{exc}: run `make fonts`")


@pytest.fixture(scope="module")
def few_faces(faces) -> list[wild.Face]:
    """One face of each of four families, for small printed sets."""
    first = {}
    for face in faces:
        first.setdefault(face.family, face)
    return list(first.values())[:4]


@pytest.fixture(scope="module")
def sets(real_mnist, few_faces) -> tuple[wild.WildSet, ...]:
    return wild.build(real_mnist.x_test, real_mnist.y_test, SEED, PER_CLASS, few_faces)


def one_hot(classes) -> np.ndarray:
    return np.eye(10, dtype=np.float32)[np.asarray(classes)]


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of images."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def test_the_same_seed_draws_the_same_pictures(real_mnist, few_faces, sets) -> None:
    again = wild.build(real_mnist.x_test, real_mnist.y_test, SEED, PER_CLASS, few_faces)
    other = wild.build(real_mnist.x_test, real_mnist.y_test, SEED + 1, PER_CLASS, few_faces)
    for first, second, third in zip(sets, again, other, strict=True):
        assert first.kind == second.kind
        np.testing.assert_array_equal(first.labels, second.labels)
        assert all(np.array_equal(a, b) for a, b in zip(first.images, second.images, strict=True))
        np.testing.assert_array_equal(first.inputs, second.inputs)
        assert not np.array_equal(first.inputs, third.inputs), first.kind


def test_labels_match_the_pictures_and_are_balanced(sets, few_faces) -> None:
    expected = {"printed": 2 * len(few_faces), "strokes": PER_CLASS, "photo": PER_CLASS}
    assert [s.kind for s in sets] == list(wild.KINDS)
    for s in sets:
        assert len(s.images) == len(s.labels) == len(s.inputs)
        assert s.labels.dtype == np.uint8 and s.inputs.dtype == np.uint8
        assert s.inputs.shape[1:] == (28, 28)
        counts = np.bincount(s.labels, minlength=10)
        assert counts.tolist() == [expected[s.kind]] * 10, s.kind


def test_every_face_draws_ten_different_digits(faces) -> None:
    for face in faces:
        pictures = [wild.render_digit(face, d, 64, (56, 56)) for d in range(10)]
        assert all(p.min() < 128 for p in pictures), face  # ink on every one
        assert len({p.tobytes() for p in pictures}) == 10, face


def test_symbol_dingbat_and_math_faces_are_left_out(faces) -> None:
    names = {face.path.name for face in faces}
    assert names.isdisjoint(NOT_DIGIT_FACES)
    assert len({face.family for face in faces}) >= 3
    dingbats = Path("/usr/share/fonts/opentype/urw-base35/D050000L.otf")
    if dingbats.is_file():  # ten different glyphs, but dingbats: caught by their advances
        assert not wild.draws_digits(ImageFont.truetype(str(dingbats), 48))
    sans = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if sans.is_file():
        assert wild.draws_digits(ImageFont.truetype(str(sans), 48))


def test_no_faces_is_a_data_error(tmp_path) -> None:
    (tmp_path / "broken.ttf").write_bytes(b"not a font")
    with pytest.raises(DataError, match=str(tmp_path)):
        wild.find_faces([tmp_path])


def test_printed_pictures_are_dark_ink_on_white(sets) -> None:
    for picture in sets[0].images:
        assert picture.shape == (wild.PRINTED, wild.PRINTED)
        assert np.median(picture) == 255 and picture.min() < 64
        border = np.concatenate([picture[0], picture[-1], picture[:, 0], picture[:, -1]])
        assert border.min() == 255  # the whole digit is inside the picture


def test_pen_strokes_still_look_like_their_mnist_digit(real_mnist, sets) -> None:
    picks = wild.pick_test_digits(real_mnist.y_test, PER_CLASS, SEED)
    np.testing.assert_array_equal(real_mnist.y_test[picks], sets[1].labels)
    own = correlation(sets[1].inputs, real_mnist.x_test[picks])
    other_class = correlation(sets[1].inputs, real_mnist.x_test[np.roll(picks, PER_CLASS)])
    assert np.median(own) > 0.7, np.sort(own)
    assert np.mean(own > other_class) >= 0.9
    for picture in sets[1].images:
        assert picture.shape == (wild.CANVAS, wild.CANVAS)
        assert set(np.unique(picture)) == {0, 255}  # white pen on black, as the demo draws


def test_pen_is_round_and_as_wide_as_the_demos() -> None:
    bar = np.zeros((28, 28), np.uint8)
    bar[14, 6:22] = 255  # a horizontal line becomes one pen stroke
    picture = wild.stroke_picture(bar)
    columns = np.flatnonzero(picture.any(axis=0))
    middle = picture[:, (columns[0] + columns[-1]) // 2]
    assert abs(np.count_nonzero(middle) - wild.PEN) <= 1
    end = picture[:, columns[0]]  # a round cap narrows to a point; a square one would not
    assert 0 < np.count_nonzero(end) <= 5


def test_photos_are_larger_light_paper_with_dark_ink(sets) -> None:
    for picture in sets[2].images:
        height, width = picture.shape
        assert 120 <= height <= 240 and 120 <= width <= 240 and height != width
        border = np.concatenate([picture[0], picture[-1], picture[:, 0], picture[:, -1]])
        assert 165 <= np.median(border) <= 250
        assert np.percentile(picture, 0.5) < 110  # ink, clearly darker than any paper
        assert 0 < np.std(border) < 40  # uneven and noisy, yet paper


def test_an_oracle_scores_everything_and_a_constant_a_tenth(real_mnist, few_faces, sets) -> None:
    # The oracle knows each picture by what predict's preprocessing makes of it.
    answers = {
        to_mnist(image).tobytes(): label
        for s in sets
        for image, label in zip(s.images, s.labels, strict=True)
    }
    oracle = lambda batch: one_hot([answers[x.tobytes()] for x in batch])  # noqa: E731
    scores = wild.measure(oracle, real_mnist.x_test, real_mnist.y_test, SEED, PER_CLASS, few_faces)
    assert [k.kind for k in scores.kinds] == list(wild.KINDS)
    assert all(
        k.accuracy == 1.0 and k.total == len(s.labels)
        for k, s in zip(scores.kinds, sets, strict=True)
    )
    zeros = wild.score(lambda batch: one_hot(np.zeros(len(batch), int)), sets)
    assert [zeros[kind].accuracy for kind in wild.KINDS] == pytest.approx([0.1] * 3)
    assert zeros.to_dict()["strokes"] == {"accuracy": 0.1, "correct": PER_CLASS, "total": 50}


def test_a_classifier_answering_the_wrong_shape_is_a_model_error(sets) -> None:
    with pytest.raises(ModelError, match="shape"):
        wild.classify(lambda batch: np.zeros((len(batch), 3)), sets[0])


def test_impossible_requests_are_typed_errors(real_mnist, few_faces) -> None:
    with pytest.raises(DataError, match="per_class 1200"):
        wild.build(real_mnist.x_test, real_mnist.y_test, per_class=1200, faces=few_faces)
    with pytest.raises(ConfigError, match="per_class"):
        wild.build(real_mnist.x_test, real_mnist.y_test, per_class=0, faces=few_faces)
    with pytest.raises(DataError, match="uint8"):
        wild.build(real_mnist.x_test.astype(np.float32), real_mnist.y_test, faces=few_faces)


def test_contact_sheet_marks_the_wrong_ones(sets) -> None:
    predictions = [np.zeros(len(s.labels), np.int64) for s in sets]
    sheet = np.asarray(wild.contact_sheet(sets, predictions, per_kind=6))
    assert sheet.ndim == 3 and sheet.shape[0] > 3 * wild.CELL
    red = (sheet[..., 0] > 200) & (sheet[..., 1] < 80) & (sheet[..., 2] < 80)
    assert red.any()  # captions of wrong predictions


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "160"},
    )


@pytest.fixture(scope="module")
def wild_bench():
    """scripts/wild_bench.py as a module, to call its main() in this process."""
    spec = importlib.util.spec_from_file_location("wild_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flag", ["--model", "--data", "--fonts", "--sheet", "--per-class"])
def test_script_bad_input_is_one_line_and_exit_2(
    flag, wild_bench, tmp_path, real_mnist_dir, capsys
) -> None:
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    extra = {
        "--model": [],
        "--data": ["--data", str(missing)],
        "--fonts": ["--fonts", str(empty)],
        "--sheet": ["--sheet", str(missing / "sheet.png")],
        "--per-class": ["--per-class", "0"],
    }[flag]
    assert wild_bench.main(["--model", str(missing), *extra]) == 2  # the model is checked last
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {flag}"), errors
    assert list(tmp_path.iterdir()) == [empty] and not list(empty.iterdir())


def test_only_the_readmes_font_set_gives_a_comparable_printed_figure(faces, few_faces) -> None:
    assert wild.font_set_note(faces) is None  # `make fonts` installs the README's set
    note = wild.font_set_note(few_faces)
    assert "not comparable" in note and "82 faces in 19 families" in note
    assert wild.describe(few_faces) in note


def test_script_says_when_its_fonts_are_not_the_readmes(wild_bench, tmp_path, capsys) -> None:
    from mnist_keras.config import TrainConfig
    from mnist_keras.export import export_saved_model
    from mnist_keras.model import build_model

    model_dir = tmp_path / "mnist"
    export_saved_model(build_model(TrainConfig(hidden_units=16), steps_per_epoch=1), model_dir)
    dejavu = str(wild.FONT_DIRS[0])
    assert wild_bench.main(["--model", str(model_dir), "--per-class", "1", "--fonts", dejavu]) == 0
    assert "note: the printed figure is not comparable" in capsys.readouterr().out


@pytest.mark.slow
def test_script_run_from_the_shell_fails_cleanly(tmp_path, real_mnist_dir) -> None:
    """The script's bad input in a real process: exit 2, one line on stderr, nothing written."""
    result = run_script("--model", str(tmp_path / "missing"), "--sheet", str(tmp_path / "s.png"))
    assert_clean_failure(result, "--model", untouched=[tmp_path / "missing", tmp_path / "s.png"])


@pytest.mark.slow
def test_script_measures_an_exported_model_and_draws_a_sheet(
    wild_bench, tmp_path, real_mnist_dir, monkeypatch, capsys
) -> None:
    from mnist_keras.config import TrainConfig
    from mnist_keras.export import export_saved_model
    from mnist_keras.model import build_model

    model_dir = tmp_path / "mnist"
    export_saved_model(build_model(TrainConfig(hidden_units=16), steps_per_epoch=1), model_dir)
    sheet = tmp_path / "sheet.png"
    # run_script's width, where the console reads it (one made in a pytest-xdist worker keeps
    # its 80; the table's rows hold at either).
    monkeypatch.setenv("COLUMNS", "160")
    code = wild_bench.main(["--model", str(model_dir), "--per-class", "2", "--sheet", str(sheet)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    for kind in wild.KINDS:
        assert any(line.split("│")[1:2] == [f" {kind:<7} "] for line in printed.out.splitlines())
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width > 6 * wild.CELL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist", "sheet.png"]  # no temp file
    assert "82 faces in 19 families" in printed.out and "not comparable" not in printed.out
