"""Benchmarks against peers: `python -m benchmarks.bench` from the checkout (also `make bench`).

Everything runs one after another, so the figures compare as ratios; in one process, but for
PyTorch (which slows TensorFlow down once imported: `in_child`) and the Keras backends (Keras
reads its backend once: benchmarks/backends.py). Peers that
are not installed (PyTorch, scikit-learn) are reported as skipped. The TF1 graph loop is the
tutorial this package replaces, kept as the historical reference: the only `tf.compat.v1` in the
repository, outside the installed package.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from benchmarks import torch_peers
from benchmarks.backends import measure_backends
from benchmarks.plot import DEFAULT_PICTURE, draw_report
from benchmarks.report import print_report
from benchmarks.timing import batch_of, latency_and_throughput
from mnist_keras import console, wild
from mnist_keras.callbacks import EpochTimer
from mnist_keras.compat import versions
from mnist_keras.config import TrainConfig, resolve_config
from mnist_keras.data import (
    Mnist,
    batches_per_pass,
    epoch_steps,
    load_mnist,
    make_dataset,
    split_validation,
    whole_epochs,
)
from mnist_keras.errors import ConfigError
from mnist_keras.export import export_model
from mnist_keras.flags import add_flags, check, given, option, option_fields
from mnist_keras.formats import FORMATS, calibration_images, check_formats
from mnist_keras.model import build_model
from mnist_keras.runs import write_json
from mnist_keras.runtimes import load_classifier
from mnist_keras.train import run

SHAPES = ((64, 100), (128, 128))  # (hidden units, batch size)
LEARNING_RATE = 1e-3  # Adam, for every peer but the TF1 reference (SGD 0.1, as the tutorial)


# The recipes the benchmark trains as `train` does and draws: each name and train's values.
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "v0.1": {"preset": "v0.1"},
    "seed": {"preset": "seed"},
    "cnn": {"arch": "cnn"},
    "cnn-fast": {"preset": "cnn-fast"},
}
TORCH_EAGER = "torch-eager"  # the MLP default's network and recipe in PyTorch's eager loop
NO_RECIPES = "none"


@dataclass(frozen=True)
class BenchConfig:
    data: str | None = option(None, "as train's --data", "PATH")
    epochs: int = option(3, "epochs per timed run; the first (tracing, warm-up) is excluded", "N")
    repeats: int = option(3, "runs per figure; the median is reported", "N")
    train_samples: int | None = option(
        None,
        "a training slice, for a quick check; the recipes and architectures then hold out "
        "what train --train-samples N holds out",
        "N",
    )
    throughput: bool = option(
        True,
        "time training every way (this package, Keras on NumPy arrays, raw TF2, PyTorch, "
        "scikit-learn, the TF1 tutorial) against the matrix-product ceiling, and the time the "
        "default recipe takes to 98% test accuracy, cnn-fast to 99%",
    )
    latency_calls: int = option(1000, "batch-1 calls timed for the latency percentiles", "N")
    recipes: tuple[str, ...] = option(
        (*RECIPES, TORCH_EAGER),
        "recipes trained as train does, with each --recipe-seeds seed, and read the MNIST test "
        "set and the digits in the wild: default (the MLP), v0.1, seed, cnn (its defaults), "
        f"cnn-fast; {TORCH_EAGER}, the MLP default in PyTorch's eager loop; none skips them",
        "NAME",
    )
    recipe_seeds: tuple[int, ...] = option((1, 2, 3, 42), "the seeds of each recipe", "N")
    picture: str = option(
        DEFAULT_PICTURE,
        "where the recipes' test accuracy against fit seconds is drawn (again from a report: "
        "python -m benchmarks.plot REPORT.json)",
        "PNG",
    )
    architectures: bool = option(
        True,
        "train mlp and cnn, with and without --augment, as train does, and read the MNIST test "
        "set and the digits in the wild with each (per-digit pictures)",
    )
    architecture_epochs: int | None = option(
        None, "epochs of each architecture, for a quick check (default: its recipe's)", "N"
    )
    wild_per_class: int = option(
        wild.PER_CLASS, "pen-stroke and photo pictures per digit in the wild sets", "N"
    )
    export_formats: tuple[str, ...] | None = option(
        None,
        "what the recipes and architectures export beside model.keras, as train's "
        "--export-formats (default: train's)",
        "FORMAT",
    )
    backends: bool = option(
        True,
        "train the default MLP and the convnet on each of Keras 3's backends (TensorFlow, JAX, "
        "PyTorch), beside PyTorch eager and the matrix-product ceiling",
    )
    backend_epochs: int = option(
        3, "epochs of each network on each backend (the first excluded from samples/s)", "N"
    )
    out_dir: str = option("artifacts/bench", "where the JSON report is written", "DIR")
    seed: int = 42

    @property
    def trained_recipes(self) -> tuple[str, ...]:
        return () if self.recipes == (NO_RECIPES,) else self.recipes

    def __post_init__(self) -> None:
        check(self.epochs >= 2, "epochs", "must be at least 2: the first one is reported apart")
        check(self.repeats >= 1, "repeats", "must be a positive integer")
        check(
            self.train_samples is None or self.train_samples >= 1,
            "train_samples",
            "must be a positive integer",
        )
        check(self.latency_calls >= 100, "latency_calls", "must be at least 100")
        object.__setattr__(self, "recipes", tuple(self.recipes))  # argparse gives a list
        object.__setattr__(self, "recipe_seeds", tuple(self.recipe_seeds))
        check(
            NO_RECIPES not in self.recipes or self.recipes == (NO_RECIPES,),
            "recipes",
            "takes none alone",
        )
        check(
            self.architecture_epochs is None or self.architecture_epochs >= 1,
            "architecture_epochs",
            "must be a positive integer",
        )
        check(self.wild_per_class >= 1, "wild_per_class", "must be a positive integer")
        check(
            self.backend_epochs >= 2, "backend_epochs", "must be at least 2: the first is warm-up"
        )
        if self.export_formats is not None:
            object.__setattr__(self, "export_formats", tuple(self.export_formats))
            TrainConfig(export_formats=self.export_formats)  # train's checks, before hours of work


@dataclass(frozen=True)
class TrainingFigure:
    peer: str
    hidden: int
    batch: int
    samples_per_second: float | None  # steady state: median over repeats, first epoch excluded
    warmup_seconds: float | None  # the first epoch: tracing, graph building, caches
    test_accuracy: float | None
    skipped: str | None = None  # why there is no figure


@dataclass(frozen=True)
class EpochRun:
    """One timed training run: seconds of each epoch, and the test accuracy at the end."""

    seconds: list[float]
    accuracy: float


# --- the peers: each trains 784-H-10 (ReLU, softmax) for `epochs` and returns an EpochRun ---


def package_path(
    data: Mnist, hidden: int, batch: int, epochs: int, jit_compile: bool | None = None
) -> EpochRun:
    """This package's training path with its defaults (dropout rates, XLA): build_model + the
    tf.data pipeline + fit."""
    config = TrainConfig(hidden_units=hidden, batch_size=batch)
    if jit_compile is not None:
        config = dataclasses.replace(config, jit_compile=jit_compile)
    config = whole_epochs(config, len(data.x_train))
    steps = epoch_steps(config, len(data.x_train))
    model = build_model(config, steps)
    timer = EpochTimer()
    dataset = make_dataset(data.x_train, data.y_train, batch, shuffle_seed=0)
    model.fit(
        dataset, epochs=epochs, steps_per_epoch=steps, callbacks=[timer], shuffle=False, verbose=0
    )
    return EpochRun(timer.seconds, _accuracy(model, data))


def keras_numpy_defaults(data: Mnist, hidden: int, batch: int, epochs: int) -> EpochRun:
    """Keras fit on NumPy arrays with its defaults (one step per call, no XLA on a CPU)."""
    keras_defaults = TrainConfig(
        hidden_units=hidden,
        dropout=0.0,
        input_dropout=0.0,
        schedule="constant",
        steps_per_execution=1,
        jit_compile=False,
    )
    model = build_model(keras_defaults, batches_per_pass(len(data.x_train), batch))
    timer = EpochTimer()
    model.fit(
        data.x_train, data.y_train, batch_size=batch, epochs=epochs, callbacks=[timer], verbose=0
    )
    return EpochRun(timer.seconds, _accuracy(model, data))


def _accuracy(model: keras.Model, data: Mnist) -> float:
    probabilities = model.predict(data.x_test, batch_size=1000, verbose=0)
    return float(np.mean(probabilities.argmax(axis=1) == data.y_test))


def raw_tf_loop(data: Mnist, hidden: int, batch: int, epochs: int) -> EpochRun:
    """Plain TF2: variables, GradientTape and Adam by hand, one tf.function per whole epoch."""
    rng = tf.random.Generator.from_seed(0)
    shapes = [(784, hidden), (hidden,), (hidden, 10), (10,)]
    params = [
        tf.Variable(rng.normal(s) * (np.sqrt(2 / s[0]) if len(s) == 2 else 0.0)) for s in shapes
    ]
    slots = [[tf.Variable(tf.zeros_like(p)) for p in params] for _ in range(2)]
    step = tf.Variable(0.0)
    x = tf.constant(data.x_train.reshape(-1, 784))
    y = tf.constant(data.y_train.astype(np.int64))
    steps = len(data.x_train) // batch

    def forward(images: tf.Tensor) -> tf.Tensor:
        hidden_out = tf.nn.relu(tf.cast(images, tf.float32) / 255.0 @ params[0] + params[1])
        return hidden_out @ params[2] + params[3]

    @tf.function
    def epoch(order: tf.Tensor) -> None:
        for i in tf.range(steps):
            idx = order[i * batch : (i + 1) * batch]
            with tf.GradientTape() as tape:
                logits = forward(tf.gather(x, idx))
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(tf.gather(y, idx), logits)
                )
            _adam(params, tape.gradient(loss, params), slots, step)

    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        epoch(tf.random.shuffle(tf.range(len(data.x_train)), seed=0))
        seconds.append(time.perf_counter() - start)
    logits = forward(tf.constant(data.x_test.reshape(-1, 784)))
    return EpochRun(seconds, float(np.mean(logits.numpy().argmax(axis=1) == data.y_test)))


def _adam(params, grads, slots, step, beta1=0.9, beta2=0.999, eps=1e-7) -> None:
    step.assign_add(1.0)
    scale = LEARNING_RATE * tf.sqrt(1 - beta2**step) / (1 - beta1**step)
    for p, g, m, v in zip(params, grads, slots[0], slots[1], strict=True):
        m.assign(beta1 * m + (1 - beta1) * g)
        v.assign(beta2 * v + (1 - beta2) * g * g)
        p.assign_sub(scale * m / (tf.sqrt(v) + eps))


def torch_eager(data: Mnist, hidden: int, batch: int, epochs: int) -> EpochRun:
    """PyTorch's eager loop (`torch_peers.train`), in a process of its own (`in_child`)."""
    train, test = (data.x_train, data.y_train), (data.x_test, data.y_test)
    seconds, accuracy = in_child(
        torch_peers.train, train, test, hidden, batch, epochs, LEARNING_RATE
    )
    return EpochRun(seconds, accuracy)


