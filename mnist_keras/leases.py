"""A distributed search that outlives its processes: worker heartbeats and the chief's leases.

keras-tuner never notices a worker that died: its trial stays running and the chief waits for it
forever; and a chief restarted hands the trials that were running to whichever worker asks first,
so two run them. Here a worker reports while it trains (keras-tuner's GetTrial), the chief gives
the trial of a worker silent for `--worker-timeout` to another, and a restarted chief gives each
worker back its own trial. keras-tuner has no API for a lost worker, so `WorkerLeases` and
`resume_ongoing_trials` read and set its oracle's private state (as `compat.repair_reloaded_oracle`
does).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import keras_tuner as kt

from mnist_keras.runs import read_json

# gRPC's default backoff waits up to minutes between tries to reach a chief: a worker started
# before its chief, or waiting out a chief's restart, would connect long after it listens (and
# find the trials shared out, or the chief gone).
RECONNECT_BACKOFF = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
IDLE_WAIT_S = 1.0  # a worker told to wait for other workers' trials (IDLE) asks again after this


@contextlib.contextmanager
def heartbeat(oracle: Any, trial_id: str, interval: float | None) -> Iterator[None]:
    """While the block runs, ask the chief for `trial_id` every `interval` seconds (keras-tuner's
    GetTrial), which tells it this worker still runs the trial; nothing when `interval` is None."""
    if interval is None:
        yield
        return
    done = threading.Event()
    threading.Thread(target=_beat, args=(oracle, trial_id, interval, done), daemon=True).start()
    try:
        yield
    finally:
        done.set()


def _beat(oracle: Any, trial_id: str, interval: float, done: threading.Event) -> None:
    while not done.wait(interval):
        # keras-tuner's client waits out a chief that is down (its restart gives the trial back);
        # a call cut off as the chief died is made good by the next one.
        with contextlib.suppress(grpc.RpcError):
            oracle.get_trial(trial_id)


def heartbeat_interval(worker_timeout: float) -> float:
    """How often a worker reports: a few reports may be late or lost before the chief gives up."""
    return min(worker_timeout / 6, 10.0)


class WorkerLeases:
    """The chief's oracle, made to outlive a lost worker: a worker silent for `timeout` seconds
    is forgotten, and the trial it ran goes back to keras-tuner's retry queue, which it serves
    first (as `Oracle.reload` does with the trials a killed chief left running); no worker is
    told to stop while another's trial runs, so that one is left to run it again. It reads and
    sets the oracle's ongoing trials, tuner ids and retry queue: keras-tuner has no API for a
    lost worker. A thread forgets the silent, since a search's last requests may come before."""

    def __init__(self, oracle: kt.Oracle, timeout: float) -> None:
        self.oracle, self.timeout = oracle, timeout
        self.heard: dict[str, float] = {}  # tuner id -> when that worker last spoke
        self.start = time.monotonic()  # a restarted chief's resumed workers: heard of now
        self.lock = threading.Lock()  # between the server's requests and the thread
        self.closed = threading.Event()
        self._create, self._end = oracle.create_trial, oracle.end_trial
        oracle.create_trial, oracle.end_trial = self.create_trial, self.end_trial
        oracle.get_trial = self._hearing(oracle.get_trial)
        oracle.update_trial = self._hearing(oracle.update_trial)
        threading.Thread(target=self._forget_silent, daemon=True).start()

    def create_trial(self, tuner_id: str) -> kt.engine.trial.Trial:
        with self.lock:
            self.heard[tuner_id] = time.monotonic()
            trial = self._create(tuner_id)
            status = kt.engine.trial.TrialStatus
            if trial.status == status.STOPPED and self.oracle.ongoing_trials:
                self.oracle.tuner_ids.add(tuner_id)  # keras-tuner forgot it: the chief waits
                return kt.engine.trial.Trial(self.oracle.get_space(), status=status.IDLE)
            return trial

    def end_trial(self, trial: kt.engine.trial.Trial) -> None:
        with self.lock:
            # A worker wrongly thought lost reports its trial: no other need run it.
            queue = self.oracle._retry_queue
            self.oracle._retry_queue = [t for t in queue if t != trial.trial_id]
            self._end(trial)

    def close(self) -> None:
        self.closed.set()

    def _hearing(self, method: Any) -> Any:
        def heard_of(trial_id: str, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                for tuner_id, trial in self.oracle.ongoing_trials.items():
                    if trial.trial_id == trial_id:
                        self.heard[tuner_id] = time.monotonic()
                return method(trial_id, *args, **kwargs)

        return heard_of

    def _forget_silent(self) -> None:
        while not self.closed.wait(heartbeat_interval(self.timeout)):
            with self.lock:
                now = time.monotonic()
                for tuner_id in self.oracle.tuner_ids | set(self.oracle.ongoing_trials):
                    if now - self.heard.get(tuner_id, self.start) > self.timeout:
                        self._forget(tuner_id)

    def _forget(self, tuner_id: str) -> None:
        trial = self.oracle.ongoing_trials.get(tuner_id)
        if trial is not None:  # queued before it leaves: the chief never sees the search over
            self.oracle._retry_queue.append(trial.trial_id)
            del self.oracle.ongoing_trials[tuner_id]
        self.oracle.tuner_ids.discard(tuner_id)
        self.oracle.save()


def resume_ongoing_trials(oracle: kt.Oracle, project: Path) -> None:
    """A restarted chief gives each worker back the trial oracle.json says it was running, rather
    than to whichever worker asks first (what `Oracle.reload` does, so that two run it): a worker
    still training reports it, one restarted with its --worker-id runs it again, and one gone
    loses it after --worker-timeout (`WorkerLeases`). Private state, as in `WorkerLeases`."""
    saved = read_json(project / "oracle.json") or {}
    for tuner_id, trial_id in saved.get("ongoing_trials", {}).items():
        trial = oracle.trials.get(trial_id)
        running = trial is not None and trial.status == kt.engine.trial.TrialStatus.RUNNING
        if running and trial_id in oracle._retry_queue:
            oracle._retry_queue.remove(trial_id)
            oracle.ongoing_trials[tuner_id] = trial
            oracle.tuner_ids.add(tuner_id)


def patient_client(client: Any, address: str) -> None:
    """A worker's keras-tuner client, reconnecting soon after its chief is back, and asking
    again after IDLE_WAIT_S when told to wait (keras-tuner would ask at once, over and over)."""
    channel = grpc.insecure_channel(address, options=RECONNECT_BACKOFF)
    client.stub = type(client.stub)(channel)  # keras-tuner's OracleStub, on our channel
    create = client.create_trial

    def create_trial(tuner_id: str) -> kt.engine.trial.Trial:
        trial = create(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.IDLE:
            time.sleep(IDLE_WAIT_S)
        return trial

    client.create_trial = create_trial
