"""hw_sim reads an exported .tflite into its IR and reports the same counts as for the .h5."""

from __future__ import annotations

import json

import flatbuffers
import numpy as np
import pytest

from hw_sim import HwSimError, load_graph, profile_model
from hw_sim.emulate import run
from keras_ternary import resnet20_star
from keras_ternary.export import to_tflite
from keras_ternary.export.flatbuffer import read_metadata, schema
from keras_ternary.export.tflite import METADATA_NAME
from tests.test_export_models import randomize_batchnorm


def _numbers_close(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _numbers_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _numbers_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9), path
    else:
        assert a == b, path


def _strip_metadata(data: bytes) -> bytes:
    s = schema()
    model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    model.metadata = [m for m in model.metadata if m.name != METADATA_NAME.encode()]
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hw")
    model = resnet20_star(
        inflation=1, blocks_per_stage=1, delta=0.05, seed=3, input_shape=(16, 16, 3)
    )
    randomize_batchnorm(model, seed=3)
    x = np.random.default_rng(0).normal(size=(32, 16, 16, 3)).astype("float32")
    model.save(tmp / "m.h5")
    to_tflite(model, tmp / "m8.tflite", "int8", x)  # residual batch-norms pushed back
    to_tflite(model, tmp / "m8keep.tflite", "int8", x, fold_residual_bn=False)
    to_tflite(model, tmp / "mf.tflite", "float")
    to_tflite(model, tmp / "mfres.tflite", "float", fold_residual_bn=True)
    return tmp


LAYER_KEYS = ("op", "output_shape", "weights", "zero_weights", "weight_precision", "macs")


@pytest.mark.parametrize("name", ["m8.tflite", "m8keep.tflite", "mf.tflite", "mfres.tflite"])
@pytest.mark.parametrize("accelerator", ["bitwise", "zeroskip"])
def test_tflite_counts_equal_h5_counts(files, name, accelerator):
    h5 = profile_model(load_graph(files / "m.h5"), accelerator)
    tfl = profile_model(load_graph(files / name), accelerator)
    _numbers_close(h5["total"], tfl["total"])
    rows_h5 = {r["name"]: r for r in h5["layers"] if r["op"] in ("conv2d", "dense", "batchnorm")}
    rows_t = {r["name"]: r for r in tfl["layers"] if r["op"] in ("conv2d", "dense", "batchnorm")}
    assert rows_h5.keys() == rows_t.keys() and len(rows_h5) == 10 + 10
    for key, row in rows_h5.items():
        assert {k: row[k] for k in LAYER_KEYS} == {k: rows_t[key][k] for k in LAYER_KEYS}
    kinds = sorted(r["op"] for r in h5["layers"])
    assert kinds == sorted(r["op"] for r in tfl["layers"])


def test_tflite_ir_computes_like_the_h5_ir(files):
    """Unfolded batch-norm (γ = channel scale, μ = 0, σ² = 1 − ε) keeps the function."""
    g_h5, g_t = load_graph(files / "m.h5"), load_graph(files / "mf.tflite")
    for name in ("conv1", "stage2_block1_down_conv", "fc"):
        a, b = g_h5.op(name), g_t.op(name)
        assert np.array_equal(a.weights != 0, b.weights != 0)
        bn_h5 = g_h5.consumers(name)[0]
        bn_t = g_t.consumers(name)[0]
        assert bn_h5.name == bn_t.name and bn_t.kind == "batchnorm"
        s_h5 = bn_h5.gamma / np.sqrt(bn_h5.moving_variance + bn_h5.epsilon)
        s_t = bn_t.gamma / np.sqrt(bn_t.moving_variance + bn_t.epsilon)
        np.testing.assert_allclose(a.weights * s_h5, b.weights * s_t, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mf.tflite", "mfres.tflite"])
def test_tflite_ir_runs_like_the_h5_ir(files, name):
    """The IR rebuilt from the file (residual batch-norms re-emitted) computes the same."""
    x = np.random.default_rng(1).normal(size=(8, 16, 16, 3)).astype("float32")
    g_h5, g_t = load_graph(files / "m.h5"), load_graph(files / name)
    ref = run(g_h5, x, act_mode="float")
    np.testing.assert_allclose(run(g_t, x, act_mode="float"), ref, rtol=1e-4, atol=1e-4)
    bn_t = g_t.op("stage1_block1_bn2")
    assert bn_t.kind == "batchnorm" and g_t.op(bn_t.inputs[0]).kind == "add"
    assert g_t.op("bn2").kind == "batchnorm" and g_t.op(g_t.op("bn2").inputs[0]).kind == (
        "global_avgpool"
    )


def test_residual_fold_is_recorded_in_the_file(files):
    meta = json.loads(read_metadata(files / "m8.tflite", METADATA_NAME))
    folds = {f["bn"]: f for f in meta["residual"]}
    assert set(folds) == {"stage1_block1_bn2", "stage2_block1_bn2", "bn2"}
    assert folds["bn2"]["via"] == "avgpool" and folds["bn2"]["clips"] == ["bn2_clip"]
    down = folds["stage2_block1_bn2"]
    assert [b["kind"] for b in down["branches"]] == ["folded", "folded"]
    assert len(down["clips"]) == 2
    assert "stage1_block1_bn2" not in meta["batchnorms"]
    keep = json.loads(read_metadata(files / "m8keep.tflite", METADATA_NAME))
    assert keep["residual"] == [] and "stage1_block1_bn2" in keep["batchnorms"]


def test_tflite_without_metadata_keeps_folded_form(files, tmp_path):
    stripped = tmp_path / "plain.tflite"
    stripped.write_bytes(_strip_metadata((files / "m8keep.tflite").read_bytes()))
    assert read_metadata(stripped, METADATA_NAME) is None
    graph = load_graph(stripped)
    h5 = load_graph(files / "m.h5")
    assert sorted(op.n_weights for op in graph.compute_ops) == sorted(
        op.n_weights for op in h5.compute_ops
    )
    assert sum(op.n_zero_weights for op in graph.compute_ops) == sum(
        op.n_zero_weights for op in h5.compute_ops
    )
    assert any(op.weight_scale is not None for op in graph.compute_ops)
    assert len(graph.ops) < len(h5.ops)  # folded batch-norms are gone


def test_corrupt_tflite_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(HwSimError, match="not a valid .tflite"):
        load_graph(bad)
