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
