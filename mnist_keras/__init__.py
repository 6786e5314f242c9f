"""mnist-keras: an MNIST classifier built, trained, evaluated and exported with modern Keras."""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notices) buries our own output;
# a user who wants it back sets TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
