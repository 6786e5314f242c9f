from __future__ import annotations

import gzip
import socket

import keras
import numpy as np
import pytest
from helpers import idx_bytes, synthetic_mnist, write_idx_folder

from mnist_keras.data import (
    DOWNLOAD_TIMEOUT_S,
    ENV_VAR,
    batches_per_pass,
    execution_size,
    load_mnist,
    make_dataset,
    source_name,
    split_validation,
)
from mnist_keras.errors import ConfigError, DataError


def _assert_same(a, b) -> None:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("sep", ["-", "."])
def test_idx_folder_round_trip(tmp_path, tiny, gz, sep):
    folder = write_idx_folder(tmp_path / "mnist", tiny, gz=gz, sep=sep)
    loaded = load_mnist(folder)
    _assert_same(loaded, tiny)
    assert loaded.x_train.dtype == np.uint8 and loaded.y_train.dtype == np.uint8


def test_npz_round_trip_casts_integer_labels(tmp_path, tiny):
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=tiny.x_train,
        y_train=tiny.y_train.astype(np.int64),
        x_test=tiny.x_test,
        y_test=tiny.y_test,
    )
    loaded = load_mnist(path)
    _assert_same(loaded, tiny)
    assert loaded.y_train.dtype == np.uint8


def test_explicit_source_wins_over_environment(tmp_path, monkeypatch, tiny):
    other = synthetic_mnist(seed=1)
    monkeypatch.setenv(ENV_VAR, str(write_idx_folder(tmp_path / "env", other)))
    _assert_same(load_mnist(write_idx_folder(tmp_path / "flag", tiny)), tiny)
    _assert_same(load_mnist(), other)


def test_keras_fallback_failure_is_a_clear_bounded_error(monkeypatch, tmp_path):
    seen_timeouts = []

    def offline_load_data(*args, **kwargs):
        seen_timeouts.append(socket.getdefaulttimeout())
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline_load_data)
    with pytest.raises(DataError) as info:
        load_mnist()
    message = str(info.value)
    assert "--data" in message and ENV_VAR in message and str(tmp_path) in message
    assert "\n" not in message
    assert seen_timeouts == [DOWNLOAD_TIMEOUT_S]  # the download cannot hang
    assert socket.getdefaulttimeout() != DOWNLOAD_TIMEOUT_S  # and the timeout is restored


def test_keras_loader_result_is_validated(monkeypatch, tiny):
    bad = ((tiny.x_train, tiny.y_train + 10), (tiny.x_test, tiny.y_test))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda *a, **k: bad)
    with pytest.raises(DataError, match="labels outside 0..9"):
        load_mnist()


def _corrupt(folder, name, content: bytes) -> None:
    (folder / name).write_bytes(content)


GOOD = synthetic_mnist(n_train=30, n_test=20)
CORRUPTIONS = {
    "truncated": (
        "train-images-idx3-ubyte.gz",
        gzip.compress(idx_bytes(GOOD.x_train)[:-7]),
        "truncated or padded",
    ),
    "wrong magic": (
        "train-labels-idx1-ubyte.gz",
        gzip.compress(b"\x00\x00\x08\x03" + idx_bytes(GOOD.y_train)[4:]),
        "wrong magic number",
    ),
    "not 28x28": (
        "t10k-images-idx3-ubyte.gz",
        gzip.compress(idx_bytes(np.zeros((20, 27, 28), np.uint8))),
        r"expected \(N, 28, 28\)",
    ),
    "count mismatch": (
        "t10k-labels-idx1-ubyte.gz",
        gzip.compress(idx_bytes(GOOD.y_test[:-1])),
        "has 20 images but .*t10k-labels-idx1-ubyte.gz has 19 labels",
    ),
    "label out of range": (
        "train-labels-idx1-ubyte.gz",
        gzip.compress(idx_bytes(np.full(30, 10, np.uint8))),
        "labels outside",
    ),
    "not gzip": ("train-images-idx3-ubyte.gz", idx_bytes(GOOD.x_train), "not a valid gzip file"),
    "empty header": ("t10k-labels-idx1-ubyte.gz", gzip.compress(b"\x00\x00"), "wrong magic number"),
    "truncated header": (
        "t10k-images-idx3-ubyte.gz",
        gzip.compress(idx_bytes(GOOD.x_test)[:9]),
        "truncated header",
    ),
    "padded": (
        "train-labels-idx1-ubyte.gz",
        gzip.compress(idx_bytes(GOOD.y_train) + b"\x00"),
        "truncated or padded",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_idx_file_names_file_and_defect(tmp_path, case):
    name, content, defect = CORRUPTIONS[case]
    folder = write_idx_folder(tmp_path / "mnist", GOOD)
    _corrupt(folder, name, content)
    with pytest.raises(DataError, match=defect) as info:
        load_mnist(folder)
    assert str(folder / name) in str(info.value)


def test_missing_idx_file_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "mnist", GOOD)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_mnist(folder)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_mnist(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="missing train-images"):
        load_mnist(tmp_path / "empty")


NPZ_CASES = {
    "missing key": (
        {"x_train": GOOD.x_train, "y_train": GOOD.y_train, "x_test": GOOD.x_test},
        "missing key.*y_test",
    ),
    "float images": (
        {**vars(GOOD), "x_train": GOOD.x_train.astype(np.float32)},
        "x_train has dtype float32",
    ),
    "wrong shape": ({**vars(GOOD), "x_test": GOOD.x_test.reshape(20, 784)}, "expected"),
    "float labels": (
        {**vars(GOOD), "y_test": GOOD.y_test.astype(np.float64)},
        "y_test has dtype float64",
    ),
}


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_bad_npz(tmp_path, case):
    arrays, defect = NPZ_CASES[case]
    arrays = {k: v for k, v in arrays.items() if k != "source"}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=defect):
        load_mnist(tmp_path / "bad.npz")


