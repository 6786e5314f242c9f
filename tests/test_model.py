from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist_keras.config import TrainConfig, resolve_config
from mnist_keras.dropout import HashDropout
from mnist_keras.model import build_model

STEPS = 10  # steps per epoch, which the learning-rate schedule spans


@pytest.mark.parametrize("hidden", [16, 64])
def test_sequential_and_functional_are_the_same_network(hidden):
    seq = build_model(TrainConfig(hidden_units=hidden, api="sequential"), STEPS)
    fun = build_model(TrainConfig(hidden_units=hidden, api="functional"), STEPS)
    expected = 784 * hidden + hidden + hidden * 10 + 10
    trainable = [sum(int(np.prod(w.shape)) for w in m.trainable_weights) for m in (seq, fun)]
    assert trainable == [expected, expected]
    # Beside them, only the two dropout layers' step counters.
    assert [w.shape for w in seq.non_trainable_weights] == [(), ()]
    assert [type(layer).__name__ for layer in seq.layers] == [
        type(layer).__name__ for layer in fun.layers if type(layer).__name__ != "InputLayer"
    ]


@pytest.mark.parametrize("api", ["sequential", "functional"])
def test_outputs_are_probability_rows(api, tiny):
    probs = np.asarray(build_model(TrainConfig(api=api), STEPS)(tiny.x_test[:32]))
    assert probs.shape == (32, 10)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_keras_loss_is_the_cross_entropy(tiny):
    # Without XLA: what it compiles to is not the question here, and compiling it is most of
    # the test's time.
    model = build_model(TrainConfig(hidden_units=32, jit_compile=False), STEPS)
    x, y = tiny.x_test[:50], tiny.y_test[:50]
    loss = model.evaluate(x, y, batch_size=50, verbose=0, return_dict=True)["loss"]
    probs = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    one_hot = np.eye(10)[y]
    expected = np.mean(-np.sum(one_hot * np.log(probs), axis=1))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_model_scales_uint8_pixels_itself(tiny):
    """model(uint8) equals the network computed by hand on pixels / 255."""
    model = build_model(TrainConfig(hidden_units=8), STEPS)
    assert model.inputs[0].dtype == "uint8"
    w1, b1 = (np.asarray(w, np.float64) for w in model.get_layer("hidden").weights)
    w2, b2 = (np.asarray(w, np.float64) for w in model.get_layer("probabilities").weights)
    x = tiny.x_test[:20]
    logits = np.maximum(x.reshape(20, 784) / 255.0 @ w1 + b1, 0) @ w2 + b2
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, atol=1e-5)


def test_seed_preset_draws_weights_and_biases_from_standard_normal():
    model = build_model(resolve_config("seed"), STEPS)
    kernel, bias = (np.asarray(w) for w in model.get_layer("hidden").weights)
    assert kernel.shape == (784, 64)
    assert abs(kernel.std() - 1.0) < 0.05 and abs(kernel.mean()) < 0.05
    assert bias.std() > 0.5  # biases are drawn too, not zeros
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.optimizer.get_config()["learning_rate"] == pytest.approx(0.1)  # constant


def test_default_initialisation_is_glorot_with_zero_bias():
    model = build_model(TrainConfig(hidden_units=64), STEPS)
    kernel, bias = (np.asarray(w) for w in model.get_layer("hidden").weights)
    limit = np.sqrt(6 / (784 + 64))
    assert np.abs(kernel).max() <= limit and not bias.any()


def test_same_seed_same_initial_weights():
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(5)
        weights.append(build_model(TrainConfig(hidden_units=16), STEPS).get_weights())
    for a, b in zip(*weights, strict=False):
        np.testing.assert_array_equal(a, b)


def test_dropout_rates_reach_their_layers():
    model = build_model(TrainConfig(input_dropout=0.15, dropout=0.35), STEPS)
    names = [layer.name for layer in model.layers]
    assert names.index("input_dropout") < names.index("hidden") < names.index("dropout")
    for name, rate in (("input_dropout", 0.15), ("dropout", 0.35)):
        layer = model.get_layer(name)
        assert isinstance(layer, HashDropout) and layer.rate == pytest.approx(rate)


