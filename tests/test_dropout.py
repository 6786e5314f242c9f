"""HashDropout: the statistics of Keras's Dropout, a mask stream fixed by seed and step."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mnist_keras.dropout import HashDropout, keep_mask, lowbias32


def _mask(seed: int, step: int, rate: float, shape=(256, 512)) -> np.ndarray:
    return keep_mask(tf.zeros(shape), seed, tf.constant(step), rate).numpy()


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.5, 0.8])
def test_mask_keeps_each_element_with_probability_one_minus_rate(rate):
    mask = _mask(seed=3, step=1, rate=rate)
    assert mask.shape == (256, 512) and mask.dtype == bool
    assert mask.mean() == pytest.approx(1 - rate, abs=0.005)  # 131,072 draws: sd 0.0014
    # No structure along rows or columns: every row and column keeps about 1 - rate.
    assert np.abs(mask.mean(axis=1) - (1 - rate)).max() < 0.1
    assert np.abs(mask.mean(axis=0) - (1 - rate)).max() < 0.15


def test_masks_are_independent_across_steps_and_seeds_and_repeat_exactly():
    first = _mask(seed=3, step=1, rate=0.5)
    np.testing.assert_array_equal(first, _mask(seed=3, step=1, rate=0.5))
    for other in (_mask(seed=3, step=2, rate=0.5), _mask(seed=4, step=1, rate=0.5)):
        # Independent masks agree on half the elements; a shifted copy would agree on all.
        assert np.mean(first == other) == pytest.approx(0.5, abs=0.01)


def test_replicas_draw_their_own_masks():
    mine, other = (_mask(seed=3, step=1, rate=0.5) for _ in range(2))
    np.testing.assert_array_equal(mine, other)
    second = keep_mask(tf.zeros((256, 512)), 3, tf.constant(1), 0.5, replica=tf.constant(1))
    second = second.numpy()
    assert np.mean(mine == second) == pytest.approx(0.5, abs=0.01)


def test_lowbias32_is_a_bijection_on_a_sample():
    x = tf.constant(np.arange(1 << 16, dtype=np.uint32))
    assert len(np.unique(lowbias32(x).numpy())) == 1 << 16


def test_layer_scales_kept_units_counts_steps_and_is_identity_outside_training():
    layer = HashDropout(0.25, seed=1)
    x = tf.ones((64, 100))
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
    outputs = [layer(x, training=True).numpy() for _ in range(2)]
    assert int(layer.step.numpy()) == 2
    for out in outputs:
        np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.75], rtol=1e-6)
        assert out.mean() == pytest.approx(1.0, abs=0.05)  # the expectation is kept
    assert not np.array_equal(outputs[0], outputs[1])  # a fresh mask every step


def test_layer_survives_a_keras_file_round_trip(tmp_path):
    inputs = keras.Input((10,))
    model = keras.Model(inputs, HashDropout(0.3, seed=7, name="drop")(inputs))
    model.get_layer("drop").step.assign(5)
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    layer = loaded.get_layer("drop")
    assert (layer.rate, layer.seed, int(layer.step.numpy())) == (pytest.approx(0.3), 7, 5)


def test_layer_under_xla_gives_the_masks_it_gives_without():
    layer = HashDropout(0.5, seed=2)
    x = tf.ones((32, 64))
    plain = layer(x, training=True).numpy()
    layer.step.assign(0)
    compiled = tf.function(lambda t: layer(t, training=True), jit_compile=True)(x).numpy()
    np.testing.assert_array_equal(plain, compiled)
