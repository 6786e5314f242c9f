"""The benchmark's picture: test accuracy against fit seconds, one point per recipe and seed."""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from mnist_keras.evaluate import png_bytes
from mnist_keras.runs import write_bytes

DEFAULT_PICTURE = "docs/accuracy_vs_time.png"
# What each recipe should reach on the MNIST test set (the median of its seeds), drawn.
ACCURACY_TARGETS = {"default": 0.986, "cnn-fast": 0.994, "cnn": 0.996}
COLORS = matplotlib.colormaps["tab10"].colors
MARKERS = "osD^vP*X"  # one a seed, in the order the seeds first appear
# Test errors (%) marked on the vertical axis, written as accuracies.
ERROR_TICKS = (0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.5, 2, 3, 5, 10, 20)
LABEL_GAP = (0.25, 0.12)  # the least distance between two labels: decades of seconds, of error


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
    placed: list[tuple[float, float]] = []
    for color, recipe in zip(COLORS, recipes, strict=False):
        runs = [row for row in rows if row["recipe"] == recipe]
        for row in runs:
            marker = MARKERS[seeds.index(row["seed"]) % len(MARKERS)]
            axes.scatter(row["fit_seconds"], _error(row), color=color, marker=marker, s=30)
        accuracy = statistics.median(row["test_accuracy"] for row in runs)
        seconds = statistics.median(row["fit_seconds"] for row in runs)
        above, below = min(_error(row) for row in runs), max(_error(row) for row in runs)
        # Above the recipe's points, or below them where another label already stands.
        up = _free(placed, seconds, above)
        placed.append((seconds, above if up else below))
        axes.annotate(
            f"{recipe}\n{accuracy:.2%}, {seconds:.0f} s",
            (seconds, above if up else below),
            xytext=(0, 8 if up else -10),
            textcoords="offset points",
            ha="center",
            va="bottom" if up else "top",
            fontsize=8.5,
            color=color,
            weight="bold",
        )
    for recipe, target in (targets or {}).items():
        axes.axhline(100 * (1 - target), color="grey", linestyle=":", linewidth=1)
        axes.annotate(
            f"{recipe} target",
            (0, 100 * (1 - target)),
            xycoords=("axes fraction", "data"),
            xytext=(4, 2),
            textcoords="offset points",
            ha="left",
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


def _free(placed: Sequence[tuple[float, float]], seconds: float, error: float) -> bool:
    """Whether a label at (`seconds`, `error`) stands clear of those `placed`."""
    return all(
        abs(math.log10(seconds / x)) > LABEL_GAP[0] or abs(math.log10(error / y)) > LABEL_GAP[1]
        for x, y in placed
    )


def _error(row: dict[str, Any]) -> float:
    return 100 * (1 - row["test_accuracy"])


def report_title(report: dict[str, Any]) -> str:
    """What trained the recipes of a bench report, in one line."""
    v = report["versions"]
    cores = f", {report['cpu_count']} CPU cores" if report.get("cpu_count") else ""
    return (
        f"Keras {v['keras']} ({v['keras_backend']}), TensorFlow {v['tensorflow']}, "
        f"{report['train_samples']:,} MNIST training images{cores}"
    )


def draw_report(report: dict[str, Any], path: Path) -> bool:
    """Draw a bench report's trained recipes into `path`; False when it trained none."""
    rows = [row for row in report["recipes"] if "skipped" not in row]
    if rows:
        figure = accuracy_vs_time(rows, report_title(report), ACCURACY_TARGETS)
        write_bytes(path, png_bytes(figure))  # atomically: a reader never sees half a PNG
    return bool(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.plot REPORT.json [PNG]`: draw a bench report's recipes again."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not 1 <= len(args) <= 2:
        print("usage: python -m benchmarks.plot REPORT.json [PNG]", file=sys.stderr)
        return 2
    report = json.loads(Path(args[0]).read_text())
    return 0 if draw_report(report, Path(args[1] if len(args) == 2 else DEFAULT_PICTURE)) else 1


if __name__ == "__main__":
    sys.exit(main())
