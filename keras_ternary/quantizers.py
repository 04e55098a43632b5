"""Ternary and binary quantizers for larq layers.

The two paper equations implemented here:

* Eq. 5, :func:`ternarize`: ``+1 if θ > Δ``, ``0 if |θ| ≤ Δ``, ``-1 if θ < -Δ``.
* Eq. 2, :func:`saturated_ste_grad`: the straight-through estimator that respects
  saturation, ``g_θ = g_q · 1{|θ| ≤ clip_value}``.

:class:`Ternary` combines them into a larq quantizer whose threshold Δ lives in a
non-trainable ``tf.Variable``: it can change during training (see
:class:`keras_ternary.DeltaGrowth`) without retracing any ``tf.function``.

Unlike ``larq.quantizers.SteTern`` (``sign(sign(x+Δ)+sign(x-Δ))``, which maps ``|x| == Δ``
to ±1), :class:`Ternary` maps ``|x| == Δ`` to 0, exactly as Eq. 5.

Latent weights are kept in ``[-clip_value, clip_value]`` by a kernel constraint
(``larq.constraints.WeightClip``), which :func:`keras_ternary.resnet20_star` sets; since
``Δ < clip_value``, clipping before thresholding would not change the forward output.
"""

from __future__ import annotations

import weakref

import larq as lq
import tensorflow as tf

__all__ = ["Binary", "Ternary", "saturated_ste_grad", "ternarize", "ternary_ste"]


def ternarize(x: tf.Tensor, delta: tf.Tensor | float) -> tf.Tensor:
    """Eq. 5: map ``x`` to ``{-1, 0, +1}`` with threshold ``delta`` (``|x| == Δ`` gives 0).

    Computed as ``sign(x)`` where ``|x| > Δ`` and exact ``+0.0`` elsewhere (never ``-0.0``)
    in the dtype of ``x``. No gradient logic.
    """
    x = tf.convert_to_tensor(x)
    delta = tf.cast(delta, x.dtype)
    return tf.where(tf.abs(x) > delta, tf.sign(x), tf.zeros_like(x))


def saturated_ste_grad(x: tf.Tensor, dy: tf.Tensor, clip_value: float | None) -> tf.Tensor:
    """Eq. 2: straight-through gradient cancelled where the input saturates.

    Returns ``dy · 1{|x| ≤ clip_value}``; with ``clip_value=None`` the plain identity STE.
    """
    if clip_value is None:
        return dy
    return tf.where(tf.abs(x) <= tf.cast(clip_value, x.dtype), dy, tf.zeros_like(dy))


def ternary_ste(x: tf.Tensor, delta: tf.Tensor | float, clip_value: float | None = 1.0):
    """Eq. 5 forward with the Eq. 2 gradient with respect to ``x`` (none for ``delta``)."""
    delta = tf.convert_to_tensor(delta, dtype=x.dtype)

    @tf.custom_gradient
    def _ternary(inputs):
        def grad(dy):
            return saturated_ste_grad(inputs, dy, clip_value)

        return ternarize(inputs, delta), grad

    return _ternary(x)


def _validate_delta(delta: float, clip_value: float | None) -> float:
    delta = float(delta)
    if not delta >= 0.0:  # also rejects NaN
        raise ValueError(f"delta must be >= 0 (Eq. 5 needs a non-negative threshold), got {delta}")
    if clip_value is not None and delta >= clip_value:
        raise ValueError(
            f"delta must be < clip_value ({clip_value}): with Δ >= clip_value every latent "
            f"weight in [-clip_value, clip_value] would be ternarized to 0, got delta={delta}"
        )
    return delta


