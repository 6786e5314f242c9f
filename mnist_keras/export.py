"""Export a trained model: a versioned SavedModel for TensorFlow Serving, ONNX and LiteRT files
beside it, and the `.keras` file.

`python -m mnist_keras.export MODEL.keras --out DIR --format ...` exports any trained `.keras`
model; `formats.py` says how each format is produced on Keras 2 and 3, `runtimes.py` runs them.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mnist_keras import console, runtimes
from mnist_keras.backend import BACKEND, TENSORFLOW, tensorflow_backend_env
from mnist_keras.compat import write_saved_model
from mnist_keras.contract import (
    INPUT_NAME,
    MODEL_NAME,
    OUTPUT_CLASSES,
    OUTPUT_PROBABILITIES,
    RESCALE_LAYER,
    SIGNATURE,
    SIGNATURE_FLOAT,
)
from mnist_keras.data import IMAGE_SHAPE, load_mnist
from mnist_keras.dropout import HashDropout
from mnist_keras.errors import ConfigError, ExportError, first_line
from mnist_keras.formats import (
    FORMATS,
    LITERT_INT8,
    ONNX,
    SAVED_MODEL,
    calibration_images,
    check_formats,
    file_name,
    to_litert,
    to_onnx,
)
from mnist_keras.model import compile_model
from mnist_keras.runs import read_json, write_bytes, write_json


@dataclass(frozen=True)
class Exported:
    """One file or folder an export wrote."""

    format: str  # one of formats.FORMATS
    path: Path
    size_bytes: int
    test_accuracy: float | None = None  # measured in the format's own runtime, when asked

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "path": str(self.path)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Exported:
        return cls(**{**values, "path": Path(values["path"])})


def export_measured(
    model: keras.Model,
    keras_file: Path,
    model_dir: Path,
    formats: Sequence[str],
    calibration: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
) -> tuple[Exported, ...]:
    """`export_model` of a trained model, each format measured on the `test` images and labels.

    On the TensorFlow backend, in this process; on the others, a TensorFlow-backend process
    exports `keras_file` (the same model, saved), since every export is a TensorFlow program
    (backend.py says why this route)."""
    if TENSORFLOW:
        return runtimes.measure(export_model(model, model_dir, formats, calibration), *test)
    return _export_in_tensorflow(keras_file, model_dir, formats, calibration, test)


def _export_in_tensorflow(
    keras_file: Path,
    model_dir: Path,
    formats: Sequence[str],
    calibration: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
) -> tuple[Exported, ...]:
    """Run this module's CLI on Keras's TensorFlow backend; its data is a .npz of exactly the
    calibration images (so it draws them all) and the test set."""
    with tempfile.TemporaryDirectory(prefix="mnist-keras-export-") as folder:
        data, result = Path(folder) / "data.npz", Path(folder) / "exports.json"
        labels = np.zeros(len(calibration), np.uint8)
        np.savez(data, x_train=calibration, y_train=labels, x_test=test[0], y_test=test[1])
        command = [sys.executable, "-m", "mnist_keras.export", str(keras_file)]
        command += ["--out", str(model_dir.parent), "--name", model_dir.name]
        command += ["--format", *formats, "--data", str(data), "--json", str(result)]
        done = subprocess.run(command, env=tensorflow_backend_env(), capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise ExportError(
                f"exporting {keras_file} on the TensorFlow backend (this run: {BACKEND}) "
                f"failed: {lines[-1]}"
            )
        return tuple(Exported.from_dict(e) for e in read_json(result)["exports"])


def export_model(
    model: keras.Model,
    model_dir: Path,
    formats: Sequence[str] = (SAVED_MODEL,),
    calibration: np.ndarray | None = None,
) -> list[Exported]:
    """Write the model as version N+1 under `model_dir` (TF Serving's layout) in each format:
    the SavedModel as `<N>/`, the others as `<N>.onnx`, `<N>.tflite`, `<N>.int8.tflite`.

    Every format is converted before anything is written, each file is written to a temporary
    name and renamed into place, and a failure removes what this call wrote: an export appears
    whole or not at all, and an existing version is never overwritten. `calibration` (uint8
    training images, see formats.calibration_images) is required for litert_int8.
    """
    if LITERT_INT8 in formats and calibration is None:
        raise ExportError(f"{LITERT_INT8} needs calibration images from the training split")
    model = with_keras_dropout(model)
    signatures = serving_functions(model)
    written: list[Path] = []
    tmp = None
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        version = next_version(model_dir)
        tmp = model_dir / f".tmp-{version}-{secrets.token_hex(4)}"
        write_saved_model(model, signatures, tmp)
        files = {
            name: _convert(name, tmp, signatures, calibration)
            for name in FORMATS
            if name in formats and name != SAVED_MODEL
        }
        exports = []
        for name, content in files.items():
            path = model_dir / file_name(version, name)
            write_bytes(path, content)
            written.append(path)
            exports.append(Exported(name, path, len(content)))
        if SAVED_MODEL in formats:
            final = model_dir / file_name(version, SAVED_MODEL)
            os.rename(tmp, final)  # fails rather than overwrite if the version appeared meanwhile
            size = sum(f.stat().st_size for f in final.rglob("*") if f.is_file())
            exports.insert(0, Exported(SAVED_MODEL, final, size))
        return exports
    except BaseException as exc:  # Ctrl-C too: no file of a half-written version stays
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ExportError(f"{model_dir}: export failed ({first_line(exc)})") from exc
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def export_saved_model(model: keras.Model, model_dir: Path) -> Path:
    """`export_model` for the SavedModel alone; its version folder."""
    return export_model(model, model_dir)[0].path


def _convert(name: str, saved_model: Path, signatures: dict, calibration) -> bytes:
    try:
        if name == ONNX:
            return to_onnx(signatures[SIGNATURE])
        return to_litert(saved_model, SIGNATURE, calibration if name == LITERT_INT8 else None)
    except Exception as exc:  # the converters raise their own types, and sometimes bare ones
        raise ExportError(f"converting to {name} failed ({first_line(exc)})") from exc


def next_version(model_dir: Path) -> int:
    """One more than any version there, as a folder (`3/`) or a file (`3.onnx`)."""
    stems = (p.name.split(".")[0] for p in model_dir.iterdir())
    return max((int(stem) for stem in stems if stem.isdigit()), default=0) + 1


def save_keras_model(model: keras.Model, path: Path) -> Path:
    """Save the whole model in `.keras` format, atomically, with Keras's own layers only, so the
    file loads wherever Keras does, without this package."""
    tmp = path.with_name(f".{path.stem}.tmp-{secrets.token_hex(4)}.keras")
    try:
        with_keras_dropout(model).save(str(tmp))
        os.replace(tmp, path)
        return path
    except OSError as exc:
        raise ExportError(f"{path}: saving the model failed ({exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def with_keras_dropout(model: keras.Model) -> keras.Model:
    """`model`, or a copy with `keras.layers.Dropout` in place of each HashDropout (the same
    network outside training), for saving: other code then needs only Keras to load it."""
    if not any(isinstance(layer, HashDropout) for layer in model.layers):
        return model
    copy = keras_only_copy(model)
    copy_weights(model, copy)
    return copy


def keras_only_copy(model: keras.Model) -> keras.Model:
    """A new model like `model` with Keras's Dropout for each HashDropout, compiled with the same
    loss, metrics and optimizer (its state too: a file saved from it resumes training as is)."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, HashDropout):
            return keras.layers.Dropout(layer.rate, seed=layer.seed, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    if model.optimizer is not None:
        compile_model(copy, model.optimizer)
    return copy


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Set each of `target`'s layers to the weights of `source`'s layer of the same name."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def serving_functions(model: keras.Model) -> dict[str, tf.types.experimental.GenericFunction]:
    """The exported signatures: uint8 pixels (the default) and float pixels in [0, 1]."""
    after_rescale = _layers_after_rescale(model)

    def from_float(images: tf.Tensor) -> tf.Tensor:
        for layer in after_rescale:
            images = layer(images, training=False)
        return images

    uint8 = tf.TensorSpec((None, *IMAGE_SHAPE), tf.uint8, INPUT_NAME)
    float32 = tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32, INPUT_NAME)
    return {
        SIGNATURE: _signature(lambda images: model(images, training=False), uint8),
        SIGNATURE_FLOAT: _signature(from_float, float32),
    }


def _signature(forward: Callable[[tf.Tensor], tf.Tensor], spec: tf.TensorSpec):
    @tf.function(input_signature=[spec])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = forward(images)
        return {
            OUTPUT_PROBABILITIES: probabilities,
            OUTPUT_CLASSES: tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }

    return serve


def _layers_after_rescale(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers that follow the rescaling; float pixels enter there, exactly as scaled ones."""
    names = [layer.name for layer in model.layers]
    if RESCALE_LAYER not in names:
        raise ExportError(f"model {model.name!r} has no {RESCALE_LAYER!r} layer to bypass")
    return model.layers[names.index(RESCALE_LAYER) + 1 :]


def load_keras_model(path: Path) -> keras.Model:
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        return keras.saving.load_model(str(path))
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, ...
        raise ExportError(f"{path}: not a loadable .keras model ({first_line(exc)})") from exc


def build_parser() -> console.Parser:
    p = console.Parser(
        prog="python -m mnist_keras.export",
        description="Export a trained .keras model as a versioned SavedModel, ONNX and LiteRT "
        "files, and measure each one's test accuracy in its own runtime.",
    )
    p.add_argument("model", type=Path, metavar="MODEL.keras", help="a model saved by train")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="export folder; version N goes to DIR/NAME/N/ (SavedModel), DIR/NAME/N.onnx, "
        "N.tflite and N.int8.tflite",
    )
    p.add_argument(
        "--format",
        nargs="+",
        choices=FORMATS,
        default=[SAVED_MODEL],
        metavar="FORMAT",
        help=f"one or more of {', '.join(FORMATS)} ({SAVED_MODEL}); onnx needs "
        "pip install 'mnist-keras[onnx]'",
    )
    p.add_argument("--name", default=MODEL_NAME, help=f"model name ({MODEL_NAME})")
    p.add_argument(
        "--data",
        metavar="PATH",
        help="MNIST, for the test accuracies and litert_int8's calibration images "
        "(default: $MNIST_KERAS_DATA, then the Keras cache)",
    )
    p.add_argument(
        "--seed", type=int, default=42, help="draws the calibration images (42, as train)"
    )
    p.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="also write the exports (format, path, bytes, test accuracy) to FILE as JSON",
    )
    return p


@console.cli()
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise ConfigError(f"--name {args.name!r} must be a plain folder name")
    check_formats(args.format, "--format")
    model = load_keras_model(args.model)
    data = load_mnist(args.data)
    calibration = calibration_images(data.x_train, args.seed)
    test = (data.x_test, data.y_test)
    exports = export_measured(
        model, args.model, args.out / args.name, args.format, calibration, test
    )
    if args.json:
        write_json(args.json, {"exports": [e.to_dict() for e in exports]})
    console.print_exports(exports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
