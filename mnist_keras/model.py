"""The network: uint8 pixels in, ten softmax probabilities out, built and compiled by Keras.

Two architectures share the ends (rescaling in, softmax out) and the optional augmentation:
`mlp`, the tutorial's 784-H-10, and `cnn`, convolution + max-pooling stages before the same
H-unit hidden layer, so the search over H and the learning rate fits both.
"""

from __future__ import annotations

import keras

from mnist_keras.backend import compiled
from mnist_keras.config import OPTIMIZERS, TrainConfig
from mnist_keras.data import IMAGE_SHAPE, NUM_CLASSES
from mnist_keras.dropout import HashDropout
from mnist_keras.quiet import spend_xla_notice

WARMUP_FROM = 0.1  # a warm-up starts at this share of the peak learning rate


def build_model(config: TrainConfig, steps_per_epoch: int) -> keras.Model:
    """Build the configured network with the configured Keras API, compiled for training.

    Args:
        steps_per_epoch: gradient steps in one epoch, which the learning-rate schedule spans.
    """
    build = _functional if config.api == "functional" else _sequential
    model = build(_layers(config), f"mnist_{config.arch}")
    compile_model(
        model,
        make_optimizer(config, steps_per_epoch),
        steps_per_execution=config.steps_per_execution,
        jit_compile=compiled(config.jit_compile),
    )
    return model


def compile_model(model: keras.Model, optimizer: keras.optimizers.Optimizer, **options) -> None:
    """Softmax outputs against integer labels: sparse categorical cross-entropy, and accuracy."""
    spend_xla_notice()
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **options,
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The configured optimizer, its learning rate constant or decaying over the whole run (after
    a linear warm-up, if asked: together, a one-cycle schedule)."""
    rate = config.learning_rate
    if config.schedule == "cosine":
        steps = config.epochs * steps_per_epoch
        warmup = round(config.warmup * steps)
        rate = keras.optimizers.schedules.CosineDecay(
            rate * WARMUP_FROM if warmup else rate,
            steps - warmup,
            warmup_target=rate if warmup else None,
            warmup_steps=warmup,
        )
    options = (
        {"beta_1": config.beta_1, "beta_2": config.beta_2} if config.optimizer == "adam" else {}
    )
    return getattr(keras.optimizers, OPTIMIZERS[config.optimizer])(learning_rate=rate, **options)


def _inputs() -> keras.KerasTensor:
    # Raw uint8 pixels: the exported model takes images as they are stored, and the
    # scaling to [0, 1] travels inside the model instead of in every caller.
    return keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name="images")


def _layers(config: TrainConfig) -> list[keras.layers.Layer]:
    images = [keras.layers.Rescaling(1.0 / 255, name="rescale")]
    if config.arch == "cnn" or config.augment:
        images.append(keras.layers.Reshape((*IMAGE_SHAPE, 1), name="channels"))
    if config.augment:
        images += _augmentation(config)
    features = _convolutions(config) if config.arch == "cnn" else []
    return [*images, *features, *_classifier(config)]


def _augmentation(config: TrainConfig) -> list[keras.layers.Layer]:
    """Random shifts, rotations and zooms; Keras's layers pass images through outside training."""
    # Black fill: the page around an MNIST digit. Seeds differ so the three draws are independent.
    options = {"fill_mode": "constant", "fill_value": 0.0}
    shift, zoom = config.augment_shift, config.augment_zoom
    return [
        keras.layers.RandomTranslation(
            shift, shift, seed=config.seed + 2, name="random_shift", **options
        ),
        keras.layers.RandomRotation(
            config.augment_rotation / 360, seed=config.seed + 3, name="random_rotation", **options
        ),
        keras.layers.RandomZoom(zoom, zoom, seed=config.seed + 4, name="random_zoom", **options),
    ]


def _convolutions(config: TrainConfig) -> list[keras.layers.Layer]:
    layers: list[keras.layers.Layer] = []
    stages = zip(config.conv_filters, config.conv_kernels, strict=True)
    for stage, (filters, kernel) in enumerate(stages, start=1):
        layers += [
            keras.layers.Conv2D(
                filters, kernel, activation="relu", name=f"conv{stage}", **_initializers(config)
            ),
            keras.layers.MaxPooling2D(name=f"pool{stage}"),
        ]
    return layers


def _classifier(config: TrainConfig) -> list[keras.layers.Layer]:
    """Flattened features, input dropout, the hidden ReLU layer, dropout, softmax."""
    return [
        keras.layers.Flatten(name="flatten"),
        HashDropout(config.input_dropout, seed=config.seed + 1, name="input_dropout"),
        keras.layers.Dense(
            config.hidden_units,
            activation="relu",
            name="hidden",
            **_initializers(config),
        ),
        HashDropout(config.dropout, seed=config.seed, name="dropout"),
        keras.layers.Dense(
            NUM_CLASSES,
            activation="softmax",
            name="probabilities",
            **_initializers(config),
        ),
    ]


def _initializers(config: TrainConfig) -> dict[str, keras.initializers.Initializer]:
    """Keras's defaults (glorot-uniform kernel, zero bias), or N(0, 1) for both as the tutorial."""
    if config.initializer == "normal":
        return {
            "kernel_initializer": keras.initializers.RandomNormal(mean=0.0, stddev=1.0),
            "bias_initializer": keras.initializers.RandomNormal(mean=0.0, stddev=1.0),
        }
    return {}


def _sequential(layers: list[keras.layers.Layer], name: str) -> keras.Model:
    return keras.Sequential([_inputs(), *layers], name=name)


def _functional(layers: list[keras.layers.Layer], name: str) -> keras.Model:
    inputs = _inputs()
    outputs = inputs
    for layer in layers:
        outputs = layer(outputs)
    return keras.Model(inputs, outputs, name=name)
