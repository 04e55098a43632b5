"""The ``DeltaGrowth`` callback: grows the ternarization threshold Δ during training."""

from __future__ import annotations

import math
from collections.abc import Iterable

import tensorflow as tf

from keras_ternary.quantizers import Ternary
from keras_ternary.regimes import Regime, delta_at, validate_regime_args
from keras_ternary.stats import _walk_layers, ternary_stats

__all__ = ["DeltaGrowth", "find_ternary_quantizers"]


def find_ternary_quantizers(model: tf.keras.Model, inputs: bool = False) -> list[Ternary]:
    """Every :class:`Ternary` kernel quantizer of ``model`` (and input quantizers if asked)."""
    found: list[Ternary] = []
    attrs = ("kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer")
    if inputs:
        attrs += ("input_quantizer",)
    for layer in _walk_layers(model):
        for attr in attrs:
            q = getattr(layer, attr, None)
            if isinstance(q, Ternary) and all(q is not f for f in found):
                found.append(q)
    return found


class DeltaGrowth(tf.keras.callbacks.Callback):
    """Set Δ of the model's :class:`Ternary` quantizers from a growth regime (Eq. 7).

    At the start of every epoch (or every step with ``per_step=True``) Δ becomes
    ``delta_at(x, regime, delta0, multiplier, delta_max)`` with the time variable

        x = 1 + time_scale · t,

    where ``t`` is the number of epochs completed (fractional within an epoch when
    ``per_step``). With the default ``time_scale=1``, x is the 1-based epoch number that
    Keras prints ("Epoch 1/N" is x = 1), so ``"log"`` starts at exactly Δ0. To compress the
    paper's 500-epoch regime into ``N`` epochs, pass ``time_scale=500 / N``: our epoch ``e``
    then uses the Δ of the paper's epoch ``1 + e·500/N``.

    Δ is stateless with respect to history: it is recomputed from the epoch number, so
    ``fit(initial_epoch=k)`` resumes with the Δ an uninterrupted run would have.

    At the end of each epoch it writes into ``logs`` (hence ``History``, ``CSVLogger``,
    ``TensorBoard``): ``delta`` (the Δ in force at the end of the epoch — the Δ of the whole
    epoch unless ``per_step``), ``sparsity`` (fraction of zeros among ternarized weights,
    0..1) and ``entropy`` (bits/symbol of their {-1, 0, +1} distribution). Callbacks run
    in list order: put ``DeltaGrowth`` before ``CSVLogger``/``ModelCheckpoint`` that should
    see these values. The Keras progress bar runs first and does not show them; use
    ``verbose=1`` for a line per epoch.

    Args:
        regime: ``"fixed"``, ``"linear"``, ``"square"``, ``"exp"``, ``"log"`` or a callable f.
        delta0: Δ0 > 0.
        multiplier: M >= 0.
        delta_max: Δf, with Δ0 < Δf < 1.
        time_scale: factor from epochs to the regime's x (> 0), see above.
        per_step: update Δ before every training step instead of every epoch (needs a known
            number of steps per epoch; otherwise it falls back to per-epoch updates).
        quantizers: the :class:`Ternary` quantizers to drive; default: every Ternary kernel
            quantizer of the model (input/activation quantizers keep their Δ unless
            ``include_input_quantizers``).
        include_input_quantizers: also drive Ternary ``input_quantizer``\\ s when
            ``quantizers`` is not given.
        verbose: 1 prints ``delta``, ``sparsity`` and ``entropy`` after each epoch.
    """

    def __init__(
        self,
        regime: Regime = "log",
        delta0: float = 0.1,
        multiplier: float = 1.9,
        delta_max: float = 0.9,
        *,
        time_scale: float = 1.0,
        per_step: bool = False,
        quantizers: Iterable[Ternary] | None = None,
        include_input_quantizers: bool = False,
        verbose: int = 0,
    ):
        super().__init__()
        validate_regime_args(regime, delta0, multiplier, delta_max)
        if not (time_scale > 0 and math.isfinite(time_scale)):
            raise ValueError(f"time_scale must be > 0 and finite, got {time_scale}")
        self.regime = regime
        self.delta0 = float(delta0)
        self.multiplier = float(multiplier)
        self.delta_max = float(delta_max)
        self.time_scale = float(time_scale)
        self.per_step = bool(per_step)
        self.include_input_quantizers = bool(include_input_quantizers)
        self.verbose = int(verbose)
        self._given = None if quantizers is None else list(quantizers)
        if self._given is not None:
            bad = [q for q in self._given if not isinstance(q, Ternary)]
            if bad or not self._given:
                raise ValueError("quantizers must be a non-empty iterable of Ternary quantizers")
        self._targets: list[Ternary] = []
        self._epoch = 0
        self.current_delta: float | None = None

    # -- the schedule -------------------------------------------------------------------
    def x_at(self, epoch: int, progress: float = 0.0) -> float:
        """The regime's x at 0-based ``epoch`` plus a fraction ``progress`` of it."""
        return 1.0 + self.time_scale * (epoch + progress)

    def delta_for(self, epoch: int, progress: float = 0.0) -> float:
        """Δ for 0-based ``epoch`` (plus ``progress`` in [0, 1) of it), Eq. 7."""
        return delta_at(
            self.x_at(epoch, progress), self.regime, self.delta0, self.multiplier, self.delta_max
        )

    # -- Keras hooks ------------------------------------------------------------------------
    def _resolve_targets(self) -> list[Ternary]:
        if self._given is not None:
            return self._given
        targets = find_ternary_quantizers(self.model, inputs=self.include_input_quantizers)
        if not targets:
            raise ValueError(
                "DeltaGrowth found no Ternary quantizer in the model: use "
                "keras_ternary.Ternary as kernel_quantizer of a larq layer"
            )
        return targets

    def _set_delta(self, delta: float) -> None:
        for q in self._targets:
            q.delta = delta
        self.current_delta = delta

    def on_train_begin(self, logs=None):
        self._targets = self._resolve_targets()

    def on_epoch_begin(self, epoch, logs=None):
        if not self._targets:
            self._targets = self._resolve_targets()
        self._epoch = epoch
        self._set_delta(self.delta_for(epoch))

    def on_train_batch_begin(self, batch, logs=None):
        if not self.per_step:
            return
        steps = (self.params or {}).get("steps")
        if steps:
            delta = self.delta_for(self._epoch, min(batch / steps, 1.0))
            if delta != self.current_delta:
                self._set_delta(delta)

    def on_epoch_end(self, epoch, logs=None):
        stats = ternary_stats(self.model, kinds=("ternary",), histogram=False)
        values = {
            "delta": float(self.current_delta),
            "sparsity": stats.sparsity,
            "entropy": stats.entropy,
        }
        if logs is not None:
            logs.update(values)
        if self.verbose:
            print(
                f"Epoch {epoch + 1}: delta={values['delta']:.4f} "
                f"sparsity={values['sparsity']:.4f} entropy={values['entropy']:.4f} bits/weight"
            )

    def get_config(self) -> dict:
        if callable(self.regime):
            raise NotImplementedError("a DeltaGrowth with a callable regime is not serializable")
        return {
            "regime": self.regime,
            "delta0": self.delta0,
            "multiplier": self.multiplier,
            "delta_max": self.delta_max,
            "time_scale": self.time_scale,
            "per_step": self.per_step,
            "include_input_quantizers": self.include_input_quantizers,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config: dict) -> DeltaGrowth:
        return cls(**config)
