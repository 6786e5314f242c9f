"""keras-tuner search: the space, a tiny search end to end, resume, --hparams, distribution."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import keras
import keras_tuner as kt
import numpy as np
import pytest
from helpers import (
    assert_clean_failure,
    error_lines,
    run_cli,
    run_main,
    synthetic_mnist,
    tensorboard_tags,
    write_idx_folder,
)
from keras_tuner.src.distribute.oracle_chief import exit_chief

from mnist_keras.compat import KERAS_3, atomic_tuner_writes
from mnist_keras.config import TuneConfig, resolve_config
from mnist_keras.errors import ConfigError, TuneError
from mnist_keras.leases import heartbeat, heartbeat_interval
from mnist_keras.runs import read_json
from mnist_keras.train import build_parser as train_parser
from mnist_keras.train import config_from_args as train_config_from_args
from mnist_keras.tune import (
    DEFAULT_SCORE,
    DEFINITION,
    DROPOUT,
    HIDDEN_UNITS,
    INPUT_DROPOUT,
    LEARNING_RATE,
    NETWORK_FIELDS,
    HyperMnist,
    best_hparams,
    build_parser,
    check_project,
    config_from_args,
    default_score,
    distributed_environment,
    main,
    make_tuner,
    project_dir,
    search,
    search_data,
    search_definition,
    search_verdict,
    train_best,
    trained_epochs,
    trial_rows,
    wait_for_oracle,
)


def _space(tune_dropout: bool, arch: str = "mlp") -> dict:
    hp = kt.HyperParameters()
    config = resolve_config(arch=arch)
    HyperMnist(config, tune_dropout, steps_per_epoch=10).build(hp)  # registers the space
    return {item.name: item for item in hp.space}


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_search_space_bounds_log_sampling_and_build_model(arch):
    assert set(_space(tune_dropout=False, arch=arch)) == {"hidden_units", "learning_rate"}
    space = _space(tune_dropout=True, arch=arch)
    assert set(space) == {"hidden_units", "learning_rate", "dropout", "input_dropout"}
    units = [space["hidden_units"].random_sample(seed) for seed in range(400)]
    rates = [space["learning_rate"].random_sample(seed) for seed in range(400)]
    low, high = HIDDEN_UNITS[arch]
    assert min(units) >= low and max(units) <= high
    assert min(rates) >= LEARNING_RATE[arch][0] and max(rates) <= LEARNING_RATE[arch][1]
    # Log sampling: about half the draws fall below the geometric middle (a linear draw: 27%).
    assert 0.35 < np.mean(np.array(units) < np.sqrt(low * high)) < 0.65
    assert 0.35 < np.mean(np.array(rates) < np.sqrt(np.prod(LEARNING_RATE[arch]))) < 0.65
    for name, (low, high, step) in (("dropout", DROPOUT), ("input_dropout", INPUT_DROPOUT)):
        draws = {round(space[name].random_sample(seed), 6) for seed in range(200)}
        assert draws == {round(low + i * step, 6) for i in range(round((high - low) / step) + 1)}
    hp = kt.HyperParameters()
    hp.values.update(hidden_units=77, learning_rate=0.02, dropout=0.3, input_dropout=0.1)
    model = HyperMnist(resolve_config(arch=arch), tune_dropout=True, steps_per_epoch=10).build(hp)
    assert model.name == f"mnist_{arch}"
    assert model.get_layer("hidden").units == 77
    assert model.get_layer("dropout").rate == pytest.approx(0.3)
    assert model.get_layer("input_dropout").rate == pytest.approx(0.1)
    schedule = keras.optimizers.schedules.deserialize(model.optimizer.get_config()["learning_rate"])
    assert float(schedule(schedule.warmup_steps)) == pytest.approx(0.02)  # the peak


@pytest.mark.parametrize(
    "flags, project, max_epochs",
    [
        ([], "mnist", 40),
        (["--augment"], "mnist_augment", 40),
        (["--arch", "cnn"], "mnist_cnn_augment", 12),
        (["--arch", "cnn", "--no-augment"], "mnist_cnn", 12),
        (["--arch", "cnn", "--max-epochs", "3", "--project-name", "p"], "p", 3),
    ],
)
def test_each_network_searches_in_its_own_folder_for_its_own_epochs(flags, project, max_epochs):
    config = config_from_args(build_parser().parse_args(flags))
    assert (config.project_name, config.max_epochs) == (project, max_epochs)


def test_the_tuning_docs_state_the_search_space():
    docs = " ".join((Path(__file__).parents[1] / "docs" / "tuning.md").read_text().split())
    for arch, (low, high) in HIDDEN_UNITS.items():
        assert f"{low} to {high} for {arch}" in docs and "hidden width (log scale" in docs
    for arch, (low, high) in LEARNING_RATE.items():
        assert f"{low:g} to {high:g} for {arch}" in docs and "learning rate (log scale" in docs
    assert f"dropout ({DROPOUT[0]:g} to {DROPOUT[1]:g})" in docs
    assert f"input dropout ({INPUT_DROPOUT[0]:g} to {INPUT_DROPOUT[1]:g})" in docs


def _config(tmp_path: Path, arch: str = "mlp", **overrides) -> TuneConfig:
    # No XLA: a trial is one short fit of a new model, so compiling it costs more than it saves.
    # The final model exports only its SavedModel (the other formats are test_formats' part).
    base = resolve_config(
        arch=arch,
        validation_size=100,
        batch_size=64,
        seed=3,
        jit_compile=False,
        export_formats=("saved_model",),
    )
    values = dict(tuner="random", max_trials=2, max_epochs=2, directory=str(tmp_path / "tuning"))
    return TuneConfig(base=base, **{**values, **overrides})


# The tests that start from a finished search share one: made once a worker (a session
# fixture, so running another module's tests in between does not remake it), and once in all
# where --dist loadgroup keeps them in one worker.
starts_finished = pytest.mark.xdist_group("tune_finished_search")


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory) -> Path:
    """The tuning folder of a finished one-trial, one-epoch search on `tiny`'s data. Resuming
    writes to it: each test works on its own copy (`_from_finished`)."""
    folder = tmp_path_factory.mktemp("finished")
    search(_config(folder, max_trials=1, max_epochs=1), synthetic_mnist())
    return folder / "tuning"


def _from_finished(finished_search: Path, tmp_path: Path, **overrides) -> TuneConfig:
    """A copy of `finished_search` in `tmp_path`, and its config (with `overrides`)."""
    shutil.copytree(finished_search, tmp_path / "tuning")
    return _config(tmp_path, max_trials=1, max_epochs=1, **overrides)


class Observer:
    def __init__(self) -> None:
        self.begun: list[str] = []

    def trial_begun(self, trial) -> None:
        self.begun.append(trial.trial_id)

    def trial_ended(self, trial_id: str) -> None:
        pass


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.slow
def test_tiny_search_trains_the_best_and_resumes_without_rerunning(arch, tmp_path, tiny):
    config = _config(tmp_path, arch)
    first = Observer()
    tuner = search(config, tiny, observer=first)
    project = Path(config.directory) / config.project_name
    rows = trial_rows(project)
    assert len(rows) == 2 and len(first.begun) == 2
    assert all(row.status == "COMPLETED" and row.ran_by == ("tuner0",) for row in rows)
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)
    assert all(1 <= row.epochs <= 2 and row.seconds > 0 for row in rows)
    for row in rows:  # the HParams dashboard gets every trial
        logs = project / "tensorboard" / row.trial_id / "execution0"
        assert "_hparams_/session_start_info" in tensorboard_tags(logs)
        assert "epoch_accuracy" in tensorboard_tags(logs / "validation")

    hparams, result = train_best(config, tiny, tmp_path / "runs", tuner)
    saved = json.loads((project / "best_hparams.json").read_text())
    assert saved == json.loads(json.dumps(hparams))
    default = json.loads((project / DEFAULT_SCORE).read_text())  # scored as a trial is
    assert 0 < default["val_accuracy"] <= 1 and 1 <= default["epochs"] <= config.max_epochs
    assert saved["default_val_accuracy"] == default["val_accuracy"]
    winner = rows[0] if rows[0].score > default["val_accuracy"] else None
    assert saved["trial_id"] == (winner.trial_id if winner else "default")
    expected = winner.values["hidden_units"] if winner else config.base.hidden_units
    assert saved["hidden_units"] == result.config.hidden_units == expected
    # The final model: the whole training set, for the epochs the search found best.
    assert result.config.validation_size == 0 and saved["validation_size"] == 0
    assert len(result.history) == saved["epochs"] == result.config.epochs
    assert math.isnan(result.history[-1].get("val_accuracy", math.nan))  # no validation split
    assert (result.export_path / "saved_model.pb").is_file()
    assert result.config.arch == saved["arch"] == arch

    again = Observer()
    search(config, tiny, observer=again)  # the same command again
    assert again.begun == []
    assert [r.ran_by for r in trial_rows(project)] == [("tuner0",)] * 2

    args = train_parser().parse_args(["--hparams", str(project / "best_hparams.json")])
    reproduced = train_config_from_args(args)
    assert (reproduced.hidden_units, reproduced.learning_rate, reproduced.epochs) == (
        saved["hidden_units"],
        saved["learning_rate"],
        saved["epochs"],
    )
    for field in NETWORK_FIELDS:  # the same network, augmented alike
        assert getattr(reproduced, field) == getattr(config.base, field), field


def _cli_search(tmp_path: Path, tiny, finished_search: Path) -> tuple[list[str], TuneConfig]:
    """The flags of `finished_search` (on `tiny`, written where --data reads it) and their
    config, that search copied where they resume it. (Flags for another search would be
    refused, and the tests below would fail.)"""
    _from_finished(finished_search, tmp_path)
    data = write_idx_folder(tmp_path / "data", tiny)
    flags = [
        *("--data", str(data), "--tuner", "random", "--max-trials", "1", "--max-epochs", "1"),
        *("--validation-size", "100", "--batch-size", "64", "--seed", "3"),
        *("--directory", str(tmp_path / "tuning"), "--runs-dir", str(tmp_path / "runs")),
        *("--export-formats", "saved_model", "--no-jit-compile"),
    ]
    return flags, config_from_args(build_parser().parse_args(flags))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "change, changed",
    [
        (["--tuner", "hyperband"], "--tuner random -> hyperband"),
        (["--max-epochs", "2"], "--max-epochs 1 -> 2"),
    ],
)
@starts_finished
def test_another_search_in_the_folder_is_refused_in_one_line(
    change, changed, tmp_path, tiny, finished_search, capsys
):
    flags, config = _cli_search(tmp_path, tiny, finished_search)
    project = project_dir(config)
    before = _files(project)
    capsys.readouterr()
    assert main([*flags, *change]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err  # no traceback, nothing drawn
    assert err.startswith(f"error: {project} holds another search ({changed})")
    assert "--overwrite" in err and "--project-name" in err
    assert _files(project) == before and not (tmp_path / "runs").exists()


@starts_finished
def test_overwrite_starts_another_search_afresh(tmp_path, tiny, finished_search):
    config = _from_finished(finished_search, tmp_path)
    fresh = Observer()
    search(dataclasses.replace(config, overwrite=True), tiny, observer=fresh)
    # The same search started over: its trial ran again, and no other joined the one on disk.
    (row,) = trial_rows(project_dir(config))
    assert len(fresh.begun) == 1 and row.ran_by == ("tuner0",)  # its old log went with it
    hyperband = dataclasses.replace(config, tuner="hyperband", max_epochs=1)
    with pytest.raises(ConfigError, match="--tuner random -> hyperband"):
        search(hyperband, tiny)
    tuner = search(dataclasses.replace(hyperband, overwrite=True), tiny)
    project = project_dir(config)
    assert json.loads((project / DEFINITION).read_text()) == search_definition(hyperband, tiny)
    rows = trial_rows(project)
    assert rows and all(
        "tuner/epochs" in t.hyperparameters.values for t in tuner.oracle.trials.values()
    )
    again = Observer()
    search(hyperband, tiny, observer=again)  # now hyperband's folder: it resumes
    assert again.begun == [] and trial_rows(project) == rows
    with pytest.raises(ConfigError, match="--tuner hyperband -> random"):
        search(config, tiny)


@starts_finished
def test_a_search_from_before_the_record_is_refused(tmp_path, tiny, finished_search):
    config = _from_finished(finished_search, tmp_path)
    (project_dir(config) / DEFINITION).unlink()  # as an older mnist_keras left it
    with pytest.raises(ConfigError, match=f"no {DEFINITION} says which search.*--overwrite"):
        search(config, tiny)
    assert not (project_dir(config) / DEFINITION).exists()


def test_workers_share_their_chiefs_definition(tmp_path, tiny):
    chief = _config(tmp_path, role="chief", oracle="127.0.0.1:9", connect_timeout=5)
    worker = dataclasses.replace(
        chief, role="worker", worker_id="w1", connect_timeout=99, worker_timeout=7
    )
    definition = search_definition(chief, tiny)
    assert search_definition(worker, tiny) == definition
    assert search_definition(dataclasses.replace(chief, max_trials=30), tiny) == definition
    project = project_dir(chief)
    check_project(worker, definition)  # no record yet: the chief writes it, the worker never
    project.mkdir(parents=True)
    (project / DEFINITION).write_text(json.dumps(definition))
    check_project(worker, definition)
    longer = dataclasses.replace(worker, max_epochs=5)
    with pytest.raises(ConfigError, match="--max-epochs 2 -> 5.*its chief's search flags"):
        check_project(longer, search_definition(longer, tiny))
    elsewhere = dataclasses.replace(
        chief.base, data=str(tmp_path), jit_compile=not chief.base.jit_compile
    )
    assert search_definition(dataclasses.replace(chief, base=elsewhere), tiny) == definition
    with pytest.raises(ConfigError, match="training data 800 images.* -> 700 images"):
        check_project(chief, search_definition(chief, tiny.head(700)))


@starts_finished
def test_rerun_of_a_finished_search_says_so_and_nothing_else(
    tmp_path, tiny, finished_search, capsys
):
    flags, config = _cli_search(tmp_path, tiny, finished_search)
    capsys.readouterr()
    assert main(flags) == 0
    out, err = capsys.readouterr()
    assert "Reloading" not in out + err  # keras-tuner's own line
    assert "search already finished: 1 trial" in out and "waiting" not in out


def test_early_stopping_only_when_asked(tmp_path, tiny):
    for patience, expected in ((0, 0), (3, 1)):
        config = _config(tmp_path, patience=patience)
        args = search_data(config, tiny).fit_args(config)
        stops = [c for c in args["callbacks"] if isinstance(c, keras.callbacks.EarlyStopping)]
        assert len(stops) == expected and all(stop.patience == patience for stop in stops)
        assert args["epochs"] == config.max_epochs


@starts_finished
def test_best_hparams_take_the_default_unless_a_trial_beats_it(tmp_path, tiny, finished_search):
    config = _from_finished(finished_search, tmp_path)
    tuner = search(config, tiny)  # resumes the finished search: no trial runs
    (best,) = tuner.oracle.get_best_trials(1)
    beaten = best_hparams(tuner, config, {"val_accuracy": best.score - 0.01, "epochs": 1})
    assert beaten["trial_id"] == best.trial_id and beaten["epochs"] == config.max_epochs
    assert beaten["hidden_units"] == best.hyperparameters.values["hidden_units"]
    assert beaten["default_val_accuracy"] == pytest.approx(best.score - 0.01)
    kept = best_hparams(tuner, config, {"val_accuracy": best.score, "epochs": 2})  # a tie
    assert kept["trial_id"] == "default" and kept["epochs"] == 2
    base = config.base
    assert (kept["hidden_units"], kept["learning_rate"]) == (base.hidden_units, base.learning_rate)
    assert "default recipe" in search_verdict(kept) and "+" in search_verdict(beaten)


@pytest.mark.slow
def test_trained_epochs_count_from_where_hyperband_resumed_a_trial(tmp_path, tiny):
    config = _config(tmp_path, tuner="hyperband", max_epochs=3)
    tuner = search(config, tiny)
    trials = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    resumed = [t for t in trials if t.hyperparameters.values["tuner/initial_epoch"] > 0]
    assert resumed  # Hyperband promoted at least one trial and went on from its epoch
    for trial in trials:  # without early stopping, each ran to its round's budget
        assert trained_epochs(tuner, trial, config) == trial.hyperparameters.values["tuner/epochs"]


def test_default_score_is_kept_until_the_values_it_was_trained_with_change(tmp_path, tiny):
    config = _config(tmp_path, max_epochs=1)
    first = default_score(config, tiny)
    kept = project_dir(config) / DEFAULT_SCORE
    record = json.loads(kept.read_text())
    kept.write_text(json.dumps({**record, "val_accuracy": 0.123}))  # a marker: not retrained
    assert default_score(config, tiny)["val_accuracy"] == 0.123
    changed = default_score(dataclasses.replace(config, max_epochs=2), tiny)
    assert changed["epochs"] == 2 and changed["val_accuracy"] != 0.123
    assert first["epochs"] == 1 and first["config"]["epochs"] == 1


@starts_finished
def test_search_killed_while_a_trial_ends_does_not_run_it_again(tmp_path, tiny, finished_search):
    config = _from_finished(finished_search, tmp_path)
    project = Path(config.directory) / config.project_name
    (finished,) = trial_rows(project)
    # What keras-tuner's Oracle.end_trial leaves on disk between its two writes and the tuner's
    # next save: the trial COMPLETED in trial.json, still ongoing in oracle.json.
    oracle_json = project / "oracle.json"
    state = json.loads(oracle_json.read_text())
    oracle_json.write_text(json.dumps({**state, "ongoing_trials": {"tuner0": finished.trial_id}}))

    observer = Observer()
    search(dataclasses.replace(config, max_trials=2), tiny, observer=observer)
    rows = {row.trial_id: row for row in trial_rows(project)}
    assert observer.begun == [t for t in rows if t != finished.trial_id]  # only the new trial
    assert (rows[finished.trial_id].ran_by, rows[finished.trial_id].score) == (
        finished.ran_by,
        finished.score,
    )
    assert len(rows) == 2 and all(row.status == "COMPLETED" for row in rows.values())


@starts_finished
def test_search_killed_while_a_trial_starts_runs_that_trial(tmp_path, tiny, finished_search):
    config = _from_finished(finished_search, tmp_path)
    project = Path(config.directory) / config.project_name
    # What keras-tuner's Oracle.create_trial leaves on disk between its two writes: a new trial
    # RUNNING in its trial.json, unknown to oracle.json.
    record = json.loads((project / "trial_0" / "trial.json").read_text())
    orphan = {**record, "trial_id": "1", "status": "RUNNING", "score": None, "best_step": 0}
    (project / "trial_1").mkdir()
    (project / "trial_1" / "trial.json").write_text(json.dumps(orphan))
    search(config, tiny)  # rerun as it was: the search is over, and the orphan is forgotten
    assert [row.trial_id for row in trial_rows(project)] == ["0"]

    (project / "trial_1" / "trial.json").write_text(json.dumps(orphan))
    observer = Observer()
    search(dataclasses.replace(config, max_trials=2), tiny, observer=observer)
    rows = trial_rows(project)
    assert observer.begun == ["1"]
    assert len(rows) == 2 and all(row.status == "COMPLETED" for row in rows)


def test_hparams_flags_still_win(tmp_path):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"hidden_units": 99, "learning_rate": 0.01, "epochs": 4}))
    args = train_parser().parse_args(["--hparams", str(path), "--epochs", "2"])
    config = train_config_from_args(args)
    assert (config.hidden_units, config.learning_rate, config.epochs) == (99, 0.01, 2)


def test_distributed_environment():
    chief = TuneConfig(role="chief", oracle="127.0.0.1:8000")
    worker = TuneConfig(role="worker", oracle="10.0.0.5:9", worker_id="w1")
    assert distributed_environment(TuneConfig()) == {}
    assert distributed_environment(chief) == {
        "KERASTUNER_TUNER_ID": "chief",
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": "8000",
    }
    assert distributed_environment(worker)["KERASTUNER_TUNER_ID"] == "w1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_worker_without_chief_gives_up_in_time():
    start = time.monotonic()
    with pytest.raises(TuneError, match="no chief answered within 1 s"):
        wait_for_oracle(f"127.0.0.1:{_free_port()}", timeout=1)
    assert time.monotonic() - start < 10


def _tune(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_keras.tune", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# One network: what is shared between the processes (the oracle, the trials, who trains the
# best) does not depend on it; the convnet's search, final training and export are
# test_tiny_search_trains_the_best_and_resumes_without_rerunning[cnn]'s. On Keras 3 it runs with
# the other tests across processes (make test-backends), for make test's time.
@pytest.mark.slow
@(pytest.mark.backends if KERAS_3 else pytest.mark.slow)
def test_chief_and_two_workers_share_the_trials(tmp_path):
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=600, n_test=100))
    oracle = f"127.0.0.1:{_free_port()}"
    common = [
        *("--project-name", "mnist", "--data", str(data), "--tuner", "random"),
        *("--max-trials", "4", "--max-epochs", "1", "--validation-size", "100"),
        *("--directory", "tuning", "--runs-dir", "runs"),
        # Each process does little: no XLA compile per trial, and the chief exports one format.
        *("--no-jit-compile", "--export-formats", "saved_model"),
    ]
    # All three start at once: their TensorFlow imports overlap, and the workers, started
    # together, wait alike for the chief to listen, so neither takes every trial before the
    # other is ready.
    procs = [_tune(*common, "--role", "chief", "--oracle", oracle, cwd=tmp_path)]
    worker = ("--role", "worker", "--oracle", oracle, "--connect-timeout", "120")
    procs += [_tune(*common, *worker, "--worker-id", name, cwd=tmp_path) for name in ("w1", "w2")]
    try:
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    finally:
        for proc in procs:  # every process ends with the test, whatever happened
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0, 0], "\n".join(o[-2000:] for o in outputs)
    rows = trial_rows(tmp_path / "tuning" / "mnist")
    assert len(rows) == 4 and all(row.status == "COMPLETED" for row in rows)
    assert all(len(row.ran_by) == 1 for row in rows)  # no trial ran twice
    assert {row.ran_by[0] for row in rows} == {"w1", "w2"}  # both workers ran trials
    (run_dir,) = (tmp_path / "runs").iterdir()  # only the chief trained and exported the best
    assert (run_dir / "export" / "mnist" / "1" / "saved_model.pb").is_file()
    assert json.loads((run_dir / "config.json").read_text())["config"]["arch"] == "mlp"


# A worker's silence the tests below wait out: longer than any of their steps takes.
SILENCE = 1.0


@pytest.fixture
def chief(tmp_path, monkeypatch):
    """Makes a chief's tuner as `tune --role chief` does (resumed when its folder holds a
    search); the tests call its oracle as the workers' requests to its server would."""
    made = []

    def make(**overrides) -> kt.Tuner:
        config = _config(
            tmp_path, role="chief", oracle="127.0.0.1:9", worker_timeout=SILENCE, **overrides
        )
        for name, value in distributed_environment(config).items():
            monkeypatch.setenv(name, value)
        made.append(make_tuner(config, steps_per_epoch=1))
        made[-1].save()  # as search() does before it serves: what a restarted chief reloads
        return made[-1]

    yield make
    for tuner in made:
        tuner.leases.close()


