"""A fallback for TensorFlow's oneDNN op-fusion bug ``Fusion is not implemented``.

With oneDNN on (the default on x86 CPUs with AVX-512, e.g. Intel Sapphire Rapids or AMD
EPYC Zen 4), grappler's *remapper* rewrites ``Conv2D (no bias) → FusedBatchNorm → Tanh``
inside a compiled graph into one fused oneDNN op, and that op does not implement the
``Tanh`` post-op: running the graph (``model.predict``, a ``tf.function``) raises
``UnimplementedError: Fusion is not implemented: [FusedBatchNorm,Tanh]``. Eager calls and
CPUs without these instructions are not affected; ``TF_ENABLE_ONEDNN_OPTS=0`` avoids it too.

:func:`without_fusion_bug` runs a callable and, only if it hits this error, runs it again with
the remapper turned off (:func:`remapper_off`, restored afterwards). The graph is then
optimized without that fusion and computes the same function.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import tensorflow as tf

__all__ = ["FUSION_ERROR", "is_fusion_bug", "remapper_off", "without_fusion_bug"]

#: The text of TensorFlow's error (tensorflow/core/kernels/mkl/, oneDNN builds).
FUSION_ERROR = "Fusion is not implemented"

T = TypeVar("T")


def is_fusion_bug(exc: BaseException) -> bool:
    """True if ``exc`` is TensorFlow's oneDNN ``Fusion is not implemented`` error."""
    return isinstance(exc, tf.errors.UnimplementedError) and FUSION_ERROR in str(exc)


@contextlib.contextmanager
def remapper_off() -> Iterator[None]:
    """Turn grappler's remapper (op fusion) off for graphs run inside; restore it after.

    Grappler options are process-wide: graphs run by other threads meanwhile are optimized
    without the remapper too (slower at worst, never different results).
    """
    before = tf.config.optimizer.get_experimental_options().get("remapping")
    tf.config.optimizer.set_experimental_options({"remapping": False})
    try:
        yield
    finally:  # the remapper is on unless configured otherwise
        tf.config.optimizer.set_experimental_options(
            {"remapping": True if before is None else before}
        )


def without_fusion_bug(fn: Callable[[], T]) -> T:
    """``fn()``; if it fails with the oneDNN fusion bug, ``fn()`` again with the remapper off."""
    try:
        return fn()
    except tf.errors.UnimplementedError as exc:
        if not is_fusion_bug(exc):
            raise
    with remapper_off():
        return fn()
