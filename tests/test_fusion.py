"""TensorFlow's oneDNN ``Fusion is not implemented: [FusedBatchNorm,Tanh]`` bug and our fallback.

On x86 CPUs with AVX-512 (oneDNN on), a compiled Conv2D (no bias) → BatchNormalization →
tanh graph fails; :func:`keras_ternary.fusion.without_fusion_bug` retries without grappler's
remapper. The model tests pass on every CPU (on others the first call already works).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_ternary.export import compare_with_keras, to_tflite
from keras_ternary.fusion import is_fusion_bug, remapper_off, without_fusion_bug
from tests.test_export_models import CLASSES, SHAPE, generated_data


def _plain_tanh_model() -> tf.keras.Model:
    """Plain tf.keras Conv2D (no bias) → BatchNormalization → Activation("tanh") → Dense."""
    init = tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=5)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(SHAPE),
            tf.keras.layers.Conv2D(8, 3, use_bias=False, kernel_initializer=init),
            tf.keras.layers.BatchNormalization(),
            tf.keras.layers.Activation("tanh"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(CLASSES, kernel_initializer=init),
        ]
    )
    model(generated_data(64, 1)[0], training=True)  # non-trivial batch-norm statistics
    return model


def _remapping() -> bool | None:
    return tf.config.optimizer.get_experimental_options().get("remapping")


def test_plain_conv_bn_tanh_compiled_call_and_export(tmp_path):
    model = _plain_tanh_model()
    x = generated_data(40, seed=4)[0]
    compiled = tf.function(lambda batch: model(batch, training=False))
    out = without_fusion_bug(lambda: compiled(x))
    np.testing.assert_allclose(out, model(x, training=False), rtol=1e-4, atol=1e-4)
    path = tmp_path / "plain.tflite"
    to_tflite(model, path, "float")
    assert compare_with_keras(model, path, x).top1_agreement == 1.0
    assert _remapping() in (None, True)  # restored


def test_fallback_retries_only_for_the_fusion_bug():
    seen = []

    def flaky():
        seen.append(_remapping())
        if len(seen) == 1:
            raise tf.errors.UnimplementedError(
                None, None, "Fusion is not implemented: [FusedBatchNorm,Tanh]"
            )
        return "ok"

    assert without_fusion_bug(flaky) == "ok"
    assert seen[1] is False and _remapping() in (None, True)

    def other():
        raise tf.errors.UnimplementedError(None, None, "something else")

    with pytest.raises(tf.errors.UnimplementedError, match="something else"):
        without_fusion_bug(other)
    assert not is_fusion_bug(ValueError("Fusion is not implemented"))


def test_remapper_off_restores_a_user_setting():
    tf.config.optimizer.set_experimental_options({"remapping": False})
    try:
        with remapper_off():
            assert _remapping() is False
        assert _remapping() is False
    finally:
        tf.config.optimizer.set_experimental_options({"remapping": True})
    with pytest.raises(RuntimeError), remapper_off():
        assert _remapping() is False
        raise RuntimeError
    assert _remapping() is True