def test_npz_that_is_not_npz(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match="junk.npz"):
        load_mnist(tmp_path / "junk.npz")


def test_validation_split_is_seeded_disjoint_and_complete(tiny):
    a = split_validation(tiny.x_train, tiny.y_train, 100, seed=7)
    b = split_validation(tiny.x_train, tiny.y_train, 100, seed=7)
    c = split_validation(tiny.x_train, tiny.y_train, 100, seed=8)
    assert len(a.x_val) == 100 and len(a.x_train) == len(tiny.x_train) - 100
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    rows = {x.tobytes() for x in np.concatenate([a.x_train, a.x_val])}
    assert rows == {x.tobytes() for x in tiny.x_train}


def test_validation_split_must_leave_training_data(tiny):
    n = len(tiny.x_train)
    message = f"--validation-size {n} must be smaller than the training set .*use at most {n - 1}"
    with pytest.raises(ConfigError, match=message):
        split_validation(tiny.x_train, tiny.y_train, n, seed=0)


def _labels(dataset, batches: int) -> list[np.ndarray]:
    return [y.numpy() for _, y in dataset.take(batches)]


def test_training_stream_is_seeded_reshuffled_and_complete(tiny):
    steps = batches_per_pass(len(tiny.x_train), 64)
    assert steps == 13  # 800 examples: 12 full batches and one of 32
    first = _labels(make_dataset(tiny.x_train, tiny.y_train, 64, shuffle_seed=3), 2 * steps)
    again = _labels(make_dataset(tiny.x_train, tiny.y_train, 64, shuffle_seed=3), 2 * steps)
    other = _labels(make_dataset(tiny.x_train, tiny.y_train, 64, shuffle_seed=4), steps)
    assert all(np.array_equal(p, q) for p, q in zip(first, again, strict=True))
    pass1, pass2 = np.concatenate(first[:steps]), np.concatenate(first[steps:])
    assert sorted(pass1) == sorted(tiny.y_train) == sorted(pass2)  # each pass sees every example
    assert not np.array_equal(pass1, pass2)  # and in a new order
    assert not np.array_equal(pass1, tiny.y_train) and not np.array_equal(
        pass1, np.concatenate(other)
    )


def test_evaluation_stream_is_one_ordered_pass(tiny):
    batches = list(make_dataset(tiny.x_test, tiny.y_test, 64))
    x, _ = batches[0]
    assert x.dtype == "uint8" and tuple(x.shape) == (64, 28, 28)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), tiny.y_test)


def test_real_mnist(real_mnist_dir):
    mnist = load_mnist(real_mnist_dir)
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert set(np.unique(mnist.y_train)) == set(range(10))


def test_single_npy_is_not_an_npz(tmp_path):
    np.save(tmp_path / "single.npy", np.zeros((30, 28, 28), np.uint8))
    with pytest.raises(DataError, match="single.npy: a single array, not a .npz archive"):
        load_mnist(tmp_path / "single.npy")


def test_bad_environment_path_says_where_it_came_from(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone"))
    with pytest.raises(DataError, match=f"^\\${ENV_VAR}: .*gone: no such file or folder"):
        load_mnist()


@pytest.mark.parametrize(
    "steps, wanted, size",
    [(430, 32, 43), (469, 32, 67), (550, 32, 25), (431, 32, 431), (11, 32, 11), (64, 32, 32)],
)
def test_execution_size_divides_the_epoch_nearest_the_wish(steps, wanted, size):
    assert execution_size(steps, wanted) == size
    assert steps % size == 0


def test_source_name_says_where_the_data_comes_from(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    cache = tmp_path / "keras" / "datasets" / "mnist.npz"
    assert source_name() == f"{cache} (the Keras cache, downloaded first)"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"")
    assert source_name() == f"{cache} (the Keras cache)"
    monkeypatch.setenv(ENV_VAR, "/data/mnist")
    assert source_name() == f"/data/mnist (${ENV_VAR})"
    assert source_name("elsewhere.npz") == "elsewhere.npz"
