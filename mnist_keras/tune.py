"""Hyperparameter search with keras-tuner: `python -m mnist_keras.tune`, alone or across machines.

The hypermodel only samples values and calls `build_model`; data, training and export are the
same code `train` runs. A distributed search is keras-tuner's own: a chief serves the oracle over
gRPC and workers run trials (`--role chief|worker --oracle HOST:PORT`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import keras
import keras_tuner as kt
import tensorflow as tf

from mnist_keras import console
from mnist_keras.compat import (
    atomic_tuner_writes,
    inclusive_high,
    reload_notice_captured,
    repair_reloaded_oracle,
)
from mnist_keras.config import (
    SHARED_FLAGS,
    STRATEGIES,
    TUNE_CHOICES,
    TUNERS,
    TrainConfig,
    TuneConfig,
    add_train_flags,
    resolve_config,
)
from mnist_keras.data import (
    Mnist,
    epoch_steps,
    load_mnist,
    make_dataset,
    split_validation,
    whole_epochs,
)
from mnist_keras.errors import ConfigError, TuneError
from mnist_keras.flags import add_flags, flag_name, given, option_fields
from mnist_keras.leases import (
    RECONNECT_BACKOFF,
    WorkerLeases,
    heartbeat,
    heartbeat_interval,
    patient_client,
    resume_ongoing_trials,
)
from mnist_keras.model import build_model
from mnist_keras.runs import DEFAULT_RUNS_DIR, read_json, write_json
from mnist_keras.train import TrainResult, run

OBJECTIVE = "val_accuracy"
# Not searched, but they decide what a trial is: best_hparams.json carries them.
NETWORK_FIELDS = (
    "arch",
    "conv_filters",
    "conv_kernels",
    "augment",
    "augment_shift",
    "augment_rotation",
    "augment_zoom",
    "beta_1",
    "beta_2",
    "warmup",
)
DEFAULT_SCORE = "default_score.json"  # in the project folder: the unsearched recipe's score
TRIAL_LOG = "mnist_keras_runs.jsonl"  # in each trial folder: one line per time the trial ran
DEFINITION = "search.json"  # in the project folder: which search it holds (search_definition)

# What a search definition leaves out: where and how the search runs, which may change between
# reruns and differ between a chief and its workers. More --max-trials extends a search (each
# trial is still trained and scored the same way), and hyperband sizes itself without it.
RUN_FIELDS = (
    "max_trials",
    "directory",
    "project_name",
    "overwrite",
    "role",
    "oracle",
    "worker_id",
    "connect_timeout",
    "worker_timeout",
    "base",
)
# Nor does it hold the training values no trial depends on: where the data was read from (its
# content counts instead), the test set and the exports (used after the search), how a step is
# executed, and `epochs`, which --max-epochs replaces.
RUN_TRAIN_FIELDS = (
    "data",
    "train_samples",
    "test_samples",
    "export_formats",
    "distribute",
    "steps_per_execution",
    "jit_compile",
    "preset",
    "epochs",
)


# The search space (log scale for width and rate): around each architecture's recipe, wide
# enough to find a better one. Dropout rates join with --tune-dropout.
HIDDEN_UNITS = {"mlp": (512, 2048), "cnn": (64, 1024)}
LEARNING_RATE = {"mlp": (5e-4, 5e-3), "cnn": (1e-3, 1e-2)}
DROPOUT = (0.2, 0.6, 0.1)  # low, high, step
INPUT_DROPOUT = (0.0, 0.3, 0.1)


def sample_config(hp: kt.HyperParameters, base: TrainConfig, tune_dropout: bool) -> TrainConfig:
    """The search space: hidden width and learning rate (log scale), dropout rates if asked."""
    values: dict[str, Any] = {
        "hidden_units": hp.Int("hidden_units", *HIDDEN_UNITS[base.arch], sampling="log"),
        "learning_rate": hp.Float("learning_rate", *LEARNING_RATE[base.arch], sampling="log"),
    }
    if tune_dropout:
        for name, (low, high, step) in (("dropout", DROPOUT), ("input_dropout", INPUT_DROPOUT)):
            values[name] = hp.Float(name, low, inclusive_high(low, high, step), step=step)
    return dataclasses.replace(base, **values)


class HyperMnist(kt.HyperModel):
    """Samples a configuration and builds it with `build_model`; nothing else."""

    def __init__(self, base: TrainConfig, tune_dropout: bool, steps_per_epoch: int) -> None:
        super().__init__(name=f"mnist_{base.arch}")
        self.base, self.tune_dropout, self.steps = base, tune_dropout, steps_per_epoch

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        return build_model(sample_config(hp, self.base, self.tune_dropout), self.steps)


class _TrialLog:
    """Tuner mixin: time each trial, log who ran it in its folder, and tell an observer."""

    observer: Any = None  # an object with trial_begun(trial) and trial_ended(row), or None
    heartbeat_s: float | None = None  # a worker's: how often it tells the chief it still trains
    leases: WorkerLeases | None = None  # the chief's

    def on_trial_begin(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)
        self._trial_start = time.perf_counter()
        if self.observer is not None:
            self.observer.trial_begun(trial)

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
        with heartbeat(self.oracle, trial.trial_id, self.heartbeat_s):
            histories = super().run_trial(trial, *args, **kwargs)
        self._trial_epochs = max(len(h.history.get(OBJECTIVE, [])) for h in histories)
        return histories

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        entry = {
            "tuner_id": self.tuner_id,
            "seconds": time.perf_counter() - self._trial_start,
            "epochs": getattr(self, "_trial_epochs", 0),
        }
        log = Path(self.get_trial_dir(trial.trial_id)) / TRIAL_LOG
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        super().on_trial_end(trial)
        if self.observer is not None:
            self.observer.trial_ended(trial.trial_id)

    def reload(self) -> None:
        super().reload()
        if not self._is_worker():
            repair_reloaded_oracle(self.oracle)


def make_tuner(config: TuneConfig, steps_per_epoch: int, observer: Any = None) -> kt.Tuner:
    """The keras-tuner tuner for `config`, resuming its project unless `overwrite`."""
    atomic_tuner_writes()
    base_class = getattr(kt, TUNERS[config.tuner])
    tuner_class = type(f"Logged{base_class.__name__}", (_TrialLog, base_class), {})
    sizes = (
        {"max_epochs": config.max_epochs, "factor": 3}
        if config.tuner == "hyperband"
        else {"max_trials": config.max_trials}
    )
    with reload_notice_captured():
        tuner = tuner_class(
            HyperMnist(config.base, config.tune_dropout, steps_per_epoch),
            objective=kt.Objective(OBJECTIVE, direction="max"),
            executions_per_trial=config.executions_per_trial,
            seed=config.base.seed,
            directory=config.directory,
            project_name=config.project_name,
            overwrite=config.overwrite,
            **sizes,
        )
    tuner.observer = observer
    if config.role == "chief":
        resume_ongoing_trials(tuner.oracle, project_dir(config))
        tuner.leases = WorkerLeases(tuner.oracle, config.worker_timeout)
    elif config.role == "worker":
        patient_client(tuner.oracle, config.oracle)
        tuner.heartbeat_s = heartbeat_interval(config.worker_timeout)
    return tuner


@dataclass(frozen=True)
class SearchData:
    """What every trial fits on: the training split, scored on the validation split."""

    base: TrainConfig  # the unsearched values, with the search's epochs
    train: tf.data.Dataset
    val: tf.data.Dataset
    steps: int  # steps per epoch

    def fit_args(self, config: TuneConfig, callbacks: Sequence = ()) -> dict[str, Any]:
        """`fit` arguments for one trial; the test set is not touched."""
        if config.patience:
            stop = keras.callbacks.EarlyStopping(OBJECTIVE, patience=config.patience, mode="max")
            callbacks = [stop, *callbacks]
        return {
            "x": self.train,
            "validation_data": self.val,
            "epochs": config.max_epochs,
            "steps_per_epoch": self.steps,
            "callbacks": list(callbacks),
            "shuffle": False,  # the dataset shuffles, seeded
            "verbose": 0,
        }


def search_data(config: TuneConfig, data: Mnist) -> SearchData:
    split = split_validation(
        data.x_train, data.y_train, config.base.validation_size, config.base.seed
    )
    # A trial's learning-rate schedule spans the most epochs a trial may train.
    base = dataclasses.replace(config.base, epochs=config.max_epochs)
    base = whole_epochs(base, len(split.x_train))
    return SearchData(
        base,
        make_dataset(split.x_train, split.y_train, base.batch_size, base.seed),
        make_dataset(split.x_val, split.y_val, base.batch_size),
        epoch_steps(base, len(split.x_train)),
    )


def search_definition(config: TuneConfig, data: Mnist) -> dict[str, Any]:
    """What makes the trials what they are and how they are scored: one project folder holds
    one definition, so no search mixes trials of two budgets or two networks."""
    tuning = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    tuning = {k: v for k, v in tuning.items() if k not in RUN_FIELDS}
    trial = {k: v for k, v in config.base.to_dict().items() if k not in RUN_TRAIN_FIELDS}
    digest = hashlib.sha256(data.x_train.tobytes())
    digest.update(data.y_train.tobytes())
    images = f"{len(data.y_train)} images (sha256 {digest.hexdigest()[:12]})"
    return json.loads(json.dumps({**tuning, **trial, "training_data": images}))


def check_project(config: TuneConfig, definition: dict[str, Any]) -> None:
    """Refuse a project folder that holds another search (unless `overwrite`), before any of
    it is touched. A worker checks its chief's record and never writes one."""
    if config.overwrite:
        return
    project = project_dir(config)
    recorded = read_json(project / DEFINITION)
    if not recorded:
        if config.role != "worker" and _holds_search(project):
            raise ConfigError(
                f"{project}: no {DEFINITION} says which search this folder holds (it was made "
                f"before mnist_keras recorded one); {_ways_out(config)}"
            )
        return
    changed = [
        f"{_label(name)} {recorded.get(name, '(not recorded)')} -> {value}"
        for name, value in definition.items()
        if name not in recorded or recorded[name] != value
    ]
    if changed:
        raise ConfigError(
            f"{project} holds another search ({', '.join(changed)}); {_ways_out(config)}"
        )


