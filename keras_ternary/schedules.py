"""The paper's learning-rate schedule (Sec. 4.1), optionally compressed in time.

The paper trains with Adam and a learning rate of 5e-3, 1e-3, 5e-4, 1e-4, 1e-5 "set at epoch
[0, 101, 142, 184, 220]" (the regime dictionary of the BinaryNet reference code, whose epoch
loop variable starts at 0).

**Epoch convention.** Epochs here are *0-based indices*, as Keras passes them to
``on_epoch_begin`` ("Epoch 1/N" in the progress bar is index 0). A boundary ``b`` means the
new value applies from index ``b`` on, i.e. from the ``b+1``-th epoch:

    index   0 … 100   101 … 141   142 … 183   184 … 219   220 …
    lr      5e-3      1e-3        5e-4        1e-4        1e-5

**Compression.** A run of ``N`` epochs can replay a paper span of ``P`` epochs with
``time_scale = P / N``: our (fractional) epoch ``t`` is the paper's epoch ``time_scale · t``,
the same mapping :class:`keras_ternary.DeltaGrowth` uses for Δ (its ``x = 1 + time_scale · t``
is the 1-based paper epoch). With ``per_step=False`` the rate changes only between epochs
(``t`` = epochs completed); with ``per_step=True`` ``t`` advances by 1/steps_per_epoch each step,
so compressed boundaries fall inside epochs exactly where they belong.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from keras_ternary import _compat
from keras_ternary.config import PAPER_LR_BOUNDARIES, PAPER_LR_VALUES, validate_piecewise

_compat.ensure_legacy_keras()

import tensorflow as tf  # noqa: E402

__all__ = [
    "PAPER_LR_BOUNDARIES",
    "PAPER_LR_VALUES",
    "EpochPiecewiseSchedule",
    "paper_learning_rate",
    "validate_piecewise",
]


def paper_learning_rate(
    paper_epoch: float,
    values: Sequence[float] = PAPER_LR_VALUES,
    boundaries: Sequence[float] = PAPER_LR_BOUNDARIES,
) -> float:
    """Piecewise-constant learning rate at a 0-based (possibly fractional) paper epoch.

    ``values[i]`` applies for ``boundaries[i-1] <= paper_epoch < boundaries[i]``.
    """
    return float(values[bisect.bisect_right(list(boundaries), paper_epoch)])


@tf.keras.utils.register_keras_serializable(package="keras_ternary")
class EpochPiecewiseSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """A Keras learning-rate schedule, piecewise constant in (compressed) epochs.

    Maps the optimizer step to our epoch ``t = step / steps_per_epoch`` (floored unless
    ``per_step``), to the paper's epoch ``time_scale · t``, and returns
    :func:`paper_learning_rate` there. Being a function of ``optimizer.iterations``, it
    resumes correctly from a checkpoint that holds the optimizer state.

    Args:
        steps_per_epoch: optimizer steps (batches) per epoch, > 0.
        values: learning rates, one more than ``boundaries`` (default: the paper's).
        boundaries: 0-based paper epochs at which the next value starts (default: the paper's).
        time_scale: paper epochs per epoch of this run (> 0; 1 = the paper's time axis).
        per_step: let the paper epoch advance within an epoch.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        values: Sequence[float] = PAPER_LR_VALUES,
        boundaries: Sequence[float] = PAPER_LR_BOUNDARIES,
        time_scale: float = 1.0,
        per_step: bool = False,
    ):
        super().__init__()
        if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        validate_piecewise(values, boundaries)
        self.steps_per_epoch = int(steps_per_epoch)
        self.values = [float(v) for v in values]
        self.boundaries = [float(b) for b in boundaries]
        self.time_scale = float(time_scale)
        self.per_step = bool(per_step)

    def paper_epoch(self, epoch: float) -> float:
        """The paper's 0-based epoch for our 0-based (fractional) ``epoch``."""
        return self.time_scale * epoch

    def value_at_epoch(self, epoch: float) -> float:
        """Learning rate for our 0-based ``epoch`` (fractional only matters if ``per_step``)."""
        t = epoch if self.per_step else float(int(epoch))
        return paper_learning_rate(self.paper_epoch(t), self.values, self.boundaries)

    def value_at_step(self, step: int) -> float:
        """Learning rate at optimizer step ``step`` (Python mirror of ``__call__``)."""
        return self.value_at_epoch(
            step / self.steps_per_epoch if self.per_step else step // self.steps_per_epoch
        )

    def __call__(self, step):
        step = tf.cast(step, tf.int64)
        if self.per_step:
            epoch = tf.cast(step, tf.float64) / float(self.steps_per_epoch)
        else:
            epoch = tf.cast(step // self.steps_per_epoch, tf.float64)
        paper_epoch = epoch * self.time_scale
        index = tf.reduce_sum(
            tf.cast(paper_epoch >= tf.constant(self.boundaries, tf.float64), tf.int32)
        )
        return tf.cast(tf.gather(tf.constant(self.values, tf.float64), index), tf.float32)

    def get_config(self) -> dict:
        return {
            "steps_per_epoch": self.steps_per_epoch,
            "values": list(self.values),
            "boundaries": list(self.boundaries),
            "time_scale": self.time_scale,
            "per_step": self.per_step,
        }
