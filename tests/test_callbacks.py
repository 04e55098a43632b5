import math

import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import DeltaGrowth, Ternary
from keras_ternary.callbacks import find_ternary_quantizers
from tests.helpers import tiny_data, tiny_ternary_model


def _fit(model, callbacks, epochs=2, initial_epoch=0, batch_size=16):
    x, y = tiny_data()
    model.compile(
        tf.keras.optimizers.Adam(1e-2),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        initial_epoch=initial_epoch,
        validation_data=(x, y),
        callbacks=callbacks,
        verbose=0,
        shuffle=False,
    )


def test_history_holds_delta_sparsity_entropy():
    model = tiny_ternary_model()
    history = _fit(model, [DeltaGrowth("linear", 0.1, 1.0, 0.9)], epochs=3)
    np.testing.assert_allclose(history.history["delta"], [0.2, 0.3, 0.4], rtol=1e-6)
    for key in ("sparsity", "entropy"):
        assert len(history.history[key]) == 3
    quantizers = find_ternary_quantizers(model)
    assert len(quantizers) == 2 and all(q.delta == pytest.approx(0.4) for q in quantizers)
    kernels = np.concatenate([model.get_layer(n).kernel.numpy().ravel() for n in ("conv", "fc")])
    assert history.history["sparsity"][-1] == pytest.approx(np.mean(np.abs(kernels) <= 0.4))
    p = np.bincount((np.sign(kernels) * (np.abs(kernels) > 0.4)).astype(int) + 1, minlength=3)
    p = p[p > 0] / p.sum()
    assert history.history["entropy"][-1] == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-6)


def test_log_regime_ends_sparser_than_fixed():
    results = {}
    for regime in ("fixed", "log"):
        tf.keras.utils.set_random_seed(7)
        history = _fit(tiny_ternary_model(seed=3), [DeltaGrowth(regime, 0.1, 1.9, 0.9)])
        results[regime] = history.history
    assert results["log"]["delta"] == pytest.approx([0.1, 0.1 + 0.19 * math.log(2)])
    assert results["fixed"]["delta"] == pytest.approx([0.1, 0.1])
    assert results["log"]["sparsity"][-1] > results["fixed"]["sparsity"][-1]


def test_resume_recomputes_delta_from_epoch():
    model = tiny_ternary_model()
    history = _fit(model, [DeltaGrowth("square", 0.05, 0.5, 0.9)], epochs=5, initial_epoch=3)
    # epochs 4 and 5 (1-based): Δ = Δ0 + Δ0·M·x²
    assert history.history["delta"] == pytest.approx([0.05 + 0.025 * 16, 0.05 + 0.025 * 25])


def test_time_scale_and_per_step():
    cb = DeltaGrowth("linear", 0.01, 1.0, 0.9, time_scale=10.0)
    assert cb.x_at(0) == 1.0 and cb.x_at(2) == 21.0
    assert cb.delta_for(2) == pytest.approx(0.01 + 0.01 * 21)
    model = tiny_ternary_model()
    seen = []

    class Spy(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(find_ternary_quantizers(model)[0].delta)

    step_cb = DeltaGrowth("linear", 0.01, 1.0, 0.9, per_step=True)
    history = _fit(model, [step_cb, Spy()], epochs=1, batch_size=16)  # 4 steps
    np.testing.assert_allclose(seen, [0.01 + 0.01 * (1 + b / 4) for b in range(4)], rtol=1e-5)
    assert history.history["delta"][0] == pytest.approx(seen[-1])


def test_subset_of_quantizers_and_input_quantizers():
    model = tiny_ternary_model()
    conv_q = model.get_layer("conv").kernel_quantizer
    _fit(model, [DeltaGrowth("fixed", 0.3, 0.0, 0.9, quantizers=[conv_q])], epochs=1)
    assert conv_q.delta == pytest.approx(0.3)
    assert model.get_layer("fc").kernel_quantizer.delta == pytest.approx(0.1)


def test_model_without_ternary_quantizer_is_an_error():
    inputs = tf.keras.Input((8, 8, 3))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="no Ternary quantizer"):
        _fit(model, [DeltaGrowth()], epochs=1)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"regime": "quartic"}, "regime"),
        ({"delta0": 0}, "delta0"),
        ({"multiplier": -0.5}, "multiplier"),
        ({"delta_max": 0.1}, "delta_max"),
        ({"delta_max": 1.0}, "delta_max"),
        ({"time_scale": 0}, "time_scale"),
        ({"quantizers": []}, "quantizers"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DeltaGrowth(**kwargs)


def test_get_config_round_trip():
    cb = DeltaGrowth("exp", 0.02, 0.5, 0.8, time_scale=2.0, per_step=True, verbose=1)
    cb2 = DeltaGrowth.from_config(cb.get_config())
    assert cb2.get_config() == cb.get_config()
    assert isinstance(Ternary(), Ternary)
