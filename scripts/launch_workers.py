"""Start N multi-worker training processes on this machine, each with its own TF_CONFIG.

    python scripts/launch_workers.py --workers 2 -- --data ~/mnist --epochs 5

Everything after `--` goes to `python -m mnist_keras.train --distribute multi-worker`. Worker 0
is the chief: its output comes here and it alone writes the run folder; the others' output goes
to `--logs DIR/worker-<i>.log`. The launcher waits for all of them, ends them all on Ctrl-C or as
soon as one fails, and exits with the first failure's code (0 when all succeed). On real hosts,
give each process the same TF_CONFIG cluster and its own task index instead.
"""

from __future__ import annotations

import argparse
import json
import os
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


def tf_config(ports: list[int], index: int) -> str:
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def start(index: int, ports: list[int], train_args: list[str], logs: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CONFIG": tf_config(ports, index)}
    command = [sys.executable, "-m", "mnist_keras.train"]
    if not any(a == "--resume" or a.startswith("--resume=") for a in train_args):
        command += ["--distribute", "multi-worker"]  # a resumed run keeps its own configuration
    out = None if index == 0 else (logs / f"worker-{index}.log").open("w")
    return subprocess.Popen(
        [*command, *train_args], env=env, stdout=out, stderr=subprocess.STDOUT if out else None
    )


def wait_all(procs: list[subprocess.Popen]) -> int:
    """Wait for every worker; the first to fail ends the others (a collective would hang)."""
    while True:
        codes = [proc.poll() for proc in procs]  # every worker, every pass
        failed = [code for code in codes if code not in (None, 0)]
        if failed:
            stop_all(procs, interrupted=False)
            return failed[0]
        if None not in codes:
            return 0
        time.sleep(0.2)


def stop_all(procs: list[subprocess.Popen], interrupted: bool) -> None:
    """End every worker: Ctrl-C first (each saves its resumable state), a kill if that fails.

    After a Ctrl-C at the terminal the workers have the same SIGINT already; they get a few
    seconds to act on it before any second one, which could cut their own clean-up short.
    """
    if interrupted:
        _wait(procs, 5)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    _wait(procs, 20)
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
    print(f"{args.workers} workers; worker 0 is the chief; the others log to {logs}", flush=True)
    procs = [start(i, ports, args.train_args, logs) for i in range(args.workers)]
    try:
        return wait_all(procs)
    except KeyboardInterrupt:
        stop_all(procs, interrupted=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