def _holds_search(project: Path) -> bool:
    return (project / "oracle.json").exists() or any(project.glob("trial_*"))


def _ways_out(config: TuneConfig) -> str:
    if config.role == "worker":
        return "give the worker its chief's search flags"
    return (
        f"start it afresh with {flag_name('overwrite')}, or give this search its own folder "
        f"with {flag_name('project_name')} NAME"
    )


def _label(name: str) -> str:
    flags = (*option_fields(TuneConfig), *option_fields(TrainConfig))
    return flag_name(name) if name in flags else name.replace("_", " ")


def search(
    config: TuneConfig,
    data: Mnist,
    callbacks: Sequence = (),
    observer: Any = None,
    definition: dict[str, Any] | None = None,
):
    """Run (or resume) the search on the validation split; the test set is not touched.

    Args:
        definition: `search_definition(config, data)`, when the caller has it already.

    Raises ConfigError when the project folder holds another search (`check_project`)."""
    definition = definition or search_definition(config, data)
    check_project(config, definition)
    trials = search_data(config, data)
    keras.utils.set_random_seed(trials.base.seed)
    tuner = make_tuner(dataclasses.replace(config, base=trials.base), trials.steps, observer)
    # After the tuner: --overwrite has emptied the folder by now.
    record = project_dir(config) / DEFINITION
    if config.role != "worker" and read_json(record) != definition:
        write_json(record, definition)
    board = keras.callbacks.TensorBoard(str(project_dir(config) / "tensorboard"))  # + HParams
    tuner.search(**trials.fit_args(config, [board, *callbacks]))
    return tuner


