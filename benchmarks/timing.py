"""How an inference is timed, for every runtime the bench compares (TensorFlow's and PyTorch's):
the latency of one image and the throughput of a large batch."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def batch_of(x: np.ndarray, n: int) -> np.ndarray:
    """`n` images from `x`, repeated as needed."""
    return np.resize(x, (n, *x.shape[1:]))


def latency_and_throughput(
    fn: Callable[[Any], Any], one: Any, many: Any, calls: int, repeats: int
) -> dict[str, float]:
    for _ in range(50):  # warm-up: tracing, allocator, thread pools
        fn(one)
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(one)
        latencies.append(time.perf_counter() - start)
    fn(many)
    seconds = []
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        fn(many)
        seconds.append(time.perf_counter() - start)
    return {
        "batch1_median_ms": round(1e3 * float(np.median(latencies)), 4),
        "batch1_p99_ms": round(1e3 * float(np.percentile(latencies, 99)), 4),
        "batch10000_images_per_second": round(len(many) / statistics.median(seconds), 1),
    }
