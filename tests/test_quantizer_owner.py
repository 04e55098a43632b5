"""One Ternary per layer, exact +0.0 outputs, and ``kt.load_model``."""

from __future__ import annotations

import gc
import logging

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import keras_ternary as kt
from keras_ternary.quantizers import ternarize


def _two_convs(q1, q2) -> tf.keras.Model:
    return tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 3)),
            lq.layers.QuantConv2D(4, 3, kernel_quantizer=q1, name="first"),
            lq.layers.QuantConv2D(4, 3, kernel_quantizer=q2, name="second"),
        ]
    )


def test_one_ternary_in_two_layers_is_refused():
    q = kt.Ternary(0.1)
    with pytest.raises(ValueError, match="already used by layer 'first'.*'second' needs its own"):
        _two_convs(q, q)


def test_a_ternary_can_move_on_once_its_layer_is_gone():
    q = kt.Ternary(0.1)
    _two_convs(q, "ternary")
    tf.keras.backend.clear_session()
    gc.collect()
    model = _two_convs(q, "ternary")
    assert model.layers[0].kernel_quantizer is q


def test_own_quantizers_save_without_duplicated_variables(tmp_path, caplog):
    model = _two_convs(kt.Ternary(0.1), kt.Ternary(0.2))
    path = tmp_path / "m.h5"
    with caplog.at_level(logging.WARNING):
        model.save(path)
    assert "duplicated" not in caplog.text
    again = kt.load_model(path)
    deltas = [layer.kernel_quantizer.delta for layer in again.layers]
    assert np.allclose(deltas, [0.1, 0.2])
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(model(x), again(x))


def test_weights_inside_the_threshold_are_plus_zero():
    x = tf.constant([-0.5, -0.1, -0.05, -0.0, 0.0, 0.05, 0.1, 0.5])
    for out in (ternarize(x, 0.1), kt.Ternary(0.1)(x)):
        out = out.numpy()
        np.testing.assert_array_equal(out, [-1, 0, 0, 0, 0, 0, 0, 1])
        assert not np.signbit(out[1:7]).any()


def test_load_model_reloads_a_training_checkpoint_with_its_schedule(tmp_path):
    from keras_ternary.schedules import EpochPiecewiseSchedule

    model = _two_convs("ternary", "ternary")
    schedule = EpochPiecewiseSchedule(steps_per_epoch=2, values=[1e-3, 1e-4], boundaries=[1.0])
    model.compile(tf.keras.optimizers.Adam(schedule), "mse")
    model.fit(np.zeros((4, 8, 8, 3)), np.zeros((4, 4, 4, 4)), epochs=1, verbose=0)
    model.save(tmp_path / "last.h5")
    again = kt.load_model(tmp_path / "last.h5")
    assert "EpochPiecewiseSchedule" in str(again.optimizer.get_config()["learning_rate"])