def _complete(oracle: kt.Oracle, trial) -> None:
    """A worker's report of `trial`, trained and scored."""
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def _ran_once(oracle: kt.Oracle, *trials) -> bool:
    ended = oracle.get_state()["end_order"]
    return sorted(ended) == sorted(t.trial_id for t in trials)


def test_a_silent_workers_trial_goes_to_a_waiting_worker(chief):
    oracle = chief().oracle
    lost, done = oracle.create_trial("w1"), oracle.create_trial("w2")
    _complete(oracle, done)
    # No trial is left to start, but w1's may come back to run: w2 waits (IDLE), not stops.
    assert oracle.create_trial("w2").status == "IDLE"
    time.sleep(SILENCE * 0.7)
    oracle.get_trial(lost.trial_id)  # w1's heartbeat
    time.sleep(SILENCE * 0.7)
    assert oracle.create_trial("w2").status == "IDLE"  # w1 spoke within the timeout
    time.sleep(SILENCE * 1.3)
    again = oracle.create_trial("w2")
    assert (again.trial_id, again.status) == (lost.trial_id, "RUNNING")
    assert not exit_chief(oracle)
    _complete(oracle, again)
    assert oracle.create_trial("w2").status == "STOPPED"
    assert exit_chief(oracle) and _ran_once(oracle, lost, done)  # w1 is not waited for


