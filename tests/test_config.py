from __future__ import annotations

import pytest

from mnist_keras.config import ARCH_DEFAULTS, PRESETS, TrainConfig, resolve_config
from mnist_keras.errors import ConfigError


def test_seed_preset_is_the_tutorial_network():
    config = resolve_config("seed")
    assert (config.hidden_units, config.initializer, config.optimizer) == (64, "normal", "sgd")
    assert (config.learning_rate, config.batch_size, config.dropout) == (0.1, 100, 0.0)
    assert config.epochs * config.steps_per_epoch == 2000


def test_flags_override_the_preset_and_none_means_unset():
    config = resolve_config("seed", hidden_units=32, epochs=None)
    assert config.hidden_units == 32 and config.epochs == PRESETS["seed"]["epochs"]
    assert config.preset == "seed"


@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("epochs", 0, "--epochs"),
        ("batch_size", -1, "--batch-size"),
        ("hidden_units", 0, "--hidden-units"),
        ("learning_rate", 0.0, "--learning-rate"),
        ("dropout", 1.0, "--dropout"),
        ("dropout", -0.1, "--dropout"),
        ("optimizer", "adagrad", "--optimizer"),
        ("api", "subclass", "--api"),
        ("validation_size", -1, "--validation-size"),
        ("steps_per_epoch", 0, "--steps-per-epoch"),
        ("train_samples", -5, "--train-samples"),
    ],
)
def test_invalid_values_name_their_flag(field, value, flag):
    with pytest.raises(ConfigError, match=f"^{flag} "):
        resolve_config(**{field: value})


def test_unknown_preset():
    with pytest.raises(ConfigError, match="--preset"):
        resolve_config("huge")


def test_dict_round_trip_and_unknown_keys():
    config = resolve_config(hidden_units=99, data="somewhere")
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown configuration keys: colour"):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})


def test_cnn_starts_from_its_own_defaults_and_flags_still_win():
    config = resolve_config(arch="cnn")
    for field, value in ARCH_DEFAULTS["cnn"].items():
        assert getattr(config, field) == value
    assert resolve_config(arch="cnn", hidden_units=64, augment=False).hidden_units == 64
    assert (
        resolve_config().arch == "mlp" and resolve_config().hidden_units == TrainConfig.hidden_units
    )


def test_augmenting_turns_xla_off_unless_asked_for_and_then_refuses():
    assert resolve_config().jit_compile
    assert not resolve_config(augment=True).jit_compile
    assert not resolve_config(arch="cnn").jit_compile
    assert not resolve_config(arch="cnn", augment=False).jit_compile  # XLA is slower there
    assert resolve_config(arch="cnn", augment=False, jit_compile=True).jit_compile
    with pytest.raises(ConfigError, match="^--jit-compile cannot go with --augment"):
        resolve_config(augment=True, jit_compile=True)


@pytest.mark.parametrize(
    "field, value",
    [
        ("arch", "resnet"),
        ("augment_shift", 1.0),
        ("augment_rotation", -1.0),
        ("augment_rotation", 181.0),
        ("augment_zoom", -0.1),
    ],
)
def test_invalid_arch_and_augmentation_name_their_flag(field, value):
    with pytest.raises(ConfigError, match=f"^--{field.replace('_', '-')} "):
        resolve_config(**{field: value})
