"""The benchmark's report on the console: training, inference, recipes and architectures."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mnist_keras.console import console


def print_report(report: dict[str, Any]) -> None:
    """The benchmark's training table (ratios to the package's path), other figures, inference,
    recipes and architectures: each section the run measured."""
    if report["training"]:  # at least 120 wide: rows must not fold, even in a log
        Console(width=max(console.width, 120)).print(_training_table(report["training"]))
    figures = Table(title="Other figures", show_header=False, title_justify="left")
    for shape, gflops in report["ceiling_gflops"].items():
        figures.add_row(f"matmul ceiling {shape} (GFLOP/s)", f"{gflops:,.1f}")
    for figure in report["time_to_target"].values():  # none under --no-throughput
        figures.add_row(
            f"time to {figure['target']:.0%} test accuracy ({figure['recipe']})",
            f"{figure['seconds']} s" if figure["seconds"] else "not reached",
        )
    figures.add_row("peak memory (MB)", f"{report['peak_memory_mb']:,.0f}")
    console.print(figures)
    console.print(_inference_table(report["inference"]))
    if report["recipes"]:
        console.print(_recipes_table(report["recipes"]))
    if report["architectures"]:
        console.print(_architectures_table(report["architectures"]))
    if report.get("backends"):
        console.print(_backends_table(report["backends"]))


def _training_table(rows: list[dict[str, Any]]) -> Table:
    """Each way to train at each shape: steady samples per second, as a ratio to the package."""
    table = Table(title="Training, steady state (first epoch excluded)", title_justify="left")
    columns = (
        "way to train",
        "hidden",
        "batch",
        "samples/s",
        "vs package",
        "warm-up s",
        "test acc",
        "of ceiling",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "way to train" else "right")
    for row in rows:
        if row["skipped"]:
            table.add_row(
                row["peer"],
                str(row["hidden"]),
                str(row["batch"]),
                f"[dim]skipped: {row['skipped']}[/]",
                "",
                "",
                "",
                "",
            )
            continue
        table.add_row(
            row["peer"],
            str(row["hidden"]),
            str(row["batch"]),
            f"{row['samples_per_second']:,.0f}",
            f"{row['ratio_to_package']:.2f}x",
            f"{row['warmup_seconds']:.2f}",
            f"{row['test_accuracy']:.4f}",
            f"{row['fraction_of_ceiling']:.1%}",
        )
    return table


RUNTIMES = {
    "saved_model": "TensorFlow",
    "onnx": "ONNX Runtime",
    "litert": "LiteRT",
    "litert_int8": "LiteRT",
    "torch_eager": "PyTorch eager",
}


def _inference_table(rows: dict[str, dict[str, Any]]) -> Table:
    """Each export format in its runtime: size, batch-1 latency, batch-10,000 throughput."""
    table = Table(title="Inference, the default network", title_justify="left")
    columns = ("format", "runtime", "MB", "batch 1 ms", "p99 ms", "vs SavedModel", "batch 10k/s")
    for column in columns:
        left = column in ("format", "runtime")
        table.add_column(column, justify="left" if left else "right", no_wrap=column == "format")
    base = rows.get("saved_model", {}).get("batch1_median_ms")
    for name, row in rows.items():
        if "skipped" in row:
            table.add_row(name, RUNTIMES.get(name, ""), f"[dim]skipped: {row['skipped']}[/]")
            continue
        median = row["batch1_median_ms"]
        table.add_row(
            name,
            RUNTIMES.get(name, ""),
            f"{row['size_mb']:.2f}" if "size_mb" in row else "",
            f"{median:.3f}",
            f"{row['batch1_p99_ms']:.3f}",
            f"{median / base:.2f}x" if base else "",
            f"{row['batch10000_images_per_second']:,.0f}",
        )
    return table


def _architectures_table(rows: list[dict[str, Any]]) -> Table:
    """Each architecture, with and without augmentation: MNIST test and the wild kinds."""
    kinds = list(rows[0]["wild"])
    table = Table(title="Architectures: MNIST test and digits in the wild", title_justify="left")
    for column in ("arch", "augment", "test acc", "fit s", "epochs", *kinds):
        table.add_column(column, justify="left" if column == "arch" else "right")
    for row in rows:
        table.add_row(
            row["arch"],
            "yes" if row["augment"] else "no",
            f"{row['test_accuracy']:.2%}",
            f"{row['fit_seconds']:.1f}",
            str(row["epochs"]),
            *(f"{row['wild'][kind]:.1%}" for kind in kinds),
        )
    return table


def _recipes_table(rows: list[dict[str, Any]]) -> Table:
    """Full training runs of each recipe: test accuracy, fit seconds and the digits in the wild
    per seed."""
    table = Table(title="Recipes, trained as `train` does", title_justify="left")
    kinds = sorted({kind for row in rows for kind in row.get("wild", {})})
    for column in ("recipe", "seed", "test acc", "fit s", "epochs", *kinds):
        table.add_column(column, justify="left" if column == "recipe" else "right")
    for row in rows:
        if "skipped" in row:
            table.add_row(row["recipe"], "", f"[dim]skipped: {row['skipped']}[/]")
            continue
        wild = row.get("wild", {})
        table.add_row(
            row["recipe"],
            str(row["seed"]),
            f"{row['test_accuracy']:.2%}",
            f"{row['fit_seconds']:.1f}",
            str(row["epochs"]),
            *(f"{wild[kind]:.1%}" if kind in wild else "" for kind in kinds),
        )
    return table


def _backends_table(rows: list[dict[str, Any]]) -> Table:
    """Each network on each Keras backend (medians over the repeats), PyTorch eager beside."""
    table = Table(title="Keras backends, trained as `train` does (medians)", title_justify="left")
    columns = ("network", "backend", "samples/s", "fit s", "test acc", "XLA", "of ceiling")
    for column in columns:
        table.add_column(column, justify="left" if column in ("network", "backend") else "right")
    for row in rows:
        if row.get("skipped"):
            table.add_row(row["arch"], row["backend"], f"[dim]{row['skipped']}[/]")
            continue

        table.add_row(
            row["arch"],
            row["backend"],
            _cell(row, "samples_per_second", ",.0f"),
            _cell(row, "fit_seconds", ".1f"),
            _cell(row, "test_accuracy", ".2%"),
            {True: "yes", False: "no"}.get(row.get("jit_compile"), ""),
            _cell(row, "fraction_of_ceiling", ".0%"),
        )
    return table


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    return "" if row.get(key) is None else format(row[key], fmt)
