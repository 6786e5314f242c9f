"""Export a trained model: a versioned SavedModel for TensorFlow Serving, and the `.keras` file.

The one place in the package that branches on the Keras version (`_write_saved_model`).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from mnist_keras.data import IMAGE_SHAPE
from mnist_keras.errors import ExportError

# The serving contract: documented in the README, checked by the tests. Do not rename.
SIGNATURE = "serving_default"
INPUT_NAME = "images"  # uint8 [None, 28, 28], white digit on black, as MNIST
OUTPUT_PROBABILITIES = "probabilities"  # float32 [None, 10]
OUTPUT_CLASSES = "classes"  # int64 [None]


def export_saved_model(model: keras.Model, export_dir: Path) -> Path:
    """Write the model as version N+1 under `export_dir` (TF Serving's layout); return its path.

    The SavedModel is written to a hidden temporary folder and renamed into place, so a failure
    leaves no half-written version (TF Serving ignores names that are not integers).
    """
    export_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(export_dir)
    tmp = export_dir / f".tmp-{version}-{secrets.token_hex(4)}"
    try:
        _write_saved_model(model, tmp)
        final = export_dir / str(version)
        os.rename(tmp, final)  # fails rather than overwrite if the version appeared meanwhile
        return final
    except OSError as exc:
        raise ExportError(f"{export_dir}: export failed ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def next_version(export_dir: Path) -> int:
    versions = [int(p.name) for p in export_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def save_keras_model(model: keras.Model, path: Path) -> Path:
    """Save the whole model in `.keras` format, atomically."""
    tmp = path.with_name(f".{path.stem}.tmp-{secrets.token_hex(4)}.keras")
    try:
        model.save(str(tmp))
        os.replace(tmp, path)
        return path
    except OSError as exc:
        raise ExportError(f"{path}: saving the model failed ({exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def serving_function(model: keras.Model) -> tf.types.experimental.GenericFunction:
    """uint8 images in; softmax probabilities and the top class out, under stable names."""

    @tf.function(input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), tf.uint8, INPUT_NAME)])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = model(images, training=False)
        return {
            OUTPUT_PROBABILITIES: probabilities,
            OUTPUT_CLASSES: tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }

    return serve


def _write_saved_model(model: keras.Model, path: Path) -> None:
    """Keras 3: ExportArchive, the only route every loader (TF Serving too) reads correctly.
    Keras 2: no ExportArchive; tf.saved_model.save of a tf.Module holding the model."""
    serve = serving_function(model)
    if int(keras.__version__.split(".")[0]) >= 3:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SIGNATURE, serve)
        archive.write_out(str(path), verbose=False)
    else:
        module = tf.Module()
        module.model = model
        module.serve = serve
        tf.saved_model.save(module, str(path), signatures={SIGNATURE: serve})