def test_cosine_schedule_spans_the_whole_run_and_constant_is_a_number():
    optimizer = build_model(TrainConfig(epochs=7, learning_rate=0.003), STEPS).optimizer
    rate = optimizer.get_config()["learning_rate"]  # the schedule, serialized
    schedule = keras.optimizers.schedules.deserialize(rate)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.decay_steps == 7 * STEPS
    assert float(schedule(0)) == pytest.approx(0.003)
    assert float(schedule(7 * STEPS)) == pytest.approx(0.0, abs=1e-9)
    constant = build_model(TrainConfig(schedule="constant", learning_rate=0.003), STEPS)
    assert constant.optimizer.get_config()["learning_rate"] == pytest.approx(0.003)


def test_warmup_rises_to_the_peak_then_the_cosine_takes_it_to_zero():
    config = TrainConfig(epochs=10, learning_rate=0.01, warmup=0.2, beta_1=0.7, beta_2=0.9)
    optimizer = build_model(config, STEPS).optimizer
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    assert float(schedule(0)) == pytest.approx(0.001)  # a tenth of the peak
    assert float(schedule(10)) == pytest.approx(0.0055)  # halfway up, linearly
    assert float(schedule(20)) == pytest.approx(0.01)  # the peak, after 20% of 100 steps
    assert float(schedule(60)) == pytest.approx(0.005)  # half of the cosine's 80 steps
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
    assert optimizer.get_config()["beta_1"] == pytest.approx(0.7)
    assert optimizer.get_config()["beta_2"] == pytest.approx(0.9)


def test_the_convolution_stages_follow_their_flags():
    config = resolve_config(arch="cnn", conv_filters=(4, 6, 8), conv_kernels=(5, 3, 3))
    model = build_model(config, STEPS)
    kernels = [model.get_layer(f"conv{i}").kernel.shape for i in (1, 2, 3)]
    assert [tuple(k) for k in kernels] == [(5, 5, 1, 4), (3, 3, 4, 6), (3, 3, 6, 8)]
    # 28 -> 24 -> 12 -> 10 -> 5 -> 3 -> 1: 8 features reach the hidden layer.
    assert model.get_layer("hidden").kernel.shape[0] == 8


@pytest.mark.parametrize("hidden", [16, 64])
def test_convnet_is_the_same_network_from_both_apis(hidden):
    models = [
        build_model(resolve_config(arch="cnn", hidden_units=hidden, api=api), STEPS)
        for api in ("sequential", "functional")
    ]
    # conv1 5x5x1x32, conv2 3x3x32x64 (28 -> 24 -> 12 -> 10 -> 5), then 5*5*64 features -> H -> 10.
    expected = (25 * 32 + 32) + (9 * 32 * 64 + 64) + (1600 * hidden + hidden) + (hidden * 10 + 10)
    for model in models:
        assert model.name == "mnist_cnn"
        assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected
    seq, fun = ([layer.name for layer in m.layers if layer.name != "images"] for m in models)
    assert seq == fun
    assert seq.index("random_zoom") < seq.index("conv1") < seq.index("pool2") < seq.index("hidden")


def _augmented_pixels(model: keras.Model, images: np.ndarray, training: bool) -> np.ndarray:
    """What the layers up to the last augmentation make of `images`."""
    pixels = images
    for layer in model.layers[: [layer.name for layer in model.layers].index("random_zoom") + 1]:
        pixels = layer(pixels, training=training)
    return np.asarray(pixels)[..., 0]


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_augmentation_moves_training_images_and_leaves_inference_alone(arch, tiny):
    config = resolve_config(arch=arch, augment=True)
    model = build_model(config, STEPS)
    images = tiny.x_test[:16]
    scaled = images / 255.0
    np.testing.assert_allclose(_augmented_pixels(model, images, False), scaled, atol=1e-6)
    moved = _augmented_pixels(model, images, True)
    changed = np.abs(moved - scaled).reshape(16, -1).max(axis=1) > 0.1
    assert changed.mean() > 0.8, "most training images are shifted, rotated or zoomed"
    # The ink stays on the page: a shift of at most 10% and a zoom of 10% keep most of it.
    assert moved.sum() > 0.5 * scaled.sum()
    plain = build_model(resolve_config(arch=arch, augment=False), STEPS)
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(
        np.asarray(model(images, training=False)), np.asarray(plain(images, training=False))
    )
