"""Use an exported model: read digit images, bring them to MNIST form, classify them.

`python -m mnist_keras.predict --model PATH FILE...` (also `mnist-predict`); PATH is a SavedModel,
a `.onnx` or a `.tflite` export, each run by its own runtime (`runtimes.py`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from mnist_keras import console, quiet
from mnist_keras.data import IMAGE_SHAPE, read_idx
from mnist_keras.errors import DataError, first_line
from mnist_keras.runtimes import Classifier, load_classifier

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
BOX = 20  # MNIST: the digit fits a 20x20 box ...
CANVAS = IMAGE_SHAPE[0]  # ... centred by its centre of mass in a 28x28 image
INK = 0.2  # a pixel above this fraction of the brightest one belongs to the digit's box
WORK_SIDE = 512  # pixels: larger pictures are shrunk first, as the digit ends up 20 pixels tall
PAPER_WINDOW = 2  # the background's window is the longer side over this: wider than any stroke
SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8": "JPEG", b"GIF8": "GIF", b"BM": "BMP"}


@dataclass(frozen=True)
class Prediction:
    source: str  # the file, with [index] for files holding several images
    probabilities: np.ndarray  # float32 (10,)

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(int(c), float(self.probabilities[c])) for c in order]


@dataclass(frozen=True)
class Failure:
    source: str
    message: str


def read_images(path: Path) -> np.ndarray:
    """Grayscale uint8 images (N, H, W) from a PNG/JPEG/GIF/BMP, a .npy or an IDX file."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return _read_picture(path)[None]
    if name.endswith(".npy"):
        return _read_npy(path)
    if "idx3" in name:
        return read_idx(path, 3)
    raise DataError(f"{path}: unknown file type (expected PNG, JPEG, GIF, BMP, .npy or IDX)")


def _read_picture(path: Path) -> np.ndarray:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({first_line(exc)})") from exc
    return decode_picture(content, str(path))


def decode_picture(content: bytes, source: str) -> np.ndarray:
    """A PNG, JPEG, GIF or BMP as one grayscale uint8 (H, W) image; `source` names it in errors."""
    try:
        image = tf.io.decode_image(content, expand_animations=False).numpy()
    except (ValueError, tf.errors.OpError) as exc:
        raise DataError(f"{source}: not a readable image ({_undecodable(content)})") from exc
    rgb, alpha = image[..., :3].astype(np.float32), image[..., 3:] / 255.0
    gray = rgb.mean(axis=-1, keepdims=True) if rgb.shape[-1] == 3 else rgb
    if alpha.size:  # transparent parts become white paper, like the page around the ink
        gray = gray * alpha + 255.0 * (1.0 - alpha)
    return np.round(gray[..., 0]).astype(np.uint8)


def _undecodable(content: bytes) -> str:
    """Why TensorFlow could not decode a picture, in our words: its own messages quote its
    internal graph node names."""
    if not content:
        return "the file is empty"
    kind = next((name for sig, name in SIGNATURES.items() if content.startswith(sig)), None)
    if kind is None:
        return "not a PNG, JPEG, GIF or BMP picture"
    return f"a truncated or damaged {kind} file"


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({first_line(exc)})") from exc
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or 0 in array.shape:
        raise DataError(f"{path}: shape {array.shape}, expected (H, W) or (N, H, W) images")
    if array.dtype.kind == "f" and array.size and array.min() >= 0 and array.max() <= 1:
        array = np.round(array * 255)
    elif array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255:
        raise DataError(f"{path}: expected pixels 0..255 (integers) or 0..1 (floats)")
    return array.astype(np.uint8)


def to_mnist(image: np.ndarray) -> np.ndarray:
    """Bring one grayscale image of any size to MNIST form: a (28, 28) uint8 light digit on black.

    As MNIST was made, once the paper's uneven lighting is taken away. The steps, in order:
    1. A picture over 512 pixels on its longer side is shrunk (area average) to 512.
    2. Light paper (its border's median above 127) is inverted: the digit becomes light on dark.
    3. On such paper, the background is subtracted: the picture's grayscale opening, a minimum
       then a maximum over a square window half the longer side, with the edge pixels repeated
       beyond the picture. Strokes are narrower than the window and vanish from it; paper,
       shadows and gradients stay, so they become black. Ink that runs along the picture's edge
       is taken for a shadow too: leave a little paper around the digit. Pictures on dark paper
       (drawings, MNIST) are evenly lit and skip this step.
    4. The border's median is subtracted (the paper's grain becomes black), negatives become 0.
    5. The digit is cropped to the box of the pixels above 20% of the brightest one,
    6. scaled (area, aspect kept) to fit 20x20,
    7. and placed in 28x28 with its centre of mass at the centre, its brightest pixel 255.

    The static demo page runs these steps in the browser (`demo_static/mnist.js`, numbered
    alike; docs/serving.md puts the two side by side); the tests hold a drawing's two results
    within one grey level a pixel.
    """
    pixels = image.astype(np.float32)
    pixels = _resize(pixels, min(1.0, WORK_SIDE / max(pixels.shape)))
    if np.median(_border(pixels)) > 127:  # dark ink on light paper: a photo or a scan
        pixels = 255.0 - pixels
        pixels -= _background(pixels)  # the lighting; drawings and MNIST come on even black
    pixels = np.clip(pixels - np.median(_border(pixels)), 0, None)
    if pixels.max() <= 0:
        return np.zeros(IMAGE_SHAPE, np.uint8)
    digit = _fit_box(_crop(pixels))
    return _place_by_mass(digit * (255.0 / digit.max()))