def test_the_chief_waits_for_a_waiting_worker_unless_it_is_lost(chief):
    oracle = chief().oracle
    first, last = oracle.create_trial("w1"), oracle.create_trial("w2")
    _complete(oracle, first)
    assert oracle.create_trial("w1").status == "IDLE"  # w1 waits, and is killed
    for _ in range(3):
        time.sleep(SILENCE * 0.5)
        oracle.get_trial(last.trial_id)  # w2's heartbeat
        assert oracle.create_trial("w3").status == "IDLE"  # w3 waits, and asks again
    _complete(oracle, last)
    assert oracle.create_trial("w2").status == "STOPPED"
    assert not exit_chief(oracle)  # w3 has yet to hear that the search is over; w1 never will
    assert oracle.create_trial("w3").status == "STOPPED"
    assert exit_chief(oracle) and _ran_once(oracle, first, last)


def test_a_trial_reported_by_a_worker_thought_lost_does_not_run_again(chief):
    oracle = chief(max_trials=3).oracle
    slow, lost, last = (oracle.create_trial(worker) for worker in ("w1", "w2", "w3"))
    time.sleep(SILENCE * 0.6)
    oracle.get_trial(last.trial_id)  # w3's heartbeat, and none from w1 and w2
    time.sleep(SILENCE * 0.7)
    _complete(oracle, last)
    taken = oracle.create_trial("w3")  # w1's and w2's trials went back to run: w3 takes one
    assert taken.trial_id in (slow.trial_id, lost.trial_id)
    _complete(oracle, slow if taken.trial_id == lost.trial_id else lost)  # the other reports
    _complete(oracle, taken)
    assert oracle.create_trial("w3").status == "STOPPED"
    assert exit_chief(oracle) and _ran_once(oracle, slow, lost, last)


