"""A package that registers a custom Keras object, for the ``--import MODULE`` tests.

A model whose kernels use :class:`SignedUniform` (a registered initializer, like larq_zoo's
``blurpool_initializer``) loads only in a process that imported this package
(``--import tests.custom_objects``). It registers the way larq and larq_zoo do
(``larq.utils.register_keras_custom_object``: under its bare class name, which is what
tf-keras looks up when a larq layer of an ``.h5`` file rebuilds its initializer; a
``register_keras_serializable(package=...)`` name is not found there).
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf


@lq.utils.register_keras_custom_object
class SignedUniform(tf.keras.initializers.Initializer):
    """Uniform in ``[-limit, limit]`` with a fixed seed (a registered custom initializer)."""

    def __init__(self, limit: float = 0.5, seed: int = 0):
        self.limit = float(limit)
        self.seed = int(seed)

    def __call__(self, shape, dtype=None, **kwargs):
        return tf.random.stateless_uniform(
            shape, (self.seed, 0), -self.limit, self.limit, dtype=dtype or tf.float32
        )

    def get_config(self) -> dict:
        return {"limit": self.limit, "seed": self.seed}
