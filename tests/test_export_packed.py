"""Packed ternary format: lossless round trip, coding rate vs entropy, corrupt files."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from keras_ternary import resnet20_star
from keras_ternary.export import PackedFormatError, pack, read_header, unpack
from keras_ternary.export import packed as packed_module
from keras_ternary.export.coding import (
    SymbolError,
    decode_ans,
    encode_ans,
    pack_2bit,
    symbol_counts,
    to_symbols,
    unpack_2bit,
)
from keras_ternary.export.packed import HEADER_SIZE, MAGIC
from keras_ternary.stats import entropy_bits, quantized_weights, ternary_stats
from tests.test_export_models import generated_data, larq_model, trained_model
from tests.test_tflite_separable import _model as separable_model


def _same_predictions(a: tf.keras.Model, b: tf.keras.Model, x: np.ndarray) -> bool:
    return np.array_equal(a(x, training=False).numpy(), b(x, training=False).numpy())


@pytest.mark.parametrize("kind", ["ternary", "binary", "float"])
@pytest.mark.parametrize("coding", ["ans", "2bit"])
def test_round_trip_identical_predictions(tmp_path, kind, coding):
    model = trained_model(kind)
    path = tmp_path / f"{kind}.ktp"
    report = pack(model, path, coding=coding)
    assert path.stat().st_size == report.size_bytes
    restored = unpack(path)
    x, _ = generated_data(64, seed=9)
    assert _same_predictions(model, restored, x)
    assert [w.shape for w in restored.weights] == [w.shape for w in model.weights]
    n_expected = 0 if kind == "float" else ternary_stats(model).total.n_weights
    assert report.n_ternary == n_expected
    counts = [(s.n_neg, s.n_zero, s.n_pos) for s in ternary_stats(model).layers]
    assert [(s.n_neg, s.n_zero, s.n_pos) for s in ternary_stats(restored).layers] == counts


def test_all_zero_and_no_zero_kernels(tmp_path):
    model = resnet20_star(inflation=1, blocks_per_stage=1, delta=0.3, seed=4, input_shape=(8, 8, 3))
    layers = [layer for layer in model.layers if hasattr(layer, "kernel_quantizer")]
    zero, full = layers[1], layers[2]
    zero.kernel.assign(np.full(zero.kernel.shape, 0.1, np.float32))  # |w| <= Δ everywhere
    rng = np.random.default_rng(0)
    full.kernel.assign(rng.choice([-0.9, 0.9], size=full.kernel.shape).astype(np.float32))
    report = pack(model, tmp_path / "m.ktp")
    by_name = {t.name: t for t in report.tensors}
    assert by_name[zero.name].counts[1] == by_name[zero.name].n  # all zero
    assert by_name[zero.name].bits_per_weight < 0.01
    assert by_name[full.name].counts[1] == 0  # no zero
    assert abs(by_name[full.name].bits_per_weight - by_name[full.name].entropy) < 0.05
    restored = unpack(tmp_path / "m.ktp")
    x = rng.normal(size=(8, 8, 8, 3)).astype("float32")
    assert _same_predictions(model, restored, x)


def test_bits_per_weight_close_to_entropy(tmp_path):
    """Total coded rate within 0.05 bit of the model's empirical ternary entropy."""
    model = resnet20_star(inflation=1, delta=0.05, seed=5)
    report = pack(model, tmp_path / "r.ktp")
    stats = ternary_stats(model)
    assert report.n_ternary == stats.total.n_weights
    assert report.entropy == pytest.approx(stats.total.entropy, abs=1e-9)
    assert 0.1 < report.entropy < 1.6
    assert abs(report.bits_per_weight - report.entropy) < 0.05
    assert report.layer_entropy <= report.entropy + 1e-12
    assert abs(report.bits_per_weight - report.layer_entropy) < 0.005
    for t in report.tensors:  # per-layer models: every layer near its own entropy
        assert t.bits_per_weight - t.entropy < 0.05 + 64 / t.n
    twobit = pack(model, tmp_path / "r2.ktp", coding="2bit")
    assert twobit.bits_per_weight == pytest.approx(2.0, abs=0.01)
    assert report.size_bytes < twobit.size_bytes
    assert "| **total** (pooled) |" in report.to_markdown()


def test_larq_sequential_round_trip(tmp_path):
    model = larq_model()
    pack(model, tmp_path / "l.ktp")
    x, _ = generated_data(16, seed=1)
    assert _same_predictions(model, unpack(tmp_path / "l.ktp"), x)