def test_a_restarted_chief_gives_each_running_trial_back_to_its_worker(chief):
    killed = chief()
    kept, gone = killed.oracle.create_trial("w1"), killed.oracle.create_trial("w2")
    killed.leases.close()
    oracle = chief().oracle  # the same command again
    assert oracle.create_trial("w3").status == "IDLE"  # neither trial is free to take
    assert oracle.create_trial("w1").trial_id == kept.trial_id  # w1, restarted, runs it again
    _complete(oracle, oracle.get_trial(kept.trial_id))
    assert oracle.create_trial("w1").status == "IDLE"
    time.sleep(SILENCE * 1.3)  # w2 never came back
    taken = oracle.create_trial("w3")
    assert taken.trial_id == gone.trial_id
    _complete(oracle, taken)
    assert [oracle.create_trial(w).status for w in ("w3", "w1")] == ["STOPPED"] * 2
    assert exit_chief(oracle) and _ran_once(oracle, kept, gone)


def test_a_worker_reports_its_trial_while_it_trains():
    class Chief:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def get_trial(self, trial_id: str) -> None:
            self.asked.append(trial_id)
            if len(self.asked) == 1:
                raise grpc.RpcError("the chief is restarting")  # the next report still goes

    chief = Chief()
    with heartbeat(chief, "7", interval=0.05):
        time.sleep(0.5)
    reports = len(chief.asked)
    time.sleep(0.2)
    assert 3 <= reports == len(chief.asked) and set(chief.asked) == {"7"}  # then no more
    for timeout in (1, 8, TuneConfig().worker_timeout, 600):
        assert 3 * heartbeat_interval(timeout) <= timeout  # several chances within the timeout


