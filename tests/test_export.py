from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_clean_failure, run_cli, run_main

from mnist_keras import export as export_mod
from mnist_keras.config import TrainConfig, resolve_config
from mnist_keras.errors import ExportError
from mnist_keras.export import export_saved_model, save_keras_model
from mnist_keras.model import build_model


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(3)
    return build_model(TrainConfig(hidden_units=32), steps_per_epoch=10)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> Path:
    return export_saved_model(model, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def convnet() -> keras.Model:
    """The convnet with its augmentation layers, which the export must leave out of serving."""
    keras.utils.set_random_seed(4)
    return build_model(resolve_config(arch="cnn", hidden_units=16), steps_per_epoch=10)


@pytest.fixture(scope="module")
def convnet_exported(convnet, tmp_path_factory) -> Path:
    return export_saved_model(convnet, tmp_path_factory.mktemp("export_cnn"))


@pytest.fixture(params=["mlp", "cnn"])
def model_and_export(request) -> tuple[keras.Model, Path]:
    """Each architecture's model and its SavedModel."""
    if request.param == "cnn":
        return request.getfixturevalue("convnet"), request.getfixturevalue("convnet_exported")
    return request.getfixturevalue("model"), request.getfixturevalue("exported")


def _images(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 28, 28)).astype(np.uint8)


def test_versions_are_numbered_and_never_overwritten(model, tmp_path):
    first = export_saved_model(model, tmp_path)
    second = export_saved_model(model, tmp_path)
    assert (first.name, second.name) == ("1", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]  # no temporaries left
    assert (second / "saved_model.pb").is_file()