@lq.utils.register_alias("ternary")
@lq.utils.register_keras_custom_object
@tf.keras.utils.register_keras_serializable(package="keras_ternary", name="Ternary")
class Ternary(lq.quantizers.Quantizer):
    r"""Ternary quantizer of Dordoni et al. (MLSP 2024), Eq. 5 forward, Eq. 2 gradient.

    \[
    q(x) = \begin{cases} +1 & x > Δ \\ 0 & |x| \le Δ \\ -1 & x < -Δ \end{cases}
    \qquad
    \frac{\partial q}{\partial x} = 1_{|x| \le \text{clip\_value}}
    \]

    Use it as ``kernel_quantizer`` (or ``input_quantizer``) of larq ``QuantConv2D`` /
    ``QuantDense``, by instance or by its alias ``"ternary"``::

        lq.layers.QuantConv2D(64, 3, kernel_quantizer=Ternary(delta=0.1),
                              kernel_constraint="weight_clip")

    Args:
        delta: threshold Δ, ``0 <= Δ < clip_value``. Stored in a non-trainable
            ``tf.Variable`` (:attr:`delta_variable`); change it with ``q.delta = 0.3``.
        clip_value: gradient saturation bound of Eq. 2 (``None`` disables it).

    Δ is a (non-trainable) weight of the layer that uses the quantizer, so that model files
    and checkpoints save and restore it with the kernel. Tools that count every weight of a
    layer therefore count it too: ``larq.models.summary`` lists one extra parameter per
    Ternary and, for a convolution, ``H_out·W_out`` extra MACs (e.g. +64 on an 8x8 output).
    The kernel alone is what computes; ``hw_sim`` counts that. Untracking Δ would change the
    weight layout of every saved model, so existing files and checkpoints would not load.
    """

    precision = 2

    def __init__(self, delta: float = 0.1, clip_value: float | None = 1.0, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.clip_value = None if clip_value is None else float(clip_value)
        if self.clip_value is not None and not self.clip_value > 0:  # also rejects NaN
            raise ValueError(f"clip_value must be > 0 or None, got {clip_value}")
        initial = _validate_delta(delta, self.clip_value)
        self._owner: weakref.ref | None = None
        self.delta_variable = self.add_weight(
            # unique per quantizer: a layer may hold a kernel and an input Ternary, whose
            # weights must not collide in the .h5 layout
            name=f"{self.name}_delta",
            shape=(),
            dtype=tf.float32,
            initializer=tf.keras.initializers.Constant(initial),
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_WRITE,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    @property
    def delta(self) -> float:
        """The threshold Δ currently in force, as a Python float."""
        return float(tf.keras.backend.get_value(self.delta_variable))

    @delta.setter
    def delta(self, value: float) -> None:
        self.delta_variable.assign(_validate_delta(value, self.clip_value))

    def __call__(self, *args, **kwargs):
        self._check_owner()
        return super().__call__(*args, **kwargs)

    def _check_owner(self) -> None:
        """ValueError if this instance is already the quantizer of another live layer.

        Δ lives in this quantizer: an instance shared by two layers would give them one Δ
        variable, saved twice and restored as two. The owner is the layer whose call is
        running (Keras' call context), remembered by weak reference.
        """
        owner = _calling_layer()
        if owner is None or owner is self:
            return
        known = self._owner() if self._owner is not None else None
        if known is None:
            self._owner = weakref.ref(owner)
        elif known is not owner:
            raise ValueError(
                f"this Ternary quantizer ({self.name}) is already used by layer {known.name!r}; "
                f"layer {owner.name!r} needs its own, since each holds its own Δ variable: pass "
                "kernel_quantizer='ternary' or a new keras_ternary.Ternary(...) to each layer "
                "(DeltaGrowth drives all of them)"
            )

    def call(self, inputs):
        delta = tf.cast(self.delta_variable, inputs.dtype)
        return ternary_ste(inputs, delta, self.clip_value)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta, "clip_value": self.clip_value}


def _calling_layer() -> tf.keras.layers.Layer | None:
    """The Keras layer whose ``__call__`` is running (None outside a layer call)."""
    try:
        from tf_keras.src.engine.base_layer_utils import call_context
    except ImportError:  # another tf-keras layout: no owner check
        return None
    return call_context().layer


@lq.utils.register_alias("binary")
@lq.utils.register_keras_custom_object
@tf.keras.utils.register_keras_serializable(package="keras_ternary", name="Binary")
class Binary(lq.quantizers.SteSign):
    r"""Binary counterpart of :class:`Ternary`: ``sign(x)`` (``0 ↦ +1``), Eq. 2 gradient.

    A thin, separately registered subclass of ``larq.quantizers.SteSign`` so that binary
    and ternary models are built, saved and profiled the same way (alias ``"binary"``).
    """

    precision = 1

    def __init__(self, clip_value: float | None = 1.0, **kwargs):
        if clip_value is not None and not clip_value > 0:  # also rejects NaN
            raise ValueError(f"clip_value must be > 0 or None, got {clip_value}")
        super().__init__(clip_value=clip_value, **kwargs)
