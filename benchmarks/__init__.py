"""Benchmarks against other ways to train and serve: `make bench`, outside the installed package."""

# First: importing the package quiets TensorFlow's start-up log before bench.py imports it.
import mnist_keras  # noqa: F401
