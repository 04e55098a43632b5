"""Emulation of whole models on the accelerator kernels (issue 5).

End-to-end: small ResNet-20* models with binary and ternary activations give integer
accumulators *equal* to the Keras layer outputs and the same predictions; float-activation
models run with int8 activations and agree; measured counts match the analytic ones;
threshold folding changes nothing; the CLI hook and the accuracy script work.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import keras_ternary
from hw_sim.__main__ import add_arguments, emulation_from_args
from hw_sim.emulate import Emulator, apply_quantizer, run
from hw_sim.emulation_check import compare_with_keras, emulation_report
from hw_sim.errors import HwSimError
from hw_sim.ir import Quantizer
from hw_sim.kernels import available_backends
from hw_sim.kernels.threshold import derive_thresholds
from hw_sim.loaders.keras import from_keras_model
from hw_sim.tables import emulation_table

ROOT = Path(__file__).resolve().parents[1]


def randomize_batchnorm(model: tf.keras.Model, seed: int = 0) -> None:
    """Trained-like BN statistics, some negative γ (thresholds with direction -1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            gamma = rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c, p=[0.2, 0.8])
            layer.set_weights(
                [gamma, rng.normal(0, 0.3, c), rng.normal(0, 2, c), rng.uniform(2, 30, c)]
            )


