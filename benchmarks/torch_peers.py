"""The PyTorch peers: the default MLP trained and served by PyTorch's eager loop.

They run in a spawned process (`bench.in_child`), which imports this module and nothing of
TensorFlow: PyTorch, once imported, slows TensorFlow down for the rest of a process, and
TensorFlow's import would cost each child seconds. So the arguments are plain arrays and numbers,
and torch is imported in the functions, which the parent names without running.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.timing import batch_of, latency_and_throughput
from mnist_keras.config import TrainConfig

if TYPE_CHECKING:
    import torch


def train(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    hidden: int,
    batch: int,
    epochs: int,
    learning_rate: float,
    seed: int = 0,
    cosine: bool = False,
) -> tuple[list[float], float]:
    """Each epoch's seconds and the test accuracy of PyTorch's eager loop on the CPU, with this
    machine's threads and the package's default dropout rates; Adam's rate constant, or decaying
    to 0 on a cosine over the run's steps as the default recipe's."""
    import torch

    torch.manual_seed(seed)
    defaults = TrainConfig()
    model = _mlp(hidden, defaults.input_dropout, defaults.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    steps = epochs * -(-len(train[0]) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if cosine else None
    x, y = _images(train[0]), torch.from_numpy(train[1].astype(np.int64))
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            loss = torch.nn.functional.cross_entropy(model.train()(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
        seconds.append(time.perf_counter() - start)
    with torch.no_grad():
        logits = model.eval()(_images(test[0]))
    return seconds, float((logits.argmax(1).numpy() == test[1]).mean())


def inference(x_test: np.ndarray, hidden: int, calls: int, repeats: int) -> dict[str, float]:
    """Latency and throughput of the default network's eager inference."""
    import torch

    model = _mlp(hidden).eval()
    one = torch.from_numpy(x_test[:1].reshape(1, 784))
    many = torch.from_numpy(batch_of(x_test, 10000).reshape(-1, 784))

    def classify(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(images.float() / 255.0).argmax(1).numpy()

    return latency_and_throughput(classify, one, many, calls, repeats)


def _images(x: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(x.reshape(-1, 784)).float() / 255.0


def _mlp(hidden: int, input_dropout: float = 0.0, dropout: float = 0.0) -> torch.nn.Module:
    import torch

    return torch.nn.Sequential(
        torch.nn.Dropout(input_dropout),
        torch.nn.Linear(784, hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, 10),
    )
