"""The one table of element-wise activations: numpy forward pass, Keras and TFLite names.

Every part of the project that names an activation (the IR, the emulator, the Keras and
TFLite loaders, the int8 calibration) consults :data:`ACTIVATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from keras_ternary.contract.errors import ContractError

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "apply",
    "from_keras",
    "from_tflite_fused",
    "from_tflite_op",
]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Activation:
    """One activation.

    Attributes:
        name: the project's name (IR ``Op.activation``).
        fn: forward pass on a float32 array (element-wise except ``softmax``, over the last axis).
        keras: Keras activation function names that compute it.
        tflite_fused: the TFLite ``ActivationFunctionType`` name a conv / add fuses, or None.
        tflite_op: the stand-alone TFLite builtin operator computing it, or None.
        monotone: non-decreasing element-wise (a chain keeps a threshold a step function).
        bound: a bound on ``|output|`` that holds for every input, or None.
    """

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    keras: tuple[str, ...]
    tflite_fused: str | None
    tflite_op: str | None
    monotone: bool
    bound: float | None = None


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("linear", lambda x: x, ("linear",), "NONE", None, True),
        Activation("relu", lambda x: np.maximum(x, np.float32(0)), ("relu",), "RELU", "RELU", True),
        Activation(
            "relu6",
            lambda x: np.clip(x, np.float32(0), np.float32(6)),
            ("relu6",),
            "RELU6",
            "RELU6",
            True,
            6.0,
        ),
        Activation(
            "hard_tanh",
            lambda x: np.clip(x, np.float32(-1), np.float32(1)),
            ("hard_tanh",),
            "RELU_N1_TO_1",
            "RELU_N1_TO_1",
            True,
            1.0,
        ),
        Activation("tanh", np.tanh, ("tanh",), "TANH", "TANH", True, 1.0),
        Activation("sigmoid", _sigmoid, ("sigmoid",), None, "LOGISTIC", True, 1.0),
        Activation("softmax", _softmax, ("softmax",), None, "SOFTMAX", False),
    )
}


def apply(name: str, x: np.ndarray) -> np.ndarray:
    """Run activation ``name`` on ``x`` (float32)."""
    try:
        return ACTIVATIONS[name].fn(x)
    except KeyError:
        raise ContractError(f"unsupported activation {name!r}") from None


def from_keras(name: str) -> str | None:
    """The activation a Keras activation function name stands for, or None."""
    return next((a.name for a in ACTIVATIONS.values() if name in a.keras), None)


def from_tflite_fused(name: str) -> str | None:
    """The activation of a TFLite ``ActivationFunctionType`` name, or None if not supported."""
    return next((a.name for a in ACTIVATIONS.values() if a.tflite_fused == name), None)


def from_tflite_op(name: str) -> str | None:
    """The activation a stand-alone TFLite builtin operator computes, or None."""
    return next((a.name for a in ACTIVATIONS.values() if a.tflite_op == name), None)