def _running(project: Path, worker: str) -> str | None:
    """The trial the chief's oracle.json says `worker` runs, if it has not ended."""
    trial_id = read_json(project / "oracle.json").get("ongoing_trials", {}).get(worker)
    row = next((row for row in trial_rows(project) if row.trial_id == trial_id), None)
    return trial_id if row and row.status == "RUNNING" and not row.ran_by else None


def _wait_for(found: Callable[[], Any], limit: float = 120) -> Any:
    """What `found()` returns once it is something, polled."""
    deadline = time.monotonic() + limit
    while not (value := found()):
        assert time.monotonic() < deadline, "the search never got there"
        time.sleep(0.05)
    return value


# A worker killed mid-trial and never restarted, then the chief killed and restarted: what a
# search must outlive. Trials of a few seconds (2,000 images in batches of 64), so that each
# worker takes one and is caught running it. Not in `make test`, whose time is spent.
@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.xdist_group("tune-faults")
def test_a_search_outlives_a_killed_worker_and_a_restarted_chief(tmp_path):
    data = write_idx_folder(tmp_path / "data", synthetic_mnist(n_train=2000, n_test=100))
    oracle = f"127.0.0.1:{_free_port()}"
    common = [
        *("--project-name", "mnist", "--data", str(data), "--tuner", "random"),
        *("--max-trials", "2", "--max-epochs", "2", "--batch-size", "64"),
        *("--validation-size", "100", "--directory", "tuning", "--runs-dir", "runs"),
        *("--no-jit-compile", "--export-formats", "saved_model", "--worker-timeout", "8"),
    ]
    chief_args = (*common, "--role", "chief", "--oracle", oracle)
    worker = (*common, "--role", "worker", "--oracle", oracle, "--connect-timeout", "120")
    chief = _tune(*chief_args, cwd=tmp_path)
    w1, w2 = (_tune(*worker, "--worker-id", name, cwd=tmp_path) for name in ("w1", "w2"))
    project = tmp_path / "tuning" / "mnist"
    procs = [chief, w1, w2]
    try:
        lost = _wait_for(lambda: _running(project, "w1"))
        os.kill(w1.pid, signal.SIGKILL)
        # Once w1 has been silent for --worker-timeout, its trial goes to w2.
        _wait_for(lambda: _running(project, "w2") == lost)
        time.sleep(1)  # the chief killed while w2 trains, not while it answers w2
        os.kill(chief.pid, signal.SIGKILL)
        procs.append(chief := _tune(*chief_args, cwd=tmp_path))  # the same command again
        outputs = [proc.communicate(timeout=240)[0] for proc in (chief, w2)]
    finally:
        for proc in procs:  # every process ends with the test, whatever happened
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    assert [chief.returncode, w2.returncode] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    rows = {row.trial_id: row for row in trial_rows(project)}
    assert len(rows) == 2 and all(row.status == "COMPLETED" for row in rows.values())
    assert read_json(project / "oracle.json")["run_times"] == {t: 1 for t in rows}  # none twice
    assert rows[lost].ran_by == ("w2",)  # w1's trial, run again by w2, the chief restarted
    (run_dir,) = (tmp_path / "runs").iterdir()  # the restarted chief trained the best
    assert (run_dir / "export" / "mnist" / "1" / "saved_model.pb").is_file()


