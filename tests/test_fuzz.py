"""Random and mutated bytes into the IDX and .npz readers: valid arrays or DataError, no other."""

from __future__ import annotations

import contextlib
import gzip
import io

import numpy as np
from helpers import idx_bytes, synthetic_mnist
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_keras.data import read_idx, read_npz
from mnist_keras.errors import DataError

SMALL = synthetic_mnist(n_train=20, n_test=10, seed=5)
GOOD_IDX = idx_bytes(SMALL.x_train)
_buffer = io.BytesIO()
np.savez(
    _buffer, x_train=SMALL.x_train, y_train=SMALL.y_train, x_test=SMALL.x_test, y_test=SMALL.y_test
)
GOOD_NPZ = _buffer.getvalue()
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    raw = bytearray(data)
    for position, value in edits:
        raw[position % len(raw)] = value
    return bytes(raw[:cut] if cut is not None else raw)


mutations = st.tuples(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
    st.none() | st.integers(0, 10**6),
)


def _read_idx_bytes(tmp_path, raw: bytes, gz: bool) -> None:
    path = tmp_path / ("fuzz-idx3-ubyte.gz" if gz else "fuzz-idx3-ubyte")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    try:
        images = read_idx(path, 3)
    except DataError:
        return
    assert images.dtype == np.uint8 and images.ndim == 3


@FUZZ
@given(raw=st.binary(max_size=2000), gz=st.booleans())
def test_idx_reader_random_bytes(tmp_path, raw, gz):
    _read_idx_bytes(tmp_path, raw, gz)


@FUZZ
@given(mutation=mutations, gz=st.booleans())
def test_idx_reader_mutated_file(tmp_path, mutation, gz):
    _read_idx_bytes(tmp_path, _mutate(GOOD_IDX, *mutation), gz)


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_gzip_layer_random_bytes(tmp_path, raw):
    path = tmp_path / "fuzz-idx3-ubyte.gz"
    path.write_bytes(raw)
    with contextlib.suppress(DataError):
        read_idx(path, 3)


def _read_npz_bytes(tmp_path, raw: bytes) -> None:
    path = tmp_path / "fuzz.npz"
    path.write_bytes(raw)
    try:
        mnist = read_npz(path)
    except DataError:
        return
    assert mnist.x_train.dtype == np.uint8 and mnist.x_train.shape[1:] == (28, 28)
    assert mnist.y_train.max() < 10


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_npz_reader_random_bytes(tmp_path, raw):
    _read_npz_bytes(tmp_path, raw)


@FUZZ
@given(mutation=mutations)
def test_npz_reader_mutated_file(tmp_path, mutation):
    _read_npz_bytes(tmp_path, _mutate(GOOD_NPZ, *mutation))
