"""Δ growth regimes, Eq. 6–7 of the paper. Pure Python: no TensorFlow.

    Δ(x) = min(Δ0 + Δ0 · M · f(x), Δf)                                        (Eq. 7)

with ``f`` one of ``linear`` (x), ``square`` (x²), ``exp`` (eˣ), ``log`` (ln x), or
``fixed`` (Δ = Δ0 for every x). ``x`` is the training epoch; :class:`DeltaGrowth` uses
the 1-based epoch number, so ``log`` starts at exactly Δ0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = [
    "INVERSES",
    "REGIMES",
    "delta_at",
    "growth_function",
    "saturation_time_scale",
    "validate_regime_args",
]

#: The growth functions f of Eq. 6 evaluated in the paper (Sec. 3.2).
REGIMES: dict[str, Callable[[float], float]] = {
    "linear": lambda x: x,
    "square": lambda x: x * x,
    "exp": math.exp,
    "log": math.log,
}

#: Inverses of the growth functions on their increasing range, for :func:`saturation_time_scale`.
INVERSES: dict[str, Callable[[float], float]] = {
    "linear": lambda y: y,
    "square": math.sqrt,
    "exp": math.log,
    "log": math.exp,
}

Regime = str | Callable[[float], float]


def growth_function(regime: Regime) -> Callable[[float], float] | None:
    """Return f for ``regime`` (``None`` for ``"fixed"``); ValueError for unknown names."""
    if callable(regime):
        return regime
    if regime == "fixed":
        return None
    try:
        return REGIMES[regime]
    except (KeyError, TypeError):
        names = ", ".join(["fixed", *REGIMES])
        raise ValueError(f"regime must be one of {names} or a callable, got {regime!r}") from None


def validate_regime_args(
    regime: Regime, delta0: float, multiplier: float, delta_max: float
) -> None:
    """Check the hyper-parameters of Eq. 7; ValueError naming the offending argument."""
    growth_function(regime)
    if not delta0 > 0:
        raise ValueError(f"delta0 must be > 0, got {delta0}")
    if not (multiplier >= 0 and math.isfinite(multiplier)):
        raise ValueError(f"multiplier must be >= 0 and finite, got {multiplier}")
    if not delta0 < delta_max < 1:
        raise ValueError(
            f"delta_max must satisfy delta0 < delta_max < 1 (Δf caps the growth below the clip "
            f"value 1), got delta_max={delta_max} with delta0={delta0}"
        )


def delta_at(
    x: float,
    regime: Regime = "log",
    delta0: float = 0.1,
    multiplier: float = 1.9,
    delta_max: float = 0.9,
) -> float:
    """Eq. 7: Δ = min(Δ0 + Δ0·M·f(x), Δf), never below 0.

    Args:
        x: the regime's time variable (the 1-based epoch in the paper's convention).
        regime: ``"fixed"``, ``"linear"``, ``"square"``, ``"exp"``, ``"log"`` or a callable f.
        delta0: initial threshold Δ0 (> 0).
        multiplier: M (>= 0).
        delta_max: the cap Δf (Δ0 < Δf < 1).

    ``f(x)`` overflowing (``exp`` of a large x) saturates at Δf. A callable f that makes
    Δ negative (e.g. ``log`` at x < 1) is clamped at 0.
    """
    validate_regime_args(regime, delta0, multiplier, delta_max)
    f = growth_function(regime)
    if f is None:
        return float(delta0)
    try:
        fx = float(f(x))
    except OverflowError:
        return float(delta_max)
    except ValueError:
        raise ValueError(
            f"the growth function of regime {regime!r} is undefined at x={x}"
        ) from None
    delta = delta0 + delta0 * multiplier * fx
    if math.isnan(delta):
        raise ValueError(f"regime f returned NaN at x={x}")
    return float(max(0.0, min(delta, delta_max)))


def saturation_time_scale(
    saturate_epoch: int,
    regime: Regime = "log",
    delta0: float = 0.1,
    multiplier: float = 1.9,
    delta_max: float = 0.9,
) -> float:
    """The ``time_scale`` s with which Eq. 7 reaches Δf exactly in 1-based epoch ``saturate_epoch``.

    :class:`keras_ternary.DeltaGrowth` evaluates Eq. 7 at x = 1 + s·(e − 1) in the 1-based
    epoch e. Δ reaches Δf where f(x) = (Δf/Δ0 − 1)/M, i.e. at x* = f⁻¹((Δf/Δ0 − 1)/M), so
    s = (x* − 1)/(E − 1): Δ grows in epochs 1 … E−1, equals Δf from epoch E on, and keeps the
    regime's shape (log, linear, …) on a rescaled time axis.

    Raises:
        ValueError: for ``"fixed"`` or a callable regime (no inverse), M = 0 (Δ never grows),
            ``saturate_epoch`` < 2 or not an integer, or when the regime's Δ at epoch 1 is
            already Δf (then no time axis can delay saturation: lower M or raise Δf).
    """
    validate_regime_args(regime, delta0, multiplier, delta_max)
    if callable(regime) or regime == "fixed":
        what = (
            "a callable regime has no known inverse"
            if callable(regime)
            else "the fixed regime never grows Δ"
        )
        raise ValueError(
            f"saturate_epoch needs a growth regime ({', '.join(INVERSES)}): {what}; "
            "pass time_scale instead"
        )
    if multiplier == 0:
        raise ValueError("saturate_epoch needs multiplier > 0: with M = 0, Δ never grows")
    if (
        isinstance(saturate_epoch, bool)
        or not isinstance(saturate_epoch, int | float)
        or (not float(saturate_epoch).is_integer() or saturate_epoch < 2)
    ):
        raise ValueError(
            f"saturate_epoch must be an integer epoch >= 2 (1-based, as Keras prints it), "
            f"got {saturate_epoch!r}"
        )
    epoch = int(saturate_epoch)
    target = (delta_max / delta0 - 1.0) / multiplier
    x_star = INVERSES[regime](target)
    if not x_star > 1.0:
        raise ValueError(
            f"the {regime} regime with delta0={delta0}, multiplier={multiplier} already "
            f"reaches delta_max={delta_max} in epoch 1, so it cannot saturate in epoch {epoch}: "
            "lower the multiplier or raise delta_max"
        )
    scale = (x_star - 1.0) / (epoch - 1)
    # Rounding may leave Δ a hair below Δf at epoch E: nudge s up until the cap holds there.
    while delta_at(1.0 + scale * (epoch - 1), regime, delta0, multiplier, delta_max) < delta_max:
        scale = math.nextafter(scale, math.inf)
    return scale
