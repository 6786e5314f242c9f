"""Start N multi-worker training processes on this machine, each told its place in the cluster.

    python scripts/launch_workers.py --workers 2 -- --data ~/mnist --epochs 5
    KERAS_BACKEND=jax python scripts/launch_workers.py --workers 2 -- --data ~/mnist  # Keras 3

Everything after `--` goes to `python -m mnist_keras.train --distribute multi-worker`. Each
process gets the same cluster, on 127.0.0.1 and free ports, under both conventions: TF_CONFIG
(tf.distribute, Keras 2) and Keras's KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES and
_PROCESS_ID (keras.distribution on JAX, Keras 3). Process 0 is the chief: its output comes here
and it alone writes the run folder; the others' output goes to `--logs DIR/worker-<i>.log`, their
scratch files to a temporary folder removed at the end. The launcher waits for all of them, ends
them all on Ctrl-C or as soon as one fails, and exits with the first failure's code (0 when all
succeed). On real hosts, give each process the same cluster addresses and its own index instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1 (held open together so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def addresses(ports: list[int]) -> list[str]:
    """The cluster, one process a port on this machine."""
    return [f"127.0.0.1:{port}" for port in ports]


def tf_config(ports: list[int], index: int) -> str:
    workers = addresses(ports)
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def keras_cluster(ports: list[int], index: int) -> dict[str, str]:
    """keras.distribution's variables: every address (the first is JAX's coordinator), the
    process count, this process's index."""
    return {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": ",".join(addresses(ports)),
        "KERAS_DISTRIBUTION_NUM_PROCESSES": str(len(ports)),
        "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
    }


def start(
    index: int, ports: list[int], train_args: list[str], logs: Path, scratch: Path
) -> subprocess.Popen:
    env = {
        **os.environ,
        "TF_CONFIG": tf_config(ports, index),
        **keras_cluster(ports, index),
        "TMPDIR": str(scratch),  # the workers' scratch run folders, even after a kill
    }
    command = [sys.executable, "-m", "mnist_keras.train"]
    if not any(a == "--resume" or a.startswith("--resume=") for a in train_args):
        command += ["--distribute", "multi-worker"]  # a resumed run keeps its own configuration
    out = None if index == 0 else (logs / f"worker-{index}.log").open("w")
    return subprocess.Popen(
        [*command, *train_args], env=env, stdout=out, stderr=subprocess.STDOUT if out else None
    )


def wait_all(procs: list[subprocess.Popen]) -> int:
    """Wait for every process; the first to fail ends the others (a collective would hang) and
    gives the exit code, a signal's as the shell writes it (128 + its number)."""
    while True:
        codes = [proc.poll() for proc in procs]  # every process, every pass
        failed = [(i, code) for i, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            index, code = failed[0]
            print(f"process {index} {_ended(code)}; ending the others", file=sys.stderr)
            stop_all(procs, interrupted=False)
            return 128 - code if code < 0 else code
        if None not in codes:
            return 0
        time.sleep(0.2)


def _ended(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"


def stop_all(procs: list[subprocess.Popen], interrupted: bool) -> None:
    """End every process: Ctrl-C first (each saves its resumable state), a kill if that fails.

    After a Ctrl-C at the terminal the processes have the same SIGINT already; they get a few
    seconds to act on it before any second one, which could cut their own clean-up short. After
    a failure the others soon find their collective broken and stop by themselves (on JAX, its
    health check ends them), so they get a few seconds for that, and a few more after a Ctrl-C.
    """
    _wait(procs, 5 if interrupted else 3)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    _wait(procs, 20 if interrupted else 3)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait(procs: list[subprocess.Popen], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="processes to start (2)")
    parser.add_argument("--logs", type=Path, help="folder for the other workers' output")
    parser.add_argument("train_args", nargs="*", help="after --: flags for mnist_keras.train")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be a positive integer")
    logs = args.logs or Path(tempfile.mkdtemp(prefix="mnist-keras-workers-"))
    logs.mkdir(parents=True, exist_ok=True)
    ports = free_ports(args.workers)
    print(
        f"{args.workers} processes; process 0 writes the run; the others log to {logs}", flush=True
    )
    scratch = Path(tempfile.mkdtemp(prefix="mnist-keras-scratch-"))
    try:
        procs = [start(i, ports, args.train_args, logs, scratch) for i in range(args.workers)]
        try:
            return wait_all(procs)
        except KeyboardInterrupt:
            stop_all(procs, interrupted=True)
            return 130
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
