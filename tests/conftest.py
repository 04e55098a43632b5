"""Shared test set-up: Keras 2 for tf.keras, quiet TensorFlow, deterministic seeds."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_ternary  # noqa: E402,F401  (registers custom objects, selects tf-keras)


@pytest.fixture(autouse=True)
def _seed_everything():
    tf.keras.utils.set_random_seed(1234)
    yield
    tf.keras.backend.clear_session()
