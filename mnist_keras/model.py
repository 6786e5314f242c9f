"""The network: uint8 pixels in, ten softmax probabilities out, built and compiled by Keras."""

from __future__ import annotations

import keras

from mnist_keras.config import TrainConfig
from mnist_keras.data import IMAGE_SHAPE, NUM_CLASSES
from mnist_keras.dropout import HashDropout

OPTIMIZER_CLASSES = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def build_model(config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """Build the 784-H-10 network with the configured Keras API, compiled for training.

    Args:
        steps_per_epoch: gradient steps in one epoch, which the learning-rate schedule spans.
    """
    build = _functional if config.api == "functional" else _sequential
    model = build(_layers(config))
    compile_model(
        model,
        make_optimizer(config, steps_per_epoch),
        steps_per_execution=config.steps_per_execution,
        jit_compile=config.jit_compile,
    )
    return model


def compile_model(model: keras.Model, optimizer: keras.optimizers.Optimizer, **options) -> None:
    """Softmax outputs against integer labels: sparse categorical cross-entropy, and accuracy."""
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **options,
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The configured optimizer, its learning rate constant or decaying over the whole run."""
    rate = config.learning_rate
    if config.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, config.epochs * steps_per_epoch)
    return OPTIMIZER_CLASSES[config.optimizer](learning_rate=rate)


def _inputs() -> keras.KerasTensor:
    # Raw uint8 pixels: the exported model takes images as they are stored, and the
    # scaling to [0, 1] travels inside the model instead of in every caller.
    return keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="images")


def _layers(config: TrainConfig) -> list[keras.layers.Layer]:
    return [
        keras.layers.Rescaling(1.0 / 255, name="rescale"),
        keras.layers.Flatten(name="flatten"),
        HashDropout(config.input_dropout, seed=config.seed + 1, name="input_dropout"),
        keras.layers.Dense(
            config.hidden_units,
            activation="relu",
            name="hidden",
            **_initializers(config.initializer),
        ),
        HashDropout(config.dropout, seed=config.seed, name="dropout"),
        keras.layers.Dense(
            NUM_CLASSES,
            activation="softmax",
            name="probabilities",
            **_initializers(config.initializer),
        ),
    ]


def _initializers(name: str) -> dict[str, keras.initializers.Initializer]:
    """Keras's defaults (glorot-uniform kernel, zero bias), or N(0, 1) for both as the tutorial."""
    if name == "normal":
        return {
            "kernel_initializer": keras.initializers.RandomNormal(mean=0.0, stddev=1.0),
            "bias_initializer": keras.initializers.RandomNormal(mean=0.0, stddev=1.0),
        }
    return {}


def _sequential(layers: list[keras.layers.Layer]) -> keras.Model:
    return keras.Sequential([_inputs(), *layers], name="mnist_mlp")


def _functional(layers: list[keras.layers.Layer]) -> keras.Model:
    inputs = _inputs()
    outputs = inputs
    for layer in layers:
        outputs = layer(outputs)
    return keras.Model(inputs, outputs, name="mnist_mlp")
