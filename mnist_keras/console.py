"""Everything the CLIs show: rich progress, tables, summaries and one-line errors."""

from __future__ import annotations

import argparse
import functools
import math
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import keras
import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from mnist_keras import shell
from mnist_keras.backend import BACKEND, TENSORFLOW
from mnist_keras.errors import INTERRUPTED, ConfigError, MnistKerasError

if TYPE_CHECKING:
    from mnist_keras.static_site import StaticSite
    from mnist_keras.train import Fitted, TrainResult

console = Console()
stderr = Console(stderr=True)
_displays: weakref.WeakSet[Live] = weakref.WeakSet()  # every live display made here


def cli(interrupted: str = "interrupted") -> Callable:
    """Decorate a CLI's `main(argv) -> int`: a typed error becomes one line on stderr and its
    exit code (2: bad input), Ctrl-C the `interrupted` line and 130, live displays stopped first
    so the line is not drawn over."""

    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapped(*args: Any, **kwargs: Any) -> int:
            try:
                return main(*args, **kwargs)
            except MnistKerasError as exc:
                _stop_displays()
                print_error(str(exc))
                return exc.exit_code
            except KeyboardInterrupt:
                _stop_displays()
                print_error(interrupted)
                return INTERRUPTED

        return wrapped

    return decorate


def _live(renderable: Any, **kwargs: Any) -> Live:
    live = Live(renderable, console=console, **kwargs)
    _displays.add(live)
    return live


def _stop_displays() -> None:
    for live in list(_displays):
        live.stop()  # does nothing to one never started


class Parser(argparse.ArgumentParser):
    """argparse whose errors raise ConfigError, so each CLI reports them as one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def print_error(message: str) -> None:
    # escape: messages quote user paths and array names like "[x_test]", never markup
    stderr.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)


def print_line(text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False)


def print_config(config: dict[str, Any], title: str) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in config.items():
        table.add_row(
            key, " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        )
    console.print(table)


class FitProgress(keras.callbacks.Callback):
    """A live progress bar over each epoch's steps above a table of finished epochs."""

    COLUMNS = ("loss", "accuracy", "val_loss", "val_accuracy")

    def __init__(self) -> None:
        super().__init__()
        self.table = _epoch_table(self.COLUMNS)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
        )
        self.live = _live(Group(self.table, self.progress), transient=False)
        self.task: int | None = None
        self._epoch_start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.live.start()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.live.stop()
        console.print()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        epochs = f"{epoch + 1}/{self.params.get('epochs')}"
        self.task = self.progress.add_task(
            "", total=self.params.get("steps"), epoch=epochs, metrics=""
        )
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        text = "  ".join(
            f"{k} {float(v):.4f}" for k, v in (logs or {}).items() if k in self.COLUMNS
        )
        self.progress.update(self.task, completed=batch + 1, metrics=text)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        seconds = time.perf_counter() - self._epoch_start
        cells = [f"{float(logs[k]):.4f}" if k in logs else "-" for k in self.COLUMNS]
        self.table.add_row(str(epoch + 1), *cells, f"{seconds:.1f}")


