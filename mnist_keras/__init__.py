"""mnist-keras: an MNIST classifier built, trained, evaluated and exported with modern Keras."""

from mnist_keras.quiet import tensorflow_logs_off

# Before any module of ours imports TensorFlow: its start-up notices would bury our output.
tensorflow_logs_off()

__version__ = "0.1.0"
