import math

import pytest

from keras_ternary.regimes import delta_at


@pytest.mark.parametrize(
    ("regime", "x", "expected"),
    [
        ("fixed", 7, 0.1),
        ("linear", 1, 0.1 + 0.1 * 1.9 * 1),
        ("linear", 3, 0.1 + 0.1 * 1.9 * 3),
        ("square", 2, 0.1 + 0.1 * 1.9 * 4),
        ("exp", 1, 0.1 + 0.1 * 1.9 * math.e),
        ("log", 1, 0.1),
        ("log", 10, 0.1 + 0.1 * 1.9 * math.log(10)),
        ("linear", 100, 0.9),  # capped by Δf
        ("exp", 5000, 0.9),  # overflow saturates
    ],
)
def test_eq7_hand_computed(regime, x, expected):
    assert delta_at(x, regime, 0.1, 1.9, 0.9) == pytest.approx(expected)


def test_callable_regime_and_clamp_at_zero():
    assert delta_at(4, lambda x: x**0.5, 0.2, 1.0, 0.95) == pytest.approx(0.2 + 0.2 * 2)
    assert delta_at(0.5, "log", 0.1, 20.0, 0.9) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"regime": "cubic"}, "regime"),
        ({"delta0": 0.0}, "delta0"),
        ({"delta0": -0.1}, "delta0"),
        ({"multiplier": -1.0}, "multiplier"),
        ({"delta_max": 0.1}, "delta_max"),
        ({"delta_max": 0.05}, "delta_max"),
        ({"delta_max": 1.0}, "delta_max"),
    ],
)
def test_invalid_arguments(kwargs, name):
    args = {"regime": "log", "delta0": 0.1, "multiplier": 1.9, "delta_max": 0.9, **kwargs}
    with pytest.raises(ValueError, match=name):
        delta_at(2, **args)


def test_log_undefined_at_zero():
    with pytest.raises(ValueError, match="undefined"):
        delta_at(0, "log")