def _epoch_table(columns: tuple[str, ...]) -> Table:
    table = Table(title="Training", title_justify="left")
    table.add_column("epoch", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("seconds", justify="right")
    return table


def print_summary(figures: dict[str, Any], paths: dict[str, Any], confusion: np.ndarray) -> None:
    """The end-of-run summary: headline figures, the confusion matrix, then where things are."""
    headline = Table(title="Result", show_header=False, title_justify="left")
    for key, value in figures.items():
        headline.add_row(key, _fmt(value))
    console.print(headline)
    console.print(_confusion_table(confusion))
    for key, value in paths.items():  # whole, never truncated: people copy these
        console.print(f"[bold]{key}:[/] {value}", soft_wrap=True, highlight=False)


def print_train_result(result: TrainResult) -> None:
    figures = {
        "test accuracy": result.evaluation.accuracy,
        "test loss": result.evaluation.loss,
        "epochs": len(result.history),
        "training time": f"{result.train_seconds:.1f} s",
        "samples per second": f"{result.samples_per_second:,.0f}",
        "replicas": result.replicas,
    }
    paths = {
        "run folder": result.run.path,
        "SavedModel": result.export_path,
        "Keras model": result.run.keras_model,
        "TensorBoard": shell.tensorboard(result.run.tensorboard),
    }
    if not TENSORFLOW:  # callbacks.GraphWriter
        paths["model graph"] = f"none in TensorBoard on {BACKEND} (it shows TensorFlow graphs)"
    print_summary(figures, paths, result.evaluation.confusion)
    print_exports(result.exports)


def print_worker_result(fitted: Fitted) -> None:
    print_line(
        f"worker done: {len(fitted.history)} epochs, final loss "
        f"{fitted.history[-1]['loss']:.6f}, {fitted.replicas} replicas; the chief evaluated, "
        "exported and wrote the run folder"
    )


def print_exports(exports: Sequence) -> None:
    """One row per exported format (export.Exported): its file, size and test accuracy."""
    table = Table(title="Exports", title_justify="left")
    for name in ("format", "file", "size", "test accuracy"):
        table.add_column(name, justify="left" if name in ("format", "file") else "right")
    for e in exports:
        accuracy = "" if e.test_accuracy is None else f"{e.test_accuracy:.2%}"
        name = f"{e.path.name}/" if e.path.is_dir() else e.path.name
        table.add_row(e.format, name, f"{e.size_bytes / 1e6:.2f} MB", accuracy)
    console.print(table)
    folders = sorted({str(e.path.parent) for e in exports})
    console.print(f"[bold]in:[/] {', '.join(folders)}", soft_wrap=True, highlight=False)


def print_static_site(site: StaticSite) -> None:
    """What `demo --static` wrote (static_site.StaticSite), and how to look at it."""
    console.print(
        f"[bold]static page[/] in {escape(str(site.path))}: {site.size / 1e6:.1f} MB "
        f"(the model {site.model_size / 1e6:.1f} MB, {site.runtime} "
        f"{site.runtime_size / 1e6:.1f} MB)",
        soft_wrap=True,
        highlight=False,
    )
    print_line(f"model: {escape(str(site.model))}")
    print_line(
        f"try it: {shell.python_module('http.server', '-d', site.path, 8000)}, then open "
        "http://127.0.0.1:8000/; publish it: copy the folder to any static host"
    )


def _confusion_table(confusion: np.ndarray) -> Table:
    table = Table(
        title="Confusion matrix on the test set (rows: true, columns: predicted)",
        title_justify="left",
    )
    table.add_column("true", justify="right")
    for predicted in range(len(confusion)):
        table.add_column(str(predicted), justify="right")
    table.add_column("acc", justify="right")
    for true, row in enumerate(confusion):
        cells = [
            f"[bold]{n}[/]" if i == true else (str(n) if n else "[dim]0[/]")
            for i, n in enumerate(row)
        ]
        table.add_row(str(true), *cells, f"{row[true] / max(row.sum(), 1):.2%}")
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def print_predictions(predictions: list) -> None:
    """One row per image: its top three classes with their probabilities."""
    table = Table(title="Predictions", title_justify="left")
    table.add_column("image", overflow="fold")
    for rank in ("1st", "2nd", "3rd"):
        table.add_column(rank, justify="right")
    for prediction in predictions:
        cells = [f"{c}  {p:6.1%}" for c, p in prediction.top(3)]
        table.add_row(prediction.source, f"[bold]{cells[0]}[/]", *cells[1:])
    console.print(table)


class TuneProgress(keras.callbacks.Callback):
    """Live view of a search: finished trials above the trial in flight and its epochs.

    keras-tuner deep-copies callbacks for every trial; copies share this one display.
    """

    def __init__(self, max_epochs: int, rows: Callable[[], list]) -> None:
        super().__init__()
        self.max_epochs, self.rows = max_epochs, rows
        self.start = rows()  # the trials on record before this run
        on_record = f"{_trials(len(self.start))} on record, resuming"
        self.status = Text(on_record if self.start else "waiting for the first trial")
        self.live = _live(Group(trials_table(self.start), self.status))

    def __deepcopy__(self, memo: dict) -> TuneProgress:
        return self

    def __enter__(self) -> TuneProgress:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()
        console.print()

    def trial_begun(self, trial: Any) -> None:
        values = {k: v for k, v in trial.hyperparameters.values.items() if "/" not in k}
        self.current = f"trial {trial.trial_id} {_fmt_values(values)}"
        self.status.plain = f"{self.current}: starting"

    def trial_ended(self, trial_id: str) -> None:
        self.status.plain = f"trial {trial_id} finished"
        self.live.update(Group(trials_table(self.rows()), self.status))

    def search_ended(self) -> None:
        """Every trial, and "already finished" when this run found none left to run (a chief's
        workers run its trials: they count)."""
        rows = self.rows()
        already = "already " if rows == self.start else ""
        self.status.plain = f"search {already}finished: {_trials(len(rows))}"
        self.live.update(Group(trials_table(rows), self.status))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        accuracy = (logs or {}).get("val_accuracy", math.nan)
        epochs = self.params.get("epochs", self.max_epochs)
        self.status.plain = (
            f"{self.current}: epoch {epoch + 1}/{epochs}, val_accuracy {accuracy:.4f}"
        )


def _trials(count: int) -> str:
    return f"{count} trial{'' if count == 1 else 's'}"


def _fmt_values(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )


HP_LABELS = {"hidden_units": "hidden", "learning_rate": "learn. rate"}


def trials_table(rows: list) -> Table:
    """Finished trials, best first: rank, hyperparameters, best val_accuracy, epochs, seconds."""
    names = sorted({name for row in rows for name in row.values})
    table = Table(title="Trials (best first)", title_justify="left")
    headers = [HP_LABELS.get(n, n) for n in names]
    for column in ("rank", "trial", *headers, "val acc", "epochs", "seconds", "ran by"):
        table.add_column(column, justify="left" if column in ("trial", "ran by") else "right")
    for rank, row in enumerate(rows, start=1):
        values = [_fmt_value(row.values.get(n, "-")) for n in names]
        score = "-" if row.score is None else f"{row.score:.4f}"
        seconds = "-" if row.seconds is None else f"{row.seconds:.1f}"
        table.add_row(
            str(rank),
            row.trial_id,
            *values,
            score,
            str(row.epochs),
            seconds,
            ", ".join(row.ran_by) or "-",
        )
    return table


def _fmt_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def print_trials(rows: list) -> None:
    console.print(trials_table(rows))


def status(text: str):
    """A spinner with a line of text, for long work with no natural progress count."""
    return console.status(text)
