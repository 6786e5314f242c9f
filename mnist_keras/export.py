"""Export a trained model: a versioned SavedModel for TensorFlow Serving, and the `.keras` file.

`python -m mnist_keras.export MODEL.keras --out DIR` exports any trained `.keras` model.
The SavedModel is written differently on Keras 2 and 3 (`_write_saved_model`, on
`compat.KERAS_3`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from mnist_keras import console
from mnist_keras.compat import KERAS_3
from mnist_keras.data import IMAGE_SHAPE
from mnist_keras.dropout import HashDropout
from mnist_keras.errors import ConfigError, ExportError, MnistKerasError, first_line
from mnist_keras.model import compile_model

# The serving contract: documented in the README, checked by the tests. Do not rename.
MODEL_NAME = "mnist"  # <export dir>/<MODEL_NAME>/<version>/, TensorFlow Serving's layout
SIGNATURE = "serving_default"  # images: uint8 [None, 28, 28], 0..255, white digit on black
SIGNATURE_FLOAT = "serving_float"  # images: float32 [None, 28, 28], 0.0..1.0, same orientation
INPUT_NAME = "images"
OUTPUT_PROBABILITIES = "probabilities"  # float32 [None, 10]
OUTPUT_CLASSES = "classes"  # int64 [None]
RESCALE_LAYER = "rescale"  # the model's own uint8 -> [0, 1] layer, skipped by SIGNATURE_FLOAT


def export_saved_model(model: keras.Model, model_dir: Path) -> Path:
    """Write the model as version N+1 under `model_dir` (TF Serving's layout); return its path.

    The SavedModel is written to a hidden temporary folder and renamed into place, so a failure
    leaves no half-written version (TF Serving ignores names that are not integers), and an
    existing version is never overwritten.
    """
    model = with_keras_dropout(model)
    signatures = serving_functions(model)
    model_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(model_dir)
    tmp = model_dir / f".tmp-{version}-{secrets.token_hex(4)}"
    try:
        _write_saved_model(model, signatures, tmp)
        final = model_dir / str(version)
        os.rename(tmp, final)  # fails rather than overwrite if the version appeared meanwhile
        return final
    except OSError as exc:
        raise ExportError(f"{model_dir}: export failed ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


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
    """`model` with `keras.layers.Dropout` in place of each HashDropout (the same network outside
    training), compiled with the same loss, metrics and optimizer, for saving: other code then
    needs only Keras to load it."""
    if not any(isinstance(layer, HashDropout) for layer in model.layers):
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, HashDropout):
            return keras.layers.Dropout(layer.rate, seed=layer.seed, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    if model.optimizer is not None:
        compile_model(copy, model.optimizer)  # its state too: the file resumes training as is
    return copy


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


def _write_saved_model(model: keras.Model, signatures: dict, path: Path) -> None:
    """Keras 3: ExportArchive, the only route every loader (TF Serving too) reads correctly.
    Keras 2: no ExportArchive; tf.saved_model.save of a tf.Module holding the model."""
    if KERAS_3:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, function in signatures.items():
            archive.add_endpoint(name, function)
        archive.write_out(str(path), verbose=False)
    else:
        module = tf.Module()
        module.model = model
        tf.saved_model.save(module, str(path), signatures=signatures)


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
        description="Export a trained .keras model as a versioned TensorFlow SavedModel.",
    )
    p.add_argument("model", type=Path, metavar="MODEL.keras", help="a model saved by train")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="export folder; the model goes to DIR/NAME/<next version>/",
    )
    p.add_argument("--name", default=MODEL_NAME, help=f"model name ({MODEL_NAME})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if not args.name or "/" in args.name or args.name.startswith("."):
            raise ConfigError(f"--name {args.name!r} must be a plain folder name")
        path = export_saved_model(load_keras_model(args.model), args.out / args.name)
    except MnistKerasError as exc:
        console.print_error(str(exc))
        return 2
    console.console.print(f"exported {args.model} to {path}", soft_wrap=True, highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