# The message of each bad input, in-process (`main(argv)`, as the command runs it); one
# worker without its chief in a process of its own (below) proves the exit code and that
# nothing else reaches stderr, gRPC's native log included.
@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-trials", "0"], "--max-trials must be a positive integer"),
        (["--max-epochs", "-1"], "--max-epochs must be a positive integer"),
        (["--patience", "-1"], "--patience must be 0 (off) or a positive integer"),
        (["--input-dropout", "1"], "--input-dropout must be in [0, 1)"),
        (["--validation-size", "0"], "--validation-size must be positive: trials are scored on it"),
        (["--tuner", "grid"], "--tuner: invalid choice"),
        (["--role", "worker"], "--oracle goes with --role chief|worker"),
        (["--role", "chief", "--oracle", "nohost"], "--oracle must be HOST:PORT"),
        (["--data", "/nonexistent"], "/nonexistent: no such file or folder"),
        (["--distribute", "multi-worker"], "a search trains each trial in one process"),
        (["--worker-timeout", "0"], "--worker-timeout must be a positive number"),
    ],
)
def test_cli_bad_input(tmp_path, args, message):
    result = run_main("tune", "--directory", "tuning", "--runs-dir", "runs", *args, cwd=tmp_path)
    assert_clean_failure(result, message, [tmp_path / "tuning", tmp_path / "runs"])


