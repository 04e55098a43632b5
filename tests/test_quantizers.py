import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import Binary, Ternary
from keras_ternary.quantizers import saturated_ste_grad, ternarize


def test_ternarize_eq5_including_ties():
    x = tf.constant([-2.0, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 2.0])
    np.testing.assert_array_equal(ternarize(x, 0.2).numpy(), [-1, -1, 0, 0, 0, 0, 0, 1, 1])


def test_ternary_differs_from_larq_stetern_at_threshold():
    x = tf.constant([-0.25, 0.25])
    assert np.all(Ternary(0.25)(x).numpy() == 0)
    assert np.all(np.abs(lq.quantizers.SteTern(threshold_value=0.25)(x).numpy()) == 1)


def test_gradient_saturates_per_eq2():
    q = Ternary(delta=0.1, clip_value=1.0)
    x = tf.constant([-1.5, -1.0, -0.05, 0.0, 0.5, 1.0, 1.0001, 3.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = q(x) * tf.range(1.0, 9.0)
    grad = tape.gradient(y, x).numpy()
    np.testing.assert_array_equal(grad, [0, 2, 3, 4, 5, 6, 0, 0])
    np.testing.assert_array_equal(saturated_ste_grad(x, tf.ones_like(x), None).numpy(), np.ones(8))


def test_binary_is_sign_with_same_ste():
    x = tf.constant([-2.0, -0.5, 0.0, 0.5, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = Binary()(x)
    np.testing.assert_array_equal(y.numpy(), [-1, -1, 1, 1, 1])
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [0, 1, 1, 1, 0])
    assert Binary.precision == 1 and Ternary.precision == 2


def test_delta_change_needs_no_retrace():
    q = Ternary(delta=0.1)
    traces = []

    @tf.function
    def f(x):
        traces.append(1)
        return q(x)

    x = tf.constant([0.05, 0.15, 0.25, -0.3])
    np.testing.assert_array_equal(f(x).numpy(), [0, 1, 1, -1])
    q.delta = 0.2
    assert q.delta == pytest.approx(0.2)
    np.testing.assert_array_equal(f(x).numpy(), [0, 0, 1, -1])
    q.delta_variable.assign(0.28)
    np.testing.assert_array_equal(f(x).numpy(), [0, 0, 0, -1])
    assert len(traces) == 1


def test_aliases_and_config_round_trip():
    assert isinstance(lq.quantizers.get("ternary"), Ternary)
    assert isinstance(lq.quantizers.get("binary"), Binary)
    q = Ternary(delta=0.3, clip_value=0.9)
    q2 = Ternary.from_config(q.get_config())
    assert q2.delta == pytest.approx(0.3) and q2.clip_value == 0.9
    restored = tf.keras.utils.deserialize_keras_object(tf.keras.utils.serialize_keras_object(q))
    assert isinstance(restored, Ternary) and restored.delta == pytest.approx(0.3)
    layer = lq.layers.QuantDense(3, kernel_quantizer="ternary")
    assert isinstance(layer.kernel_quantizer, Ternary)
    layer2 = lq.layers.QuantDense.from_config(layer.get_config())
    assert isinstance(layer2.kernel_quantizer, Ternary)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delta": -0.1}, "delta must be >= 0"),
        ({"delta": 1.0}, "delta must be < clip_value"),
        ({"delta": 0.6, "clip_value": 0.5}, "delta must be < clip_value"),
        ({"delta": float("nan")}, "delta must be >= 0"),
        ({"clip_value": 0.0}, "clip_value must be > 0"),
    ],
)
def test_invalid_delta_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Ternary(**kwargs)


def test_setting_invalid_delta_raises_and_keeps_old_value():
    q = Ternary(0.1)
    with pytest.raises(ValueError, match="clip_value"):
        q.delta = 1.5
    assert q.delta == pytest.approx(0.1)


def test_works_as_kernel_and_input_quantizer_in_larq_layers():
    layer = lq.layers.QuantConv2D(
        4, 3, padding="same", kernel_quantizer=Ternary(0.05), input_quantizer=Ternary(0.5)
    )
    x = tf.random.normal((2, 6, 6, 3))
    y = layer(x)
    expected = tf.nn.conv2d(
        ternarize(x, 0.5), ternarize(layer.kernel, 0.05), strides=1, padding="SAME"
    )
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-5)
    assert [w.name.split("/")[-1] for w in layer.trainable_weights] == ["kernel:0", "bias:0"]
    names = [w.name for w in layer.non_trainable_weights]
    assert len(set(names)) == 2 and all(n.endswith("_delta:0") for n in names)


def test_delta_is_a_saved_layer_weight_that_larq_summary_counts(tmp_path):
    """Documented in Ternary's docstring: Δ is a layer weight (saved, restored), so
    larq.models.summary counts it as a parameter with H_out·W_out MACs; hw_sim does not."""
    from hw_sim import profile_model

    x_in = tf.keras.Input((8, 8, 4))
    conv = lq.layers.QuantConv2D(
        6, 3, padding="same", use_bias=False, kernel_quantizer=Ternary(delta=0.2), name="c"
    )
    model = tf.keras.Model(x_in, conv(x_in))
    kernel = 3 * 3 * 4 * 6
    assert [w.shape.rank for w in conv.weights] == [4, 0]  # kernel, Δ
    profile = lq.models.ModelProfile(model).layer_profiles[-1]
    assert profile.weight_count() == kernel + 1
    assert profile.op_count("mac") == 8 * 8 * (kernel + 1)
    row = profile_model(model)["layers"][-1]
    assert (row["weights"], row["macs"]) == (kernel, 8 * 8 * kernel)
    conv.kernel_quantizer.delta = 0.35
    model.save(tmp_path / "m.h5")
    loaded = tf.keras.models.load_model(tmp_path / "m.h5")
    assert loaded.get_layer("c").kernel_quantizer.delta == pytest.approx(0.35)
