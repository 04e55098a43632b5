import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import Binary, Ternary, resnet20_star


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize(("inflation", "expected"), [(1, 175_278), (5, 4_337_390)])
def test_parameter_counts(inflation, expected):
    assert _trainable(resnet20_star(inflation=inflation)) == expected


def test_architecture_details():
    model = resnet20_star(inflation=1)
    convs = [layer for layer in model.layers if isinstance(layer, lq.layers.QuantConv2D)]
    assert len(convs) == 1 + 3 * 2 * 2 + 2  # stem, 12 block convs, 2 shortcuts
    assert all(isinstance(c.kernel_quantizer, Ternary) for c in convs)
    assert convs[0].input_quantizer is None
    assert model.get_layer("stage3_block1_conv1").strides == (2, 2)
    assert model.get_layer("stage2_block1_down_conv").kernel_size == (1, 1)
    names = {layer.name for layer in model.layers}
    assert "stage3_block2_bn2" not in names and "stage3_block1_bn2" in names
    assert model.output_shape == (None, 10)
    fc = model.get_layer("fc")
    assert fc.use_bias and isinstance(fc.kernel_quantizer, Ternary)


def test_kernel_init_std():
    model = resnet20_star(inflation=1, seed=5)
    k = model.get_layer("stage3_block2_conv1").kernel.numpy()
    assert k.std() == pytest.approx(np.sqrt(2 / (3 * 3 * 64)), rel=0.05)


def test_float_binary_and_float_first_last():
    float_model = resnet20_star(inflation=1, quantizer=None)
    assert not any(hasattr(layer, "kernel_quantizer") for layer in float_model.layers)
    binary = resnet20_star(inflation=1, quantizer="binary", input_quantizer="binary")
    assert isinstance(binary.get_layer("fc").kernel_quantizer, Binary)
    assert isinstance(binary.get_layer("stage1_block1_conv1").input_quantizer, Binary)
    assert binary.get_layer("conv1").input_quantizer is None
    mixed = resnet20_star(inflation=1, quantize_first_last=False)
    assert isinstance(mixed.get_layer("conv1"), tf.keras.layers.Conv2D)
    assert not hasattr(mixed.get_layer("fc"), "kernel_quantizer")
    assert _trainable(mixed) == 175_278


def test_each_layer_gets_its_own_quantizer():
    model = resnet20_star(inflation=1, quantizer=Ternary(0.2))
    qs = [layer.kernel_quantizer for layer in model.layers if hasattr(layer, "kernel_quantizer")]
    assert len({id(q) for q in qs}) == len(qs) and all(q.delta == pytest.approx(0.2) for q in qs)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="inflation"):
        resnet20_star(inflation=0)
    with pytest.raises(ValueError, match="quantizer"):
        resnet20_star(inflation=1, quantizer=3.5)