def in_child(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a fresh process, for the PyTorch peers (`torch_peers`, a module
    without TensorFlow, so the child never imports it). PyTorch, once imported, slows TensorFlow
    down for the rest of a process (10 epochs of the default MLP on 300 images, one thread: 6.6 s
    of fit, 11.7 s after `import torch`), so it never enters the process that measures
    TensorFlow."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def sklearn_mlp(data: Mnist, hidden: int, batch: int, epochs: int) -> EpochRun:
    """scikit-learn's MLPClassifier, one epoch per warm-started fit."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    mlp = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        batch_size=batch,
        max_iter=1,
        warm_start=True,
        learning_rate_init=LEARNING_RATE,
        random_state=0,
    )
    x = data.x_train.reshape(-1, 784) / 255.0
    seconds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            start = time.perf_counter()
            mlp.fit(x, data.y_train)
            seconds.append(time.perf_counter() - start)
    return EpochRun(seconds, float(mlp.score(data.x_test.reshape(-1, 784) / 255.0, data.y_test)))


def tf1_graph_loop(data: Mnist, hidden: int, batch: int, epochs: int) -> EpochRun:
    """The TF1 tutorial as written: placeholders, N(0, 1) weights, SGD 0.1, a Session loop."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, [None, 784])
        labels = v1.placeholder(tf.int64, [None])
        w1, b1 = (
            tf.Variable(v1.random_normal([784, hidden])),
            tf.Variable(v1.random_normal([hidden])),
        )
        w2, b2 = tf.Variable(v1.random_normal([hidden, 10])), tf.Variable(v1.random_normal([10]))
        logits = tf.nn.relu(images @ w1 + b1) @ w2 + b2
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
        init = v1.global_variables_initializer()
    x = data.x_train.reshape(-1, 784).astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    seconds = []
    with v1.Session(graph=graph) as session:
        session.run(init)
        for _ in range(epochs):
            start = time.perf_counter()
            order = rng.permutation(len(x))
            for i in range(0, len(x) - batch + 1, batch):
                idx = order[i : i + batch]
                session.run(train_op, {images: x[idx], labels: data.y_train[idx]})
            seconds.append(time.perf_counter() - start)
        test = session.run(logits, {images: data.x_test.reshape(-1, 784) / 255.0})
    return EpochRun(seconds, float(np.mean(test.argmax(axis=1) == data.y_test)))


Peer = Callable[[Mnist, int, int, int], EpochRun]
PEERS: dict[str, tuple[Peer, str | None]] = {  # name -> (trainer, module it needs)
    "mnist_keras (package path)": (package_path, None),
    "mnist_keras, no XLA": (functools.partial(package_path, jit_compile=False), None),
    "keras fit, NumPy, defaults": (keras_numpy_defaults, None),
    "raw TF2 loop, epoch in tf.function": (raw_tf_loop, None),
    "PyTorch eager": (torch_eager, "torch"),
    "scikit-learn MLPClassifier": (sklearn_mlp, "sklearn"),
    "TF1 graph loop (tutorial)": (tf1_graph_loop, None),
}
PACKAGE = "mnist_keras (package path)"


def measure_training(name: str, data: Mnist, hidden: int, batch: int, config: BenchConfig):
    """Median steady-state samples per second over `repeats` runs of one peer."""
    trainer, module = PEERS[name]
    if module and importlib.util.find_spec(module) is None:
        return TrainingFigure(name, hidden, batch, None, None, None, f"{module} not installed")
    runs = []
    for repeat in range(config.repeats):
        keras.utils.set_random_seed(config.seed + repeat)
        runs.append(trainer(data, hidden, batch, config.epochs))
    steady = [len(data.x_train) * (len(r.seconds) - 1) / sum(r.seconds[1:]) for r in runs]
    return TrainingFigure(
        name,
        hidden,
        batch,
        statistics.median(steady),
        statistics.median(r.seconds[0] for r in runs),
        statistics.median(r.accuracy for r in runs),
    )


def matmul_ceiling_gflops(hidden: int, batch: int, seconds: float = 1.0) -> float:
    """Sustained float32 GFLOP/s of the MLP's largest matrix product, in TensorFlow."""
    a = tf.random.normal((batch, 784))
    w = tf.random.normal((784, hidden))

    @tf.function
    def products(n: tf.Tensor) -> tf.Tensor:
        total = tf.zeros((batch, hidden))
        for _ in tf.range(n):
            total += a @ w
        return total

    products(tf.constant(10)).numpy()
    n, elapsed = 100, 0.0
    while elapsed < seconds:
        n *= 2
        start = time.perf_counter()
        products(tf.constant(n)).numpy()
        elapsed = time.perf_counter() - start
    return 2 * batch * 784 * hidden * n / elapsed / 1e9


def flops_per_sample(hidden: int) -> float:
    """Forward and backward of 784-H-10: about 6 multiply-adds-as-2-FLOPs per weight."""
    return 6 * (784 * hidden + 10 * hidden)


class _StopAtAccuracy(keras.callbacks.Callback):
    """Time the training epochs; after each, peek at the test set and stop at the target."""

    def __init__(self, data: Mnist, target: float) -> None:
        super().__init__()
        self.data, self.target = data, target
        self.seconds, self.reached = 0.0, None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds += time.perf_counter() - self._start
        accuracy = _accuracy(self.model, self.data)
        if accuracy >= self.target:
            self.reached = {"epoch": epoch + 1, "test_accuracy": accuracy}
            self.model.stop_training = True


# Each time-to-accuracy figure: the recipe trained (on every training image, no validation
# split) until its test accuracy first reaches the target.
TARGETS = {"default_98": ("default", 0.98), "cnn_fast_99": ("cnn-fast", 0.99)}


def time_to_accuracy(data: Mnist, target: float, recipe: str, seed: int) -> dict[str, Any]:
    """Seconds of training (one of RECIPES) until the test accuracy first reaches target.

    A benchmark-only peek at the test set after every epoch; training itself never does this.
    """
    config = whole_epochs(resolve_config(**RECIPES[recipe], seed=seed), len(data.x_train))
    keras.utils.set_random_seed(seed)
    steps = epoch_steps(config, len(data.x_train))
    model = build_model(config, steps)
    dataset = make_dataset(data.x_train, data.y_train, config.batch_size, shuffle_seed=seed)
    stop = _StopAtAccuracy(data, target)
    model.fit(
        dataset,
        epochs=config.epochs,
        steps_per_epoch=steps,
        callbacks=[stop],
        shuffle=False,
        verbose=0,
    )
    seconds = round(stop.seconds, 2) if stop.reached else None
    return {
        "recipe": recipe,
        "target": target,
        "seconds": seconds,
        "reached": stop.reached,
        "max_epochs": config.epochs,
    }


def measure_recipes(
    data: Mnist, sets: Sequence[wild.WildSet], config: BenchConfig, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Each recipe with each seed: trained, evaluated and exported exactly as `train` does (on a
    --train-samples slice, holding out what `train` would), then read through `predict`'s
    preprocessing on the digits in the wild; PyTorch's eager peer beside them."""
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for name in config.trained_recipes:
            if name == TORCH_EAGER and importlib.util.find_spec("torch") is None:
                rows.append({"recipe": name, "skipped": "torch not installed"})
                continue
            for seed in config.recipe_seeds:
                say(f"recipe {name}, seed {seed}")
                if name == TORCH_EAGER:
                    rows.append(torch_recipe(data, seed, config.train_samples))
                else:
                    rows.append(keras_recipe(data, sets, name, seed, config, Path(runs)))
    return rows


def keras_recipe(
    data: Mnist,
    sets: Sequence[wild.WildSet],
    name: str,
    seed: int,
    config: BenchConfig,
    runs: Path,
) -> dict[str, Any]:
    """One of RECIPES with `seed`, as `train` runs it, read on the MNIST test set and the wild."""
    recipe = resolve_config(
        **RECIPES[name],
        seed=seed,
        train_samples=config.train_samples,
        export_formats=config.export_formats,
    )
    result = run(recipe, runs, datasets=data)
    scores = wild.score(load_classifier(result.export_path), sets)
    return {
        "recipe": name,
        "seed": seed,
        "test_accuracy": result.evaluation.accuracy,
        "fit_seconds": round(result.train_seconds, 1),
        "epochs": len(result.history),
        "wild": {k.kind: round(k.accuracy, 4) for k in scores.kinds},
    }


def torch_recipe(data: Mnist, seed: int, train_samples: int | None) -> dict[str, Any]:
    """The MLP default's width, batch, epochs, dropout and cosine rate in PyTorch's eager loop,
    on the same training split (`torch_peers.train`, in a process of its own)."""
    recipe = resolve_config(seed=seed, train_samples=train_samples)
    split = split_validation(data.x_train, data.y_train, recipe.validation_size, seed)
    seconds, accuracy = in_child(
        torch_peers.train,
        (split.x_train, split.y_train),
        (data.x_test, data.y_test),
        recipe.hidden_units,
        recipe.batch_size,
        recipe.epochs,
        recipe.learning_rate,
        seed,
        True,
    )
    return {
        "recipe": TORCH_EAGER,
        "seed": seed,
        "test_accuracy": accuracy,
        "fit_seconds": round(sum(seconds), 1),
        "epochs": len(seconds),
    }


ARCHITECTURES = (("mlp", False), ("mlp", True), ("cnn", False), ("cnn", True))  # (arch, augment)


def measure_architectures(
    data: Mnist, sets: Sequence[wild.WildSet], config: BenchConfig, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Each architecture with and without augmentation, trained and exported as `train` does
    (for --architecture-epochs, if given), then read through `predict`'s preprocessing: the MNIST
    test set and the digits in the wild."""
    epochs = config.architecture_epochs
    training = f"{epochs} epoch{'s' * (epochs != 1)}" if epochs else "full training"
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for arch, augment in ARCHITECTURES:
            say(f"architectures: {arch}{' --augment' if augment else ''}, {training}")
            recipe = resolve_config(
                arch=arch,
                augment=augment,
                seed=config.seed,
                train_samples=config.train_samples,
                epochs=epochs,
                export_formats=config.export_formats,
            )
            result = run(recipe, Path(runs), datasets=data)
            scores = wild.score(load_classifier(result.export_path), sets)
            rows.append(
                {
                    "arch": arch,
                    "augment": augment,
                    "jit_compile": result.config.jit_compile,
                    "test_accuracy": result.evaluation.accuracy,
                    "fit_seconds": round(result.train_seconds, 1),
                    "epochs": len(result.history),
                    "wild": {k.kind: round(k.accuracy, 4) for k in scores.kinds},
                }
            )
    return rows


def measure_inference(data: Mnist, calls: int, repeats: int) -> dict[str, Any]:
    """The default network exported in every format, each run in its own runtime as `predict`
    runs it, beside PyTorch eager inference of the same network."""
    keras.utils.set_random_seed(0)
    model = build_model(TrainConfig(), steps_per_epoch=1)  # weights do not change the timings
    one, many = data.x_test[:1], batch_of(data.x_test, 10000)
    figures: dict[str, Any] = {}
    runnable = []
    for name in FORMATS:
        try:
            check_formats([name], "--format")
            runnable.append(name)
        except ConfigError as exc:
            figures[name] = {"skipped": str(exc)}
    with tempfile.TemporaryDirectory() as tmp:
        calibration = calibration_images(data.x_train, 0)
        for e in export_model(model, Path(tmp) / "mnist", runnable, calibration):
            classifier = load_classifier(e.path)
            timings = latency_and_throughput(classifier, one, many, calls, repeats)
            figures[e.format] = {"size_mb": round(e.size_bytes / 1e6, 3), **timings}
    if importlib.util.find_spec("torch") is None:
        figures["torch_eager"] = {"skipped": "torch not installed"}
    else:
        hidden = TrainConfig.hidden_units
        figures["torch_eager"] = in_child(
            torch_peers.inference, data.x_test, hidden, calls, repeats
        )
    return figures


def measure_throughput(
    data: Mnist, config: BenchConfig, say: Callable[[str], None]
) -> tuple[list[TrainingFigure], dict[str, float]]:
    """Every peer at every shape, and the matrix-product ceiling of each shape."""
    training, ceilings = [], {}
    for hidden, batch in SHAPES:
        say(f"hardware ceiling, hidden {hidden}, batch {batch}")
        ceilings[f"{hidden}x{batch}"] = round(matmul_ceiling_gflops(hidden, batch), 2)
        for name in PEERS:
            if name.startswith("TF1") and (hidden, batch) != (64, 100):
                continue  # the tutorial's own shape only
            say(f"training: {name}, hidden {hidden}, batch {batch}")
            training.append(measure_training(name, data, hidden, batch, config))
    return training, ceilings


def run_bench(config: BenchConfig, data: Mnist | None = None, progress=None) -> dict[str, Any]:
    """Every measurement, as one JSON-ready dict; `progress(text)` is told what runs next."""
    data = (data or load_mnist(config.data)).head(config.train_samples)
    # As `train --train-samples N`: a slice smaller than the default split holds out a tenth.
    held_out = resolve_config(train_samples=config.train_samples).validation_size
    trains = config.trained_recipes or config.architectures
    if trains and len(data.x_train) <= held_out:
        raise ConfigError(
            f"--recipes, --architectures: the recipes hold out {held_out} training images "
            f"for validation, and only {len(data.x_train)} are given (--recipes none "
            "--no-architectures skip them)"
        )
    faces = wild.find_faces() if trains else []  # before hours of measuring
    say = progress or (lambda text: None)
    training, ceilings, to_target = [], {}, {}
    if config.throughput:
        training, ceilings = measure_throughput(data, config, say)
        for name, (recipe, target) in TARGETS.items():
            say(f"time to {target:.0%} test accuracy, {recipe}")
            to_target[name] = time_to_accuracy(data, target, recipe, config.seed)
    say("inference of every export format, each in its own runtime")
    inference = measure_inference(data, config.latency_calls, config.repeats)
    sets = []
    if trains:
        say("digits in the wild: rendering the pictures")
        sets = wild.build(
            data.x_test, data.y_test, seed=config.seed, per_class=config.wild_per_class, faces=faces
        )
    recipes = measure_recipes(data, sets, config, say)
    architectures = measure_architectures(data, sets, config, say) if config.architectures else []
    report = {
        **_report(config, data, training, ceilings, to_target, inference),
        "recipes": recipes,
        "architectures": architectures,
        "backends": measure_backend_rows(data, config, say) if config.backends else [],
    }
    draw_report(report, Path(config.picture))
    return report


def measure_backend_rows(
    data: Mnist, config: BenchConfig, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """`backends.measure_backends`, then PyTorch eager at the MLP's default shape, and each MLP
    figure as a share of the ceiling of its largest matrix product."""
    defaults = TrainConfig()
    hidden, batch = defaults.hidden_units, defaults.batch_size
    rows = measure_backends(
        config.repeats,
        config.seed,
        say,
        epochs=config.backend_epochs,
        data=config.data,
        train_samples=config.train_samples,
    )
    say("backends: PyTorch eager and the ceiling at the MLP's default shape")
    peer = measure_training("PyTorch eager", data, hidden, batch, config)
    rows.append(
        {
            "backend": "PyTorch eager (peer)",
            "arch": "mlp",
            "samples_per_second": peer.samples_per_second,
            "test_accuracy": peer.test_accuracy,
            "skipped": peer.skipped,
        }
    )
    ceiling = matmul_ceiling_gflops(hidden, batch) * 1e9
    for row in rows:
        if row["arch"] == "mlp" and row.get("samples_per_second"):
            share = row["samples_per_second"] * flops_per_sample(hidden) / ceiling
            row["fraction_of_ceiling"] = round(share, 4)
    return rows


def _report(config, data, training, ceilings, to_target, inference) -> dict[str, Any]:
    package = {(f.hidden, f.batch): f.samples_per_second for f in training if f.peer == PACKAGE}
    rows = []
    for figure in training:
        row = dataclasses.asdict(figure)
        sps, base = figure.samples_per_second, package.get((figure.hidden, figure.batch))
        row["ratio_to_package"] = round(sps / base, 3) if sps and base else None
        ceiling = ceilings[f"{figure.hidden}x{figure.batch}"] * 1e9
        row["fraction_of_ceiling"] = (
            round(sps * flops_per_sample(figure.hidden) / ceiling, 4) if sps else None
        )
        rows.append(row)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "config": dataclasses.asdict(config),
        "train_samples": len(data.x_train),
        "cpu_count": os.cpu_count(),
        "versions": versions(),
        "training": rows,
        "ceiling_gflops": ceilings,
        "time_to_target": to_target,
        "inference": inference,
        "peak_memory_mb": round(peak_mb, 1),
    }


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json(path, report)
    return path


def build_parser() -> console.Parser:
    p = console.Parser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    recipes = (*RECIPES, TORCH_EAGER, NO_RECIPES)
    add_flags(p, BenchConfig, choices={"export_formats": FORMATS, "recipes": recipes})
    return p


@console.cli()
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = BenchConfig(**given(args, option_fields(BenchConfig)))
    with console.status("benchmarking") as status:
        report = run_bench(config, progress=status.update)
    path = write_report(report, Path(config.out_dir))
    print_report(report)
    console.print_line(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
