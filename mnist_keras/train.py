"""Train, evaluate and export: `python -m mnist_keras.train` and the `run()` behind it.

The whole story is `run -> fit -> finish`: set up the strategy and the data, fit with
checkpoints (or resume), then evaluate the best checkpoint on the test set and export it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from mnist_keras import console
from mnist_keras.backend import BACKEND, compiled
from mnist_keras.callbacks import EpochTimer, interrupt_between_steps, make_callbacks
from mnist_keras.compat import versions
from mnist_keras.config import (
    TrainConfig,
    add_train_flags,
    read_config,
    resolve_config,
)
from mnist_keras.contract import MODEL_NAME
from mnist_keras.data import (
    Mnist,
    Split,
    epoch_steps,
    load_mnist,
    make_dataset,
    source_name,
    split_validation,
    whole_epochs,
)
from mnist_keras.distribute import Distribution, is_worker, make_distribution, worker_scratch
from mnist_keras.errors import (
    ConfigError,
    PeerLost,
    TrainingDiverged,
    TrainingInterrupted,
    first_line,
)
from mnist_keras.evaluate import Evaluation, evaluate, save_pictures
from mnist_keras.export import Exported, export_measured, save_keras_model
from mnist_keras.flags import given, option_fields
from mnist_keras.formats import calibration_images
from mnist_keras.model import build_model
from mnist_keras.runs import (
    DEFAULT_RUNS_DIR,
    RunDir,
    open_run_dir,
    read_history,
    read_json,
    start_run,
    write_json,
)


@dataclass(frozen=True)
class Fitted:
    """What `fit` leaves: the epochs' history and how fast they trained."""

    history: list[dict[str, float]]
    train_seconds: float  # wall time of model.fit in this process
    samples_per_second: float  # steady state: the first epoch (tracing, warm-up) excluded
    replicas: int  # model copies that shared each step (distribute.py)


@dataclass(frozen=True)
class TrainResult(Fitted):
    """A finished run: what `fit` left, the test-set evaluation and the exports."""

    run: RunDir
    config: TrainConfig
    evaluation: Evaluation
    exports: tuple[Exported, ...]  # the SavedModel first

    @property
    def export_path(self) -> Path:
        """The SavedModel's version folder."""
        return self.exports[0].path

    def metrics(self) -> dict[str, Any]:
        """What metrics.json holds."""
        return {
            "status": "completed",
            "backend": BACKEND,
            "compiled": compiled(self.config.jit_compile),  # backend.compiled
            "epochs_completed": len(self.history),
            **self.evaluation.to_dict(),
            "best_val_accuracy": _best_val_accuracy(self.history),
            "train_seconds": round(self.train_seconds, 3),
            "samples_per_second": round(self.samples_per_second, 1),
            "replicas": self.replicas,
            "export_path": str(self.export_path),
            "exports": [e.to_dict() for e in self.exports],
            "keras_model": str(self.run.keras_model),
            "history": self.history,
        }


def run(
    config: TrainConfig,
    runs_dir: Path = DEFAULT_RUNS_DIR,
    resume: Path | None = None,
    datasets: Mnist | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    distribution: Distribution | None = None,
) -> TrainResult:
    """Train `config` in a new run folder under `runs_dir` (or `resume` one), evaluate, export.

    Args:
        datasets: arrays to use instead of loading `config.data` (tests inject data this way).
        callbacks: extra Keras callbacks, such as the CLI's progress display.
        distribution: `make_distribution(config.distribute)`, when the caller made it already.

    Raises:
        ConfigError: in a multi-worker worker, which trains with `run_worker` instead.
        TrainingInterrupted, TrainingDiverged: see `fit`.
    """
    if is_worker(config.distribute):
        raise ConfigError(
            "--distribute multi-worker: this process is a worker, not the chief; "
            "it trains with run_worker(), and the chief writes the run"
        )
    config, distribution, data, split = _prepare(config, datasets, distribution)
    run_dir = open_run_dir(resume) if resume else _start_run(runs_dir, config, data.source)
    history = read_history(run_dir.history_csv)
    if len(history) >= config.epochs and run_dir.best_checkpoint.is_file():
        # Stopped after training, while evaluating or exporting (the backup is gone by then).
        fitted = Fitted(history, 0.0, 0.0, distribution.replicas)
    else:
        fitted = fit(config, split, run_dir, callbacks, distribution)
    return finish(config, data, run_dir, fitted)


def run_worker(
    config: TrainConfig,
    resume: Path | None = None,
    datasets: Mnist | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    distribution: Distribution | None = None,
) -> Fitted:
    """A multi-worker process other than the chief: train with the others; the chief evaluates,
    exports and writes the run folder."""
    config, distribution, _, split = _prepare(config, datasets, distribution)
    with worker_scratch(resume) as run_dir:
        return fit(config, split, run_dir, callbacks, distribution)


