"""TensorFlow / Keras 3 implementations; mirrors ``companion.torch`` file for file.

Importing this package imports TensorFlow, with its C++ log noise silenced first
and Keras pinned to the TensorFlow backend (the models use ``tf.GradientTape``).
"""

from __future__ import annotations

import os
import sys

from companion.settings import import_tensorflow_quietly

if "keras" in sys.modules:
    import keras as _keras

    if _keras.backend.backend() != "tensorflow":
        raise ImportError(
            f"Keras was already imported with the {_keras.backend.backend()!r} backend; "
            "companion.tensorflow needs KERAS_BACKEND=tensorflow. Restart the kernel and "
            "import companion.tensorflow first, or unset KERAS_BACKEND."
        )
else:
    os.environ["KERAS_BACKEND"] = "tensorflow"

import_tensorflow_quietly()
