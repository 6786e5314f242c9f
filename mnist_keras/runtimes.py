"""Run an exported model in its own runtime, chosen by the file `--model` names.

- a SavedModel folder, or its model folder (the newest version): TensorFlow;
- a `.onnx` file: ONNX Runtime (the `onnx` extra);
- a `.tflite` file: LiteRT (the `litert` extra), else TensorFlow's own LiteRT interpreter.

Each loads as a `Classifier`: uint8 images [N, 28, 28] in, float32 probabilities [N, 10] out.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import tensorflow as tf

from mnist_keras.contract import (
    INPUT_NAME,
    OUTPUT_CLASSES,
    OUTPUT_PROBABILITIES,
    SIGNATURE,
    SIGNATURE_FLOAT,
)
from mnist_keras.errors import ModelError, first_line
from mnist_keras.quiet import native_stderr

if TYPE_CHECKING:  # export.py runs this module's measure(): no import cycle at run time
    from mnist_keras.export import Exported

EVALUATION_BATCH = 1000  # images per call when measuring accuracy: bounded memory for any format


class Classifier(Protocol):
    path: Path  # what was loaded: a SavedModel version folder or a file

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def load_classifier(path: Path) -> Classifier:
    """The runtime for `path`, by its suffix; ModelError when it cannot run it."""
    if path.suffix == ".onnx":
        return OnnxClassifier(_existing(path))
    if path.suffix == ".tflite":
        return LiteRTClassifier(_existing(path))
    return SavedModelClassifier(path)


def version_of(path: Path) -> str:
    """The export version a loaded path holds: `3` for `.../3/`, `3.onnx` and `3.int8.tflite`."""
    return path.name.split(".")[0]


def accuracy(classifier: Classifier, images: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of `images` the classifier reads as `labels`."""
    batches = range(0, len(images), EVALUATION_BATCH)
    classes = [classifier(images[i : i + EVALUATION_BATCH]).argmax(axis=1) for i in batches]
    return float(np.mean(np.concatenate(classes) == labels)) if len(images) else 0.0


def measure(
    exports: Sequence[Exported], images: np.ndarray, labels: np.ndarray
) -> tuple[Exported, ...]:
    """`exports` with the test accuracy of each, run in its own runtime."""
    return tuple(
        dataclasses.replace(e, test_accuracy=accuracy(load_classifier(e.path), images, labels))
        for e in exports
    )


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"--model {path}: no such file")
    return path


class SavedModelClassifier:
    """The SavedModel's `serving_default` signature, under TensorFlow; `serving_float` too."""

    def __init__(self, model_dir: Path) -> None:
        self.path = resolve_model_dir(model_dir)
        try:
            self._loaded = tf.saved_model.load(str(self.path))  # its signatures read its variables
            signatures = self._loaded.signatures
        except (OSError, ValueError, tf.errors.OpError) as exc:
            raise ModelError(f"--model {self.path}: not a loadable SavedModel ({exc})") from exc
        signature = signatures.get(SIGNATURE)
        inputs = signature.structured_input_signature[1] if signature is not None else {}
        spec = inputs.get(INPUT_NAME)
        if spec is None or spec.dtype != tf.uint8:
            raise ModelError(
                f"--model {self.path}: no {SIGNATURE!r} signature taking uint8 {INPUT_NAME!r}"
            )
        self._serve = signature
        self._serve_float = signatures.get(SIGNATURE_FLOAT)  # exports older than it lack it

    def __call__(self, images: np.ndarray) -> np.ndarray:
        outputs = self._serve(**{INPUT_NAME: tf.constant(images, tf.uint8)})
        return outputs[OUTPUT_PROBABILITIES].numpy()

    @property
    def serving(self):
        """The `serving_default` signature itself (for `formats.signature_to_onnx`)."""
        return self._serve

    @property
    def signatures(self) -> tuple[str, ...]:
        """The contract's signatures this export has."""
        return (SIGNATURE,) if self._serve_float is None else (SIGNATURE, SIGNATURE_FLOAT)

    def from_float(self, images: np.ndarray) -> np.ndarray:
        """Probabilities from `serving_float`: float32 pixels in [0, 1], [N, 28, 28]."""
        if self._serve_float is None:
            raise ModelError(f"--model {self.path}: no {SIGNATURE_FLOAT!r} signature")
        outputs = self._serve_float(**{INPUT_NAME: tf.constant(images, tf.float32)})
        return outputs[OUTPUT_PROBABILITIES].numpy()


def resolve_model_dir(path: Path) -> Path:
    """A SavedModel folder itself, or the newest numbered version inside a model folder."""
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((p for p in path.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    if path.is_dir() and versions and (versions[-1] / "saved_model.pb").is_file():
        return versions[-1]
    raise ModelError(f"--model {path}: no SavedModel here nor in a numbered version folder")


class OnnxClassifier:
    """An `.onnx` export under ONNX Runtime (thread-safe: the demo calls it from a pool)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            import onnxruntime
        except ImportError as exc:
            raise ModelError(
                f"--model {path}: ONNX files run on ONNX Runtime: pip install 'mnist-keras[onnx]'"
            ) from exc
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error types (Fail, InvalidProtobuf, ...)
            problem = first_line(exc)
            raise ModelError(f"--model {path}: not a loadable ONNX model ({problem})") from exc
        inputs = {i.name: i.type for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        if inputs != {INPUT_NAME: "tensor(uint8)"} or OUTPUT_PROBABILITIES not in outputs:
            raise ModelError(_contract_error(path))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._session.run([OUTPUT_PROBABILITIES], {INPUT_NAME: images})[0]


class LiteRTClassifier:
    """A `.tflite` export under LiteRT, float or int8, through its `serving_default` signature."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            interpreter = _interpreter(path)
            self._runner = interpreter.get_signature_runner(SIGNATURE)
        except (ValueError, RuntimeError) as exc:
            problem = first_line(exc)
            raise ModelError(f"--model {path}: not a loadable LiteRT model ({problem})") from exc
        names = interpreter.get_signature_list()[SIGNATURE]
        if names["inputs"] != [INPUT_NAME] or OUTPUT_PROBABILITIES not in names["outputs"]:
            raise ModelError(_contract_error(path))
        self._lock = threading.Lock()  # one interpreter runs one call at a time

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._runner(**{INPUT_NAME: images})[OUTPUT_PROBABILITIES]


def _interpreter(path: Path):
    """LiteRT's interpreter; TensorFlow's copy (deprecated since TF 2.20) when LiteRT is absent."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings(), native_stderr():  # LiteRT announces its CPU delegate
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
        interpreter.allocate_tensors()  # where the delegate is applied, and says so
        return interpreter


def _contract_error(path: Path) -> str:
    return (
        f"--model {path}: expected uint8 {INPUT_NAME!r} in and {OUTPUT_PROBABILITIES!r}, "
        f"{OUTPUT_CLASSES!r} out"
    )
