"""Load-test a TensorFlow Serving REST endpoint (the demo's, or a real one) with real test digits.

    python scripts/load_demo.py --url http://127.0.0.1:8000 --data ~/mnist --requests 1000

Sends `--requests` predict calls of one image each from `--concurrency` threads, checks every
answer's class against the model's first answer for that image, and prints requests per second
and latency percentiles (`--json` for machines). Exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mnist_keras import console
from mnist_keras.data import load_mnist


def predict(url: str, image: np.ndarray) -> tuple[float, int | None]:
    """Seconds the call took and the class it answered (None when it failed)."""
    body = json.dumps({"instances": [image.tolist()]}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            classes = json.loads(answer.read())["predictions"][0]["classes"]
    except (OSError, ValueError, KeyError, IndexError):
        classes = None
    return time.perf_counter() - start, classes


def load_test(url: str, images: np.ndarray, requests: int, concurrency: int) -> dict:
    picks = [images[i % len(images)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda image: predict(url, image), picks))
    wall = time.perf_counter() - start
    seconds = np.array([s for s, _ in results])
    first: dict[int, int] = {}  # the first class answered for each image
    errors = 0
    for i, (_, classes) in enumerate(results):
        if classes is not None:
            first.setdefault(i % len(images), classes)
        errors += classes is None or classes != first[i % len(images)]
    return {
        "requests": requests,
        "concurrency": concurrency,
        "errors": int(errors),
        "requests_per_second": round(requests / wall, 1),
        "p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 2),
    }


@console.cli()
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server root")
    parser.add_argument("--model", default="mnist", help="model name (mnist)")
    parser.add_argument("--data", type=Path, help="MNIST folder (default: $MNIST_KERAS_DATA)")
    parser.add_argument("--requests", type=int, default=1000, help="calls in all (1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (8)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be positive integers")
    images = load_mnist(args.data).x_test[:100]
    url = f"{args.url.rstrip('/')}/v1/models/{args.model}:predict"
    report = load_test(url, images, args.requests, args.concurrency)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>20}: {value}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
