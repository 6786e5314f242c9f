"""Time an exported SavedModel loaded with tf.saved_model.load: batch-1 latency, batch throughput.

python scripts/serving_latency.py --model artifacts/runs/<run-id>/export/mnist/1
"""

import argparse
import time
from pathlib import Path

import numpy as np
import tensorflow as tf


def batch1_latency_ms(serve, calls: int) -> np.ndarray:
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 28, 28), np.uint8))
    for _ in range(50):  # warm-up: tracing, allocator, thread pools
        serve(images=image)
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        serve(images=image)["classes"].numpy()
        times[i] = time.perf_counter() - start
    return times * 1e3


def throughput(serve, batch: int, repeats: int) -> float:
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (batch, 28, 28), np.uint8))
    serve(images=images)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        serve(images=images)["classes"].numpy()
        seconds.append(time.perf_counter() - start)
    return batch / float(np.median(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a SavedModel version folder")
    parser.add_argument("--calls", type=int, default=2000, help="batch-1 calls to time (2000)")
    parser.add_argument("--batch", type=int, default=10000, help="throughput batch (10000)")
    args = parser.parse_args()
    serve = tf.saved_model.load(str(args.model)).signatures["serving_default"]
    latency = batch1_latency_ms(serve, args.calls)
    print(
        f"batch 1: median {np.median(latency):.3f} ms, p99 {np.percentile(latency, 99):.3f} ms "
        f"over {args.calls} calls"
    )
    print(f"batch {args.batch}: {throughput(serve, args.batch, 7):,.0f} images/s (median of 7)")


if __name__ == "__main__":
    main()
