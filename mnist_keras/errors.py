"""The package's typed errors: each CLI turns them into one line on stderr and exit code 2."""


class MnistKerasError(Exception):
    """Base class of every error the package raises on purpose."""


class DataError(MnistKerasError):
    """A data source is missing, unreadable or not MNIST-shaped."""


class ConfigError(MnistKerasError):
    """A flag, preset or configuration value is invalid."""


class RunError(MnistKerasError):
    """A run folder cannot be created, resumed or written."""


class ExportError(MnistKerasError):
    """A model could not be exported."""


class ModelError(MnistKerasError):
    """An exported model is missing, unreadable or lacks the serving signature."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """A third-party exception as one short line, to quote inside our own error message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


class TuneError(MnistKerasError):
    """A hyperparameter search cannot start or go on (e.g. no chief oracle answers)."""


class NoExportError(ModelError):
    """No run folder holds an exported model yet (nothing to serve or predict with)."""
