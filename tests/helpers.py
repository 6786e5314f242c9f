"""Shared test helpers: synthetic MNIST-shaped data, IDX writers, TensorBoard tags, CLI runs."""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import importlib
import importlib.util
import io
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_keras.config import TrainConfig
from mnist_keras.data import Mnist
from mnist_keras.runs import RunDir


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


def default_ctrl_c() -> None:
    """In the child: Ctrl-C as in a terminal, since an ignored SIGINT stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_restored() -> Callable[[], None] | None:
    """What the child runs before exec where this process ignores Ctrl-C (pytest started as a
    background job, or its xdist workers then); nothing otherwise, since code run between fork
    and exec is best avoided in a process with threads (TensorFlow's)."""
    return default_ctrl_c if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else None


def start_cli(command: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """Start `python -m mnist_keras.<command> ARGS`, its output piped, Ctrl-C as in a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", f"mnist_keras.{command}", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        preexec_fn=ctrl_c_restored(),
    )


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], sig: int, limit: float = 240):
    """Send `sig` once `ready()` holds; the process is always ended and reaped."""
    deadline = time.monotonic() + limit
    try:
        while not ready():
            assert proc.poll() is None, "finished before it could be interrupted"
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.02)
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=120)
        return proc.returncode, stderr
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def csv_epochs(run_dir: RunDir) -> list[int]:
    """Epoch numbers in history.csv as written, repeats included (CSVLogger appends)."""
    if not run_dir.history_csv.is_file():
        return []
    with run_dir.history_csv.open(newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def one_epoch_done(runs: Path) -> Callable[[], bool]:
    return lambda: runs.is_dir() and any(csv_epochs(RunDir(p)) for p in runs.iterdir())


@functools.cache
def load_script(name: str) -> ModuleType:
    """scripts/NAME.py as a module, to call its main(argv) in this process."""
    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
