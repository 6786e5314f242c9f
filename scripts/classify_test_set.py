"""Classify the MNIST test set with an exported SavedModel, as another team's code would.

Needs nothing but numpy and tensorflow (not this package, not keras):

    python scripts/classify_test_set.py --model artifacts/runs/<run-id>/export/mnist/1 \
        --data path/to/mnist
"""

import argparse
import gzip
from pathlib import Path

import numpy as np
import tensorflow as tf


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) as a numpy array."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    shape = np.frombuffer(raw, ">u4", count=ndim, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"error: {folder}: no {stem}[.gz]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a SavedModel version folder")
    parser.add_argument("--data", type=Path, required=True, help="folder of the MNIST IDX files")
    args = parser.parse_args()

    images = read_idx(find(args.data, "t10k-images-idx3-ubyte"))
    labels = read_idx(find(args.data, "t10k-labels-idx1-ubyte"))
    serve = tf.saved_model.load(str(args.model)).signatures["serving_default"]
    classes = serve(images=tf.constant(images, tf.uint8))["classes"].numpy()
    accuracy = float(np.mean(classes == labels))
    print(f"{len(labels)} test images, accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
