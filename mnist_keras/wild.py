"""Digits in the wild: printed, pen-stroke and photo-style pictures that measure an exported model.

Every picture is generated here, offline and deterministically from a seed, and only ever
measures a model: nothing made here may enter training. Pictures reach the classifier exactly as
`python -m mnist_keras.predict` sends them: `predict.to_mnist` per picture, then one uint8 batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from skimage.morphology import isotropic_dilation, skeletonize

from mnist_keras.data import IMAGE_SHAPE, NUM_CLASSES
from mnist_keras.errors import ConfigError, DataError, ModelError
from mnist_keras.predict import to_mnist

# Debian's fonts-dejavu-core/-extra, fonts-liberation, fonts-freefont-ttf, fonts-urw-base35.
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/truetype/liberation"),
    Path("/usr/share/fonts/truetype/freefont"),
    Path("/usr/share/fonts/opentype/urw-base35"),
)
FONT_SUFFIXES = (".ttf", ".otf")
# What `make fonts` gives on Debian 12, the faces and families docs/results.md's figures were
# measured with: the printed figure depends on the set.
REFERENCE_FONTS = (82, 19)
# These draw digits, but as formula or symbol faces nobody prints numbers in.
NOT_TEXT_FAMILIES = ("Symbol", "Math")
PRINTED = 112  # side of a printed picture in pixels: room around a glyph for its shifts and sizes
CANVAS, PEN = 280, 18  # the demo's canvas and its round pen (demo_static/app.js)
PAPER = (180.0, 240.0)  # photo paper brightness, darkest to lightest
KINDS = ("printed", "strokes", "photo")
PER_CLASS = 100  # pen-stroke and photo pictures per digit

Classifier = Callable[[np.ndarray], np.ndarray]  # uint8 (N, 28, 28) -> probabilities (N, 10)


@dataclass(frozen=True)
class Face:
    path: Path
    family: str
    style: str


@dataclass(frozen=True)
class WildSet:
    """One kind of picture: the pictures, their labels, and what the classifier is fed."""

    kind: str
    images: list[np.ndarray]  # uint8 (H, W) grayscale, sizes vary
    labels: np.ndarray  # uint8 (N,)
    inputs: np.ndarray  # uint8 (N, 28, 28): each picture through predict.to_mnist


@dataclass(frozen=True)
class KindScore:
    kind: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


@dataclass(frozen=True)
class WildScores:
    kinds: tuple[KindScore, ...]

    def __getitem__(self, kind: str) -> KindScore:
        return next(k for k in self.kinds if k.kind == kind)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """Per kind: accuracy, correct and total, for a JSON report."""
        return {
            k.kind: {"accuracy": k.accuracy, "correct": k.correct, "total": k.total}
            for k in self.kinds
        }


def make_set(kind: str, images: list[np.ndarray], labels: Sequence[int]) -> WildSet:
    """A set whose pictures are brought to MNIST form once, as `predict` does, for any model."""
    inputs = np.stack([to_mnist(image) for image in images])
    return WildSet(kind, images, np.asarray(labels, np.uint8), inputs)


# Printed digits ----------------------------------------------------------------------------


def find_faces(dirs: Sequence[Path] = FONT_DIRS) -> list[Face]:
    """Every face in `dirs` that draws ten distinct digits as text, sorted by path."""
    paths = sorted(p for d in dirs if d.is_dir() for p in d.iterdir() if p.suffix in FONT_SUFFIXES)
    faces = [face for face in map(_text_face, paths) if face is not None]
    if not faces:
        where = ", ".join(str(d) for d in dirs)
        raise DataError(f"no usable font faces in {where} (`make fonts` installs them)")
    return faces


def _text_face(path: Path) -> Face | None:
    try:
        font = ImageFont.truetype(str(path), 48)
    except OSError:
        return None
    family, style = font.getname()
    if any(word in (family or "") for word in NOT_TEXT_FAMILIES) or not draws_digits(font):
        return None
    return Face(path, family or path.stem, style or "")


def draws_digits(font: ImageFont.FreeTypeFont) -> bool:
    """Ten non-empty, pairwise different digit glyphs, set on equal advances.

    A missing glyph falls back to one .notdef box for all ten; a dingbat font mapped onto the
    digit codes draws ten different pictures, but unlike text faces' figures (tabular, so
    columns of numbers line up) on unequal advances.
    """
    glyphs = [_glyph(font, str(d)) for d in range(NUM_CLASSES)]
    distinct = len({(g.shape, g.tobytes()) for g in glyphs}) == NUM_CLASSES
    advances = {round(font.getlength(str(d)), 1) for d in range(NUM_CLASSES)}
    return all(g.any() for g in glyphs) and distinct and len(advances) == 1


def _glyph(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray:
    mask = font.getmask(text)
    return np.asarray(mask, np.uint8).reshape(mask.size[1], mask.size[0])


def render_digit(face: Face, digit: int, size: int, centre: tuple[float, float]) -> np.ndarray:
    """Dark ink on a white PRINTED x PRINTED picture, the glyph's box centred at `centre`."""
    font = ImageFont.truetype(str(face.path), size)
    picture = Image.new("L", (PRINTED, PRINTED), 255)
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    x, y = centre[0] - (left + right) / 2, centre[1] - (top + bottom) / 2
    draw.text((x, y), str(digit), font=font, fill=0)
    return np.asarray(picture)


