"""Train, evaluate and export: `python -m mnist_keras.train` and the `run()` behind it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mnist_keras import __version__, console, runtimes
from mnist_keras.callbacks import EpochTimer, interrupt_between_steps, make_callbacks
from mnist_keras.config import (
    APIS,
    ARCH_DEFAULTS,
    ARCHS,
    OPTIMIZERS,
    PRESETS,
    SCHEDULES,
    STRATEGIES,
    TrainConfig,
    flag_name,
    read_config,
    resolve_config,
)
from mnist_keras.contract import MODEL_NAME
from mnist_keras.data import (
    Mnist,
    Split,
    batches_per_pass,
    execution_size,
    load_mnist,
    make_dataset,
    source_name,
    split_validation,
)
from mnist_keras.distribute import is_chief, make_strategy, xla_allowed
from mnist_keras.errors import ConfigError, MnistKerasError, RunError, first_line
from mnist_keras.evaluate import Evaluation, evaluate, save_pictures
from mnist_keras.export import Exported, export_model, save_keras_model
from mnist_keras.formats import FORMATS, calibration_images
from mnist_keras.model import build_model
from mnist_keras.runs import (
    DEFAULT_RUNS_DIR,
    RunDir,
    create_run_dir,
    open_run_dir,
    read_history,
    scratch_run_dir,
    write_json,
)


class TrainingDiverged(RunError):
    """The loss became NaN; the run folder keeps the last good checkpoint."""


class TrainingInterrupted(RunError):
    """Ctrl-C during training; the run can be resumed from its last finished epoch."""

    def __init__(self, run: RunDir, resume: str | None = None) -> None:
        super().__init__(
            f"interrupted; resume with: python -m mnist_keras.train --resume {resume or run.path}"
        )
        self.run = run


@dataclass(frozen=True)
class TrainResult:
    run: RunDir
    config: TrainConfig
    evaluation: Evaluation
    history: list[dict[str, float]]
    exports: tuple[Exported, ...]  # the SavedModel first
    train_seconds: float  # wall time of model.fit in this process
    samples_per_second: float  # steady state: the first epoch (tracing, warm-up) excluded
    replicas: int = 1  # model copies that shared each step (tf.distribute)

    @property
    def export_path(self) -> Path:
        """The SavedModel's version folder."""
        return self.exports[0].path

    def metrics(self) -> dict[str, Any]:
        """What metrics.json holds."""
        return {
            "status": "completed",
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


@dataclass(frozen=True)
class WorkerResult:
    """How a multi-worker process other than the chief ends: the chief evaluates and exports."""

    history: list[dict[str, float]]
    replicas: int


def run(
    config: TrainConfig,
    runs_dir: Path = DEFAULT_RUNS_DIR,
    resume: Path | None = None,
    datasets: Mnist | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult | WorkerResult:
    """Train `config` in a new run folder under `runs_dir` (or `resume` one), evaluate, export.

    Args:
        datasets: arrays to use instead of loading `config.data` (tests inject data this way).
        callbacks: extra Keras callbacks, such as the CLI's progress display.
    """
    config.validate()
    strategy = make_strategy(config.distribute)  # first: multi-worker must precede any TF op
    data = (datasets or load_mnist(config.data)).head(config.train_samples, config.test_samples)
    split = split_validation(data.x_train, data.y_train, config.validation_size, config.seed)
    replicas = strategy.num_replicas_in_sync
    config = whole_epochs(config, len(split.x_train), replicas)
    config = dataclasses.replace(config, jit_compile=config.jit_compile and xla_allowed(strategy))
    if config.distribute == "multi-worker" and not is_chief():
        return _train_worker(config, split, resume, callbacks, strategy)
    run_dir = open_run_dir(resume) if resume else _start_run(runs_dir, config, data.source)
    history = read_history(run_dir.history_csv)
    if len(history) >= config.epochs and run_dir.best_checkpoint.is_file():
        # Stopped after training, while evaluating or exporting (the backup is gone by then).
        return _finish(config, data, run_dir, history, 0.0, 0.0, replicas)
    history, seconds, throughput = _train(config, split, run_dir, callbacks, strategy)
    return _finish(config, data, run_dir, history, seconds, throughput, replicas)


def _train_worker(
    config: TrainConfig,
    split: Split,
    resume: Path | None,
    callbacks: Sequence[keras.callbacks.Callback],
    strategy: tf.distribute.Strategy,
) -> WorkerResult:
    """A multi-worker process other than the chief: it trains with the others, saving into a
    scratch folder that nobody reads and that is removed at the end."""
    run_dir = scratch_run_dir(resume)
    try:
        history, _, _ = _train(config, split, run_dir, callbacks, strategy)
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(run_dir, str(resume or "<the chief's run folder>")) from exc
    finally:
        shutil.rmtree(run_dir.path, ignore_errors=True)
    return WorkerResult(history, strategy.num_replicas_in_sync)


def _train(
    config: TrainConfig,
    split: Split,
    run_dir: RunDir,
    callbacks: Sequence[keras.callbacks.Callback],
    strategy: tf.distribute.Strategy,
) -> tuple[list[dict[str, float]], float, float]:
    """Fit; return the history, seconds and samples per second, or stop on Ctrl-C or NaN."""
    try:
        timer, seconds = _fit(config, split, run_dir, callbacks, strategy)
    except KeyboardInterrupt as exc:
        raise TrainingInterrupted(run_dir) from exc
    history = read_history(run_dir.history_csv)
    if not history or math.isnan(history[-1].get("loss", math.nan)):
        write_json(run_dir.metrics_json, {"status": "diverged", "history": history})
        kept = (
            f"the last good checkpoint is {run_dir.best_checkpoint}"
            if run_dir.best_checkpoint.is_file()
            else "no epoch finished before it, so no checkpoint was kept"
        )
        raise TrainingDiverged(
            f"loss became NaN at epoch {len(history) or 1}: lower --learning-rate; {kept}"
        )
    return history, seconds, _throughput(config, split, timer, strategy.num_replicas_in_sync)


def epoch_steps(config: TrainConfig, n_train: int, replicas: int = 1) -> int:
    """Steps an epoch: the configured number, or one pass in global batches (all replicas)."""
    return config.steps_per_epoch or batches_per_pass(n_train, config.batch_size * replicas)


def whole_epochs(config: TrainConfig, n_train: int, replicas: int = 1) -> TrainConfig:
    """`config` with a steps_per_execution that divides the epoch (see `execution_size`)."""
    size = execution_size(epoch_steps(config, n_train, replicas), config.steps_per_execution)
    return dataclasses.replace(config, steps_per_execution=size)


def _start_run(runs_dir: Path, config: TrainConfig, source: str) -> RunDir:
    run_dir = create_run_dir(runs_dir)
    record = {"config": config.to_dict(), "data_source": source, "versions": versions()}
    try:
        write_json(run_dir.config_json, record)
    except OSError as exc:
        shutil.rmtree(run_dir.path, ignore_errors=True)  # leave nothing half-made behind
        raise RunError(f"{run_dir.path}: cannot write config.json ({exc.strerror})") from exc
    return run_dir


def versions() -> dict[str, str]:
    return {
        "mnist_keras": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _fit(
    config: TrainConfig,
    split: Split,
    run_dir: RunDir,
    extra: Sequence[keras.callbacks.Callback],
    strategy: tf.distribute.Strategy,
) -> tuple[EpochTimer, float]:
    """Build and fit a fresh model (BackupAndRestore reloads its state on resume)."""
    done = read_history(run_dir.history_csv)  # epochs an interrupted run finished
    replicas = strategy.num_replicas_in_sync
    steps = epoch_steps(config, len(split.x_train), replicas)
    batch = config.batch_size * replicas  # the global batch: --batch-size on every replica
    val = make_dataset(split.x_val, split.y_val, batch) if len(split.x_val) else None
    # Measured before seeding: loading a model draws from the random generators.
    callbacks = make_callbacks(run_dir, _checkpoint_score(run_dir, val), validate=val is not None)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():  # the variables are mirrored on every replica
        model = build_model(config, steps)
    train = make_dataset(split.x_train, split.y_train, batch, config.seed, len(done) * steps)
    start = time.perf_counter()
    with interrupt_between_steps() as interrupt:
        model.fit(
            train,
            validation_data=val,
            epochs=config.epochs,
            steps_per_epoch=steps,
            callbacks=[*callbacks, *extra, interrupt],
            shuffle=False,
            verbose=0,
        )  # the dataset shuffles, seeded
    timer = next(c for c in callbacks if isinstance(c, EpochTimer))
    return timer, time.perf_counter() - start


def _checkpoint_score(run_dir: RunDir, val: tf.data.Dataset | None) -> float | None:
    """Validation accuracy of the best checkpoint on disk (None before the first, or without a
    validation split): the score a resumed run must beat to replace it. Measured, not read from
    history.csv, because a kill can land after an epoch's history row and before its checkpoint
    is in place."""
    if val is None or not run_dir.best_checkpoint.is_file():
        return None
    model = keras.saving.load_model(str(run_dir.best_checkpoint))
    return float(model.evaluate(val, verbose=0, return_dict=True)["accuracy"])


def _best_val_accuracy(history: list[dict[str, float]]) -> float | None:
    scores = [
        row["val_accuracy"] for row in history if not math.isnan(row.get("val_accuracy", math.nan))
    ]
    return max(scores, default=None)


def _throughput(config: TrainConfig, split: Split, timer: EpochTimer, replicas: int) -> float:
    """Training samples per second over the epochs after the first (tracing and warm-up)."""
    per_epoch = (
        config.steps_per_epoch * config.batch_size * replicas
        if config.steps_per_epoch
        else len(split.x_train)
    )
    steady = timer.seconds[1:] or timer.seconds
    return per_epoch * len(steady) / max(sum(steady), 1e-9)


def _finish(
    config: TrainConfig,
    data: Mnist,
    run_dir: RunDir,
    history: list[dict[str, float]],
    seconds: float,
    throughput: float,
    replicas: int,
) -> TrainResult:
    """Evaluate the best checkpoint on the test set (its only use), export it, write metrics."""
    best = keras.saving.load_model(str(run_dir.best_checkpoint))
    evaluation = evaluate(best, data.x_test, data.y_test, config.batch_size)
    save_pictures(evaluation, data.x_test, run_dir, step=len(history))
    calibration = calibration_images(data.x_train, config.seed)
    exports = export_model(best, run_dir.export / MODEL_NAME, config.export_formats, calibration)
    exports = runtimes.measure(exports, data.x_test, data.y_test)
    save_keras_model(best, run_dir.keras_model)
    result = TrainResult(
        run_dir, config, evaluation, history, exports, seconds, throughput, replicas
    )
    write_json(run_dir.metrics_json, result.metrics())
    return result


# TrainConfig fields offered as flags: (value type or choices, metavar, help). --help adds the
# dataclass default, so each default is written once, in config.py.
CONFIG_FLAGS: dict[str, tuple[Any, str, str]] = {
    "data": (
        str,
        "PATH",
        "folder of the four MNIST IDX files, or a .npz "
        "(default: $MNIST_KERAS_DATA, then the Keras cache, then Keras's download)",
    ),
    "arch": (
        list(ARCHS),
        "",
        "network: mlp (784-H-10) or cnn (two convolution + pooling stages, then H units); cnn "
        "starts from "
        + ", ".join(
            flag_name(k) if v is True else f"{flag_name(k)} {v}"
            for k, v in ARCH_DEFAULTS["cnn"].items()
        ),
    ),
    "epochs": (int, "N", "passes over the training data"),
    "batch_size": (int, "N", "examples per step"),
    "hidden_units": (int, "N", "hidden layer width"),
    "learning_rate": (float, "X", "optimizer step size"),
    "dropout": (float, "X", "dropout rate after the hidden layer, in [0, 1)"),
    "input_dropout": (
        float,
        "X",
        "dropout rate on the hidden layer's input (the pixels; cnn: the convolution features), "
        "in [0, 1)",
    ),
    "augment": (
        bool,
        "",
        "randomly shift, rotate and zoom each training image (Keras's preprocessing layers, "
        "inside the model); turns --jit-compile off",
    ),
    "augment_shift": (float, "X", "largest shift, as a fraction of the side"),
    "augment_rotation": (float, "DEG", "largest rotation, in degrees"),
    "augment_zoom": (float, "X", "largest zoom in or out, as a fraction of the side"),
    "schedule": (
        list(SCHEDULES),
        "",
        "learning rate over the run: constant, or cosine decay from --learning-rate to 0",
    ),
    "optimizer": (list(OPTIMIZERS), "", "optimizer"),
    "api": (list(APIS), "", "Keras API that builds the network"),
    "seed": (int, "N", "fixes the validation split, shuffling and initial weights"),
    "validation_size": (
        int,
        "N",
        "examples held out of training to choose the best epoch; 0 trains on all and keeps "
        "the last epoch",
    ),
    "steps_per_epoch": (int, "N", "batches per epoch; the data repeats (default: one pass)"),
    "steps_per_execution": (int, "N", "batches per call into the compiled graph"),
    "distribute": (
        list(STRATEGIES),
        "",
        "tf.distribute strategy: mirrored uses every local GPU (or the CPU), multi-worker the "
        "cluster in TF_CONFIG (Keras 2 only); --batch-size is then per replica",
    ),
    "jit_compile": (
        bool,
        "",
        "XLA-compile the training step: 1.3-2.5x the samples per second on a CPU, reproducible "
        "with --seed",
    ),
    "train_samples": (int, "N", "use only the first N training images"),
    "test_samples": (int, "N", "evaluate on only the first N test images"),
    "export_formats": (
        FORMATS,
        "FORMAT",
        "what to export beside model.keras, each file measured on the test set in its own "
        f"runtime: {', '.join(FORMATS)} (onnx: pip install 'mnist-keras[onnx]')",
    ),
}


def add_config_flags(parser: console.Parser, fields: Sequence[str] = tuple(CONFIG_FLAGS)) -> None:
    """One flag per CONFIG_FLAGS entry in `fields`, defaulting to None so a preset can fill it."""
    for field in fields:
        kind, metavar, text = CONFIG_FLAGS[field]
        default = TrainConfig.__dataclass_fields__[field].default
        if default is not None:
            text = f"{text} ({' '.join(default) if isinstance(default, tuple) else default})"
        if isinstance(kind, tuple):  # several of these choices
            parser.add_argument(
                flag_name(field), nargs="+", choices=kind, metavar=metavar, help=text
            )
        elif isinstance(kind, list):
            parser.add_argument(flag_name(field), choices=kind, help=text)
        elif kind is bool:
            parser.add_argument(flag_name(field), action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(flag_name(field), type=kind, metavar=metavar, help=text)


def build_parser() -> console.Parser:
    p = console.Parser(
        prog="python -m mnist_keras.train",
        description="Train the MNIST classifier, evaluate it on the test set, export it.",
    )
    add_config_flags(p)
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="start from a preset; 'seed' is the TF1 tutorial's 784-64-10 network "
        "(N(0,1) weights, SGD 0.1, batch 100, 2,000 steps); flags override it",
    )
    p.add_argument(
        "--runs-dir",
        metavar="DIR",
        type=Path,
        default=DEFAULT_RUNS_DIR,
        help=f"where new run folders are made ({DEFAULT_RUNS_DIR})",
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
    given = {
        f: getattr(args, f) for f in CONFIG_FLAGS if f != "data" and getattr(args, f) is not None
    }
    if args.resume is None:
        hparams = read_hparams(args.hparams) if args.hparams else {}
        return resolve_config(args.preset, data=args.data, **{**hparams, **given})
    if given or args.preset != "default" or args.hparams:
        raise ConfigError("--resume takes the run's saved configuration; drop the other flags")
    config = read_config(open_run_dir(args.resume).config_json)
    return dataclasses.replace(config, data=args.data or config.data)


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


def main(argv: Sequence[str] | None = None) -> int:
    progress = console.FitProgress()
    try:
        args = build_parser().parse_args(argv)
        config = config_from_args(args)
        console.print_config(
            {**config.to_dict(), "data": source_name(config.data)}, "Configuration"
        )
        result = run(config, args.runs_dir, args.resume, callbacks=[progress])
    except TrainingInterrupted as exc:
        progress.live.stop()
        console.print_error(str(exc))
        return 130
    except TrainingDiverged as exc:
        progress.live.stop()
        console.print_error(str(exc))
        return 1
    except MnistKerasError as exc:
        progress.live.stop()
        console.print_error(str(exc))
        return 2
    except KeyboardInterrupt:  # outside fit: loading data, evaluating, exporting
        progress.live.stop()
        console.print_error("interrupted")
        return 130
    print_result(result)
    return 0


def print_result(result: TrainResult | WorkerResult) -> None:
    if isinstance(result, WorkerResult):
        console.print_line(
            f"worker done: {len(result.history)} epochs, final loss "
            f"{result.history[-1]['loss']:.6f}, {result.replicas} replicas; the chief evaluated, "
            "exported and wrote the run folder"
        )
        return
    figures = {
        "test accuracy": result.evaluation.accuracy,
        "test loss": result.evaluation.loss,
        "epochs": len(result.history),
        "training time": f"{result.train_seconds:.1f} s",
        "samples per second": f"{result.samples_per_second:,.0f}",
        "replicas": result.replicas,
    }
    paths = {
        "run folder": result.run.path,
        "SavedModel": result.export_path,
        "Keras model": result.run.keras_model,
        "TensorBoard": f"tensorboard --logdir {result.run.tensorboard}",
    }
    console.print_summary(figures, paths, result.evaluation.confusion)
    console.print_exports(result.exports)


if __name__ == "__main__":
    sys.exit(main())
