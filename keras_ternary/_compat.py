"""Make sure ``tf.keras`` is Keras 2 (tf-keras), which larq needs.

TensorFlow >= 2.16 maps ``tf.keras`` to Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set
before TensorFlow resolves ``tf.keras``. We set it when TensorFlow has not been imported
yet, and otherwise check that the user already got Keras 2.
"""

from __future__ import annotations

import os
import sys

_ADVICE = (
    "keras_ternary needs Keras 2 (the 'tf-keras' package) behind tf.keras, but tf.keras is "
    "Keras 3 in this process. Set the environment variable TF_USE_LEGACY_KERAS=1 before "
    "TensorFlow is imported (e.g. `export TF_USE_LEGACY_KERAS=1`, or import keras_ternary "
    "before tensorflow), and make sure tf-keras is installed (`pip install tf-keras==2.21.*`)."
)


def select_legacy_keras() -> None:
    """Without importing TensorFlow: select tf-keras if TensorFlow is not imported yet.

    If it is, check that ``tf.keras`` is Keras 2 (:func:`ensure_legacy_keras`).
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    else:
        ensure_legacy_keras()


def ensure_legacy_keras() -> None:
    """Select tf-keras for ``tf.keras`` or raise an ``ImportError`` that says what to do."""
    if "tensorflow" not in sys.modules:
        from keras_ternary.tflog import import_tensorflow

        tf = import_tensorflow()  # selects tf-keras first
    else:
        import tensorflow as tf

    try:
        keras_version = tf.keras.__version__ if hasattr(tf.keras, "__version__") else None
        if keras_version is None:
            import tf_keras

            uses_tf_keras = tf.keras.layers.Layer is tf_keras.layers.Layer
        else:
            uses_tf_keras = str(keras_version).startswith("2.")
    except ImportError as exc:  # tf_keras missing
        raise ImportError(_ADVICE) from exc
    if not uses_tf_keras:
        raise ImportError(_ADVICE)
