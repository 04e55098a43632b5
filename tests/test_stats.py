import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import stats
from tests.helpers import tiny_ternary_model


def test_entropy_bits():
    assert stats.entropy_bits([0, 10, 0]) == 0.0
    assert stats.entropy_bits([5, 0, 5]) == pytest.approx(1.0)
    assert stats.entropy_bits([1, 1, 1]) == pytest.approx(np.log2(3))
    assert stats.entropy_bits([]) == 0.0


def test_ternary_stats_counts_per_layer_and_total():
    model = tiny_ternary_model(delta=0.2)
    s = stats.ternary_stats(model)
    assert [layer.name for layer in s.layers] == ["conv", "fc"]
    for layer_stats in s.layers:
        k = model.get_layer(layer_stats.name).kernel.numpy()
        assert layer_stats.n_weights == k.size
        assert layer_stats.n_zero == int((np.abs(k) <= 0.2).sum())
        assert layer_stats.n_pos == int((k > 0.2).sum())
        assert layer_stats.n_neg == int((k < -0.2).sum())
        counts, edges = layer_stats.histogram
        assert sum(counts) == k.size and len(edges) == len(counts) + 1
        assert layer_stats.delta == pytest.approx(0.2)
    assert s.total.n_weights == sum(x.n_weights for x in s.layers)
    assert s.total.n_zero == sum(x.n_zero for x in s.layers)
    assert s.sparsity == pytest.approx(s.total.n_zero / s.total.n_weights)
    d = s.to_dict()
    assert d["total"]["sparsity"] == s.sparsity and "histogram" not in d["total"]


def test_binary_model_entropy_at_most_one_bit():
    from keras_ternary import resnet20_star

    model = resnet20_star(inflation=1, quantizer="binary", blocks_per_stage=1)
    s = stats.ternary_stats(model)
    assert s.total.n_zero == 0 and 0.9 < s.entropy <= 1.0


def test_training_speed():
    assert stats.training_speed({"val_accuracy": [0.1, 0.5, 0.4, 0.5]}) == 2
    h = tf.keras.callbacks.History()
    h.history = {"val_accuracy": [0.2, float("nan"), 0.7]}
    h.epoch = [10, 11, 12]
    assert stats.training_speed(h) == 13
    with pytest.raises(ValueError, match="val_accuracy"):
        stats.training_speed({"accuracy": [1.0]})
