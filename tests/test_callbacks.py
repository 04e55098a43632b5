import math
import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import DeltaGrowth, Ternary
from keras_ternary.callbacks import current_learning_rate, find_ternary_quantizers
from keras_ternary.regimes import saturation_time_scale
from tests.helpers import tiny_data, tiny_ternary_model


def _fit(model, callbacks, epochs=2, initial_epoch=0, batch_size=16, learning_rate=1e-2):
    x, y = tiny_data()
    model.compile(
        tf.keras.optimizers.Adam(learning_rate),
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
        ({"time_scale": 2.0, "saturate_epoch": 5}, "not both"),
        ({"regime": "fixed", "saturate_epoch": 5}, "fixed regime never grows"),
        ({"multiplier": 0.0, "saturate_epoch": 5}, "M = 0"),
        ({"saturate_epoch": 1}, "saturate_epoch must be an integer epoch >= 2"),
        ({"saturate_epoch": 4.5}, "saturate_epoch must be an integer epoch >= 2"),
        ({"regime": math.sqrt, "saturate_epoch": 5}, "callable regime"),
        ({"regime": "exp", "multiplier": 5.0, "saturate_epoch": 5}, "already reaches"),
        ({"quantizers": []}, "quantizers"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DeltaGrowth(**kwargs)


@pytest.mark.parametrize(
    ("regime", "multiplier"), [("log", 1.9), ("linear", 1.9), ("square", 0.5), ("exp", 0.5)]
)
@pytest.mark.parametrize("epoch", [2, 3, 7, 68, 500])
def test_saturate_epoch_reaches_delta_max_in_that_epoch(regime, multiplier, epoch):
    cb = DeltaGrowth(regime, 0.1, multiplier, 0.9, saturate_epoch=epoch)
    deltas = [cb.delta_for(e) for e in range(epoch + 2)]  # 0-based epochs
    assert deltas[epoch - 2] < 0.9 == deltas[epoch - 1] == deltas[epoch]
    assert all(b > a for a, b in zip(deltas[: epoch - 1], deltas[1:epoch], strict=True))
    assert deltas[0] == pytest.approx(cb.delta_for(0))  # epoch 1: the regime's own start
    assert cb.time_scale == saturation_time_scale(epoch, regime, 0.1, multiplier, 0.9)


def test_saturate_epoch_of_the_paper_log_regime_is_its_own_time_axis():
    # the paper's log regime (time_scale 1) reaches Δf = 0.9 in epoch 68 (0.1 + 0.19 ln 68 > 0.9)
    assert saturation_time_scale(68, "log", 0.1, 1.9, 0.9) == pytest.approx(1.0, abs=0.01)
    assert DeltaGrowth("log", saturate_epoch=68).delta_for(66) < 0.9


def test_saturate_epoch_in_fit():
    history = _fit(tiny_ternary_model(), [DeltaGrowth("log", saturate_epoch=3)], epochs=4)
    assert history.history["delta"][1] < 0.9
    assert history.history["delta"][2:] == pytest.approx([0.9, 0.9])


def _lr_warnings(callbacks, learning_rate=1e-2, epochs=4, delta=None):
    delta = delta or DeltaGrowth("linear", 0.05, 1.0, 0.9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(tiny_ternary_model(), [delta, *callbacks], epochs=epochs, learning_rate=learning_rate)
    return [w for w in caught if "learning rate" in str(w.message)]


def test_warns_once_when_delta_rises_after_a_schedule_drops_the_learning_rate():
    # 64 images, batch 16: 4 steps per epoch; the rate is 1e-3 from step 8 (epoch 3) on
    schedule = tf.keras.optimizers.schedules.PiecewiseConstantDecay([7], [1e-2, 1e-3])
    found = _lr_warnings([], learning_rate=schedule)
    assert len(found) == 1 and issubclass(found[0].category, UserWarning)
    text = str(found[0].message)
    assert "epoch 3" in text and "saturate_epoch" in text


def test_warns_with_learning_rate_scheduler():
    scheduler = tf.keras.callbacks.LearningRateScheduler(lambda e, lr: 1e-2 if e < 2 else 1e-3)
    assert len(_lr_warnings([scheduler])) == 1


def test_warns_with_reduce_lr_on_plateau():
    plateau = tf.keras.callbacks.ReduceLROnPlateau("loss", factor=0.1, patience=0, min_delta=1e9)
    assert len(_lr_warnings([plateau])) == 1


def test_no_warning_without_a_drop_or_after_saturation():
    assert _lr_warnings([]) == []
    scheduler = tf.keras.callbacks.LearningRateScheduler(lambda e, lr: 1e-2 if e < 2 else 1e-3)
    saturated = DeltaGrowth("linear", 0.05, 1.0, 0.9, saturate_epoch=2)
    assert _lr_warnings([scheduler], delta=saturated) == []


def test_current_learning_rate_of_schedules_and_variables():
    schedule = tf.keras.optimizers.schedules.PiecewiseConstantDecay([8], [1e-2, 1e-3])
    optimizer = tf.keras.optimizers.Adam(schedule)
    assert current_learning_rate(optimizer) == pytest.approx(1e-2)
    assert current_learning_rate(optimizer, step=9) == pytest.approx(1e-3)
    assert current_learning_rate(tf.keras.optimizers.Adam(3e-4)) == pytest.approx(3e-4)


def test_warns_once_per_layer_whose_kernel_is_all_zero():
    model = tiny_ternary_model()
    conv = model.get_layer("conv")
    conv.kernel.assign(conv.kernel * 0.01)  # |w| <= 0.005 < Δ: every conv weight ternarizes to 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(model, [DeltaGrowth("fixed", 0.1, 0.0, 0.9)], epochs=3, learning_rate=1e-6)
    found = [str(w.message) for w in caught if "every ternarized weight" in str(w.message)]
    assert len(found) == 1 and "epoch 1" in found[0] and "1 of 2 quantized layers" in found[0]
    assert "'conv'" in found[0] and "'fc'" not in found[0]


def test_get_config_round_trip_with_saturate_epoch():
    cb = DeltaGrowth("log", 0.1, 1.9, 0.9, saturate_epoch=30)
    config = cb.get_config()
    assert config["saturate_epoch"] == 30 and "time_scale" not in config
    cb2 = DeltaGrowth.from_config(config)
    assert cb2.time_scale == cb.time_scale and cb2.get_config() == config


def test_get_config_round_trip():
    cb = DeltaGrowth("exp", 0.02, 0.5, 0.8, time_scale=2.0, per_step=True, verbose=1)
    cb2 = DeltaGrowth.from_config(cb.get_config())
    assert cb2.get_config() == cb.get_config()
    assert isinstance(Ternary(), Ternary)


def test_delta_growth_guide_table_is_computed():
    """docs/delta_growth.md's table of Δ per epoch is what DeltaGrowth computes."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "delta_growth.md").read_text()
    for label, regime, multiplier in [
        ("log", "log", 1.9),
        ("linear", "linear", 1.9),
        ("square", "square", 1.9),
        ("exp", "exp", 1.9),
        ("log, M = 0.5", "log", 0.5),
        ("log, M = 5", "log", 5.0),
    ]:
        cb = DeltaGrowth(regime, 0.1, multiplier, 0.9, saturate_epoch=6)
        cells = [f"{cb.time_scale:.3f}", *(f"{cb.delta_for(e):.2f}" for e in range(7))]
        assert f"| {label} | " + " | ".join(cells) + " |" in text
