"""Tiny models and generated data shared by the tests."""

from __future__ import annotations

import larq as lq
import numpy as np
import tensorflow as tf

from keras_ternary import Ternary


def tiny_ternary_model(delta: float = 0.1, seed: int = 0) -> tf.keras.Model:
    """Conv → BN → Dense with Ternary kernels on 8×8×3 inputs (4 classes)."""
    init = tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=seed)
    inputs = tf.keras.Input((8, 8, 3))
    x = lq.layers.QuantConv2D(
        8,
        3,
        padding="same",
        use_bias=False,
        kernel_quantizer=Ternary(delta),
        kernel_constraint="weight_clip",
        kernel_initializer=init,
        name="conv",
    )(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = lq.layers.QuantDense(
        4,
        kernel_quantizer=Ternary(delta),
        kernel_constraint="weight_clip",
        kernel_initializer=init,
        name="fc",
    )(x)
    return tf.keras.Model(inputs, x)


def tiny_data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32") + y[:, None, None, None] * 0.5
    return x, y.astype("int64")


def random_batchnorms(model: tf.keras.Model, names: tuple[str, ...], seed: int) -> None:
    """Give batch-norms non-trivial statistics (negative scales included), so folding shows."""
    rng = np.random.default_rng(seed)
    for name in names:
        layer = model.get_layer(name)
        n = layer.gamma.shape[0]
        stats = [rng.uniform(-2, 2, n), rng.normal(size=n), rng.normal(size=n)]
        layer.set_weights([*stats, rng.uniform(0.5, 2, n)])
