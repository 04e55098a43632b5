"""``other_precision``: every accelerator and baseline runs float-kernel layers and stores
float tensors at the same precision (int8 by default, float32 = the counts before)."""

from __future__ import annotations

import json

import larq as lq
import pytest
import tensorflow as tf

from hw_sim.__main__ import main as hw_main
from hw_sim.accelerators import ACCELERATORS, BASELINES
from hw_sim.analysis import analyze, profile_model, to_graph
from hw_sim.errors import HwSimError
from hw_sim.technology import load_tech
from keras_ternary import Ternary


def _float_stem_model() -> tf.keras.Model:
    """Float conv stem, a binary-input ternary conv, a float classifier."""
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    x = lq.layers.QuantConv2D(
        16,
        3,
        padding="same",
        use_bias=False,
        input_quantizer="ste_sign",
        kernel_quantizer=Ternary(0.1),
        name="tconv",
    )(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(4, name="fc")(x)
    return tf.keras.Model(inputs, x)


@pytest.fixture(scope="module")
def model() -> tf.keras.Model:
    tf.keras.utils.set_random_seed(0)
    return _float_stem_model()


def _rows(report: dict) -> dict[str, dict]:
    return {r["name"]: r for r in report["layers"]}


@pytest.mark.parametrize(
    "precision, mult, add, bits",
    [("int8", "int8_mult", "int32_add", 8), ("float32", "fp32_mult", "fp32_add", 32)],
)
def test_float_layers_alike_in_every_model(model, precision, mult, add, bits):
    tech = load_tech({"other_precision": precision})
    result = profile_model(model, "all", tech)
    assert result["tech"]["other_precision"] == precision
    graph = to_graph(model)
    for m in [*ACCELERATORS.values(), *BASELINES.values()]:
        rows = _rows(analyze(graph, m, tech))
        for name in ("stem", "fc"):
            macs = rows[name]["macs"]
            assert rows[name]["actions"]["compute"] == {mult: macs, add: macs}, (m.name, name)
            assert rows[name]["mode"].startswith("fallback: ")
            biases = 32 * (8 if name == "stem" else 4)
            assert rows[name]["weight_bits_packed"] == rows[name]["weights"] * bits + biases
        # the stem's float output is stored at other_precision ...
        assert rows["stem"]["act_bits_out"] == 8 * 8 * 8 * bits
        # ... the ternary conv reads it at the model's own precision (binary input: 1 bit)
        if m.name in ("bitwise", "zeroskip", "cim", "binary"):
            assert rows["tconv"]["act_bits_in"] == 8 * 8 * 8 * 1, m.name


def test_int8_default_is_cheaper_and_ternary_layers_unchanged(model):
    int8 = profile_model(model, "bitwise")
    fp32 = profile_model(model, "bitwise", load_tech({"other_precision": "float32"}))
    assert int8["tech"]["other_precision"] == "int8"
    assert int8["total"]["energy_pj"]["total"] < fp32["total"]["energy_pj"]["total"]
    a, b = _rows(int8)["tconv"], _rows(fp32)["tconv"]
    assert a["actions"]["compute"] == b["actions"]["compute"]
    assert a["executed"] == b["executed"]


def test_bad_other_precision_is_refused():
    with pytest.raises(HwSimError, match="other_precision must be one of int8, float32"):
        load_tech({"other_precision": "int4"})


def test_cli_option_and_header(model, tmp_path, capsys):
    path = tmp_path / "m.h5"
    model.save(path)
    assert hw_main([str(path), "--format", "json", "--other-precision", "float32"]) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert hw_main([str(path), "--format", "json"]) == 0
    int8 = json.loads(capsys.readouterr().out)
    assert fp32["tech"]["other_precision"] == "float32"
    assert int8["tech"]["other_precision"] == "int8"
    assert _rows(fp32)["stem"]["actions"]["compute"].keys() == {"fp32_mult", "fp32_add"}
    assert hw_main([str(path)]) == 0
    table = capsys.readouterr().out
    assert "float-kernel layers, float and int32 tensors: int8 in every model" in table
