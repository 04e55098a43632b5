"""The config graph of the export rewrites: nodes, edges, and edits that keep weights."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_ternary.export.graph import ConfigGraph, ExportError, layer_entry
from keras_ternary.export.transforms import RangeClip


def two_branch_model() -> tf.keras.Model:
    """x → d1 → lin → (d2, d3) → add: a shared input, a linear pass-through, a sum."""
    inputs = tf.keras.Input((5,), name="x")
    h = tf.keras.layers.Dense(4, activation="tanh", name="d1")(inputs)
    h = tf.keras.layers.Activation("linear", name="lin")(h)
    a = tf.keras.layers.Dense(3, name="d2")(h)
    b = tf.keras.layers.Dense(3, name="d3")(h)
    return tf.keras.Model(inputs, tf.keras.layers.Add(name="add")([a, b]))


def data(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 5)).astype("float32")


def test_nodes_edges_and_outputs():
    graph = ConfigGraph.from_model(two_branch_model())
    assert [n.name for n in graph] == ["x", "d1", "lin", "d2", "d3", "add"]
    assert graph["add"].inputs == ["d2", "d3"] and graph["add"].class_name == "Add"
    assert graph.consumers("lin") == ["d2", "d3"] and graph.consumers("add") == []
    assert graph.is_output("add") and not graph.is_output("d2")
    assert graph["d2"].rank == 2 and len(graph["d2"].weights) == 2
    assert graph["x"].inputs == [] and "nope" not in graph and graph.get("nope") is None


def test_unchanged_graph_rebuilds_the_same_model():
    model = two_branch_model()
    rebuilt = ConfigGraph.from_model(model).build()
    assert [x.name for x in rebuilt.layers] == [x.name for x in model.layers]
    np.testing.assert_array_equal(rebuilt(data()).numpy(), model(data()).numpy())


def test_remove_rewires_consumers_and_outputs():
    model = two_branch_model()
    graph = ConfigGraph.from_model(model)
    graph.remove("lin")
    assert graph.consumers("d1") == ["d2", "d3"] and "lin" not in graph
    rebuilt = graph.build()
    assert "lin" not in {x.name for x in rebuilt.layers}
    np.testing.assert_allclose(rebuilt(data()).numpy(), model(data()).numpy(), rtol=1e-6, atol=1e-6)

    graph = ConfigGraph.from_model(model)
    graph.insert(
        layer_entry("out_lin", tf.keras.layers.Activation, {"activation": "linear"}), "add", 0
    )
    graph.remove("out_lin")
    assert graph["add"].inputs == ["d2", "d3"]


def test_insert_on_one_argument_keeps_weights():
    model = two_branch_model()
    graph = ConfigGraph.from_model(model)
    graph.insert(layer_entry("clip", RangeClip, {"bound": 0.25}), "add", 1)
    assert graph["add"].inputs == ["d2", "clip"] and graph["clip"].inputs == ["d3"]
    assert [n.name for n in graph][-2:] == ["clip", "add"]  # right before its consumer
    assert graph["clip"].rank == 2
    rebuilt = graph.build()
    a = model.get_layer("d2")(model.get_layer("lin").output)
    ref = tf.keras.Model(model.inputs, [a, model.get_layer("d3").output])(data())
    expected = ref[0].numpy() + np.clip(ref[1].numpy(), -0.25, 0.25)
    np.testing.assert_allclose(rebuilt(data()).numpy(), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ExportError, match="exists already"):
        graph.insert(layer_entry("d2", RangeClip, {}), "add", 0)


def test_replace_changes_class_and_weights_keeps_edges():
    model = two_branch_model()
    graph = ConfigGraph.from_model(model)
    kernel, bias = graph["d3"].weights
    graph.replace("d3", weights=[-kernel, -bias])
    entry = layer_entry("ignored", tf.keras.layers.Activation, {"activation": "relu"})
    graph.replace("lin", entry)
    assert graph["lin"].class_name == "Activation" and graph["lin"].inputs == ["d1"]
    assert graph["lin"].config["name"] == "lin"
    x = data()
    h = tf.nn.relu(model.get_layer("d1")(x))
    expected = model.get_layer("d2")(h).numpy() - model.get_layer("d3")(h).numpy()
    np.testing.assert_allclose(graph.build()(x).numpy(), expected, rtol=1e-5, atol=1e-5)