def fit_batchnorm(model: tf.keras.Model, x: np.ndarray) -> None:
    """BN moving statistics = those of its input on ``x`` (a stand-in for training)."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            probe = tf.keras.Model(model.input, layer.input)
            v = probe.predict(x, verbose=0).reshape(-1, layer.gamma.shape[0])
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, v.mean(0), v.var(0)])


def small_resnet(input_quantizer, **kwargs) -> tf.keras.Model:
    return keras_ternary.resnet20_star(
        inflation=1,
        quantizer=kwargs.pop("quantizer", "ternary"),
        input_quantizer=input_quantizer,
        blocks_per_stage=1,
        input_shape=(12, 12, 3),
        seed=3,
        **kwargs,
    )


def dyadic_images(n: int, seed: int = 0) -> np.ndarray:
    """Images of multiples of 1/32: the float first layer sums them exactly in any order."""
    return (np.random.default_rng(seed).integers(-64, 64, (n, 12, 12, 3)) / 32).astype(np.float32)


@pytest.mark.parametrize("input_quantizer", ["binary", "ternary"])
def test_quantized_activation_model_is_bit_exact(input_quantizer):
    model = small_resnet(input_quantizer)
    randomize_batchnorm(model)
    graph = from_keras_model(model)
    emulator = Emulator(graph)
    agreement, result = compare_with_keras(model, emulator, dyadic_images(12), batch_size=6)
    layers = agreement["accumulators"]
    assert len(layers) == 9  # every ternary/binary-activation conv and the classifier
    assert agreement["accumulators_exact"], layers
    assert agreement["top1_agreement"] == 1.0
    assert agreement["max_abs_logit_diff"] < 1e-4
    forced = agreement["teacher_forced"]
    assert forced["agrees"], forced
    integer = [n for n, s in forced["layers"].items() if s["kind"] == "integer"]
    assert sorted(integer) == sorted(layers)  # the same layers, each fed Keras' input
    assert forced["layers"]["conv1"]["kind"] == "float"  # the float-input stem
    kernels = {p["name"]: p["kernel"] for p in result.plans}
    assert kernels["conv1"] == "addsub" and kernels["fc"] == "popcount"
    folded = [p for p in result.plans if p["thresholds"]]
    assert {p["name"] for p in folded} == {f"stage{s}_block1_conv1" for s in (1, 2, 3)}


def test_threshold_folding_changes_nothing():
    model = small_resnet("ternary")
    randomize_batchnorm(model, seed=5)
    graph = from_keras_model(model)
    x = np.random.default_rng(1).normal(size=(6, 12, 12, 3)).astype(np.float32)
    fused = run(graph, x, fuse=True, return_result=True, keep_accumulators=True)
    plain = run(graph, x, fuse=False, return_result=True, keep_accumulators=True)
    np.testing.assert_array_equal(fused.logits, plain.logits)
    for name, acc in plain.accumulators.items():
        np.testing.assert_array_equal(fused.accumulators[name], acc)


@pytest.mark.parametrize("kind", ["ternary", "ste_tern", "sign"])
def test_thresholds_equal_float_chain_on_every_accumulator(kind):
    rng = np.random.default_rng(0)
    n, bound = 9, 50
    scale = rng.uniform(0.02, 0.3, n) * rng.choice([-1, 1], n)
    scale[0] = 0.0  # a constant channel
    shift = rng.normal(0, 1, n).astype(np.float32)
    q = Quantizer(kind, delta=None if kind == "sign" else 0.25)

    def fn(acc):
        y = np.clip(acc.astype(np.float32) * scale.astype(np.float32) + shift, -1, 1)
        return apply_quantizer(y, q)

    th = derive_thresholds(fn, n, bound)
    every = np.arange(-bound, bound + 1)[:, None] * np.ones((1, n), np.int64)
    np.testing.assert_array_equal(th.apply(every), fn(every))


def test_float_activation_model_runs_int8_and_counts_match_analytic():
    model = small_resnet(None)
    x = np.random.default_rng(2).normal(size=(40, 12, 12, 3)).astype(np.float32)
    fit_batchnorm(model, x)
    graph = from_keras_model(model)
    emulator = Emulator(graph, calibration=x[:20])
    assert emulator.act_mode == "int8"
    agreement, result = compare_with_keras(model, emulator, x[20:], batch_size=10)
    assert agreement["top1_agreement"] >= 0.9
    ref = np.abs(agreement["keras_logits"]).max()
    assert agreement["max_abs_logit_diff"] < 0.25 * ref
    # teacher-forced, each int8 layer's kernel gets the int8 integers of Keras' own input,
    # and so does Keras: the int8 accumulators are exact too
    forced = agreement["teacher_forced"]
    kinds = {s["kind"] for s in forced["layers"].values()}
    assert "integer" in kinds and forced["agrees"], forced
    assert result.scales["stage1_block1_conv1" and "tanh1"]["method"] == "static"
    assert "max-abs" in result.scales["image"]["method"]
    report = emulation_report(graph, result)
    for row in report["layers"]:
        assert row["measured"]["executed_static"] == row["analytic"]["executed"], row["name"]
        assert row["measured"]["executed"] <= row["measured"]["executed_static"]
    assert report["total"]["energy_pj_compute"]["measured"] > 0


def test_popcount_counts_match_bitwise_model():
    model = small_resnet("ternary")
    randomize_batchnorm(model)
    graph = from_keras_model(model)
    result = run(graph, dyadic_images(4), return_result=True)
    report = emulation_report(graph, result)
    rows = [r for r in report["layers"] if r["kernel"] == "popcount"]
    assert rows
    for row in rows:
        assert row["analytic"]["accelerator"] == "bitwise"
        assert row["measured"]["executed_static"] == row["analytic"]["executed"]
        assert row["act_sparsity"] > 0  # ternary activations hold zeros


def test_float_kernels_and_binary_weights():
    """First/last layers left float (fp32 MAC path) and binary kernels (bb popcount)."""
    model = small_resnet("binary", quantizer="binary", quantize_first_last=False)
    randomize_batchnorm(model, seed=2)
    graph = from_keras_model(model)
    agreement, result = compare_with_keras(model, Emulator(graph), dyadic_images(6))
    kernels = {p["name"]: p["kernel"] for p in result.plans}
    assert kernels["conv1"] == "mac" and kernels["fc"] == "mac"
    assert agreement["accumulators_exact"]
    assert agreement["top1_agreement"] == 1.0


def test_sequential_dense_model_with_pooling():
    model = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 2)),
            lq.layers.QuantConv2D(5, 3, padding="same", kernel_quantizer="ternary", use_bias=False),
            tf.keras.layers.MaxPooling2D(2),
            tf.keras.layers.BatchNormalization(),
            tf.keras.layers.Flatten(),
            lq.layers.QuantDense(
                70, input_quantizer="ste_sign", kernel_quantizer="ste_tern", use_bias=False
            ),
            tf.keras.layers.BatchNormalization(),
            lq.layers.QuantDense(3, input_quantizer="ternary", kernel_quantizer="ste_sign"),
        ]
    )
    randomize_batchnorm(model, seed=4)
    x = (np.random.default_rng(3).integers(-8, 8, (5, 8, 8, 2)) / 4).astype(np.float32)
    graph = from_keras_model(model)
    agreement, _ = compare_with_keras(model, Emulator(graph), x)
    assert agreement["accumulators_exact"]
    assert agreement["max_abs_logit_diff"] < 1e-4


@pytest.mark.skipif("numba" not in available_backends(), reason="numba not installed")
def test_backends_agree():
    model = small_resnet("binary")
    randomize_batchnorm(model)
    graph = from_keras_model(model)
    x = dyadic_images(3)
    np.testing.assert_array_equal(run(graph, x, backend="numpy"), run(graph, x, backend="numba"))


def test_profile_cli_hook(tmp_path):
    model = small_resnet("binary")
    randomize_batchnorm(model)
    path = str(tmp_path / "m.h5")
    model.save(path)
    x = dyadic_images(5)
    np.savez(tmp_path / "in.npz", x=x, y=np.arange(5) % 10)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    graph = from_keras_model(model)
    args = parser.parse_args([path, "--emulate", "4", "--inputs", str(tmp_path / "in.npz")])
    report = emulation_from_args(args, graph, path)
    assert report["images"] == 4
    assert report["agreement"]["accumulators_exact"]
    assert report["agreement"]["teacher_forced"]["agrees"]
    assert report["accuracy"]["emulated"] == report["accuracy"]["keras"]
    json.dumps(report)  # JSON-ready
    text = emulation_table(report)
    assert "agreement with Keras (free-running): top-1 100.00%" in text
    assert re.search(r"\(teacher-forced.*: integer accumulators exact \(\d+ layers?\)", text)
    assert emulation_from_args(parser.parse_args([path]), graph, path) is None
    with pytest.raises(HwSimError, match="exactly one of"):
        emulation_from_args(parser.parse_args([path, "--emulate", "2"]), graph, path)


def test_profile_csv_carries_the_emulation(tmp_path):
    import csv

    from hw_sim.profile import main as profile_main

    model = small_resnet("binary")
    randomize_batchnorm(model)
    path = str(tmp_path / "m.h5")
    model.save(path)
    np.savez(tmp_path / "in.npz", x=dyadic_images(4), y=np.arange(4) % 10)
    common = [path, "--emulate", "4", "--inputs", str(tmp_path / "in.npz")]
    assert profile_main([*common, "--format", "json", "--out", str(tmp_path / "r.json")]) == 0
    assert profile_main([*common, "--format", "csv", "--out", str(tmp_path / "r.csv")]) == 0
    em = json.loads((tmp_path / "r.json").read_text())["emulation"]
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    layers = {r["name"]: r for r in em["layers"]}
    emulated = [r for r in rows if r["name"] in layers]
    assert emulated and {r["emulated_kernel"] for r in emulated} <= {"popcount", "addsub", "mac"}
    for r in emulated:
        want = layers[r["name"]]
        assert float(r["emulated_executed"]) == pytest.approx(want["measured"]["executed"])
        assert float(r["emulated_compute_pj"]) == pytest.approx(
            want["energy_pj_compute"]["measured"]
        )
    totals = [r for r in rows if r["name"] == "TOTAL"]
    want_total = em["total"]["energy_pj_compute"]["measured"]
    assert all(float(r["emulated_compute_pj"]) == pytest.approx(want_total) for r in totals)
    assert profile_main([path, "--format", "csv", "--out", str(tmp_path / "plain.csv")]) == 0
    header = (tmp_path / "plain.csv").read_text().splitlines()[0]
    assert "emulated_kernel" not in header  # no --emulate, no emulation columns


def test_emulate_accuracy_script(tmp_path, capsys):
    from keras_ternary.data import write_cifar10_binary

    spec = importlib.util.spec_from_file_location("ea", ROOT / "scripts" / "emulate_accuracy.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
        write_cifar10_binary(tmp_path / name, images, rng.integers(0, 10, 8))
    model = keras_ternary.resnet20_star(inflation=1, blocks_per_stage=1, seed=1)
    path = str(tmp_path / "float_act.h5")
    model.save(path)
    out = tmp_path / "report.json"
    argv = [path, "--data-dir", str(tmp_path), "--calibration", "8", "--out", str(out)]
    assert script.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["images"] == 8 and report["act_mode"] == "int8"
    assert report["teacher_forced_accumulators_exact"] and report["teacher_forced_agrees"]
    assert report["difference_points"] == pytest.approx(
        report["emulated_accuracy"] - report["keras_accuracy"]
    )
    assert script.main([path, "--data-dir", str(tmp_path / "missing")]) == 2
    assert "emulate_accuracy: error:" in capsys.readouterr().err
