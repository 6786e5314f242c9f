from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

import mnist_keras
from mnist_keras import train, tune
from mnist_keras.config import ARCH_DEFAULTS, PRESETS, TrainConfig, TuneConfig, resolve_config
from mnist_keras.errors import ConfigError
from mnist_keras.flags import option_fields


def test_seed_preset_is_the_tutorial_network():
    config = resolve_config("seed")
    assert (config.hidden_units, config.initializer, config.optimizer) == (64, "normal", "sgd")
    assert (config.learning_rate, config.batch_size, config.dropout) == (0.1, 100, 0.0)
    assert config.epochs * config.steps_per_epoch == 2000


def test_a_small_training_set_gets_a_validation_split_that_fits():
    assert resolve_config(train_samples=3000).validation_size == 300
    assert resolve_config(train_samples=3000, validation_size=100).validation_size == 100
    assert resolve_config(train_samples=59000).validation_size == TrainConfig.validation_size


def test_a_validation_split_too_big_fails_before_anything_is_printed(tmp_path, capsys):
    args = ["--train-samples", "3000", "--validation-size", "5000", "--runs-dir", str(tmp_path)]
    assert train.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and not list(tmp_path.iterdir())
    assert err.splitlines() == [
        "error: --validation-size 5000 must be smaller than --train-samples 3000: use at most "
        "2999, such as 300, or 0 to train on them all"
    ]


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
        ("conv_filters", (32, 0)),
        ("conv_kernels", (3,)),  # one a stage: two stages
        ("conv_kernels", (13, 9)),  # 28 -> 16 -> 8 -> 0 (valid 9x9 on 8x8): nothing left
        ("beta_1", 1.0),
        ("beta_2", -0.5),
        ("warmup", 1.0),
    ],
)
def test_invalid_arch_and_augmentation_name_their_flag(field, value):
    with pytest.raises(ConfigError, match=f"^--{field.replace('_', '-')} "):
        resolve_config(**{field: value})


def test_warmup_and_betas_refuse_what_would_ignore_them():
    with pytest.raises(ConfigError, match="^--warmup goes with --schedule cosine"):
        resolve_config(schedule="constant", warmup=0.1)
    with pytest.raises(ConfigError, match="^--beta-1 goes with --optimizer adam"):
        resolve_config(optimizer="sgd", beta_1=0.7)
    assert resolve_config(optimizer="sgd").beta_1 == TrainConfig.beta_1  # the defaults pass


def test_cnn_fast_is_a_convnet_whose_flags_still_win():
    config = resolve_config("cnn-fast")
    assert config.arch == "cnn" and config.preset == "cnn-fast"
    assert (config.conv_filters, config.conv_kernels) == ((24, 32), (5, 3))
    assert not config.augment and config.warmup > 0
    assert resolve_config("cnn-fast", conv_filters=[8, 8], epochs=1).conv_filters == (8, 8)


def test_every_option_field_is_a_flag_whose_help_ends_with_the_dataclass_default():
    parser = train.build_parser()
    helps = {a.dest: a.help for a in parser._actions}
    assert set(option_fields(TrainConfig)) <= set(helps)
    assert helps["hidden_units"].endswith(
        f"(default: {TrainConfig.hidden_units}; cnn: {ARCH_DEFAULTS['cnn']['hidden_units']})"
    )
    assert helps["augment"].endswith("(default: off; cnn: on)")
    args = parser.parse_args([])
    assert all(getattr(args, name) is None for name in option_fields(TrainConfig))


def test_tune_flags_left_out_take_the_dataclass_defaults():
    config = tune.config_from_args(tune.build_parser().parse_args([]))
    assert config == TuneConfig(base=resolve_config())
    given = tune.config_from_args(tune.build_parser().parse_args(["--executions-per-trial", "3"]))
    assert given.executions_per_trial == 3


@pytest.mark.parametrize(
    "values, flag",
    [
        ({"max_trials": 0}, "--max-trials"),
        ({"tuner": "grid"}, "--tuner"),
        ({"role": "chief"}, "--oracle"),
        ({"oracle": "nohost", "role": "chief"}, "--oracle"),
    ],
)
def test_an_invalid_tune_config_cannot_be_made(values, flag):
    with pytest.raises(ConfigError, match=f"^{flag} "):
        TuneConfig(**values)


def test_an_invalid_train_config_cannot_be_made_even_by_replace():
    with pytest.raises(ConfigError, match="^--epochs "):
        dataclasses.replace(TrainConfig(), epochs=0)


def test_the_readme_flag_tables_are_the_commands_help(tmp_path, monkeypatch, capsys):
    script = Path(__file__).resolve().parent.parent / "scripts" / "readme_flags.py"
    readme = script.parent.parent / "README.md"
    # In this process, not a new one: the script's main() is what `--check` runs.
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the checkout first
    spec = importlib.util.spec_from_file_location("readme_flags", script)
    readme_flags = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_flags)

    def check(path: Path) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", [str(script), "--check", "--readme", str(path)])
        return readme_flags.main(), capsys.readouterr().out

    assert check(readme)[0] == 0
    drifted = tmp_path / "README.md"
    drifted.write_text(readme.read_text().replace("(default: 30; cnn: 12)", "(default: 31)"))
    code, out = check(drifted)
    assert code == 1 and "differs from --help" in out


def test_the_public_api_names_each_object_where_it_is_defined():
    assert mnist_keras.run is train.run and mnist_keras.TrainConfig is TrainConfig
    for name in mnist_keras.__all__:
        assert getattr(mnist_keras, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        mnist_keras.fit  # noqa: B018


# The scripts and commands whose --help shows their docstring's first line.
COMMANDS = sorted(
    path
    for path in [
        *Path(__file__).parents[1].glob("scripts/*.py"),
        *Path(mnist_keras.__file__).parent.glob("*.py"),
    ]
    if "description=__doc__" in path.read_text()
)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: path.name)
def test_each_docstring_starts_with_a_whole_sentence(path):
    """Every --help shows its module's first line: it must be a sentence, not half of one."""
    docstring = ast.get_docstring(ast.parse(path.read_text()), clean=False)
    assert docstring.splitlines()[0].rstrip().endswith((".", "?", ")")), docstring.splitlines()[0]
