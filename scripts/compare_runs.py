"""Compare finished training runs side by side: versions, preset, accuracy, time, throughput.

python scripts/compare_runs.py artifacts/runs/*        # or any run folders
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

COLUMNS = ("run", "keras", "tensorflow", "preset", "epochs", "test accuracy", "train s",
           "samples/s")  # fmt: skip


def run_row(run_dir: Path) -> tuple[str, ...]:
    """One table row from a run folder's config.json and metrics.json."""
    record = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return (
        run_dir.name,
        record["versions"]["keras"],
        record["versions"]["tensorflow"],
        record["config"]["preset"],
        str(metrics["epochs_completed"]),
        f"{metrics['test_accuracy']:.4f}",
        f"{metrics['train_seconds']:.1f}",
        f"{metrics['samples_per_second']:,.0f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    args = parser.parse_args()
    table = Table(*COLUMNS)
    for run_dir in args.runs:
        if (run_dir / "metrics.json").is_file():
            table.add_row(*run_row(run_dir))
    Console(width=max(120, Console().width)).print(table)  # rows must not fold


if __name__ == "__main__":
    main()