def project_dir(config: TuneConfig) -> Path:
    return Path(config.directory) / config.project_name


def default_score(config: TuneConfig, data: Mnist, callbacks: Sequence = ()) -> dict[str, Any]:
    """The unsearched configuration trained and scored exactly as a trial is: what the search
    must beat. Kept in the project folder, so a resumed search does not train it again (unless
    the values it was trained with changed)."""
    path = project_dir(config) / DEFAULT_SCORE
    trials = search_data(config, data)
    measured = {"config": trials.base.to_dict(), "patience": config.patience}
    if path.is_file():
        kept = json.loads(path.read_text())
        if {k: kept.get(k) for k in measured} == json.loads(json.dumps(measured)):
            return kept
    keras.utils.set_random_seed(trials.base.seed)
    model = build_model(trials.base, trials.steps)
    scores = model.fit(**trials.fit_args(config, callbacks)).history[OBJECTIVE]
    score = {"val_accuracy": max(scores), "epochs": len(scores), **measured}
    write_json(path, score)
    return score


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    status: str
    values: dict[str, Any]
    score: float | None  # best validation accuracy
    epochs: int  # epochs the trial trained (early stopping may cut it short); 0 if unknown
    seconds: float | None
    ran_by: tuple[str, ...]  # tuner ids, one per time the trial ran


