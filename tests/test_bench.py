"""The benchmark end to end on a small slice: every field is there (figures are not asserted).

Each section runs once, in one of three runs of the harness that skip the others (sections cost
the same apart as together, and three shorter tests share out between workers). In this process:
the report is what is tested; one bad flag goes through a subprocess for the exit code.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import synthetic_mnist, write_idx_folder

from benchmarks import plot
from benchmarks.bench import PEERS, SHAPES, main
from mnist_keras.formats import FORMATS

# The benchmarks are not installed with the package: they run from the checkout.
CHECKOUT_ON_PATH = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}

pytestmark = pytest.mark.slow


def run_bench(tmp_path: Path, capsys: pytest.CaptureFixture, *flags: str) -> tuple[dict, str]:
    """`main` on the smallest run that goes through a section: 300 images, of which the recipes
    hold out 30 (as `train --train-samples 300` does), each network exported as a SavedModel
    alone, the backends left out unless `flags` ask for them (test_backends.py); the JSON report
    and what was printed."""
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=300, n_test=300))
    small = {
        "--train-samples": "300",
        "--epochs": "2",
        "--repeats": "1",
        "--latency-calls": "100",
        "--wild-per-class": "2",
        "--export-formats": "saved_model",
        "--out-dir": str(tmp_path / "bench"),
        "--picture": str(tmp_path / "accuracy_vs_time.png"),
    }
    flags = ("--no-backends", *flags)  # a later --backends wins
    code = main(["--data", str(data), *(x for item in small.items() for x in item), *flags])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-3000:]
    (path,) = (tmp_path / "bench").glob("bench-*.json")
    return json.loads(path.read_text()), printed.out


def check_inference(report: dict[str, Any], out: str) -> None:
    assert list(report["inference"]) == [*FORMATS, "torch_eager"]
    for name in FORMATS:  # the dev extras install every runtime
        figures = report["inference"][name]
        assert figures["batch1_median_ms"] <= figures["batch1_p99_ms"], name
        assert figures["batch10000_images_per_second"] > 0 and figures["size_mb"] > 0, name
    assert report["inference"]["litert_int8"]["size_mb"] < report["inference"]["litert"]["size_mb"]
    assert "Inference, the default network" in out and report["peak_memory_mb"] > 0
    assert "peak memory" in out


def test_bench_throughput_and_inference(tmp_path, capsys):
    # The throughput section and inference; the recipes and architectures are tested below.
    report, out = run_bench(tmp_path, capsys, "--recipes", "none", "--no-architectures")
    assert "Training, steady state" in out
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
    assert set(report["time_to_target"]) == {"default_98", "cnn_fast_99"}
    for name, recipe, target in (
        ("default_98", "default", 0.98),
        ("cnn_fast_99", "cnn-fast", 0.99),
    ):
        figure = report["time_to_target"][name]
        assert (figure["recipe"], figure["target"]) == (recipe, target)
        assert set(figure) == {"recipe", "target", "seconds", "reached", "max_epochs"}
    assert report["time_to_target"]["cnn_fast_99"]["max_epochs"] == 3  # the preset's
    check_inference(report, out)
    assert report["recipes"] == [] and report["architectures"] == []  # skipped, as asked
    assert "Recipes, trained" not in out and "Architectures: MNIST" not in out
    assert not (tmp_path / "accuracy_vs_time.png").exists()  # nothing to draw


def test_bench_recipes(tmp_path, capsys):
    recipes = ("cnn-fast", "torch-eager")
    report, out = run_bench(
        tmp_path,
        capsys,
        "--no-throughput",
        "--recipes",
        *recipes,
        "--recipe-seeds",
        "1",
        "7",
        "--no-architectures",
    )
    runs = [(r["recipe"], r.get("seed")) for r in report["recipes"]]
    if importlib.util.find_spec("torch"):
        assert runs == [(recipe, seed) for recipe in recipes for seed in (1, 7)]
    else:  # Keras 2's environment: the peer is listed once, as skipped
        assert runs == [("cnn-fast", 1), ("cnn-fast", 7), ("torch-eager", None)]
        assert report["recipes"].pop()["skipped"] == "torch not installed"
    for row in report["recipes"]:
        assert 0 < row["test_accuracy"] <= 1 and row["fit_seconds"] > 0
        assert row["epochs"] == {"cnn-fast": 3, "torch-eager": 30}[row["recipe"]]
        if row["recipe"] != "torch-eager":  # read through predict, as train's exports
            assert set(row["wild"]) == {"printed", "strokes", "photo"}
    assert "Recipes, trained as `train` does" in out
    picture = (tmp_path / "accuracy_vs_time.png").read_bytes()
    assert picture.startswith(b"\x89PNG") and len(picture) > 20_000  # drawn, not blank
    # The report holds all the picture needs: drawn again from it, the same picture.
    (report_path,) = (tmp_path / "bench").glob("bench-*.json")
    assert plot.main([str(report_path), str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").read_bytes() == picture
    check_inference(report, out)
    # --no-throughput: no peer, no ceiling, no time to a target, and no table for them.
    assert report["training"] == [] and report["ceiling_gflops"] == {}
    assert report["time_to_target"] == {}
    assert "Training, steady state" not in out and "time to 9" not in out


def test_bench_architectures(tmp_path, capsys):
    # One epoch each: the row reports the run, whatever its length.
    report, out = run_bench(
        tmp_path,
        capsys,
        "--no-throughput",
        "--recipes",
        "none",
        "--architecture-epochs",
        "1",
    )
    rows = report["architectures"]
    assert [(r["arch"], r["augment"]) for r in rows] == [
        ("mlp", False),
        ("mlp", True),
        ("cnn", False),
        ("cnn", True),
    ]
    for row in rows:
        assert 0 < row["test_accuracy"] <= 1 and row["fit_seconds"] > 0
        assert row["epochs"] == 1
        assert set(row["wild"]) == {"printed", "strokes", "photo"}
        assert all(0 <= accuracy <= 1 for accuracy in row["wild"].values())
        # Keras's image transforms have no XLA kernels; XLA slows the convnet down.
        assert row["jit_compile"] == (row["arch"] == "mlp" and not row["augment"])
    assert "Architectures: MNIST test and digits in the wild" in out
    assert report["recipes"] == [] and report["training"] == []


GUARD = "the recipes hold out 5000 training images for validation, and only 300 are given"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "1"], "--epochs must be at least 2"),
        (["--recipes", "none", "cnn"], "--recipes takes none alone"),
        (["--recipes", "mlp"], "--recipes: invalid choice: 'mlp'"),
        (["--recipe-seeds", "x"], "--recipe-seeds: invalid int value: 'x'"),
        (["--recipes", "none"], GUARD),  # the architectures hold out as much
        (["--recipes", "none", "--train-samples", "60000"], GUARD),  # a slice past the data
        (["--train-samples", "0"], "--train-samples must be a positive integer"),
        (["--architecture-epochs", "0"], "--architecture-epochs must be a positive integer"),
        (["--wild-per-class", "0"], "--wild-per-class must be a positive integer"),
        (["--export-formats", "onnx"], "--export-formats must include saved_model"),
        (["--export-formats", "tflite"], "--export-formats: invalid choice: 'tflite'"),
    ],
)
def test_bench_bad_flag(tmp_path, monkeypatch, capsys, args, message):
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=300, n_test=50))
    monkeypatch.chdir(tmp_path)
    assert main(["--data", str(data), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "artifacts").exists()


def test_bench_bad_flag_exits_2_without_traceback(tmp_path):
    # The process boundary: the exit code the shell sees, and no traceback on stderr.
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=300, n_test=50))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--data", str(data), "--recipe-seeds", "1"],
        cwd=tmp_path,
        env=CHECKOUT_ON_PATH,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert GUARD in result.stderr
    assert not (tmp_path / "artifacts").exists()
