"""Shared test helpers: synthetic MNIST-shaped data, IDX writers, TensorBoard tags, CLI runs."""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_keras.config import TrainConfig
from mnist_keras.data import Mnist


def synthetic_mnist(n_train: int = 800, n_test: int = 200, seed: int = 0) -> Mnist:
    """Learnable MNIST-shaped data: each class is a bright block at its own place, over noise."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            row, col = divmod(int(label), 5)
            x[i, 4 + row * 12 : 12 + row * 12, 1 + col * 5 : 6 + col * 5] = 255
        return x, y

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    return Mnist(x_train, y_train, x_test, y_test, source="synthetic")


def small_config(**overrides) -> TrainConfig:
    """A small network for `tiny`. No XLA and no LiteRT files unless a test asks: they cost
    seconds a run, and only the tests of reproducibility (XLA, the default) and of the export
    formats (test_formats) need them."""
    values = dict(
        epochs=3,
        hidden_units=32,
        validation_size=100,
        batch_size=64,
        seed=5,
        jit_compile=False,
        export_formats=("saved_model",),
    )
    return TrainConfig(**{**values, **overrides})


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 0x0000 08 <ndim>, big-endian dims, the bytes."""
    header = bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, data: Mnist, gz: bool = True, sep: str = "-") -> Path:
    """Write `data` as the four canonical IDX files (gzipped or raw, dashed or dotted names)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images": ("idx3", data.x_train),
        "train-labels": ("idx1", data.y_train),
        "t10k-images": ("idx3", data.x_test),
        "t10k-labels": ("idx1", data.y_test),
    }
    for stem, (kind, array) in files.items():
        raw = idx_bytes(array)
        name = f"{stem}{sep}{kind}-ubyte"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def tensorboard_tags(log_dir: Path) -> set[str]:
    """The summary tags in a TensorBoard log folder, plus "<graph>" when it holds a graph."""
    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    return set(events.Tags()["tensors"]) | ({"<graph>"} if events.Tags()["graph"] else set())


def run_cli(command: str, *args: str, cwd: Path | None = None, env: dict | None = None):
    """Run `python -m mnist_keras.<command> ARGS` and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", f"mnist_keras.{command}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
    )


def run_main(command: str, *args: str, cwd: Path | None = None, env: dict | None = None):
    """`mnist_keras.<command>.main(ARGS)` called in this process, as `run_cli` would run it: its
    exit code and what Python printed. Cheaper by an interpreter and a TensorFlow start-up; a
    subprocess (`run_cli`) stays where the process boundary is what is tested (native stderr,
    signals, exit codes as the shell sees them)."""
    main = importlib.import_module(f"mnist_keras.{command}").main
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    os.environ.update({"COLUMNS": "120", **(env or {})})
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's --help
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess([command, *args], code, out.getvalue(), err.getvalue())


def in_new_shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `command` as pasted into a new shell: bash, with no virtual environment activated."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PATH": os.pathsep.join(path), "COLUMNS": "120"},
    )


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """Our `error:` lines on stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_clean_failure(result, message: str, untouched: Sequence[Path] = ()) -> None:
    """Exit 2, one error line that says `message` and nothing else on stderr (no traceback, no
    TensorFlow log), nothing created."""
    assert result.returncode == 2, result.stderr[-3000:]
    errors = error_lines(result)
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert result.stderr.splitlines() == errors, result.stderr[-3000:]
    for path in untouched:
        assert not path.exists(), path
