"""Small trained models for the export tests, and tests of the inference graph (BN folding)."""

from __future__ import annotations

import functools

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import resnet20_star
from keras_ternary.export.fold import (
    batchnorm_affine,
    fold_batchnorm,
    inference_model,
    is_ternary,
)

SHAPE = (8, 8, 3)
CLASSES = 4
KINDS = ("ternary", "binary", "float")


def generated_data(n: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four classes, each a bright quadrant on Gaussian noise (8×8×3)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n)
    x = rng.normal(0.0, 0.5, size=(n, *SHAPE)).astype("float32")
    for c in range(CLASSES):
        r, k = (c // 2) * 4, (c % 2) * 4
        x[y == c, r : r + 4, k : k + 4, :] += 1.0
    return x, y.astype("int64")


@functools.cache
def trained_model(kind: str, seed: int = 0) -> tf.keras.Model:
    """resnet20_star(inflation=1, 1 block/stage) on 8×8 inputs, trained 2 short epochs.

    ``kind`` is ``"ternary"``, ``"binary"`` or ``"float"``. Cached per process.
    """
    quantizer = None if kind == "float" else kind
    tf.keras.utils.set_random_seed(seed)
    model = resnet20_star(
        inflation=1,
        blocks_per_stage=1,
        quantizer=quantizer,
        delta=0.05,
        num_classes=CLASSES,
        input_shape=SHAPE,
        seed=seed,
    )
    x, y = generated_data(256, seed)
    model.compile(
        tf.keras.optimizers.Adam(5e-3),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


def larq_model(input_quantizer=None) -> tf.keras.Model:
    """A model built with larq's own SteTern (Sequential, conv → BN → dense, BN on logits)."""
    q = lq.quantizers.SteTern(threshold_value=0.1)
    init = tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=3)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(SHAPE),
            lq.layers.QuantConv2D(
                8, 3, kernel_quantizer=q, kernel_initializer=init, use_bias=False
            ),
            tf.keras.layers.BatchNormalization(),
            tf.keras.layers.Activation("tanh"),
            tf.keras.layers.Flatten(),
            lq.layers.QuantDense(
                CLASSES,
                input_quantizer=input_quantizer,
                kernel_quantizer=q,
                kernel_initializer=init,
            ),
            tf.keras.layers.BatchNormalization(),
        ]
    )
    x, _ = generated_data(64, 1)
    model(x, training=True)  # non-trivial batch-norm statistics
    return model


