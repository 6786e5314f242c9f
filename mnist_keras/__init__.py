"""mnist-keras: an MNIST classifier built, trained, evaluated and exported with modern Keras.

The public API, importable from here:

    from mnist_keras import TrainConfig, run
    result = run(TrainConfig(epochs=5))           # train, evaluate, export
    result.export_path                            # the SavedModel: see the serving contract

Each name is imported from its module on first use, so importing one module of the package
(`mnist_keras.predict`, say) does not import all the others.
"""

import importlib
from typing import Any

from mnist_keras.quiet import tensorflow_logs_off

# Before any module of ours imports TensorFlow: its start-up notices would bury our output.
tensorflow_logs_off()

__version__ = "0.1.0"

# name -> the module that defines it
_PUBLIC = {
    "run": "mnist_keras.train",
    "TrainResult": "mnist_keras.train",
    "TrainConfig": "mnist_keras.config",
    "resolve_config": "mnist_keras.config",
    "build_model": "mnist_keras.model",
    "load_mnist": "mnist_keras.data",
    "Mnist": "mnist_keras.data",
    "export_model": "mnist_keras.export",
    "load_classifier": "mnist_keras.runtimes",
    "MnistKerasError": "mnist_keras.errors",
    # The serving contract of every export (contract.py).
    "MODEL_NAME": "mnist_keras.contract",
    "SIGNATURE": "mnist_keras.contract",
    "SIGNATURE_FLOAT": "mnist_keras.contract",
    "INPUT_NAME": "mnist_keras.contract",
    "OUTPUT_PROBABILITIES": "mnist_keras.contract",
    "OUTPUT_CLASSES": "mnist_keras.contract",
}
__all__ = [*_PUBLIC, "__version__"]


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mnist_keras' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
