"""The backends section of the benchmark: the default MLP and the convnet trained by `train` on
each of Keras 3's backends, beside PyTorch eager and the matrix-product ceiling.

Keras reads `KERAS_BACKEND` once, at import, so each backend trains in a process of its own
(`python -m benchmarks.backends OVERRIDES_JSON OUT`), one after another; the figures of one
benchmark run compare as ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnist_keras.backend import BACKENDS
from mnist_keras.compat import KERAS_3

ARCHS = ("mlp", "cnn")


def measure_backends(
    repeats: int, seed: int, say: Callable[[str], None], **overrides: Any
) -> list[dict[str, Any]]:
    """One row per backend and network: the median over `repeats` runs (seeds `seed`, `seed` + 1,
    ...) of steady samples per second, fit seconds and test accuracy, trained as `train` trains
    with `overrides` (epochs, data, train_samples) on its recipe."""
    backends = BACKENDS if KERAS_3 else BACKENDS[:1]
    rows = []
    for arch in ARCHS:
        for backend in backends:
            say(f"backends: {arch} on {backend}, {repeats} runs")
            runs = [
                _child(backend, {**overrides, "arch": arch, "seed": seed + r})
                for r in range(repeats)
            ]
            rows.append(_median_row(backend, arch, runs))
    return rows


def _median_row(backend: str, arch: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r["error"] for r in runs if "error" in r]
    if failed:
        return {"backend": backend, "arch": arch, "skipped": failed[0]}
    keys = ("samples_per_second", "fit_seconds", "test_accuracy")
    return {
        "backend": backend,
        "arch": arch,
        "epochs": runs[0]["epochs"],
        "jit_compile": runs[0]["jit_compile"],
        **{k: round(statistics.median(r[k] for r in runs), 4) for k in keys},
    }


def _child(backend: str, overrides: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mnist-keras-bench-") as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, "-m", "benchmarks.backends", json.dumps(overrides), str(out)]
        env = {**os.environ, "KERAS_BACKEND": backend}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            return {"error": lines[-1]}
        return json.loads(out.read_text())


def train_here(overrides: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    """Train as `train` does with these flags, on this process's backend."""
    from mnist_keras.config import resolve_config
    from mnist_keras.train import run

    result = run(resolve_config(**overrides, export_formats=("saved_model",)), runs_dir)
    return {
        "epochs": len(result.history),
        "jit_compile": result.metrics()["compiled"],
        "samples_per_second": result.samples_per_second,
        "fit_seconds": result.train_seconds,
        "test_accuracy": result.evaluation.accuracy,
    }


def main(argv: list[str]) -> int:
    overrides, out = argv
    with tempfile.TemporaryDirectory(prefix="mnist-keras-bench-runs-") as runs:
        figures = train_here(json.loads(overrides), Path(runs))
    Path(out).write_text(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