def randomize_batchnorm(model: tf.keras.Model, seed: int = 0) -> None:
    """Give every batch-norm non-trivial statistics (negative γ included)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape) * rng.choice([-1, 1], gamma.shape),
                    rng.normal(0, 0.3, beta.shape),
                    rng.normal(0, 0.3, mean.shape),
                    rng.uniform(0.5, 2.0, var.shape),
                ]
            )


def test_fold_batchnorm_formula():
    rng = np.random.default_rng(0)
    bn = tf.keras.layers.BatchNormalization(epsilon=1e-3)
    bn.build((None, 5))
    bn.set_weights([rng.normal(size=5) for _ in range(3)] + [rng.uniform(0.5, 2, 5)])
    s, t = batchnorm_affine(bn)
    kernel, bias = rng.normal(size=(3, 5)).astype("float32"), rng.normal(size=5)
    x = rng.normal(size=(7, 3)).astype("float32")
    k2, b2 = fold_batchnorm(kernel, bias, s, t)
    expected = bn(x @ kernel + bias, training=False).numpy()
    np.testing.assert_allclose(x @ k2 + b2, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_inference_model_matches_and_folds(kind):
    model = trained_model(kind)
    graph = inference_model(model)
    x, _ = generated_data(32, 5)
    np.testing.assert_allclose(
        graph.model(x).numpy(), model(x, training=False).numpy(), rtol=1e-4, atol=1e-4
    )
    # BN right after a conv is folded; the BN after a residual Add cannot be
    assert graph.folded["bn1"] == "conv1" and graph.folded["bn3"] == "fc"
    assert "stage1_block1_bn2" not in graph.folded
    names = {type(layer).__name__ for layer in graph.model.layers}
    assert not names & {"QuantConv2D", "QuantDense"}
    if kind == "float":
        assert graph.ternary_kernels == []
    else:
        assert len(graph.ternary_kernels) == 10
        assert all(is_ternary(k.ternary) for k in graph.ternary_kernels)


@pytest.mark.parametrize("kind", KINDS)
def test_residual_batchnorms_pushed_back_into_the_branches(kind):
    """BN(a + x) = (s·a + t) + s·x: same function, BNs gone, clips exact even when saturated."""
    model = resnet20_star(
        inflation=1,
        blocks_per_stage=1,
        quantizer=None if kind == "float" else kind,
        delta=0.05,
        num_classes=CLASSES,
        input_shape=SHAPE,
        seed=4,
    )
    randomize_batchnorm(model, seed=4)  # negative γ included
    graph = inference_model(model, fold_residual_bn=True)
    x, _ = generated_data(32, 6)
    plain = inference_model(model)
    for scale in (1.0, 50.0):  # 50: drive every hard-tanh and range clip into saturation
        ref = model(scale * x, training=False).numpy()
        err = np.abs(graph.model(scale * x).numpy() - ref).max()
        err_plain = np.abs(plain.model(scale * x).numpy() - ref).max()
        # float32 rounding only, as for the plain folding (binary: up to ~1e-3 relative)
        assert err <= max(2 * err_plain, 1e-5) and err <= 1e-3 * np.abs(ref).max()
    folds = {f.bn: f for f in graph.residual}
    # the last block's sum goes through the pooling to bn2 (no bn2 of its own)
    assert set(folds) == {"stage1_block1_bn2", "stage2_block1_bn2", "bn2"}
    layers = {layer.name: layer for layer in graph.model.layers}
    assert not set(folds) & set(layers)
    identity = folds["stage1_block1_bn2"]  # conv branch + identity shortcut
    assert identity.branches == [
        ("stage1_block1_conv2", "folded"),
        ("stage1_block1_bn2_scale1", "scaled"),
    ]
    assert type(layers["stage1_block1_bn2_scale1"]).__name__ == "DepthwiseConv2D"
    assert identity.clips == ["stage1_block1_bn2_clip0"]
    down = folds["stage2_block1_bn2"]  # conv branch + 1×1 down-sampling conv
    assert [k for _, k in down.branches] == ["folded", "folded"] and len(down.clips) == 2
    # no branch clip before a mean; one range clip (±(1 + 2⁻⁶)) after it, before the hard-tanh
    assert folds["bn2"].via == "avgpool" and folds["bn2"].clips == ["bn2_clip"]
    assert graph.model.get_layer("tanh2").input.node.layer.name == "bn2_clip"
    if kind != "float":
        kernels = {k.layer: k for k in graph.ternary_kernels}
        k2 = kernels["stage2_block1_down_conv"]  # folded twice: its own BN, then the residual
        assert k2.folded_bn == "stage2_block1_down_bn" and k2.residual_bn == "stage2_block1_bn2"
        np.testing.assert_allclose(
            layers["stage2_block1_down_conv"].get_weights()[0], k2.kernel, rtol=0, atol=0
        )
        assert is_ternary(k2.ternary)
    assert plain.residual == [] and "stage1_block1_bn2" in {x.name for x in plain.model.layers}


def test_inference_model_of_larq_sequential_with_input_quantizer():
    model = larq_model(input_quantizer="ste_sign")
    graph = inference_model(model)
    assert any(layer.name.endswith("_input_quantizer") for layer in graph.model.layers)
    x, _ = generated_data(16, 2)
    np.testing.assert_allclose(
        graph.model(x).numpy(), model(x, training=False).numpy(), rtol=1e-4, atol=1e-4
    )
    assert len(graph.folded) == 2
