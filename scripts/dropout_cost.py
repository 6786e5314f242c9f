"""What a dropout mask costs: Keras's Dropout against HashDropout, with and without XLA.

Milliseconds per training step of a (batch, units) activation: the evidence behind dropout.py.

python scripts/dropout_cost.py --batch 128 --units 512
"""

import argparse
import statistics
import time

import keras
import tensorflow as tf

from mnist_keras.dropout import HashDropout


def ms_per_call(layer: keras.layers.Layer, shape: tuple[int, int], jit: bool, calls: int) -> float:
    """Milliseconds per masked forward pass, inside one compiled loop (no Python per call)."""

    @tf.function(jit_compile=jit)
    def loop(n: tf.Tensor) -> tf.Tensor:
        total = tf.zeros(shape)
        for _ in tf.range(n):
            total += layer(tf.ones(shape), training=True)
        return total

    loop(tf.constant(10)).numpy()  # trace and compile
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        loop(tf.constant(calls)).numpy()
        runs.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="activation rows (128)")
    parser.add_argument("--units", type=int, default=512, help="activation columns (512)")
    parser.add_argument("--rate", type=float, default=0.5, help="dropout rate (0.5)")
    parser.add_argument("--calls", type=int, default=300, help="masked passes a loop (300)")
    args = parser.parse_args()
    shape = (args.batch, args.units)
    layers = {
        "keras.layers.Dropout": lambda: keras.layers.Dropout(args.rate, seed=1),
        "HashDropout": lambda: HashDropout(args.rate, seed=1),
        "no dropout": lambda: keras.layers.Identity(),
    }
    print(f"ms per masked {shape} activation (median of 3 loops of {args.calls})")
    for name, make in layers.items():
        figures = [ms_per_call(make(), shape, jit, args.calls) for jit in (False, True)]
        print(f"{name:22s} TF kernels {figures[0]:7.3f}   XLA {figures[1]:7.3f}")


if __name__ == "__main__":
    main()