def _prepare(
    config: TrainConfig, datasets: Mnist | None, distribution: Distribution | None
) -> tuple[TrainConfig, Distribution, Mnist, Split]:
    """The distribution, the data and its validation split, and the config as it will run."""
    # First: multi-worker training must start before any TensorFlow or JAX computation.
    distribution = distribution or make_distribution(config.distribute)
    data = (datasets or load_mnist(config.data)).head(config.train_samples, config.test_samples)
    split = split_validation(data.x_train, data.y_train, config.validation_size, config.seed)
    n = len(split.x_train)
    config = whole_epochs(config, n, distribution.replicas, distribution.whole_batches)
    jit_compile = config.jit_compile and distribution.compile_allowed
    return dataclasses.replace(config, jit_compile=jit_compile), distribution, data, split


def _start_run(runs_dir: Path, config: TrainConfig, source: str) -> RunDir:
    return start_run(
        runs_dir, {"config": config.to_dict(), "data_source": source, "versions": versions()}
    )


def fit(
    config: TrainConfig,
    split: Split,
    run_dir: RunDir,
    callbacks: Sequence[keras.callbacks.Callback],
    distribution: Distribution,
) -> Fitted:
    """Fit, saving into `run_dir`; raise TrainingInterrupted on Ctrl-C, TrainingDiverged on NaN."""
    try:
        seconds, samples_per_second = _fit_model(config, split, run_dir, callbacks, distribution)
    except KeyboardInterrupt as exc:
        raise TrainingInterrupted(run_dir) from exc
    except distribution.peer_lost as exc:
        raise PeerLost(run_dir, f"{type(exc).__name__} in a collective") from exc
    history = read_history(run_dir.history_csv)
    if not history or math.isnan(history[-1].get("loss", math.nan)):
        reason = f"loss became NaN at epoch {len(history) or 1}"
        write_json(
            run_dir.metrics_json, {"status": "diverged", "reason": reason, "history": history}
        )
        raise TrainingDiverged(f"{reason}: lower --learning-rate; {_left_after(run_dir, history)}")
    return Fitted(history, seconds, samples_per_second, distribution.replicas)


def _left_after(run_dir: RunDir, history: list[dict[str, float]]) -> str:
    """What a diverged run leaves to use: its best checkpoint, which never holds a NaN."""
    if not run_dir.best_checkpoint.is_file():
        return "no epoch before it ended with finite weights, so no checkpoint was kept"
    finite = [row for row in history[:-1] if math.isfinite(row.get("val_accuracy", math.nan))]
    best = max(finite, key=lambda row: row["val_accuracy"], default=None)
    which = (
        f" (epoch {best['epoch']}, {best['val_accuracy']:.2%} validation accuracy)" if best else ""
    )
    return f"the best model before it{which} is in {run_dir.best_checkpoint}"


def finish(config: TrainConfig, data: Mnist, run_dir: RunDir, fitted: Fitted) -> TrainResult:
    """Evaluate the best checkpoint on the test set (its only use), export it, write metrics."""
    best = keras.saving.load_model(str(run_dir.best_checkpoint))
    evaluation = evaluate(best, data.x_test, data.y_test, config.batch_size)
    save_pictures(evaluation, data.x_test, run_dir, step=len(fitted.history))
    save_keras_model(best, run_dir.keras_model)
    calibration = calibration_images(data.x_train, config.seed)
    exports = export_measured(
        best,
        run_dir.keras_model,
        run_dir.export / MODEL_NAME,
        config.export_formats,
        calibration,
        (data.x_test, data.y_test),
    )
    result = TrainResult(
        **vars(fitted), run=run_dir, config=config, evaluation=evaluation, exports=exports
    )
    write_json(run_dir.metrics_json, result.metrics())
    return result


def _fit_model(
    config: TrainConfig,
    split: Split,
    run_dir: RunDir,
    extra: Sequence[keras.callbacks.Callback],
    distribution: Distribution,
) -> tuple[float, float]:
    """Build and fit a fresh model (BackupAndRestore reloads its state on resume); return the
    seconds it took and its steady samples per second."""
    done = read_history(run_dir.history_csv)  # epochs an interrupted run finished
    whole = distribution.whole_batches
    steps = epoch_steps(config, len(split.x_train), distribution.replicas, whole)
    batch = distribution.global_batch(config.batch_size)  # --batch-size on every replica
    val, val_steps = _validation(split, batch, whole)
    # Measured before seeding, and in this process alone: loading a model draws from the random
    # generators.
    score = _checkpoint_score(run_dir, val, val_steps)
    callbacks = make_callbacks(run_dir, score, validate=val is not None)
    keras.utils.set_random_seed(config.seed)
    with distribution.scope():  # the variables are mirrored on every replica
        model = build_model(config, steps)
    skip = len(done) * steps
    train = make_dataset(split.x_train, split.y_train, batch, config.seed, skip, whole)
    start = time.perf_counter()
    # On JAX, fit shards each global batch between the processes in the distribution's scope.
    with distribution.scope(), interrupt_between_steps() as interrupt:
        model.fit(
            train,
            validation_data=val,
            validation_steps=val_steps,
            epochs=config.epochs,
            steps_per_epoch=steps,
            callbacks=[*callbacks, *extra, interrupt],
            shuffle=False,
            verbose=0,
        )  # the dataset shuffles, seeded
    seconds = time.perf_counter() - start
    per_epoch = steps * batch if config.steps_per_epoch or whole else len(split.x_train)
    timer = next(c for c in callbacks if isinstance(c, EpochTimer))
    return seconds, timer.samples_per_second(per_epoch)


