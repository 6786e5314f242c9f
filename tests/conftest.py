"""Shared fixtures: seeding, synthetic MNIST-shaped data, the real data, briefly trained models;
and the split of the machine between pytest-xdist workers (`make test` runs two)."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import pytest
from helpers import synthetic_mnist

from mnist_keras.config import resolve_config
from mnist_keras.data import ENV_VAR, Mnist, load_mnist
from mnist_keras.train import TrainResult, run


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, each worker's TensorFlow (and the commands its tests start, which inherit the
    setting) gets its share of the cores: pools sized for the whole machine fight for them."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        share = str(max(1, (os.cpu_count() or 1) // int(workers)))
        # Read when TensorFlow makes its first op, after this; inter-op threads stay as they
        # are (collective ops wait on each other in them).
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", share)
        os.environ.setdefault("OMP_NUM_THREADS", share)


# Session fixtures that take most of a minute to make: every test that uses one runs in the same
# xdist worker (`--dist loadgroup`), so the fixture is made once, not once a worker.
SHARED_ONCE = ("trained_cnn",)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in SHARED_ONCE:
            if name in item.fixturenames:
                item.add_marker(pytest.mark.xdist_group(name))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    keras.utils.set_random_seed(1234)


@pytest.fixture
def tiny() -> Mnist:
    return synthetic_mnist()


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST folder named by $MNIST_KERAS_DATA (CI and `make test` set it)."""
    value = os.environ.get(ENV_VAR)
    if not value or not Path(value).is_dir():
        pytest.skip(f"real MNIST not available: set {ENV_VAR} to the folder of the IDX files")
    return Path(value).resolve()


@pytest.fixture(scope="session")
def real_mnist(real_mnist_dir) -> Mnist:
    return load_mnist(real_mnist_dir)


@pytest.fixture(scope="session")
def trained(real_mnist, tmp_path_factory) -> TrainResult:
    """A model trained briefly on a slice of real MNIST (about 95% accurate), and its export."""
    keras.utils.set_random_seed(0)
    # The previous recipe: two epochs of the default's decaying schedule learn less.
    config = resolve_config(
        "v0.1", epochs=2, hidden_units=128, train_samples=12000, validation_size=2000
    )
    return run(config, tmp_path_factory.mktemp("trained"), datasets=real_mnist)


@pytest.fixture(scope="session")
def trained_cnn(real_mnist, tmp_path_factory) -> TrainResult:
    """The convnet with its augmentation, trained one epoch on 30,000 images (about 98%) and
    exported as a SavedModel: the format tests make their own files from its model.keras."""
    keras.utils.set_random_seed(0)
    # One pass at three times the learning rate: 98.1% in 23 s, where four passes over 20,000
    # images gave 98.4% in 52 s (one intra-op thread, as a worker has).
    # The network, batch and augmentation of the convnet's first recipe, which this one pass was
    # sized for: the demo's tests need it to read every traced and hand-drawn digit.
    config = resolve_config(
        arch="cnn",
        conv_kernels=(3, 3),
        batch_size=128,
        warmup=0.0,
        augment_shift=0.1,
        augment_rotation=10.0,
        augment_zoom=0.1,
        epochs=1,
        learning_rate=0.006,
        train_samples=32000,
        validation_size=2000,
        export_formats=("saved_model",),
    )
    return run(config, tmp_path_factory.mktemp("trained_cnn"), datasets=real_mnist)