def _border(pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def _background(pixels: np.ndarray) -> np.ndarray:
    """The grayscale opening of `to_mnist`'s step 3: the picture without its strokes."""
    size = max(3, max(pixels.shape) // PAPER_WINDOW) | 1  # odd: each window centred on its pixel
    # Repeating the edge lets a window reach past it: a shadow that meets the edge at a slant,
    # or a gradient that is darkest there, is as wide as the window beyond the edge.
    margin = size // 2
    padded = np.pad(pixels, margin, mode="edge")
    opened = _dilate(-_dilate(-padded, size), size)
    return opened[margin:-margin, margin:-margin]


def _dilate(pixels: np.ndarray, size: int) -> np.ndarray:
    """The maximum over the size x size window centred on each pixel, cut at the edges."""
    return _window_max(_window_max(pixels, size).T, size).T


def _window_max(pixels: np.ndarray, size: int) -> np.ndarray:
    """The maximum over the `size` pixels of each row centred on each pixel (`size` odd).

    Maxima over 1, 2, 4, ... pixels, each from two of the one before; the window is then two
    overlapping spans of the largest power of two not above `size`. Work that grows with the
    window's logarithm: tf.nn.max_pool2d's grows with the window (see docs/serving.md, "Trying it
    on your own digits").
    """
    spans = np.pad(pixels, ((0, 0), (size // 2, size // 2)), mode="edge")
    span = 1
    while 2 * span <= size:
        spans = np.maximum(spans[:, :-span], spans[:, span:])
        span *= 2
    width = pixels.shape[1]
    return np.maximum(spans[:, :width], spans[:, size - span : size - span + width])


def _crop(pixels: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(pixels > INK * pixels.max())
    return pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _fit_box(pixels: np.ndarray) -> np.ndarray:
    return np.clip(_resize(pixels, BOX / max(pixels.shape)), 0, None)


def _resize(pixels: np.ndarray, scale: float) -> np.ndarray:
    """Area-averaged to `scale` times the size (at least one pixel a side); as is at scale 1."""
    if scale == 1:
        return pixels
    size = [max(1, round(n * scale)) for n in pixels.shape]
    return tf.image.resize(pixels[..., None], size, method="area", antialias=True).numpy()[..., 0]


def _place_by_mass(digit: np.ndarray) -> np.ndarray:
    rows, cols = np.indices(digit.shape)
    total = max(float(digit.sum()), 1e-6)
    center = ((rows * digit).sum() / total, (cols * digit).sum() / total)
    # The offset is rounded to 4 places first: a symmetric stroke's centre falls exactly halfway
    # between two pixels, and the area resize's float32 error would otherwise pick the side
    # (mnist.js, in float64, must pick the same one).
    top, left = (
        int(np.clip(round(round(CANVAS / 2 - c, 4)), 0, CANVAS - n))
        for c, n in zip(center, digit.shape, strict=True)
    )
    canvas = np.zeros(IMAGE_SHAPE, np.float32)
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.round(canvas).astype(np.uint8)


def prepare(images: np.ndarray, source: Path, preprocess: bool) -> np.ndarray:
    """MNIST-form uint8 (N, 28, 28) images from one file's (N, H, W) images."""
    if preprocess:
        return np.stack([to_mnist(image) for image in images])
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{source}: images are {images.shape[1:]}, --no-preprocess needs 28x28")
    return images


def classify_files(
    classifier: Classifier, paths: Sequence[Path], preprocess: bool = True
) -> list[Prediction | Failure]:
    """Classify every image in every file; a bad file becomes a Failure, the rest go on."""
    results: list[Prediction | Failure] = []
    for path in paths:
        try:
            images = prepare(read_images(path), path, preprocess)
        except DataError as exc:
            results.append(Failure(str(path), str(exc)))
            continue
        probabilities = classifier(images)
        names = [str(path)] if len(images) == 1 else [f"{path}[{i}]" for i in range(len(images))]
        results.extend(Prediction(n, p) for n, p in zip(names, probabilities, strict=True))
    return results


def to_json(results: Sequence[Prediction | Failure]) -> list[dict]:
    return [
        {"source": r.source, "error": r.message}
        if isinstance(r, Failure)
        else {"source": r.source, "top": [{"class": c, "probability": p} for c, p in r.top()]}
        for r in results
    ]


def add_model_flag(parser: console.Parser, default: str | None = None) -> None:
    """--model, as every command that reads an export takes it (see `runtimes.load_classifier`);
    optional where `default` says what is read without it."""
    text = MODEL_HELP if default is None else f"{MODEL_HELP} (default: {default})"
    parser.add_argument("--model", type=Path, required=default is None, metavar="PATH", help=text)


MODEL_HELP = (
    "an exported SavedModel or its model folder (newest version) run by TensorFlow, a .onnx file "
    "run by ONNX Runtime, or a .tflite file run by LiteRT"
)


def build_parser() -> console.Parser:
    p = console.Parser(prog="python -m mnist_keras.predict", description=__doc__.splitlines()[0])
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="PNG/JPEG/GIF/BMP images, .npy arrays or IDX image files",
    )
    add_model_flag(p)
    p.add_argument(
        "--no-preprocess",
        action="store_true",
        help="feed 28x28 images as they are: no inversion, cropping or centring",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


@console.cli()
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    classifier = load_classifier(args.model)
    with quiet.native_stderr():  # libjpeg writes its own lines about a damaged JPEG
        results = classify_files(classifier, args.files, not args.no_preprocess)
    failures = [r for r in results if isinstance(r, Failure)]
    for failure in failures:
        console.print_error(failure.message)
    if args.json:
        print(json.dumps(to_json(results), indent=2))
    elif len(failures) < len(results):
        console.print_predictions([r for r in results if isinstance(r, Prediction)])
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
