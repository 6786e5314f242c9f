"""Configuration dataclasses: every default in one place, each with what it does and its flag."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_keras.contract import IMAGE_SHAPE
from mnist_keras.errors import ConfigError
from mnist_keras.flags import add_flags, check, flag_name, option
from mnist_keras.formats import FORMATS, LITERT, LITERT_INT8, SAVED_MODEL, check_formats

# Each name and the Keras class it picks (model.py), so the names are written once.
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}
SCHEDULES = ("constant", "cosine")  # the learning rate over training: see model.py
APIS = ("sequential", "functional")
ARCHS = ("mlp", "cnn")  # the network: see model.py
INITIALIZERS = ("glorot", "normal")
STRATEGIES = ("none", "mirrored", "multi-worker")  # see distribute.py
# Flags whose values lie in [0, 1).
UNIT_INTERVAL = (
    "dropout",
    "input_dropout",
    "augment_shift",
    "augment_zoom",
    "beta_1",
    "beta_2",
    "warmup",
)
# A --train-samples too small for the default validation split holds out this fraction of it.
VALIDATION_FRACTION = 10

# Where the convnet's recipe differs from the MLP's (the dataclass defaults); chosen by accuracy
# per CPU-minute (docs/results.md, "The convnet per CPU-minute"). No XLA: its CPU convolutions
# trained the convnet slower, even unaugmented, than it trains augmented without XLA.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {},
    "cnn": {
        "hidden_units": 256,
        "dropout": 0.3,
        "input_dropout": 0.0,
        "epochs": 12,
        "learning_rate": 3e-3,
        "warmup": 0.1,
        "augment": True,
        "augment_shift": 0.08,
        "augment_rotation": 8.0,
        "augment_zoom": 0.08,
        "jit_compile": False,
    },
}


# Starting points other than the defaults (the --preset help says what each is). The benchmark
# measures the default recipe against "v0.1" (figures: docs/results.md, "The default recipe").
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "v0.1": {
        "epochs": 20,
        "hidden_units": 512,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "schedule": "constant",
        "input_dropout": 0.0,
        "dropout": 0.4,
        "jit_compile": False,
    },
    "seed": {
        "hidden_units": 64,
        "initializer": "normal",
        "optimizer": "sgd",
        "learning_rate": 0.1,
        "batch_size": 100,
        "dropout": 0.0,
        "input_dropout": 0.0,
        "schedule": "constant",
        "epochs": 4,
        "steps_per_epoch": 500,
    },
    # A convnet to 99.4% in seconds: 5x5 then 3x3 convolutions, Adam at a high peak rate with
    # short memories, one cycle (docs/results.md, "The convnet per CPU-minute").
    "cnn-fast": {
        "arch": "cnn",
        "conv_filters": (24, 32),
        "conv_kernels": (5, 3),
        "hidden_units": 256,
        "dropout": 0.0,
        "input_dropout": 0.0,
        "augment": False,
        "jit_compile": False,
        "batch_size": 256,
        "learning_rate": 0.01,
        "beta_1": 0.7,
        "beta_2": 0.9,
        "warmup": 0.2,
        "epochs": 3,
    },
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; written to the run's `config.json`.

    Each field with help text is a flag of `train` (and some of `tune`); an invalid value
    raises ConfigError naming its flag when the config is made."""

    # `resolve_config` starts each architecture from its own defaults (ARCH_DEFAULTS).
    arch: str = option(
        "mlp",
        "network: mlp, 784-H-10 as the TF1 tutorial's; cnn, convolution + 2x2 max-pooling "
        "stages (--conv-filters, --conv-kernels) before the same hidden layer, from its own "
        "recipe",
    )
    epochs: int = option(30, "passes over the training split", "N")
    batch_size: int = option(256, "examples per step", "N")
    hidden_units: int = option(768, "width of the hidden ReLU layer", "N")
    conv_filters: tuple[int, ...] = option(
        (32, 64), "cnn: filters of each convolution stage, one number a stage", "N"
    )
    conv_kernels: tuple[int, ...] = option(
        (5, 3), "cnn: each stage's kernel side (valid padding), as many as --conv-filters", "N"
    )
    learning_rate: float = option(
        2e-3, "optimizer step size, where the schedule starts (or peaks, after --warmup)", "X"
    )
    dropout: float = option(0.5, "dropout after the hidden layer, in [0, 1); 0 disables it", "X")
    input_dropout: float = option(
        0.2,
        "dropout on the hidden layer's input (mlp: the pixels; cnn: the convolution features), "
        "in [0, 1)",
        "X",
    )
    augment: bool = option(
        False,
        "random shifts, rotations and zooms of each training image (Keras's preprocessing "
        "layers, inside the model, idle outside training); turns --jit-compile off, since "
        "TensorFlow has no XLA kernel for the image transform",
    )
    augment_shift: float = option(0.1, "largest shift, as a fraction of the image side", "X")
    augment_rotation: float = option(10.0, "largest rotation, in degrees either way", "DEG")
    augment_zoom: float = option(0.1, "largest zoom in or out, as a fraction of the side", "X")
    optimizer: str = option("adam", "the optimizer")
    beta_1: float = option(0.9, "adam: decay of the gradient's running mean, in [0, 1)", "X")
    beta_2: float = option(0.999, "adam: decay of its running square, in [0, 1)", "X")
    schedule: str = option(
        "cosine", "learning rate over the run: cosine decay from --learning-rate to 0, or constant"
    )
    warmup: float = option(
        0.0,
        "cosine: share of the steps in which the rate first rises linearly from a tenth of "
        "--learning-rate to it, in [0, 1)",
        "X",
    )
    api: str = option(
        "sequential", "the Keras API that builds the network (the same network either way)"
    )
    initializer: str = "glorot"  # glorot (Keras default) or normal: N(0, 1) as in the TF1 tutorial
    seed: int = option(42, "fixes the validation split, shuffling and initial weights", "N")
    validation_size: int = option(
        5000,
        "examples held out of training to choose the best epoch; 0 trains on all and keeps the "
        "last epoch (how tune trains its final model); with a smaller --train-samples N and no "
        f"--validation-size, N/{VALIDATION_FRACTION} is held out",
        "N",
    )
    steps_per_epoch: int | None = option(
        None, "batches per epoch, the data repeating (default: one pass)", "N"
    )
    steps_per_execution: int = option(
        32,
        "batches per call into the compiled graph; the run uses the divisor of the epoch's "
        "steps nearest it, recorded in config.json (Keras 3 runs only whole calls)",
        "N",
    )
    jit_compile: bool = option(
        True,
        "XLA-compile the training step: 1.3-2.5x the samples per second on a CPU, "
        "reproducible with --seed on Keras 2 and 3",
    )
    train_samples: int | None = option(None, "use only the first N training images", "N")
    test_samples: int | None = option(None, "evaluate on only the first N test images", "N")
    data: str | None = option(
        None,
        "folder of the four MNIST IDX files, or a .npz (default: $MNIST_KERAS_DATA, then the "
        "Keras cache, then Keras's download)",
        "PATH",
    )
    distribute: str = option(
        "none",
        "how training is spread: mirrored over every local GPU (or the CPU; tf.distribute), "
        "multi-worker over processes (Keras 2: TF_CONFIG; Keras 3: the JAX backend, "
        "KERAS_DISTRIBUTION_*); --batch-size is then per replica",
    )
    # LiteRT by default: the files cost little beside training (see docs/serving.md, "ONNX and
    # LiteRT").
    export_formats: tuple[str, ...] = option(
        (SAVED_MODEL, LITERT, LITERT_INT8),
        "what to export beside model.keras, each file measured on the test set in its own "
        "runtime; saved_model always (the demo and the benchmark read it); onnx needs "
        "pip install 'mnist-keras[onnx]'",
        "FORMAT",
    )
    preset: str = option(
        "default",
        "the values to start from, flags overriding them: seed, the TF1 tutorial's 784-64-10 "
        "network (every weight N(0, 1), SGD 0.1, batch 100, 2,000 steps); v0.1, the default "
        "recipe before this one (784-512-10, dropout 0.4, Adam 1e-3 constant, batch 128, no XLA); "
        "cnn-fast, a convnet in 3 epochs (24 5x5 and 32 3x3 filters, 256 units, no dropout or "
        "augmentation, batch 256, Adam 0.01 with betas 0.7 and 0.9, one cycle)",
    )

    def __post_init__(self) -> None:
        # config.json holds a list; the flag gives a list too.
        object.__setattr__(self, "export_formats", tuple(self.export_formats))
        for name in ("epochs", "batch_size", "hidden_units", "steps_per_execution"):
            check(getattr(self, name) > 0, name, "must be a positive integer")
        check(self.validation_size >= 0, "validation_size", "must be 0 or a positive integer")
        for name in ("steps_per_epoch", "train_samples", "test_samples"):
            value = getattr(self, name)
            check(value is None or value > 0, name, "must be a positive integer")
        if self.train_samples is not None:
            self._check_validation_fits(self.train_samples)
        check(self.learning_rate > 0, "learning_rate", "must be a positive number")
        for name in UNIT_INTERVAL:
            check(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        check(
            self.warmup == 0 or self.schedule == "cosine", "warmup", "goes with --schedule cosine"
        )
        for name in ("beta_1", "beta_2"):
            check(
                self.optimizer == "adam" or getattr(self, name) == getattr(TrainConfig, name),
                name,
                "goes with --optimizer adam",
            )
        self._check_convolutions()
        check(0 <= self.augment_rotation <= 180, "augment_rotation", "must be in [0, 180]")
        check(
            not (self.augment and self.jit_compile),
            "jit_compile",
            "cannot go with --augment: Keras's image transforms have no XLA kernels",
        )
        for name, allowed in CHOICES.items():
            check(getattr(self, name) in allowed, name, f"must be one of {', '.join(allowed)}")
        check_formats(self.export_formats, flag_name("export_formats"))
        check(
            SAVED_MODEL in self.export_formats,
            "export_formats",
            f"must include {SAVED_MODEL}: the demo and the benchmark read each run's SavedModel",
        )

    def _check_convolutions(self) -> None:
        for name in ("conv_filters", "conv_kernels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # config.json: a list
            check(all(n > 0 for n in getattr(self, name)), name, "must be positive integers")
        check(
            len(self.conv_kernels) == len(self.conv_filters),
            "conv_kernels",
            f"must give one kernel a stage: {len(self.conv_filters)} (--conv-filters)",
        )
        side = min(IMAGE_SHAPE)
        for kernel in self.conv_kernels:
            side = (side - kernel + 1) // 2  # a valid convolution, then 2x2 pooling
        check(side >= 1, "conv_kernels", "leave nothing of a 28x28 image: use fewer or smaller")

    def _check_validation_fits(self, n: int) -> None:
        if self.validation_size >= n:
            raise ConfigError(validation_too_large(self.validation_size, n, f"--train-samples {n}"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config from a dict, rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**values)


# The allowed values of each field that has a fixed set, checked when a config is made.
CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ARCHS,
    "schedule": SCHEDULES,
    "optimizer": tuple(OPTIMIZERS),
    "api": APIS,
    "initializer": INITIALIZERS,
    "distribute": STRATEGIES,
    "preset": tuple(PRESETS),
}


def add_train_flags(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """TrainConfig's flags (all, or `names`), each cnn default beside the mlp one."""
    choices = {**CHOICES, "export_formats": FORMATS}
    add_flags(parser, TrainConfig, names, choices, variants={"cnn": ARCH_DEFAULTS["cnn"]})


def resolve_config(preset: str = "default", **overrides: Any) -> TrainConfig:
    """Start from the architecture's defaults and a preset, then apply the overrides that are
    not None. Augmenting turns XLA off unless --jit-compile was asked for."""
    check(preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}, got {preset!r}")
    given = {k: v for k, v in overrides.items() if v is not None}
    arch = given.get("arch", PRESETS[preset].get("arch", TrainConfig.arch))
    check(arch in ARCH_DEFAULTS, "arch", f"must be one of {', '.join(ARCHS)}, got {arch!r}")
    values = {**ARCH_DEFAULTS[arch], **PRESETS[preset], **given}
    if (values.get("train_samples") or 0) > 0 and "validation_size" not in given:
        values["validation_size"] = validation_size_for(
            values["train_samples"], values.get("validation_size", TrainConfig.validation_size)
        )
    if values.get("augment") and "jit_compile" not in given:
        values["jit_compile"] = False
    return TrainConfig(preset=preset, **values)


def validation_size_for(train_samples: int, default: int) -> int:
    """The validation split for `--train-samples` alone: the default, or a fraction of a set too
    small for it."""
    return min(default, train_samples // VALIDATION_FRACTION)


def validation_too_large(size: int, n: int, training_set: str) -> str:
    """The error for a validation split of `size` of `n` training images, naming sizes that fit."""
    return (
        f"--validation-size {size} must be smaller than {training_set}: use at most {n - 1}, "
        f"such as {n // VALIDATION_FRACTION}, or 0 to train on them all"
    )


def read_config(path: Path) -> TrainConfig:
    """Read the `config` section of a run's config.json."""
    try:
        values = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable run config ({exc})") from exc
    return TrainConfig.from_dict(values)


# Each tuner's keras-tuner class (tune.py), so the names are written once.
TUNERS = {"random": "RandomSearch", "bayesian": "BayesianOptimization", "hyperband": "Hyperband"}
# A search's epochs per trial. mlp: the default recipe on all 60,000 images still gains from 20 to
# 40 epochs. cnn: its recipe's epochs. Figures: docs/results.md, "The hyperparameter search".
MAX_EPOCHS = {"mlp": 40, "cnn": 12}
ROLES = ("standalone", "chief", "worker")
# The training flags a search shares with `train`; the searched values are not among them.
SHARED_FLAGS = (
    "data",
    "arch",
    "conv_filters",
    "conv_kernels",
    "batch_size",
    "beta_1",
    "beta_2",
    "schedule",
    "warmup",
    "input_dropout",
    "dropout",
    "augment",
    "augment_shift",
    "augment_rotation",
    "augment_zoom",
    "seed",
    "validation_size",
    "steps_per_execution",
    "jit_compile",
    "train_samples",
    "test_samples",
    "export_formats",
)


@dataclass(frozen=True)
class TuneConfig:
    """A hyperparameter search; `base` holds the data and training values that are not searched."""

    tuner: str = option(
        "random",
        "search strategy: random trains every trial's whole cosine schedule; hyperband scores "
        "most trials after a fraction of it; bayesian needs keras-tuner[bayesian]",
    )
    max_trials: int = option(
        8, "trials for random and bayesian; hyperband sizes itself from --max-epochs", "N"
    )
    max_epochs: int | None = option(
        None,
        "most epochs a trial trains, the span of its learning-rate schedule, and the final "
        "model's epochs (default: " + ", ".join(f"{a}: {n}" for a, n in MAX_EPOCHS.items()) + ")",
        "N",
    )
    executions_per_trial: int = option(1, "models trained per trial, their scores averaged", "N")
    # Off: under the cosine schedule the default recipe peaks at epoch 17-18 of 20, and a
    # patience of 2 stopped it at epoch 13-15 (seeds 1, 2, 3, 42).
    patience: int = option(
        0, "early stopping inside a trial: epochs without a better val_accuracy; 0 is off", "N"
    )
    tune_dropout: bool = option(False, "search the two dropout rates too")
    directory: str = option(
        "artifacts/tuning", "keras-tuner's folder: oracle state, trials, logs", "DIR"
    )
    project_name: str | None = option(
        None,
        "the search's subfolder, for one search: the same one resumes, another is refused "
        "(default: mnist, with _cnn and "
        "_augment added for those networks, so different searches never resume one another)",
        "NAME",
    )
    overwrite: bool = option(False, "start the search over instead of resuming it")
    role: str = option("standalone", "standalone, or chief / worker of a distributed search")
    oracle: str | None = option(None, "the chief's oracle address (chief and workers)", "HOST:PORT")
    worker_id: str | None = option(None, "a worker's unique name", "NAME")
    connect_timeout: float = option(60.0, "seconds a worker waits for the chief's oracle", "S")
    worker_timeout: float = option(
        60.0,
        "seconds a worker may stay silent while it runs a trial before the chief gives the "
        "trial to another; workers report several times within it (give all the same value)",
        "S",
    )
    base: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.max_epochs is None:
            object.__setattr__(self, "max_epochs", MAX_EPOCHS.get(self.base.arch, 1))
        if self.project_name is None:
            cnn = "_cnn" if self.base.arch == "cnn" else ""
            augment = "_augment" if self.base.augment else ""
            object.__setattr__(self, "project_name", f"mnist{cnn}{augment}")
        for name in ("max_trials", "max_epochs", "executions_per_trial"):
            check(getattr(self, name) > 0, name, "must be a positive integer")
        check(self.patience >= 0, "patience", "must be 0 (off) or a positive integer")
        for name in ("connect_timeout", "worker_timeout"):
            check(getattr(self, name) > 0, name, "must be a positive number")
        for name, allowed in TUNE_CHOICES.items():
            check(getattr(self, name) in allowed, name, f"must be one of {', '.join(allowed)}")
        distributed = self.role != "standalone"
        check(distributed == (self.oracle is not None), "oracle", "goes with --role chief|worker")
        check(
            (self.role == "worker") == bool(self.worker_id), "worker_id", "goes with --role worker"
        )
        if self.oracle is not None:
            host, _, port = self.oracle.rpartition(":")
            check(
                bool(host) and port.isdigit(), "oracle", f"must be HOST:PORT, got {self.oracle!r}"
            )
        check(
            self.base.validation_size > 0,
            "validation_size",
            "must be positive: trials are scored on it",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


TUNE_CHOICES: dict[str, tuple[str, ...]] = {"tuner": tuple(TUNERS), "role": ROLES}
