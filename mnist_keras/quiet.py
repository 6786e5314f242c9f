"""TensorFlow's native log, kept off the console: only the package's own lines reach the user.

TensorFlow 2.21 writes its start-up notices (CUDA probes, oneDNN, CPU features) from C++ before
its log level is read, and the LiteRT converter and interpreter print their own; no setting
turns those off. Native writes to stderr are therefore captured while TensorFlow is imported
(the package's `__init__` hooks the import, so the package does not import TensorFlow itself)
and while a LiteRT file is made or loaded, and shown only when that fails, or always when
MNIST_KERAS_VERBOSE is set (to anything but 0).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

VERBOSE = os.environ.get("MNIST_KERAS_VERBOSE", "0") not in ("", "0")


def native_stderr() -> contextlib.AbstractContextManager[None]:
    """Capture what anything, native code included, writes to stderr in the block (see
    `native_output`)."""
    return native_output(2)


@contextlib.contextmanager
def native_output(fd: int) -> Iterator[None]:
    """Capture what anything, native code included, writes to file descriptor `fd` (1, 2) in
    the block; write it out after all if the block raises, or when VERBOSE."""
    if VERBOSE:
        yield
        return
    stream = sys.stdout if fd == 1 else sys.stderr
    stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        except BaseException:
            _restore(saved, fd, stream)
            capture.seek(0)
            os.write(fd, capture.read())
            raise
        _restore(saved, fd, stream)


def _restore(saved: int, fd: int, stream: Any) -> None:
    stream.flush()
    os.dup2(saved, fd)
    os.close(saved)


def tensorflow_logs_off() -> None:
    """Keep TensorFlow's C++ log to fatal errors and its Python log to errors (its exceptions
    still raise), and have its import, whenever something first asks for it, capture its
    start-up notices: importing the package does not import TensorFlow (a JAX or PyTorch run
    may never need it)."""
    if VERBOSE:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:  # imported before the package: its notices are out
        sys.modules["tensorflow"].get_logger().setLevel(logging.ERROR)
        return
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def _import_tensorflow() -> None:
    with native_stderr():
        import tensorflow as tf

        # Its device probe logs a "CUDA error" on a machine without a GPU, at any log level
        # below 3 (2 is a common setting): spent here, captured. Listing devices leaves the
        # runtime unstarted, so a multi-worker strategy can still be made after it.
        tf.config.list_physical_devices("GPU")
    # Its Python warnings too (retracing hints when a search builds model after model).
    tf.get_logger().setLevel(logging.ERROR)


class _QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The first `import tensorflow`, wherever it comes from (Keras's TensorFlow backend, tf.data,
    an export), made by `_import_tensorflow`; then out of the way."""

    def find_spec(self, name: str, path: object, target: object = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        _import_tensorflow()
        self.real_spec = sys.modules[name].__spec__
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec: Any) -> Any:
        return sys.modules[spec.name]  # imported already, by `_import_tensorflow`

    def exec_module(self, module: Any) -> None:
        module.__spec__ = self.real_spec  # the import system set ours


@functools.cache
def spend_xla_notice() -> None:
    """Spend TF 2.15's once-per-process XLA notice (compat.XLA_NOTICE), captured, on a
    one-addition function. Called when a model is compiled, not at import: a multi-worker
    strategy must be made before any TensorFlow op."""
    import tensorflow as tf

    from mnist_keras.compat import XLA_NOTICE

    if VERBOSE or not XLA_NOTICE:
        return
    with native_stderr():
        tf.function(lambda: tf.constant(0.0) + 1.0, jit_compile=True)()