def _disk_full(model, signatures, path):
    """Stand-in for formats.write_saved_model on a disk that fills up half way through."""
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"partial")
    raise OSError(28, "No space left on device")


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_full_disk_during_export_leaves_the_previous_version_untouched(
    model, tmp_path, monkeypatch
):
    first = export_saved_model(model, tmp_path)
    before = _tree(tmp_path)
    monkeypatch.setattr(export_mod, "write_saved_model", _disk_full)
    with pytest.raises(ExportError, match="No space left"):
        export_saved_model(model, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no version 2, no temporary
    assert _tree(tmp_path) == before


def test_export_cli_on_a_full_disk_is_one_error_line(model, tmp_path, monkeypatch, capsys):
    save_keras_model(model, tmp_path / "m.keras")
    monkeypatch.setattr(export_mod, "write_saved_model", _disk_full)
    code = export_mod.main([str(tmp_path / "m.keras"), "--out", str(tmp_path / "served")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "No space left on device" in err
    assert list((tmp_path / "served" / "mnist").iterdir()) == []


@pytest.mark.parametrize(
    "name, dtype", [("serving_default", tf.uint8), ("serving_float", tf.float32)]
)
def test_signature_names_dtypes_and_shapes(exported, name, dtype):
    signature = tf.saved_model.load(str(exported)).signatures[name]
    (_, inputs) = signature.structured_input_signature
    assert list(inputs) == ["images"]
    assert inputs["images"].dtype == dtype and inputs["images"].shape.as_list() == [None, 28, 28]
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

    images_file, out_dir, *model_dirs = sys.argv[1:]
    for i, model_dir in enumerate(model_dirs):
        serve = tf.saved_model.load(model_dir).signatures["serving_default"]
        out = serve(images=tf.constant(np.load(images_file)))
        probabilities, classes = out["probabilities"].numpy(), out["classes"].numpy()
        np.savez(f"{out_dir}/{i}.npz", probabilities=probabilities, classes=classes)
    """
)


@pytest.mark.slow
def test_plain_tensorflow_process_matches_keras(
    model, exported, convnet, convnet_exported, tmp_path
):
    """Each architecture's SavedModel, in one process (its TensorFlow start-up is the cost)."""
    images = _images()
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "load.py"
    script.write_text(TF_ONLY_SCRIPT)
    # A process that imports only numpy and tensorflow, not this package and not keras.
    subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "images.npy"),
            str(tmp_path),
            str(exported),
            str(convnet_exported),
        ],
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    for i, keras_model in enumerate((model, convnet)):
        out = np.load(tmp_path / f"{i}.npz")
        expected = np.asarray(keras_model(images, training=False))
        assert np.abs(out["probabilities"] - expected).max() < 1e-5
        np.testing.assert_array_equal(out["classes"], expected.argmax(axis=1))


@pytest.mark.slow
def test_saved_model_cli_run_returns_the_same_classes(model_and_export, tmp_path):
    model, exported = model_and_export
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


KERAS_ONLY_SCRIPT = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np

    images_file, out_dir, *paths = sys.argv[1:]
    for i, path in enumerate(paths):
        model = keras.saving.load_model(path)
        assert "mnist_keras" not in sys.modules
        print("layers:", sorted({type(layer).__name__ for layer in model.layers}))
        np.save(f"{out_dir}/{i}.npy", np.asarray(model(np.load(images_file), training=False)))
    """
)


def _load_without_this_package(
    paths: list[Path], images: np.ndarray, tmp_path: Path
) -> list[np.ndarray]:
    """What a process that imports Keras, never this package, computes with each `.keras` file
    (one process for them all: its Keras start-up is the cost)."""
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "load.py"
    script.write_text(KERAS_ONLY_SCRIPT)
    args = [sys.executable, str(script), str(tmp_path / "images.npy"), str(tmp_path)]
    out = subprocess.run(
        [*args, *map(str, paths)],
        check=True,
        timeout=120,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    layers = [line for line in out.stdout.splitlines() if line.startswith("layers:")]
    assert len(layers) == len(paths), out.stdout
    for line in layers:
        assert "'Dropout'" in line and "HashDropout" not in line
    return [np.load(tmp_path / f"{i}.npy") for i in range(len(paths))]


@pytest.mark.slow
def test_keras_file_loads_without_this_package(model, tmp_path):
    """The saved `.keras` holds Keras's own Dropout, not HashDropout: plain Keras loads it."""
    path = save_keras_model(model, tmp_path / "model.keras")
    images = _images()
    expected = np.asarray(model(images, training=False))
    (loaded,) = _load_without_this_package([path], images, tmp_path)
    np.testing.assert_allclose(loaded, expected, atol=1e-6)


@pytest.mark.slow
def test_every_keras_file_a_run_writes_loads_without_this_package(trained, tmp_path):
    paths = [trained.run.best_checkpoint, trained.run.keras_model]
    images = _images()
    expected = np.asarray(keras.saving.load_model(str(trained.run.keras_model))(images))
    for loaded in _load_without_this_package(paths, images, tmp_path):
        np.testing.assert_allclose(loaded, expected, atol=1e-6)


def test_keras_file_keeps_the_optimizer_state(tmp_path, tiny):
    trained = build_model(TrainConfig(hidden_units=16), steps_per_epoch=5)
    trained.fit(tiny.x_train[:80], tiny.y_train[:80], batch_size=16, epochs=1, verbose=0)
    path = save_keras_model(trained, tmp_path / "model.keras")
    with warnings.catch_warnings():
        # Keras's own, such as "Skipping variable loading for optimizer"
        warnings.simplefilter("error", UserWarning)
        loaded = keras.saving.load_model(str(path))
    assert int(loaded.optimizer.iterations.numpy()) == int(trained.optimizer.iterations.numpy())
    assert int(loaded.optimizer.iterations.numpy()) == 5


def test_float_signature_takes_pixels_in_0_1(model, exported):
    signatures = tf.saved_model.load(str(exported)).signatures
    images = _images()
    as_float = signatures["serving_float"](images=tf.constant(images / 255.0, tf.float32))
    as_uint8 = signatures["serving_default"](images=tf.constant(images))
    diff = np.abs(as_float["probabilities"].numpy() - as_uint8["probabilities"].numpy())
    assert diff.max() < 1e-5
    np.testing.assert_array_equal(as_float["classes"], as_uint8["classes"])


@pytest.mark.slow
def test_saved_model_cli_show_prints_the_contract(exported):
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run(
        [str(cli), "show", "--dir", str(exported), "--all"],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    for text in (
        "signature_def['serving_default']",
        "signature_def['serving_float']",
        "inputs['images']",
        "outputs['probabilities']",
        "outputs['classes']",
        "DT_UINT8",
        "DT_FLOAT",
        "DT_INT64",
    ):
        assert text in shown


def _saved_model_probabilities(trained, x: np.ndarray) -> np.ndarray:
    serve = tf.saved_model.load(str(trained.export_path)).signatures["serving_default"]
    return serve(images=tf.constant(x))["probabilities"].numpy()


def test_saved_model_and_keras_file_agree_on_the_test_set(trained, real_mnist):
    x = real_mnist.x_test
    from_keras_file = keras.saving.load_model(str(trained.run.keras_model)).predict(x, verbose=0)
    assert np.abs(_saved_model_probabilities(trained, x) - from_keras_file).max() < 1e-5


@pytest.mark.skipif(
    not hasattr(keras.layers, "TFSMLayer"),
    reason=f"keras.layers.TFSMLayer does not exist in Keras {keras.__version__}",
)
def test_tfsm_layer_agrees_with_the_saved_model_on_the_test_set(trained, real_mnist):
    x = real_mnist.x_test
    inputs = keras.Input((28, 28), dtype="uint8")
    layer = keras.layers.TFSMLayer(str(trained.export_path), call_endpoint="serving_default")
    wrapped = keras.Model(inputs, layer(inputs)["probabilities"])
    assert (
        np.abs(wrapped.predict(x, verbose=0) - _saved_model_probabilities(trained, x)).max() < 1e-5
    )


def test_tf_serving_rest_body_fits_the_signature(trained, real_mnist):
    """docs/serving.md's request body, built its way, is what the signature accepts."""
    build = 'json.dumps({"signature_name": "serving_default", "instances": images.tolist()})'
    assert build in (Path(__file__).parents[1] / "docs" / "serving.md").read_text()
    images = real_mnist.x_test[:3]
    body = json.dumps({"signature_name": "serving_default", "instances": images.tolist()})
    instances = np.asarray(json.loads(body)["instances"])
    signature = tf.saved_model.load(str(trained.export_path)).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["images"]
    assert instances.dtype.kind == "i" and instances.min() >= 0 and instances.max() <= 255
    assert spec.is_compatible_with(tf.constant(instances, spec.dtype))
    served = signature(images=tf.constant(instances, spec.dtype))["classes"].numpy()
    np.testing.assert_array_equal(served, real_mnist.y_test[:3])


def test_export_cli_adds_versions(model, tmp_path):
    save_keras_model(model, tmp_path / "m.keras")
    for version in ("1", "2"):
        result = run_main("export", "m.keras", "--out", "served", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f" {version}/ " in result.stdout and "in: served/mnist" in result.stdout
    assert sorted(p.name for p in (tmp_path / "served" / "mnist").iterdir()) == ["1", "2"]


EXPORT_BAD_INPUT = {
    "missing": (["missing.keras", "--out", "served"], "missing.keras: no such file"),
    "junk": (["junk.keras", "--out", "served"], "junk.keras: not a loadable .keras model"),
    "name": (["junk.keras", "--out", "served", "--name", "../up"], "--name '../up' must be"),
    "no out": (["junk.keras"], "the following arguments are required: --out"),
}


@pytest.mark.parametrize("case", sorted(EXPORT_BAD_INPUT))
def test_export_cli_bad_input(tmp_path, case):
    args, message = EXPORT_BAD_INPUT[case]
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    result = run_main("export", *args, cwd=tmp_path)
    assert_clean_failure(result, message, [tmp_path / "served"])


@pytest.mark.slow
def test_export_cli_bad_input_in_a_process(tmp_path):
    """export's one bad input in a real process, the one that gets furthest (Keras tries the
    file): exit 2, one line on stderr, no TensorFlow log."""
    args, message = EXPORT_BAD_INPUT["junk"]
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    result = run_cli("export", *args, cwd=tmp_path)
    assert_clean_failure(result, message, [tmp_path / "served"])


@pytest.mark.slow
def test_scripts_work_with_plain_tensorflow(trained, real_mnist, real_mnist_dir):
    """The scripts other teams copy: they import only numpy and tensorflow."""
    scripts = Path(__file__).parents[1] / "scripts"
    model = str(trained.export_path)
    out = subprocess.run(
        [
            sys.executable,
            str(scripts / "classify_test_set.py"),
            "--model",
            model,
            "--data",
            str(real_mnist_dir),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    keras_model = keras.saving.load_model(str(trained.run.keras_model))
    predicted = keras_model.predict(real_mnist.x_test, verbose=0).argmax(axis=1)
    assert f"accuracy {np.mean(predicted == real_mnist.y_test):.4f}" in out
    timing = subprocess.run(
        [
            sys.executable,
            str(scripts / "serving_latency.py"),
            "--model",
            model,
            "--calls",
            "100",
            "--batch",
            "1000",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert "batch 1: median" in timing and "batch 1000:" in timing
