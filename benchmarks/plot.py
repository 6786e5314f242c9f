"""The benchmark's picture: test accuracy against fit seconds, one point per recipe and seed."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from mnist_keras.evaluate import png_bytes
from mnist_keras.runs import write_bytes

COLORS = matplotlib.colormaps["tab10"].colors


def accuracy_vs_time(rows: Sequence[dict[str, Any]], title: str) -> Figure:
    """Each recipe's runs as points (fit seconds on a log scale, test accuracy in percent), each
    point marked with its seed and each recipe named beside its median run."""
    figure = Figure(figsize=(9, 5.5), dpi=110)
    axes = figure.add_subplot()
    recipes = list(dict.fromkeys(row["recipe"] for row in rows))
    for color, recipe in zip(COLORS, recipes, strict=False):
        runs = [row for row in rows if row["recipe"] == recipe]
        seconds = [row["fit_seconds"] for row in runs]
        accuracy = [100 * row["test_accuracy"] for row in runs]
        axes.scatter(seconds, accuracy, color=color, s=28, zorder=3)
        for row, x, y in zip(runs, seconds, accuracy, strict=True):
            axes.annotate(
                str(row["seed"]), (x, y), xytext=(4, -3), textcoords="offset points", fontsize=7
            )
        axes.annotate(
            f"{recipe}: {statistics.median(accuracy):.2f}%, {statistics.median(seconds):.0f} s",
            (statistics.median(seconds), max(accuracy)),
            xytext=(0, 9),
            textcoords="offset points",
            ha="center",
            fontsize=8.5,
            color=color,
            weight="bold",
        )
    axes.set_xscale("log")
    axes.set_xlabel("fit seconds (log scale)")
    axes.set_ylabel("MNIST test accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.margins(x=0.15, y=0.12)
    figure.tight_layout()
    return figure


def save_accuracy_vs_time(rows: Sequence[dict[str, Any]], title: str, path: Path) -> None:
    """Draw `accuracy_vs_time` into a PNG at `path`, written atomically."""
    write_bytes(path, png_bytes(accuracy_vs_time(rows, title)))