def trial_rows(project: Path) -> list[TrialRow]:
    """Every trial on disk (resumed searches included), best first."""
    found = (_trial_row(path.parent) for path in sorted(project.glob("trial_*/trial.json")))
    rows = [row for row in found if row is not None]
    return sorted(rows, key=lambda r: (r.score is None, -(r.score or 0.0), r.trial_id))


def _trial_row(folder: Path) -> TrialRow | None:
    """The trial in `folder`, or None while another process is still writing its trial.json
    (keras-tuner writes it in place; a distributed search's display reads the workers' files)."""
    try:
        record = json.loads((folder / "trial.json").read_text())
    except (OSError, ValueError):
        return None
    log = folder / TRIAL_LOG
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return TrialRow(
        trial_id=record["trial_id"],
        status=record["status"],
        values={
            k: v
            for k, v in record["hyperparameters"]["values"].items()
            if not k.startswith("tuner/")
        },
        score=record.get("score"),
        epochs=max((e.get("epochs", 0) for e in entries), default=0),
        seconds=sum(e["seconds"] for e in entries) if entries else None,
        ran_by=tuple(e["tuner_id"] for e in entries),
    )


def best_hparams(tuner: kt.Tuner, config: TuneConfig, default: dict[str, Any]) -> dict[str, Any]:
    """What the final model trains, in TrainConfig's names (for `train --hparams`): the best
    trial, or the unsearched values when no trial beat their `default_score`."""
    winner = _winning_trial(tuner, default["val_accuracy"])
    searched = [hp.name for hp in tuner.oracle.hyperparameters.space if "/" not in hp.name]
    if winner is None:
        values = {name: getattr(config.base, name) for name in searched}
        found = {"epochs": default["epochs"], "val_accuracy": default["val_accuracy"]}
    else:
        values = {name: winner.hyperparameters.values[name] for name in searched}
        found = {"epochs": trained_epochs(tuner, winner, config), "val_accuracy": winner.score}
    return {
        **values,
        **found,
        "validation_size": 0,  # the final model: every training image, the last epoch kept
        # What the space was searched on, so `train --hparams` builds the same network.
        **{name: getattr(config.base, name) for name in NETWORK_FIELDS},
        "trial_id": winner.trial_id if winner else "default",
        "default_val_accuracy": default["val_accuracy"],
    }


def _winning_trial(tuner: kt.Tuner, to_beat: float) -> kt.engine.trial.Trial | None:
    best = tuner.oracle.get_best_trials(1)
    if best and best[0].score is not None and best[0].score > to_beat:
        return best[0]
    return None


def trained_epochs(tuner: kt.Tuner, trial: kt.engine.trial.Trial, config: TuneConfig) -> int:
    """How many epochs of its schedule the trial ran: Hyperband continues a promoted trial from
    `tuner/initial_epoch`, and early stopping may end a fit before `--max-epochs`."""
    values = trial.hyperparameters.values
    row = _trial_row(Path(tuner.get_trial_dir(trial.trial_id)))
    if row is None or not row.epochs:  # no log of ours (written elsewhere): its budget
        return values.get("tuner/epochs", config.max_epochs)
    return values.get("tuner/initial_epoch", 0) + row.epochs


