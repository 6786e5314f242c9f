"""How each export format is produced, on Keras 2 and Keras 3 alike (compat.py holds the one
difference: how the SavedModel is written).

Every format carries the serving contract of `export.py`: uint8 `images` [N, 28, 28] in,
float32 `probabilities` [N, 10] and int64 `classes` out.

- saved_model: `compat.write_saved_model`.
- litert, litert_int8: TensorFlow's LiteRT converter reads the SavedModel's `serving_default`
  signature, on both lines. That keeps the signature's names; Keras 3's own
  `model.export(format="litert")` names its one output `output_0` and drops `classes`, and
  converting the Keras 3 model itself is what breaks (keras-team/keras#18430, tensorflow#63867).
  litert_int8 quantizes weights and activations to int8 after training, calibrated on
  training images; the pixels still enter as uint8 and the probabilities leave as float32.
- onnx: tf2onnx converts the serving `tf.function`, on both lines; Keras 3's own
  `model.export(format="onnx")` refuses a model loaded from a file ("has never called") and
  names its output `output_0`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_keras.contract import INPUT_NAME
from mnist_keras.errors import ConfigError
from mnist_keras.quiet import native_stderr

SAVED_MODEL, ONNX, LITERT, LITERT_INT8 = "saved_model", "onnx", "litert", "litert_int8"
FORMATS = (SAVED_MODEL, ONNX, LITERT, LITERT_INT8)
# The file each format is written to beside the SavedModel's <version>/ folder.
SUFFIXES = {ONNX: ".onnx", LITERT: ".tflite", LITERT_INT8: ".int8.tflite"}
# What writing a format needs beyond TensorFlow and Keras: (modules, the extra that installs them).
NEEDS = {ONNX: (("tf2onnx", "onnx", "onnxruntime"), "onnx")}
ONNX_OPSET = 17  # ONNX Runtime 1.14 and later, onnxruntime-web, ML.NET
CALIBRATION_IMAGES = 500  # training images that set litert_int8's activation ranges


def check_formats(formats: Sequence[str], flag: str) -> None:
    """Raise ConfigError naming `flag` when a format is unknown or its extra is not installed."""
    for name in formats:
        if name not in FORMATS:
            raise ConfigError(f"{flag} {name!r}: must be one of {', '.join(FORMATS)}")
        modules, extra = NEEDS.get(name, ((), ""))
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"{flag} {name} needs {', '.join(missing)}: pip install 'mnist-keras[{extra}]'"
            )


def file_name(version: int, name: str) -> str:
    """`<version>/` for the SavedModel, `<version><suffix>` for the single-file formats."""
    return str(version) if name == SAVED_MODEL else f"{version}{SUFFIXES[name]}"


def to_litert(saved_model: Path, signature: str, calibration: np.ndarray | None = None) -> bytes:
    """The SavedModel's `signature` as a LiteRT flatbuffer; int8 when `calibration` images
    (uint8 [N, 28, 28]) are given to set the activation ranges."""
    import tensorflow as tf  # here: the configuration imports this module, not TensorFlow

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), [signature])
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = _one_at_a_time(calibration)
    with native_stderr():  # the converter prints its settings
        return converter.convert()


def _one_at_a_time(images: np.ndarray) -> Callable[[], object]:
    def dataset():
        for image in images:
            yield [image[None]]

    return dataset


def to_onnx(signature: Any) -> bytes:
    """The serving `tf.function` as an ONNX model with its input and output names."""
    import tf2onnx  # an extra: check_formats says how to install it

    with native_stderr():
        proto, _ = tf2onnx.convert.from_function(
            signature, input_signature=signature.input_signature, opset=ONNX_OPSET
        )
    return proto.SerializeToString()


def signature_to_onnx(serve: Any) -> bytes:
    """A loaded SavedModel's serving signature (`runtimes.SavedModelClassifier.serving`) as ONNX,
    as `to_onnx` converts a model's own: the static page runs an export with no `.onnx` beside
    it. The caller keeps the loaded SavedModel alive: the signature reads its variables."""
    import tensorflow as tf

    spec = serve.structured_input_signature[1][INPUT_NAME]

    @tf.function(input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name=INPUT_NAME)])
    def serving(images):
        return serve(**{INPUT_NAME: images})

    return to_onnx(serving)


def calibration_images(images: np.ndarray, seed: int) -> np.ndarray:
    """CALIBRATION_IMAGES training images drawn with `seed`, for litert_int8."""
    rng = np.random.default_rng(seed)
    count = min(CALIBRATION_IMAGES, len(images))
    return images[np.sort(rng.choice(len(images), count, replace=False))]