@pytest.mark.slow
def test_cli_worker_without_chief_exits_2_in_one_line(tmp_path):
    no_chief = ("--role", "worker", "--oracle", "127.0.0.1:1", "--worker-id", "w")
    args = ("--directory", "tuning", "--runs-dir", "runs", *no_chief, "--connect-timeout", "1")
    result = run_cli("tune", *args, cwd=tmp_path)
    untouched = [tmp_path / "tuning", tmp_path / "runs"]
    assert_clean_failure(result, "no chief answered within 1 s", untouched)


@pytest.mark.parametrize(
    "content, message",
    [(None, "not a readable JSON file"), ("[1, 2]", "no training values"), ("{", "not a readable")],
)
def test_train_hparams_file_errors(tmp_path, content, message):
    path = tmp_path / "best.json"
    if content is not None:
        path.write_text(content)
    result = run_main("train", "--hparams", str(path), "--runs-dir", "runs", cwd=tmp_path)
    assert_clean_failure(result, message, [tmp_path / "runs"])
    assert "--hparams" in error_lines(result)[0]


@pytest.mark.slow
def test_train_hparams_file_error_exits_2_in_one_line(tmp_path):
    result = run_cli(
        "train", "--hparams", str(tmp_path / "best.json"), "--runs-dir", "runs", cwd=tmp_path
    )
    assert_clean_failure(result, "not a readable JSON file", [tmp_path / "runs"])
    assert "--hparams" in error_lines(result)[0]


