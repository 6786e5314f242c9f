"""The benchmark's picture: test accuracy against fit seconds, one point per recipe and seed."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from mnist_keras.evaluate import png_bytes
from mnist_keras.runs import write_bytes

COLORS = matplotlib.colormaps["tab10"].colors
MARKERS = "osD^vP*X"  # one a seed, in the order the seeds first appear
# Test errors (%) marked on the vertical axis, written as accuracies.
ERROR_TICKS = (0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.5, 2, 3, 5, 10)


def accuracy_vs_time(
    rows: Sequence[dict[str, Any]], title: str, targets: Mapping[str, float] | None = None
) -> Figure:
    """Each recipe's runs as points, a colour a recipe and a marker a seed: fit seconds against
    test accuracy, both on log scales (the accuracy as its error, so 99.6% stands as far above
    99.2% as 99.2% above 98.4%), each recipe named beside its median run; `targets` (a recipe's
    name and the accuracy it aims at) as dotted lines."""
    figure = Figure(figsize=(9, 5.5), dpi=110)
    axes = figure.add_subplot()
    seeds = list(dict.fromkeys(row["seed"] for row in rows))
    recipes = list(dict.fromkeys(row["recipe"] for row in rows))
    for color, recipe in zip(COLORS, recipes, strict=False):
        runs = [row for row in rows if row["recipe"] == recipe]
        for row in runs:
            marker = MARKERS[seeds.index(row["seed"]) % len(MARKERS)]
            axes.scatter(row["fit_seconds"], _error(row), color=color, marker=marker, s=30)
        accuracy = statistics.median(row["test_accuracy"] for row in runs)
        seconds = statistics.median(row["fit_seconds"] for row in runs)
        axes.annotate(
            f"{recipe}\n{accuracy:.2%}, {seconds:.0f} s",
            (seconds, min(_error(row) for row in runs)),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            fontsize=8.5,
            color=color,
            weight="bold",
        )
    for recipe, target in (targets or {}).items():
        axes.axhline(100 * (1 - target), color="grey", linestyle=":", linewidth=1)
        axes.annotate(
            f"{recipe} target",
            (1, 100 * (1 - target)),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 2),
            textcoords="offset points",
            ha="right",
            fontsize=7,
            color="grey",
        )
    for seed, marker in zip(seeds, MARKERS, strict=False):
        axes.scatter([], [], color="grey", marker=marker, label=f"seed {seed}")
    axes.legend(loc="lower right", fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.invert_yaxis()  # better is up
    axes.set_yticks(ERROR_TICKS, [f"{100 - e:g}%" for e in ERROR_TICKS])
    axes.minorticks_off()
    axes.set_xlabel("fit seconds (log scale)")
    axes.set_ylabel("MNIST test accuracy (log scale of the error)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.margins(x=0.12, y=0.15)
    figure.tight_layout()
    return figure


def _error(row: dict[str, Any]) -> float:
    return 100 * (1 - row["test_accuracy"])


def save_accuracy_vs_time(
    rows: Sequence[dict[str, Any]],
    title: str,
    path: Path,
    targets: Mapping[str, float] | None = None,
) -> None:
    """Draw `accuracy_vs_time` into a PNG at `path`, written atomically."""
    write_bytes(path, png_bytes(accuracy_vs_time(rows, title, targets)))