def printed(faces: Sequence[Face], seed: int) -> WildSet:
    """Each face's ten digits twice: large and centred, then smaller and off-centre."""
    rng = np.random.default_rng([seed, KINDS.index("printed")])
    images, labels = [], []
    for face, digit in itertools.product(faces, range(NUM_CLASSES)):
        size = int(rng.integers(56, 80))
        room = (PRINTED - size) / 2  # a digit is about 0.75 em tall, so this keeps it inside
        shift = rng.uniform(-room, room, 2) * 0.6
        images += [
            render_digit(face, digit, 96, (PRINTED / 2, PRINTED / 2)),
            render_digit(face, digit, size, tuple(PRINTED / 2 + shift)),
        ]
        labels += [digit, digit]
    return make_set("printed", images, labels)


# Pen strokes -------------------------------------------------------------------------------


def pick_test_digits(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """`per_class` indices of each digit, chosen with the seed, in class order."""
    rng = np.random.default_rng([seed, KINDS.index("strokes")])
    picks = []
    for digit in range(NUM_CLASSES):
        where = np.flatnonzero(labels == digit)
        if len(where) < per_class:
            raise DataError(
                f"per_class {per_class}: the test set has only {len(where)} images of {digit}"
            )
        picks.append(np.sort(rng.choice(where, per_class, replace=False)))
    return np.concatenate(picks)


def stroke_picture(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit redrawn as the demo canvas draws: a round white pen on black, 280x280."""
    big = Image.fromarray(digit).resize((CANVAS, CANVAS), Image.Resampling.BILINEAR)
    skeleton = skeletonize(np.asarray(big) > 127)
    pen = isotropic_dilation(skeleton, PEN / 2)
    return np.where(pen, 255, 0).astype(np.uint8)


def strokes(
    x_test: np.ndarray, y_test: np.ndarray, seed: int, per_class: int = PER_CLASS
) -> WildSet:
    """Pen-stroke pictures of `per_class` MNIST test digits of each class (never training ones)."""
    picks = pick_test_digits(y_test, per_class, seed)
    return make_set("strokes", [stroke_picture(x_test[i]) for i in picks], y_test[picks])


# Photos and scans --------------------------------------------------------------------------


def photos(sources: Sequence[WildSet], seed: int, per_class: int = PER_CLASS) -> WildSet:
    """Photo-style pictures of `per_class` digits of each class, taken in turn from `sources`."""
    rng = np.random.default_rng([seed, KINDS.index("photo")])
    images, labels = [], []
    for digit, turn in itertools.product(range(NUM_CLASSES), range(per_class)):
        source = sources[turn % len(sources)]
        index = rng.choice(np.flatnonzero(source.labels == digit))
        images.append(photo(ink(source.images[index]), rng))
        labels.append(digit)
    return make_set("photo", images, labels)


def ink(picture: np.ndarray) -> np.ndarray:
    """How much ink (0..1) each pixel holds, cropped to the ink; light or dark paper alike."""
    amount = picture.astype(np.float32) / 255.0
    if np.median(amount) > 0.5:
        amount = 1.0 - amount
    rows, cols = np.nonzero(amount > 0.05)
    return amount[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def photo(amount: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ink, tilted a few degrees, off-centre on uneven paper, slightly blurred and noisy."""
    height, width = _photo_size(rng)
    digit = _scale_and_tilt(amount, height, width, rng)
    top = int(rng.integers(height // 12, height - digit.shape[0] - height // 12 + 1))
    left = int(rng.integers(width // 12, width - digit.shape[1] - width // 12 + 1))
    layer = np.zeros((height, width), np.float32)
    layer[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    shade = rng.uniform(10, 60)
    pixels = _paper(height, width, rng) * (1 - layer) + shade * layer
    blurred = Image.fromarray(np.round(pixels).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2))
    )
    noisy = np.asarray(blurred, np.float32) + rng.normal(0, rng.uniform(2, 5), pixels.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _photo_size(rng: np.random.Generator) -> tuple[int, int]:
    while True:  # a photo is never square
        height, width = (int(n) for n in rng.integers(120, 241, 2))
        if abs(height - width) >= 12:
            return height, width


def _scale_and_tilt(
    amount: np.ndarray, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    scale = min(rng.uniform(0.4, 0.65) * height / amount.shape[0], 0.6 * width / amount.shape[1])
    size = (max(1, round(amount.shape[1] * scale)), max(1, round(amount.shape[0] * scale)))
    layer = Image.fromarray(amount, "F").resize(size, Image.Resampling.BILINEAR)
    tilted = layer.rotate(rng.uniform(-6, 6), Image.Resampling.BILINEAR, expand=True)
    return np.clip(np.asarray(tilted), 0, 1)


def _paper(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Paper lit unevenly: brightness rising linearly in a random direction."""
    dark = rng.uniform(PAPER[0], PAPER[1] - 35)
    light = rng.uniform(dark + 10, dark + 35)
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.indices((height, width), dtype=np.float32)
    ramp = rows * np.sin(angle) + cols * np.cos(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    return dark + (light - dark) * ramp


# Measuring ---------------------------------------------------------------------------------


def build(
    x_test: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
    per_class: int = PER_CLASS,
    faces: Sequence[Face] | None = None,
    on_kind: Callable[[str], None] = lambda kind: None,
) -> tuple[WildSet, ...]:
    """The three sets, built once to measure any number of models.

    `faces` defaults to those `find_faces` finds; `on_kind` hears each kind as it starts.
    """
    _check_test_set(x_test, y_test, per_class)
    faces = find_faces() if faces is None else faces
    on_kind("printed")
    printed_set = printed(faces, seed)
    on_kind("strokes")
    strokes_set = strokes(x_test, y_test, seed, per_class)
    on_kind("photo")
    return printed_set, strokes_set, photos((printed_set, strokes_set), seed, per_class)


def _check_test_set(x_test: np.ndarray, y_test: np.ndarray, per_class: int) -> None:
    if per_class < 1:
        raise ConfigError(f"per_class must be at least 1, got {per_class}")
    if x_test.dtype != np.uint8 or x_test.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"test images are {x_test.dtype} {x_test.shape}, expected uint8 (N, 28, 28)"
        )
    if y_test.shape != (len(x_test),):
        raise DataError(f"test labels have shape {y_test.shape}, expected ({len(x_test)},)")


def classify(classifier: Classifier, wild_set: WildSet) -> np.ndarray:
    """The classifier's class for each picture of the set."""
    probabilities = np.asarray(classifier(wild_set.inputs))
    if probabilities.shape != (len(wild_set.labels), NUM_CLASSES):
        raise ModelError(
            f"the classifier answered shape {probabilities.shape} for "
            f"{len(wild_set.labels)} {wild_set.kind} pictures, expected (N, {NUM_CLASSES})"
        )
    return probabilities.argmax(axis=1)


def tally(sets: Sequence[WildSet], predictions: Sequence[np.ndarray]) -> WildScores:
    """Per-kind scores from each set's predicted classes."""
    return WildScores(
        tuple(
            KindScore(s.kind, int(np.sum(p == s.labels)), len(s.labels))
            for s, p in zip(sets, predictions, strict=True)
        )
    )


def score(classifier: Classifier, sets: Sequence[WildSet]) -> WildScores:
    return tally(sets, [classify(classifier, s) for s in sets])


def measure(
    classifier: Classifier,
    x_test: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
    per_class: int = PER_CLASS,
    faces: Sequence[Face] | None = None,
) -> WildScores:
    """Build the sets from MNIST test digits and the installed fonts, and score one classifier."""
    return score(classifier, build(x_test, y_test, seed, per_class, faces))


# Contact sheet -----------------------------------------------------------------------------

CELL = 112  # each example is shown in a CELL x CELL box ...
THUMB = 56  # ... beside what the model saw, 28x28 drawn twice as large
CAPTION = 18


def contact_sheet(
    sets: Sequence[WildSet], predictions: Sequence[np.ndarray], seed: int = 0, per_kind: int = 12
) -> Image.Image:
    """A grid of examples, one band per kind: up to half wrong ones, the rest random.

    Each example: the picture, what the model saw, and "true -> predicted"; wrong ones in red.
    """
    columns = 6
    bands = [_band(s, p, seed, per_kind, columns) for s, p in zip(sets, predictions, strict=True)]
    sheet = Image.new("RGB", (max(b.width for b in bands), sum(b.height for b in bands)), "white")
    top = 0
    for band in bands:
        sheet.paste(band, (0, top))
        top += band.height
    return sheet


def _band(
    wild_set: WildSet, predicted: np.ndarray, seed: int, count: int, columns: int
) -> Image.Image:
    wrong, others = _examples(wild_set.labels, predicted, seed, count)
    shown = sorted(wrong + others)
    rows = -(-len(shown) // columns)
    width, height = CELL + THUMB + 12, CELL + CAPTION + 8
    band = Image.new("RGB", (columns * width, CAPTION + 8 + rows * height), "white")
    accuracy = float(np.mean(predicted == wild_set.labels))
    title = (
        f"{wild_set.kind}: {accuracy:.1%} of {len(predicted):,} right "
        f"(shown: {len(wrong)} of the wrong ones, {len(others)} at random)"
    )
    ImageDraw.Draw(band).text((4, 4), title, fill="black", font=_caption_font())
    for n, i in enumerate(shown):
        cell = _cell(wild_set.images[i], wild_set.inputs[i], wild_set.labels[i], predicted[i])
        band.paste(cell, ((n % columns) * width, CAPTION + 8 + (n // columns) * height))
    return band


def _examples(
    labels: np.ndarray, predicted: np.ndarray, seed: int, count: int
) -> tuple[list[int], list[int]]:
    """Up to half of `count` among the wrong ones, the rest at random among the others."""
    rng = np.random.default_rng([seed, len(labels)])
    wrong = rng.permutation(np.flatnonzero(predicted != labels))[: count // 2].tolist()
    rest = rng.permutation(np.setdiff1d(np.arange(len(labels)), wrong))
    return wrong, rest[: count - len(wrong)].tolist()


def _cell(picture: np.ndarray, seen: np.ndarray, label: int, predicted: int) -> Image.Image:
    right = int(label) == int(predicted)
    colour = "black" if right else "red"
    cell = Image.new("RGB", (CELL + THUMB + 12, CELL + CAPTION + 8), "white" if right else "pink")
    image = Image.fromarray(picture)
    image.thumbnail((CELL, CELL))
    cell.paste(
        image.convert("RGB"), (2 + (CELL - image.width) // 2, 2 + (CELL - image.height) // 2)
    )
    cell.paste(
        Image.fromarray(seen).resize((THUMB, THUMB), Image.Resampling.NEAREST), (CELL + 6, 2)
    )
    text = f"true {label} -> {predicted}" + ("" if right else "  WRONG")
    ImageDraw.Draw(cell).text((4, CELL + 4), text, fill=colour, font=_caption_font())
    return cell


def _caption_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=13)


def describe(faces: Sequence[Face]) -> str:
    """'N faces in M families' for a report."""
    return _describe(_font_set(faces))


def font_set_note(faces: Sequence[Face]) -> str | None:
    """Why the printed figure is not comparable with docs/results.md's, when `faces` are not the
    set it was measured with; None when they are."""
    if _font_set(faces) == REFERENCE_FONTS:
        return None
    return (
        f"the printed figure is not comparable with docs/results.md's: it was measured on "
        f"{_describe(REFERENCE_FONTS)} (`make fonts`), these are {describe(faces)}"
    )


def _font_set(faces: Sequence[Face]) -> tuple[int, int]:
    return len(faces), len({f.family for f in faces})


def _describe(font_set: tuple[int, int]) -> str:
    return f"{font_set[0]} faces in {font_set[1]} families"