def test_trial_rows_skip_a_trial_file_still_being_written(tmp_path):
    project = tmp_path / "mnist"
    (project / "trial_0001").mkdir(parents=True)
    (project / "trial_0001" / "trial.json").write_text('{"trial_id": "0001", "hyperpa')
    done = {"trial_id": "0000", "status": "COMPLETED", "score": 0.9}
    done["hyperparameters"] = {"values": {"hidden_units": 64, "tuner/epochs": 2}}
    (project / "trial_0000").mkdir()
    (project / "trial_0000" / "trial.json").write_text(json.dumps(done))
    (row,) = trial_rows(project)
    assert (row.trial_id, row.values, row.score) == ("0000", {"hidden_units": 64}, 0.9)


def test_keras_tuner_state_is_written_atomically(tmp_path, monkeypatch):
    from keras_tuner.src import utils as kt_utils

    monkeypatch.setattr(kt_utils, "save_json", kt_utils.save_json)  # restored afterwards
    atomic_tuner_writes()  # as making a tuner does
    path = tmp_path / "oracle.json"
    kt_utils.save_json(str(path), {"trials": 1})
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "disk full")))
    with pytest.raises(OSError):
        kt_utils.save_json(str(path), {"trials": 2})  # a write cut off half way
    assert json.loads(path.read_text()) == {"trials": 1}  # the old state, complete
    assert [p.name for p in tmp_path.iterdir()] == ["oracle.json"]  # no temporary left