def _validation(
    split: Split, batch: int, whole_batches: bool
) -> tuple[tf.data.Dataset | None, int | None]:
    """The validation batches and, with whole batches, the steps of one pass over them.

    Sharded between processes, a dataset's length is unknown to Keras, which then warns at the
    end of the first pass ("Your input ran out of data"); so it repeats, and Keras reads a pass.
    """
    if not whole_batches:
        return (make_dataset(split.x_val, split.y_val, batch) if len(split.x_val) else None), None
    steps = len(split.x_val) // batch
    val = make_dataset(split.x_val, split.y_val, batch, whole_batches=True).repeat()
    return (val, steps) if steps else (None, None)


def _checkpoint_score(
    run_dir: RunDir, val: tf.data.Dataset | None, steps: int | None
) -> float | None:
    """Validation accuracy of the best checkpoint on disk (None before the first, or without a
    validation split): the score a resumed run must beat to replace it. Measured, not read from
    history.csv, because a kill can land after an epoch's history row and before its checkpoint
    is in place."""
    if val is None or not run_dir.best_checkpoint.is_file():
        return None
    model = keras.saving.load_model(str(run_dir.best_checkpoint))
    return float(model.evaluate(val, steps=steps, verbose=0, return_dict=True)["accuracy"])


def _best_val_accuracy(history: list[dict[str, float]]) -> float | None:
    scores = [
        row["val_accuracy"] for row in history if not math.isnan(row.get("val_accuracy", math.nan))
    ]
    return max(scores, default=None)


def build_parser() -> console.Parser:
    p = console.Parser(
        prog="python -m mnist_keras.train",
        description="Train the MNIST classifier, evaluate it on the test set, export it.",
    )
    add_train_flags(p)
    p.add_argument(
        "--runs-dir",
        metavar="DIR",
        type=Path,
        default=DEFAULT_RUNS_DIR,
        help=f"where new run folders are made (default: {DEFAULT_RUNS_DIR})",
    )
    p.add_argument(
        "--hparams",
        metavar="FILE",
        type=Path,
        help="best_hparams.json from mnist_keras.tune: its values replace the preset's; "
        "flags given here still win",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        type=Path,
        help="continue an interrupted run from its last finished epoch, with its saved "
        "configuration (only --data may be given with it)",
    )
    return p


def config_from_args(args: Any) -> TrainConfig:
    """The config the flags ask for; with --resume, the run's own config (and --data, if given)."""
    flags = given(args, [f for f in option_fields(TrainConfig) if f not in ("data", "preset")])
    if args.resume is None:
        hparams = read_hparams(args.hparams) if args.hparams else {}
        preset = args.preset or TrainConfig.preset
        return resolve_config(preset, data=args.data, **{**hparams, **flags})
    if flags or args.preset or args.hparams:
        raise ConfigError("--resume takes the run's saved configuration; drop the other flags")
    run_dir = open_run_dir(args.resume)
    config = read_config(run_dir.config_json)
    return dataclasses.replace(config, data=args.data or config.data or _read_from(run_dir))


def _read_from(run_dir: RunDir) -> str | None:
    """The data an interrupted run read, wherever it was found ($MNIST_KERAS_DATA, the cache),
    so that its resume reads the same, whatever the new shell's environment says."""
    source = read_json(run_dir.config_json).get("data_source")
    return source if source and Path(source).exists() else None


def read_hparams(path: Path) -> dict[str, Any]:
    """The TrainConfig values in a best_hparams.json written by `mnist_keras.tune`."""
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--hparams {path}: not a readable JSON file ({first_line(exc)})"
        ) from exc
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "preset"}
    if not isinstance(values, dict) or not fields & set(values):
        raise ConfigError(f"--hparams {path}: no training values in it (such as hidden_units)")
    return {k: v for k, v in values.items() if k in fields}


@console.cli()
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    distribution = make_distribution(config.distribute)
    console.print_config(_shown(config, distribution), "Configuration")
    progress = console.FitProgress()
    if is_worker(config.distribute):
        fitted = run_worker(config, args.resume, None, [progress], distribution)
        console.print_worker_result(fitted)
    else:
        result = run(config, args.runs_dir, args.resume, None, [progress], distribution)
        console.print_train_result(result)
    return 0


def _shown(config: TrainConfig, distribution: Distribution) -> dict[str, Any]:
    """The configuration table: the config, where the data comes from, the backend, and the
    global batch where several replicas share a step."""
    shown: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        shown[key] = source_name(config.data) if key == "data" else value
        if key == "batch_size" and distribution.replicas > 1:
            shown["global_batch"] = (
                f"{distribution.global_batch(value)} ({distribution.replicas} replicas)"
            )
    return {**shown, "backend": BACKEND}


if __name__ == "__main__":
    sys.exit(main())