def search_verdict(hparams: dict[str, Any]) -> str:
    """One line: what the search bought over the default recipe, on the validation split."""
    found, default = hparams["val_accuracy"], hparams["default_val_accuracy"]
    if hparams["trial_id"] == "default":
        return f"no trial beat the default recipe (val_accuracy {default:.4f}); trained it"
    return (
        f"trial {hparams['trial_id']}: val_accuracy {found:.4f}, the default recipe "
        f"{default:.4f} ({100 * (found - default):+.2f} points)"
    )


def final_config(config: TuneConfig, hparams: dict[str, Any]) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return dataclasses.replace(config.base, **{k: v for k, v in hparams.items() if k in fields})


def train_best(
    config: TuneConfig,
    data: Mnist,
    runs_dir: Path,
    tuner: kt.Tuner,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    default: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], TrainResult]:
    """Write best_hparams.json, then train, evaluate and export that configuration.

    Args:
        default: `default_score` of the unsearched configuration (measured here when None).
    """
    default = default or default_score(config, data)
    hparams = best_hparams(tuner, config, default)
    write_json(project_dir(config) / "best_hparams.json", hparams)
    return hparams, run(final_config(config, hparams), runs_dir, datasets=data, callbacks=callbacks)


def distributed_environment(config: TuneConfig) -> dict[str, str]:
    """The variables keras-tuner reads to run as chief or worker; none when standalone."""
    if config.role == "standalone":
        return {}
    host, _, port = config.oracle.rpartition(":")
    tuner_id = "chief" if config.role == "chief" else config.worker_id
    return {
        "KERASTUNER_TUNER_ID": tuner_id,
        "KERASTUNER_ORACLE_IP": host,
        "KERASTUNER_ORACLE_PORT": port,
    }


def wait_for_oracle(address: str, timeout: float) -> None:
    """Block until the chief's oracle answers; keras-tuner's own client would wait an hour."""
    channel = grpc.insecure_channel(address, options=RECONNECT_BACKOFF)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError as exc:
        raise TuneError(
            f"--oracle {address}: no chief answered within {timeout:g} s "
            "(start the chief first, or raise --connect-timeout)"
        ) from exc
    finally:
        channel.close()


def build_parser() -> console.Parser:
    p = console.Parser(prog="python -m mnist_keras.tune", description=__doc__.splitlines()[0])
    add_flags(p, TuneConfig, choices=TUNE_CHOICES)
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=DEFAULT_RUNS_DIR,
        metavar="DIR",
        help=f"where the final training run goes (default: {DEFAULT_RUNS_DIR})",
    )
    add_train_flags(p, SHARED_FLAGS)
    p.add_argument(
        "--distribute",
        choices=STRATEGIES,
        default="none",
        help="none only: each trial trains in one process; spread a search over processes and "
        "hosts with --role chief|worker, then train the best model with train --distribute",
    )
    return p


def config_from_args(args: Any) -> TuneConfig:
    if args.distribute != "none":
        raise ConfigError(
            f"--distribute {args.distribute}: a search trains each trial in one process; spread "
            "it over processes and hosts with --role chief|worker (docs/distributed.md)"
        )
    base = resolve_config(**given(args, SHARED_FLAGS))
    return TuneConfig(base=base, **given(args, option_fields(TuneConfig)))


@console.cli(interrupted="interrupted; rerun the same command to resume the search")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    os.environ.update(distributed_environment(config))
    if config.role == "worker":
        wait_for_oracle(config.oracle, config.connect_timeout)
    data = load_mnist(config.base.data).head(config.base.train_samples, config.base.test_samples)
    definition = search_definition(config, data)  # hashes the training data: once
    check_project(config, definition)  # before the display draws
    project = project_dir(config)
    display = console.TuneProgress(config.max_epochs, lambda: trial_rows(project))
    with display:
        tuner = search(config, data, [display], display, definition)
        display.search_ended()
    console.print_trials(trial_rows(project))
    if config.role == "worker":
        return 0
    with console.status("training the default recipe as a trial, for comparison"):
        default = default_score(config, data)
    progress = [console.FitProgress()]
    hparams, result = train_best(config, data, args.runs_dir, tuner, progress, default)
    console.print_config(hparams, "Best hyperparameters")
    console.print_line(search_verdict(hparams))
    console.print_train_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
