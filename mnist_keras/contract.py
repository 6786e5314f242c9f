"""The serving contract every export keeps: documented in the README, checked by the tests.

Do not rename: code outside this package (TF Serving clients, ONNX Runtime and LiteRT callers)
looks these names up.
"""

MODEL_NAME = "mnist"  # <export dir>/<MODEL_NAME>/<version>/, TensorFlow Serving's layout
SIGNATURE = "serving_default"  # images: uint8 [None, 28, 28], 0..255, white digit on black
SIGNATURE_FLOAT = "serving_float"  # images: float32 [None, 28, 28], 0.0..1.0, same orientation
INPUT_NAME = "images"
IMAGE_SHAPE = (28, 28)  # every input image, the training data's too
OUTPUT_PROBABILITIES = "probabilities"  # float32 [None, 10]
OUTPUT_CLASSES = "classes"  # int64 [None]
RESCALE_LAYER = "rescale"  # the model's own uint8 -> [0, 1] layer, skipped by SIGNATURE_FLOAT
