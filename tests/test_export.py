from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mnist_keras import export as export_mod
from mnist_keras.config import TrainConfig
from mnist_keras.errors import ExportError
from mnist_keras.export import export_saved_model, save_keras_model
from mnist_keras.model import build_model


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(3)
    return build_model(TrainConfig(hidden_units=32))


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    return export_saved_model(model, tmp_path_factory.mktemp("export"))


def _images(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 28, 28)).astype(np.uint8)


def test_versions_are_numbered_and_never_overwritten(model, tmp_path):
    first = export_saved_model(model, tmp_path)
    second = export_saved_model(model, tmp_path)
    assert (first.name, second.name) == ("1", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]  # no temporaries left
    assert (second / "saved_model.pb").is_file()


def test_failed_export_leaves_no_version(model, tmp_path, monkeypatch):
    def half_write(model, path):
        (path / "variables").mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod, "_write_saved_model", half_write)
    with pytest.raises(ExportError, match="No space left"):
        export_saved_model(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_serving_signature_names_dtypes_and_shapes(exported):
    signature = tf.saved_model.load(str(exported)).signatures["serving_default"]
    (_, inputs) = signature.structured_input_signature
    assert list(inputs) == ["images"]
    assert inputs["images"].dtype == tf.uint8 and inputs["images"].shape.as_list() == [None, 28, 28]
    outputs = signature.structured_outputs
    assert sorted(outputs) == ["classes", "probabilities"]
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["probabilities"].shape.as_list() == [None, 10]
    assert outputs["classes"].dtype == tf.int64 and outputs["classes"].shape.as_list() == [None]


TF_ONLY_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    model_dir, images_file, out_file = sys.argv[1:]
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    out = serve(images=tf.constant(np.load(images_file)))
    np.savez(out_file, probabilities=out["probabilities"].numpy(), classes=out["classes"].numpy())
    """
)


def test_plain_tensorflow_process_matches_keras(model, exported, tmp_path):
    images = _images()
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "load.py"
    script.write_text(TF_ONLY_SCRIPT)
    # A process that imports only numpy and tensorflow, not this package and not keras.
    subprocess.run(
        [
            sys.executable,
            str(script),
            str(exported),
            str(tmp_path / "images.npy"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    out = np.load(tmp_path / "out.npz")
    expected = np.asarray(model(images, training=False))
    assert np.abs(out["probabilities"] - expected).max() < 1e-5
    np.testing.assert_array_equal(out["classes"], expected.argmax(axis=1))


def test_saved_model_cli_run_returns_the_same_classes(model, exported, tmp_path):
    images = _images()
    np.save(tmp_path / "images.npy", images)
    cli = Path(sys.executable).with_name("saved_model_cli")
    subprocess.run(
        [
            str(cli),
            "run",
            "--dir",
            str(exported),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={tmp_path / 'images.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        check=True,
        timeout=180,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    classes = np.load(tmp_path / "out" / "classes.npy")
    probabilities = np.load(tmp_path / "out" / "probabilities.npy")
    expected = np.asarray(model(images, training=False))
    np.testing.assert_array_equal(classes, expected.argmax(axis=1))
    assert np.abs(probabilities - expected).max() < 1e-5


def test_keras_file_round_trip(model, tmp_path):
    path = save_keras_model(model, tmp_path / "model.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    images = _images()
    reloaded = keras.saving.load_model(str(path))
    np.testing.assert_allclose(np.asarray(reloaded(images)), np.asarray(model(images)), atol=1e-6)
