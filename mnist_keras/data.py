"""Read and validate MNIST-shaped data (IDX, .npz, Keras cache); build tf.data pipelines."""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from mnist_keras.backend import MULTI_STEP_CALLS
from mnist_keras.config import validation_too_large
from mnist_keras.contract import IMAGE_SHAPE
from mnist_keras.errors import ConfigError, DataError, first_line

if TYPE_CHECKING:
    from mnist_keras.config import TrainConfig

ENV_VAR = "MNIST_KERAS_DATA"
NUM_CLASSES = 10
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Each IDX file: (stem, IDX kind, number of dimensions).
IDX_FILES = {
    "x_train": ("train-images", "idx3", 3),
    "y_train": ("train-labels", "idx1", 1),
    "x_test": ("t10k-images", "idx3", 3),
    "y_test": ("t10k-labels", "idx1", 1),
}
DOWNLOAD_TIMEOUT_S = 10  # a download that cannot connect fails in seconds instead of hanging

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Mnist:
    """Validated uint8 images (N, 28, 28) and uint8 labels (N,) for train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # where the arrays came from, for the run's config.json

    def head(self, train: int | None = None, test: int | None = None) -> Mnist:
        """The first `train` training and `test` test examples (all when None)."""
        return Mnist(
            self.x_train[:train],
            self.y_train[:train],
            self.x_test[:test],
            self.y_test[:test],
            self.source,
        )


@dataclass(frozen=True)
class Split:
    """Training examples with a held-out validation part carved from them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def load_mnist(source: PathLike | None = None) -> Mnist:
    """Load from `source`, else $MNIST_KERAS_DATA, else the Keras cache or Keras's download."""
    if source is None and os.environ.get(ENV_VAR):
        try:
            return load_mnist(os.environ[ENV_VAR])
        except DataError as exc:
            raise DataError(f"${ENV_VAR}: {exc}") from exc
    if source is None:
        return _load_from_keras()
    path = Path(source)
    if path.is_dir():
        return read_idx_folder(path)
    if path.is_file():
        return read_npz(path)
    raise DataError(f"{path}: no such file or folder (expected a folder of IDX files or a .npz)")


def source_name(source: PathLike | None = None) -> str:
    """Where `load_mnist(source)` reads from, in words, before it reads."""
    if source is not None:
        return str(source)
    if os.environ.get(ENV_VAR):
        return f"{os.environ[ENV_VAR]} (${ENV_VAR})"
    cache = keras_cache_path()
    return f"{cache} (the Keras cache{'' if cache.is_file() else ', downloaded first'})"


def read_idx_folder(folder: Path) -> Mnist:
    """Read the four IDX files (gzipped or raw, dashed or dotted names) from a folder."""
    paths = {key: _find_idx(folder, stem, kind) for key, (stem, kind, _) in IDX_FILES.items()}
    arrays = {key: read_idx(path, IDX_FILES[key][2]) for key, path in paths.items()}
    for part in ("train", "test"):
        x, y = f"x_{part}", f"y_{part}"
        _check_pair(arrays[x], arrays[y], str(paths[x]), str(paths[y]))
    return Mnist(**arrays, source=str(folder.resolve()))


