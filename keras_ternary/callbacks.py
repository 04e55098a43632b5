"""The ``DeltaGrowth`` callback: grows the ternarization threshold Δ during training."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import tensorflow as tf

from keras_ternary.layer_table import quantized_weights
from keras_ternary.quantizers import Ternary
from keras_ternary.regimes import Regime, delta_at, saturation_time_scale, validate_regime_args
from keras_ternary.stats import _walk_layers, ternary_stats

__all__ = ["DeltaGrowth", "current_learning_rate", "find_ternary_quantizers"]


def current_learning_rate(optimizer, step: int | None = None) -> float | None:
    """The learning rate ``optimizer`` applies at ``step`` (default: its next step).

    Works for a constant or variable rate (set by ``LearningRateScheduler`` or
    ``ReduceLROnPlateau``) and for a ``LearningRateSchedule``, evaluated at the step; ``None``
    when the rate cannot be read.
    """
    lr = getattr(optimizer, "_learning_rate", None)  # tf-keras: the schedule itself, if any
    if lr is None:
        lr = getattr(optimizer, "lr", None)  # legacy optimizers
    if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations if step is None else step)
    elif callable(lr) and not isinstance(lr, tf.Variable):
        lr = lr()
    try:
        return float(tf.keras.backend.get_value(lr))
    except (TypeError, ValueError, AttributeError):
        return None


def find_ternary_quantizers(model: tf.keras.Model, inputs: bool = False) -> list[Ternary]:
    """Every :class:`Ternary` kernel quantizer of ``model`` (and input quantizers if asked).

    Kernels are those of :data:`keras_ternary.layer_table.LAYER_WEIGHTS` (a
    ``QuantDepthwiseConv2D``'s ``depthwise_quantizer`` too).
    """
    found: list[Ternary] = []
    for layer in _walk_layers(model):
        candidates = [q for _, _, q in quantized_weights(layer)]
        if inputs:
            candidates.append(getattr(layer, "input_quantizer", None))
        for q in candidates:
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

    ``saturate_epoch=E`` instead rescales the time axis for a training of any length: Δ
    follows the regime's shape and reaches Δf in the 1-based epoch ``E`` (the ``time_scale``
    comes from :func:`keras_ternary.regimes.saturation_time_scale`). Choose ``E`` before the
    first learning-rate drop: Δ rising under a small learning rate costs accuracy (the
    weights cannot follow the threshold), so the callback warns when that happens.

    Δ is stateless with respect to history: it is recomputed from the epoch number, so
    ``fit(initial_epoch=k)`` resumes with the Δ an uninterrupted run would have.

    At the end of each epoch it writes into ``logs`` (hence ``History``, ``CSVLogger``,
    ``TensorBoard``): ``delta`` (the Δ in force at the end of the epoch — the Δ of the whole
    epoch unless ``per_step``), ``sparsity`` (fraction of zeros among ternarized weights,
    0..1) and ``entropy`` (bits/symbol of their {-1, 0, +1} distribution). Callbacks run
    in list order: put ``DeltaGrowth`` before ``CSVLogger``/``ModelCheckpoint`` that should
    see these values. The Keras progress bar runs first and does not show them; use
    ``verbose=1`` for a line per epoch.

    It warns (``UserWarning``) at most once per ``fit`` when Δ rises in an epoch whose
    learning rate (from a schedule, ``LearningRateScheduler`` or ``ReduceLROnPlateau``) is
    below the first epoch's, and at the end of an epoch in which layers' ternarized kernels
    became entirely zero, naming them (once per layer and ``fit``). In a resumed
    ``fit(initial_epoch=k)`` the first epoch's rate is an optimizer schedule's rate at step 0;
    a rate set by a callback is known only from the resumed first epoch on, so a drop that
    happened before the resume is not seen.

    Args:
        regime: ``"fixed"``, ``"linear"``, ``"square"``, ``"exp"``, ``"log"`` or a callable f.
        delta0: Δ0 > 0.
        multiplier: M >= 0.
        delta_max: Δf, with Δ0 < Δf < 1.
        time_scale: factor from epochs to the regime's x (> 0; default 1), see above.
        saturate_epoch: 1-based epoch (>= 2) in which Δ reaches Δf; sets ``time_scale``, so
            the two cannot be given together. Needs a growth regime and ``multiplier > 0``.
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
        time_scale: float | None = None,
        saturate_epoch: int | None = None,
        per_step: bool = False,
        quantizers: Iterable[Ternary] | None = None,
        include_input_quantizers: bool = False,
        verbose: int = 0,
    ):
        super().__init__()
        validate_regime_args(regime, delta0, multiplier, delta_max)
        if saturate_epoch is not None:
            if time_scale is not None:
                raise ValueError(
                    "give saturate_epoch or time_scale, not both: saturate_epoch sets the "
                    "time_scale that makes Δ reach delta_max in that epoch"
                )
            time_scale = saturation_time_scale(
                saturate_epoch, regime, delta0, multiplier, delta_max
            )
            saturate_epoch = int(saturate_epoch)
        elif time_scale is None:
            time_scale = 1.0
        if not (time_scale > 0 and math.isfinite(time_scale)):
            raise ValueError(f"time_scale must be > 0 and finite, got {time_scale}")
        self.regime = regime
        self.delta0 = float(delta0)
        self.multiplier = float(multiplier)
        self.delta_max = float(delta_max)
        self.saturate_epoch = saturate_epoch
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
        self._first_lr: float | None = None
        self._epoch_lr: float | None = None
        self._warned_lr = False
        self._warned_layers: set[str] = set()

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
        self._first_lr = None
        self._warned_lr = False
        self._warned_layers = set()

    def on_epoch_begin(self, epoch, logs=None):
        if not self._targets:
            self._targets = self._resolve_targets()
        self._epoch = epoch
        self._set_delta(self.delta_for(epoch))

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self._record_learning_rate()
        if not self.per_step:
            return
        steps = (self.params or {}).get("steps")
        if steps:
            delta = self.delta_for(self._epoch, min(batch / steps, 1.0))
            if delta != self.current_delta:
                self._set_delta(delta)

    def _record_learning_rate(self) -> None:
        """Note the rate of the epoch's first step, after every callback has set it."""
        optimizer = getattr(self.model, "optimizer", None)
        self._epoch_lr = None if optimizer is None else current_learning_rate(optimizer)
        if self._first_lr is None and self._epoch_lr is not None:
            # a schedule's first rate is its rate at step 0, so a resumed fit compares to it
            self._first_lr = current_learning_rate(optimizer, step=0)
            if self._first_lr is None:
                self._first_lr = self._epoch_lr

    def _warn_rise_after_lr_drop(self, epoch: int) -> None:
        if self._warned_lr or epoch == 0 or self._epoch_lr is None or self._first_lr is None:
            return
        before = self.delta_for(epoch - 1, 1.0 if self.per_step else 0.0)
        after = self.current_delta
        if not (after > before and self._epoch_lr < self._first_lr):
            return
        self._warned_lr = True
        warnings.warn(
            f"DeltaGrowth: Δ rises from {before:.4g} to {after:.4g} in epoch {epoch + 1}, "
            f"whose learning rate {self._epoch_lr:.3g} is below the first epoch's "
            f"({self._first_lr:.3g}): the weights can no longer follow the threshold and "
            "accuracy tends to fall. Let Δ saturate before the learning rate drops, e.g. "
            "DeltaGrowth(..., saturate_epoch=E) with E a few epochs before the first drop.",
            UserWarning,
            stacklevel=2,
        )

    def _warn_empty_kernels(self, stats, epoch: int) -> None:
        empty = [
            layer.name
            for layer in stats.layers
            if layer.n_weights
            and layer.n_zero == layer.n_weights
            and layer.name not in self._warned_layers
        ]
        if not empty:
            return
        self._warned_layers.update(empty)
        names = ", ".join(repr(name) for name in empty)
        warnings.warn(
            f"DeltaGrowth: every ternarized weight of {len(empty)} of {len(stats.layers)} "
            f"quantized layers is 0 at the end of epoch {epoch + 1} (Δ = "
            f"{self.current_delta:.4g}): {names}. Their outputs no longer depend on their "
            "inputs and the network may not recover: use a smaller delta_max or multiplier, "
            "or saturate later.",
            UserWarning,
            stacklevel=2,
        )

    def on_epoch_end(self, epoch, logs=None):
        stats = ternary_stats(self.model, kinds=("ternary",), histogram=False)
        self._warn_rise_after_lr_drop(epoch)
        self._warn_empty_kernels(stats, epoch)
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
            **(
                {"saturate_epoch": self.saturate_epoch}
                if self.saturate_epoch is not None
                else {"time_scale": self.time_scale}
            ),
            "per_step": self.per_step,
            "include_input_quantizers": self.include_input_quantizers,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config: dict) -> DeltaGrowth:
        return cls(**config)
