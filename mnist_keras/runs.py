"""Run folders: their layout, creating a fresh one, reopening one to resume, atomic writes, and
finding the newest export among them."""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_keras.errors import NoExportError, RunError

DEFAULT_RUNS_DIR = Path("artifacts") / "runs"


def _file(*parts: str) -> property:
    return property(lambda self: self.path.joinpath(*parts), doc="/".join(parts))


@dataclass(frozen=True)
class RunDir:
    """The files of one run, all under `path`."""

    path: Path

    config_json = _file("config.json")
    metrics_json = _file("metrics.json")
    history_csv = _file("history.csv")
    tensorboard = _file("tensorboard")
    best_checkpoint = _file("checkpoints", "best.keras")
    # Where ModelCheckpoint saves a new best epoch's weights, before the model is published as
    # `best_checkpoint` (callbacks.PublishCheckpoint).
    checkpoint_partial = _file("checkpoints", ".partial.weights.h5")
    backup = _file("backup")
    export = _file("export")
    keras_model = _file("model.keras")
    confusion_png = _file("confusion_matrix.png")
    misread_png = _file("misread_digits.png")


def create_run_dir(runs_dir: Path) -> RunDir:
    """Make a new, uniquely named run folder; two runs started together never share one."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        # mkdir is atomic: if another process took the name first we get FileExistsError.
        while True:
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            try:
                (runs_dir / name).mkdir()
                return RunDir(runs_dir / name)
            except FileExistsError:
                continue
    except OSError as exc:
        raise RunError(f"{runs_dir}: cannot create a run folder ({exc.strerror})") from exc


def start_run(runs_dir: Path, record: dict[str, Any]) -> RunDir:
    """A new run folder with `record` as its config.json; nothing is left if writing fails."""
    run = create_run_dir(runs_dir)
    try:
        write_json(run.config_json, record)
    except OSError as exc:
        shutil.rmtree(run.path, ignore_errors=True)
        raise RunError(f"{run.path}: cannot write config.json ({exc.strerror})") from exc
    return run


def open_run_dir(path: Path) -> RunDir:
    """Reopen an unfinished run to resume it."""
    run = RunDir(path)
    if not run.config_json.is_file():
        raise RunError(f"--resume {path}: not a run folder (no config.json)")
    if read_json(run.metrics_json).get("status") == "completed":
        raise RunError(f"--resume {path}: this run already completed")
    return run


def scratch_run_dir(resume: Path | None) -> RunDir:
    """A temporary run folder for a worker that is not the chief (multi-worker training).

    Such a worker still saves what the chief saves (TensorFlow needs every worker in a save),
    but somewhere nobody reads. Resuming, it starts from the chief's backup, history and best
    checkpoint, so all workers restore the same epoch and measure the same checkpoint to beat
    (workers that disagreed on whether to save would wait on each other's collectives).
    """
    source = open_run_dir(resume) if resume is not None else None
    run = RunDir(Path(tempfile.mkdtemp(prefix="mnist-keras-worker-")))
    if source is not None:
        for path in (source.history_csv, source.best_checkpoint):
            if path.is_file():
                target = run.path / path.relative_to(source.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        if source.backup.is_dir():
            shutil.copytree(source.backup, run.backup)
    return run


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when the file does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable JSON ({exc})") from exc


def write_json(path: Path, data: Any) -> None:
    """Write strict JSON atomically: a reader sees the old complete file or the new one, never a
    part. JSON has no NaN or infinity (strict parsers and JavaScript's JSON.parse refuse them), so
    such a number is written as null; whoever writes one says why beside it."""
    text = json.dumps(_strict(data), indent=2, allow_nan=False, default=str)
    write_bytes(path, (text + "\n").encode())


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` atomically: a reader sees the old complete file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # as open() would make it: mkstemp's 0600 hides it
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _strict(value: Any) -> Any:
    """`value` with numpy arrays and scalars as lists and numbers, non-finite floats as None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def read_history(path: Path) -> list[dict[str, float]]:
    """Per-epoch metrics from CSVLogger, one row per epoch (a resumed epoch's last row wins)."""
    if not path.is_file():
        return []
    rows: dict[int, dict[str, float]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            epoch = int(row.pop("epoch"))
            rows[epoch] = {key: _to_float(value) for key, value in row.items()}
    return [{"epoch": epoch + 1, **rows[epoch]} for epoch in sorted(rows)]


def _to_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def newest_export(runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """The SavedModel version folder written last by any run under `runs_dir`.

    Raises NoExportError when no run there has exported a model yet.
    """
    # Newest by when saved_model.pb was written, not by the run folder's name: the name records
    # when a run started, and a resumed or slower run exports after runs started later. Only
    # numbered version folders count; the export writes a hidden temporary folder and renames
    # it into place, so a numbered one is always complete. Ties (copies made in the same
    # instant) go to the later run name, then the higher version.
    found = []
    for saved_model in runs_dir.glob("*/export/*/*/saved_model.pb"):
        version = saved_model.parent  # <run>/export/<model>/<version>
        mtime = _mtime_ns(saved_model)
        if version.name.isdigit() and mtime is not None:
            found.append((mtime, version.parents[2].name, int(version.name), version))
    if not found:
        raise NoExportError(
            f"no exported model under {runs_dir}: train one with `make train`, or pass --model DIR"
        )
    return max(found)[-1]


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:  # removed since the glob saw it (a run folder being deleted)
        return None
