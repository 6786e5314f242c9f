"""The package's typed errors: each CLI turns them into one line on stderr and an exit code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_keras.shell import python_module

if TYPE_CHECKING:
    from mnist_keras.runs import RunDir

INTERRUPTED = 130  # the exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells use


class MnistKerasError(Exception):
    """Base class of every error the package raises on purpose."""

    exit_code = 2  # bad input: a flag, a file, a folder


class DataError(MnistKerasError):
    """A data source is missing, unreadable or not MNIST-shaped."""


class ConfigError(MnistKerasError):
    """A flag, preset or configuration value is invalid."""


class RunError(MnistKerasError):
    """A run folder cannot be created, resumed or written."""


class TrainingDiverged(RunError):
    """The loss became NaN; the run folder keeps the last good checkpoint."""

    exit_code = 1


class TrainingInterrupted(RunError):
    """Ctrl-C during training; the run can be resumed from its last finished epoch."""

    exit_code = INTERRUPTED

    def __init__(self, run: RunDir, resume: str | None = None) -> None:
        command = python_module("mnist_keras.train", "--resume", resume or run.path)
        super().__init__(f"interrupted; resume with: {command}")
        self.run = run


class PeerLost(RunError):
    """Another process of a multi-process run stopped; the run resumes from its last epoch."""

    exit_code = 1

    def __init__(self, run: RunDir, reason: str, resume: str | None = None) -> None:
        super().__init__(
            f"another process of the run stopped ({reason}); start them all again with "
            f"--resume {resume or run.path} (scripts/launch_workers.py passes it to each)"
        )
        self.run, self.reason = run, reason


class ExportError(MnistKerasError):
    """A model could not be exported."""


class ModelError(MnistKerasError):
    """An exported model is missing, unreadable or lacks the serving signature."""


class NoExportError(ModelError):
    """No run folder holds an exported model yet (nothing to serve or predict with)."""


class TuneError(MnistKerasError):
    """A hyperparameter search cannot start or go on (e.g. no chief oracle answers)."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """A third-party exception as one short line, to quote inside our own error message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]