def _find_idx(folder: Path, stem: str, kind: str) -> Path:
    names = [f"{stem}{sep}{kind}-ubyte{gz}" for sep in ("-", ".") for gz in (".gz", "")]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: missing {names[0]} (or {names[1]}, raw or gzipped)")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes with `ndim` dimensions, checking its header."""
    raw = _read_bytes(path)
    expected_magic = bytes((0, 0, 0x08, ndim))
    if raw[:4] != expected_magic:
        raise DataError(
            f"{path}: wrong magic number 0x{raw[:4].hex()}, expected 0x{expected_magic.hex()}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(
            f"{path}: {len(raw)} bytes, but its header declares shape {dims} "
            f"({expected} bytes): truncated or padded"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as exc:
        reason = "not a valid gzip file" if isinstance(exc, (gzip.BadGzipFile, zlib.error)) else exc
        raise DataError(f"{path}: {reason}") from exc


def read_npz(path: Path) -> Mnist:
    """Read a Keras-style .npz holding x_train, y_train, x_test and y_test."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single array, not a .npz archive of {', '.join(NPZ_KEYS)}")
        with loaded as npz:
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)}")
            arrays = {key: npz[key] for key in NPZ_KEYS}
    except DataError:
        raise
    except Exception as exc:  # a corrupt archive fails in zipfile, zlib, or numpy's header parser
        raise DataError(f"{path}: not a readable .npz file ({first_line(exc)})") from exc
    return _from_arrays(arrays, str(path.resolve()))  # recorded: a resumed run reads it again


def _from_arrays(arrays: dict[str, np.ndarray], source: str) -> Mnist:
    for key in ("x_train", "x_test"):
        if arrays[key].dtype != np.uint8:
            raise DataError(f"{source}: {key} has dtype {arrays[key].dtype}, expected uint8")
    for key in ("y_train", "y_test"):
        if arrays[key].dtype.kind not in "iu":
            raise DataError(f"{source}: {key} has dtype {arrays[key].dtype}, expected integers")
    for part in ("train", "test"):
        x, y = f"x_{part}", f"y_{part}"
        _check_pair(arrays[x], arrays[y], f"{source} [{x}]", f"{source} [{y}]")
    labels = {key: arrays[key].astype(np.uint8) for key in ("y_train", "y_test")}
    return Mnist(arrays["x_train"], labels["y_train"], arrays["x_test"], labels["y_test"], source)


def _check_pair(x: np.ndarray, y: np.ndarray, x_where: str, y_where: str) -> None:
    """Images (N, 28, 28), labels (N,) in 0..9, as many of each, at least one."""
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{x_where}: images have shape {x.shape}, expected (N, 28, 28)")
    if y.ndim != 1:
        raise DataError(f"{y_where}: labels have shape {y.shape}, expected (N,)")
    if len(x) != len(y):
        raise DataError(f"{x_where} has {len(x)} images but {y_where} has {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{x_where}: no examples")
    if y.min() < 0 or y.max() >= NUM_CLASSES:
        raise DataError(f"{y_where}: labels outside 0..9 (found {y.min()}..{y.max()})")


def keras_cache_path() -> Path:
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "datasets" / "mnist.npz"


def _load_from_keras() -> Mnist:
    """Keras's loader reads its cache, or downloads into it; bound the download in time."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # Keras wraps network failures in a bare Exception
        raise DataError(
            f"no MNIST data: no --data given, ${ENV_VAR} is unset, {keras_cache_path()} is "
            f"missing and the download failed ({first_line(exc)}); pass --data FOLDER holding "
            "the four IDX files, or a .npz"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _from_arrays(arrays, str(keras_cache_path()))


def split_validation(x: np.ndarray, y: np.ndarray, size: int, seed: int) -> Split:
    """Carve a seeded random validation set of `size` examples from the training set."""
    if size >= len(x):
        training_set = f"the training set ({len(x)} images)"
        raise ConfigError(validation_too_large(size, len(x), training_set))
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:size], order[size:]
    return Split(x[train], y[train], x[val], y[val])


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
    skip_batches: int = 0,
    whole_batches: bool = False,
) -> tf.data.Dataset:
    """Batches of uint8 images and labels, kept in memory as they are (the model scales them).

    Without a seed: one pass in order, cached (validation, test). With a seed: an endless
    stream in which every pass over the data is a fresh seeded permutation, so `fit` needs
    `steps_per_epoch` (see `batches_per_pass`). Shuffling whole index vectors and gathering
    each batch is about twice as fast as shuffling examples one by one, which matters for a
    model this small. `skip_batches` starts the stream later, so a resumed run sees the
    batches the interrupted one would have seen next. `whole_batches` leaves out the short last
    batch of each pass (a multi-process step splits every batch evenly).
    """
    if shuffle_seed is None:
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, whole_batches)
        dataset = dataset.cache()
        return dataset.prefetch(tf.data.AUTOTUNE).with_options(_shard_by_data())
    images, labels = tf.constant(x), tf.constant(y)
    seed = tf.constant(shuffle_seed, tf.int64)

    def one_pass(index: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(x), dtype=tf.int64), seed=tf.stack([seed, index])
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, whole_batches)

    batches = tf.data.Dataset.counter().flat_map(one_pass).skip(skip_batches)
    gathered = batches.map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    return gathered.prefetch(tf.data.AUTOTUNE).with_options(_shard_by_data())


def _shard_by_data() -> tf.data.Options:
    """Multi-worker training: every worker builds the same seeded stream and takes its share of
    each global batch (the default, sharding by files, cannot apply to in-memory arrays)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def batches_per_pass(n: int, batch_size: int, whole_batches: bool = False) -> int:
    """Steps in one pass over n examples: the last batch possibly short, or left out."""
    return n // batch_size if whole_batches else -(-n // batch_size)


def execution_size(steps: int, wanted: int) -> int:
    """The divisor of `steps` nearest `wanted` (by ratio), as the batches per call into the graph.

    Keras 3 runs only whole executions on an endless dataset, so 430 steps an epoch at 32 per call
    would train 448 (14 x 32) and shift every later epoch; a divisor keeps each epoch exactly
    `steps` long, on Keras 2 and 3 alike.
    """
    divisors = [d for d in range(1, steps + 1) if steps % d == 0]
    return min(divisors, key=lambda d: (abs(math.log(d / wanted)), -d))


def epoch_steps(
    config: TrainConfig, n_train: int, replicas: int = 1, whole_batches: bool = False
) -> int:
    """Steps an epoch: the configured number, or one pass in global batches (all replicas)."""
    global_batch = config.batch_size * replicas
    return config.steps_per_epoch or batches_per_pass(n_train, global_batch, whole_batches)


def whole_epochs(
    config: TrainConfig, n_train: int, replicas: int = 1, whole_batches: bool = False
) -> TrainConfig:
    """`config` with a steps_per_execution that divides the epoch (see `execution_size`), 1
    where the backend runs one batch per call (backend.py)."""
    wanted = config.steps_per_execution if MULTI_STEP_CALLS else 1
    size = execution_size(epoch_steps(config, n_train, replicas, whole_batches), wanted)
    return dataclasses.replace(config, steps_per_execution=size)