@pytest.mark.parametrize("coding", ["ans", "2bit"])
def test_depthwise_and_separable_kernels_are_coded(tmp_path, coding):
    model = separable_model()  # ternary and binary depthwise / pointwise kernels
    path = tmp_path / "s.ktp"
    report = pack(model, path, coding=coding)
    names = ["conv", "sep/depthwise_kernel", "sep/pointwise_kernel"]
    names += ["bsep/depthwise_kernel", "bsep/pointwise_kernel", "bdw", "fc"]
    assert [t.name for t in report.tensors] == names
    assert report.n_ternary == sum(int(np.prod(k.kernel.shape)) for k in quantized_weights(model))
    restored = unpack(path)
    x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype("float32")
    assert _same_predictions(model, restored, x)
    for a, b in zip(quantized_weights(model), quantized_weights(restored), strict=True):
        assert (a.name, a.kernel_attr) == (b.name, b.kernel_attr)
        t_a, t_b = (k.quantizer(tf.constant(k.kernel.numpy())) for k in (a, b))
        np.testing.assert_array_equal(t_a, t_b)


def test_files_with_raw_depthwise_kernels_still_read(tmp_path, monkeypatch):
    """Files written before depthwise / pointwise kernels were coded hold them raw."""
    model = separable_model()
    only_kernel = packed_module._kernel_variables

    def old_writer(m):
        return {i: k for i, k in only_kernel(m).items() if k.kernel_attr == "kernel"}

    monkeypatch.setattr(packed_module, "_kernel_variables", old_writer)
    report = pack(model, tmp_path / "old.ktp")
    monkeypatch.undo()
    assert [t.name for t in report.tensors] == ["conv", "fc"]
    x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype("float32")
    assert _same_predictions(model, unpack(tmp_path / "old.ktp"), x)


@pytest.fixture(scope="module")
def packed_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("packed") / "m.ktp"
    pack(trained_model("ternary"), path)
    return path.read_bytes()


def _write(tmp_path, data: bytes):
    path = tmp_path / "bad.ktp"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("cut", [0, 5, HEADER_SIZE - 1, HEADER_SIZE + 10, -100, -1])
def test_truncated_file_is_rejected(tmp_path, packed_bytes, cut):
    path = _write(tmp_path, packed_bytes[:cut])
    with pytest.raises(PackedFormatError, match="truncated|bad magic"):
        unpack(path)


@pytest.mark.parametrize("where", ["header", "metadata", "payload", "last"])
def test_corrupt_byte_is_rejected(tmp_path, packed_bytes, where):
    meta_len = struct.unpack_from("<I", packed_bytes, 16)[0]
    pos = {
        "header": 20,
        "metadata": HEADER_SIZE + meta_len // 2,
        "payload": HEADER_SIZE + meta_len + 10,
        "last": len(packed_bytes) - 1,
    }[where]
    data = bytearray(packed_bytes)
    data[pos] ^= 0x40
    with pytest.raises(PackedFormatError, match="checksum"):
        unpack(_write(tmp_path, bytes(data)))


def test_other_bad_files(tmp_path, packed_bytes):
    with pytest.raises(PackedFormatError, match="bad magic"):
        unpack(_write(tmp_path, b"PK\x03\x04" + packed_bytes[4:]))
    with pytest.raises(PackedFormatError, match="unexpected bytes"):
        unpack(_write(tmp_path, packed_bytes + b"\0"))
    head = bytearray(packed_bytes[:HEADER_SIZE])
    struct.pack_into("<H", head, 8, 9)  # major version 9, header CRC recomputed
    struct.pack_into("<I", head, HEADER_SIZE - 4, zlib.crc32(bytes(head[: HEADER_SIZE - 4])))
    with pytest.raises(PackedFormatError, match="unsupported format version 9"):
        read_header(bytes(head) + packed_bytes[HEADER_SIZE:])
    assert packed_bytes.startswith(MAGIC)
    with pytest.raises(FileNotFoundError):
        unpack(tmp_path / "missing.ktp")


@pytest.mark.parametrize(
    "p", [(0.05, 0.9, 0.05), (0.5, 0.0, 0.5), (0.0, 1.0, 0.0), (0.3, 0.4, 0.3)]
)
def test_ans_and_2bit_coding_round_trip(p):
    rng = np.random.default_rng(1)
    arrays = [to_symbols(rng.choice([-1, 0, 1], size=n, p=p)) for n in (1, 7, 5000)]
    stream, bits = encode_ans([(s, symbol_counts(s)) for s in arrays])
    decoded = decode_ans(stream, [symbol_counts(s) for s in arrays])
    assert all(np.array_equal(a, b) for a, b in zip(arrays, decoded, strict=True))
    assert sum(bits) == 8 * len(stream)
    assert bits[2] / 5000 == pytest.approx(entropy_bits(symbol_counts(arrays[2])), abs=0.01)
    for s in arrays:
        assert np.array_equal(unpack_2bit(pack_2bit(s), s.size), s)


def test_coding_rejects_inconsistent_data():
    s = to_symbols(np.array([-1, 0, 0, 1, 1, 0, 0, 0]))
    stream, _ = encode_ans([(s, symbol_counts(s))])
    with pytest.raises(SymbolError):
        decode_ans(stream, [[4, 2, 2]])
    with pytest.raises(SymbolError):
        decode_ans(stream[:-1], [symbol_counts(s)])
    with pytest.raises(SymbolError):
        unpack_2bit(b"\xff\xff", 8)
    with pytest.raises(ValueError):
        to_symbols(np.array([0.5]))
