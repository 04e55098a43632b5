"""Inference batch-norm as a per-channel affine map ``y = scale·x + shift``.

``scale = γ / sqrt(σ² + ε)`` and ``shift = β − scale·μ``. :func:`batchnorm_from_affine` goes
back: the batch-norm with μ = 0 and σ² = 1 − ε whose affine map is the given one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["batchnorm_affine", "batchnorm_from_affine"]


def batchnorm_affine(
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    mean: np.ndarray,
    variance: np.ndarray,
    epsilon: float,
    dtype=np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` per channel, computed in ``dtype`` (γ = 1 / β = 0 when None)."""
    mean = np.asarray(mean, dtype)
    variance = np.asarray(variance, dtype)
    gamma = np.ones_like(mean) if gamma is None else np.asarray(gamma, dtype)
    beta = np.zeros_like(mean) if beta is None else np.asarray(beta, dtype)
    scale = (gamma / np.sqrt(variance + dtype(epsilon))).astype(dtype, copy=False)
    shift = (beta - scale * mean).astype(dtype, copy=False)
    return scale, shift


def batchnorm_from_affine(
    scale: np.ndarray, shift: np.ndarray, epsilon: float
) -> dict[str, np.ndarray]:
    """γ, β, μ, σ² (float32) of a batch-norm computing ``scale·x + shift``: μ = 0, σ² = 1 − ε."""
    c = np.asarray(scale).size
    return {
        "gamma": np.asarray(scale, np.float32).reshape(c),
        "beta": np.asarray(shift, np.float32).reshape(c),
        "moving_mean": np.zeros(c, np.float32),
        "moving_variance": np.full(c, 1.0 - epsilon, np.float32),
    }
