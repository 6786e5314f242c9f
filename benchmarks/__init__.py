"""Benchmarks against other ways to train and serve: `make bench`, outside the installed package."""
