"""The benchmark end to end on a small slice: every field is there (figures are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import synthetic_mnist, write_idx_folder

from benchmarks.bench import PEERS, SHAPES
from mnist_keras.formats import FORMATS

# The benchmarks are not installed with the package: they run from the checkout.
CHECKOUT_ON_PATH = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}

pytestmark = pytest.mark.slow


def test_bench_writes_every_field(tmp_path):
    # 5,600 images: the recipes hold out 5,000 for validation, as `train` does.
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=5600, n_test=300))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench",
            "--data",
            str(data),
            "--epochs",
            "2",
            "--repeats",
            "1",
            "--latency-calls",
            "100",
            "--recipe-seeds",
            "1",
            "--wild-per-class",
            "2",
            "--out-dir",
            "bench",
        ],
        cwd=tmp_path,
        env=CHECKOUT_ON_PATH,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training, steady state" in result.stdout and "peak memory" in result.stdout
    (path,) = (tmp_path / "bench").glob("bench-*.json")
    report = json.loads(path.read_text())
    expected_rows = len(PEERS) * len(SHAPES) - (len(SHAPES) - 1)  # TF1 at its own shape only
    assert len(report["training"]) == expected_rows
    for row in report["training"]:
        if row["skipped"]:
            assert row["samples_per_second"] is None  # listed, not dropped
            continue
        for key in (
            "samples_per_second",
            "warmup_seconds",
            "test_accuracy",
            "ratio_to_package",
            "fraction_of_ceiling",
        ):
            assert row[key] > 0, (row["peer"], key)
    assert set(report["ceiling_gflops"]) == {f"{h}x{b}" for h, b in SHAPES}
    assert set(report["time_to_98"]) == {"target", "seconds", "reached", "max_epochs"}
    assert list(report["inference"]) == [*FORMATS, "torch_eager"]
    for name in FORMATS:  # the dev extras install every runtime
        figures = report["inference"][name]
        assert figures["batch1_median_ms"] <= figures["batch1_p99_ms"], name
        assert figures["batch10000_images_per_second"] > 0 and figures["size_mb"] > 0, name
    assert report["inference"]["litert_int8"]["size_mb"] < report["inference"]["litert"]["size_mb"]
    assert "Inference, the default network" in result.stdout and report["peak_memory_mb"] > 0
    assert [(r["preset"], r["seed"]) for r in report["recipes"]] == [("default", 1), ("v0.1", 1)]
    for row, epochs in zip(report["recipes"], (30, 20), strict=True):
        assert 0 < row["test_accuracy"] <= 1 and row["fit_seconds"] > 0
        assert row["epochs"] == epochs
    assert "Recipes, trained as `train` does" in result.stdout
    rows = report["architectures"]
    assert [(r["arch"], r["augment"]) for r in rows] == [
        ("mlp", False),
        ("mlp", True),
        ("cnn", False),
        ("cnn", True),
    ]
    for row in rows:
        assert 0 < row["test_accuracy"] <= 1 and row["fit_seconds"] > 0
        assert set(row["wild"]) == {"printed", "strokes", "photo"}
        assert all(0 <= accuracy <= 1 for accuracy in row["wild"].values())
        # Keras's image transforms have no XLA kernels; XLA slows the convnet down.
        assert row["jit_compile"] == (row["arch"] == "mlp" and not row["augment"])
    assert "Architectures: MNIST test and digits in the wild" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "1"], "--epochs must be at least 2"),
        (["--recipe-seeds", "-1"], "--recipe-seeds must be 0 or more"),
        (["--recipe-seeds", "1"], "the recipes hold out 5000 training images"),
        (["--recipe-seeds", "0"], "the recipes hold out 5000 training images"),
        (["--wild-per-class", "0"], "--wild-per-class must be a positive integer"),
    ],
)
def test_bench_bad_flag(tmp_path, args, message):
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=300, n_test=50))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--data", str(data), *args],
        cwd=tmp_path,
        env=CHECKOUT_ON_PATH,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr
    assert not (tmp_path / "artifacts").exists()
