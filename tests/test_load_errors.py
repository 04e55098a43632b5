"""Load errors name the actual reason in one line; Keras 3 files say they are not supported."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from hw_sim import HwSimError, load_graph
from keras_ternary.modelfile import (
    KERAS3_HINT,
    ModelFileError,
    check_model_file,
    keras_version,
    load_error_reason,
)


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory):
    """A tiny model saved by Keras 3 (the ``keras`` package), as .keras and as .h5."""
    keras3 = pytest.importorskip("keras")
    if not keras3.__version__.startswith("3."):
        pytest.skip(f"the keras package is {keras3.__version__}, not Keras 3")
    folder = tmp_path_factory.mktemp("keras3")
    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    paths = [str(folder / "k3.keras"), str(folder / "k3.h5")]
    for path in paths:
        model.save(path)
    return paths


def test_keras3_file_gives_one_line_saying_so(keras3_files):
    for path in keras3_files:
        assert keras_version(path).startswith("3.")
        with pytest.raises(ModelFileError) as info:
            check_model_file(path)
        message = str(info.value)
        assert "\n" not in message and "Keras 3" in message and KERAS3_HINT in message
        with pytest.raises(HwSimError, match="Keras 3 files are not supported"):
            load_graph(path)


def test_tf_keras_files_pass_the_version_check(tmp_path):
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        assert keras_version(tmp_path / name).startswith("2.")
        check_model_file(tmp_path / name)


def test_load_error_reason_drops_the_config_dump():
    config = {"name": "dw", "depthwise_initializer": {"config": "x" * 2000}}
    exc = TypeError(
        f"Error when deserializing class 'DepthwiseConv2D' using config={config}.\n\n"
        "Exception encountered: Unknown initializer: 'function'. Please register it."
    )
    reason = load_error_reason(exc)
    assert reason == (
        "TypeError: cannot rebuild layer class 'DepthwiseConv2D': Unknown initializer: "
        "'function'. Please register it."
    )
    assert len(load_error_reason(ValueError("y" * 5000))) <= 320
    assert load_error_reason(ValueError("first\nsecond")) == "ValueError: first"


def test_hw_sim_names_the_reason_keras_gives(tmp_path):
    """A layer whose initializer is a plain function nobody registered: tf-keras cannot rebuild
    it from .h5 (keras_load says what to import); an unregistered layer class: Keras' reason."""

    def odd_initializer(shape, dtype=None):
        return tf.ones(shape, dtype)

    x_in = tf.keras.Input((4, 4, 2))
    y = tf.keras.layers.DepthwiseConv2D(3, depthwise_initializer=odd_initializer)(x_in)
    path = tmp_path / "m.h5"
    tf.keras.Model(x_in, y).save(path)
    with pytest.raises(HwSimError) as info:
        load_graph(path)
    message = str(info.value)
    assert "function 'odd_initializer'" in message and "--import" in message

    class OddLayer(tf.keras.layers.Layer):
        def call(self, x):
            return x

    path = tmp_path / "layer.h5"
    tf.keras.Model(x_in, OddLayer()(x_in)).save(path)
    with pytest.raises(HwSimError) as info:
        load_graph(path)
    assert "Unknown layer: 'OddLayer'" in str(info.value)
    for text in (message, str(info.value)):
        assert "config=" not in text
        reason = text.replace(str(tmp_path), "PATH")  # the temporary path's length varies
        assert len(reason) < 400 and np.char.count(text, "\n") == 0
