"""Kernels equal a plain numpy integer dot product / convolution (the contract of issue 5).

A seeded grid over activation x weight kinds, strides 1 and 2, 'same'/'valid' padding,
channel counts that are not multiples of 64, 1x1 convolutions and dense layers, on both
back-ends (numpy always, numba when installed).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hw_sim.errors import HwSimError
from hw_sim.ir import same_padding
from hw_sim.kernels import (
    addsub_conv2d,
    as_conv,
    available_backends,
    bit_conv2d,
    pack_binary,
    pack_bits,
    pack_kernel,
    pack_ternary,
    popcount64,
    unpack_bits,
)
from hw_sim.kernels.popcount import popcount_sum

BACKENDS = available_backends()


def reference_conv(x, w, strides, padding, pad_value=0):
    """Plain integer convolution (int64): pad, then Σ over taps of x_window · w_tap."""
    top, bottom, left, right = padding
    dtype = np.float64 if np.issubdtype(x.dtype, np.floating) else np.int64
    xp = np.pad(
        x.astype(dtype),
        ((0, 0), (top, bottom), (left, right), (0, 0)),
        constant_values=pad_value,
    )
    kh, kw, _, n = w.shape
    sh, sw = strides
    ho = (xp.shape[1] - kh) // sh + 1
    wo = (xp.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], ho, wo, n), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
            out += np.einsum("bhwc,cn->bhwn", window, w[i, j].astype(dtype))
    return out


def random_values(rng, shape, kind, zero_fraction=0.4):
    if kind == "binary":
        return rng.choice(np.array([-1, 1], np.int8), size=shape)
    if kind == "int8":
        v = rng.integers(-127, 128, size=shape).astype(np.int8)
        return np.where(rng.random(shape) < zero_fraction, 0, v).astype(np.int8)
    p = [(1 - zero_fraction) / 2, zero_fraction, (1 - zero_fraction) / 2]
    return rng.choice(np.array([-1, 0, 1], np.int8), size=shape, p=p)


def conv_case(seed, size, c_in, c_out, k, stride, same):
    rng = np.random.default_rng(seed)
    if same:
        padding = (*same_padding(size, k, stride), *same_padding(size + 1, k, stride))
    else:
        padding = (0, 0, 0, 0)
    return rng, (2, size, size + 1, c_in), (k, k, c_in, c_out), (stride, stride), padding


GRID = [
    # (size, c_in, c_out, kernel, stride, same)
    (5, 3, 4, 3, 1, True),
    (6, 70, 5, 3, 2, True),  # channel tail: 70 = 64 + 6, stride 2
    (7, 64, 3, 3, 2, False),
    (4, 130, 7, 1, 1, False),  # 1x1 conv, 3 words with a tail
    (6, 17, 9, 1, 2, True),  # strided 1x1 (projection shortcut)
    (3, 129, 65, 3, 1, True),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act,weight", list(itertools.product(["ternary", "binary"], repeat=2)))
@pytest.mark.parametrize("case", range(len(GRID)))
def test_bit_conv_equals_integer_conv(backend, act, weight, case):
    rng, xs, ws, strides, padding = conv_case(case, *GRID[case])
    x = random_values(rng, xs, act)
    w = random_values(rng, ws, weight, zero_fraction=0.6)
    acc, counts = bit_conv2d(x, w, act, weight, strides, padding, 0.0, backend)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, reference_conv(x, w, strides, padding))
    assert counts["words_executed"] + counts["words_skipped_zero_act"] == (
        counts["words_total"] - counts["words_skipped_zero_weight"]
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pad_value", [-1.0, 1.0])
@pytest.mark.parametrize("act", ["ternary", "binary"])
def test_bit_conv_nonzero_padding_value(backend, pad_value, act):
    """larq's pad_values=±1: padded taps count as ±1 exactly."""
    rng, xs, ws, strides, padding = conv_case(11, 6, 70, 5, 3, 2, True)
    x = random_values(rng, xs, act)
    w = random_values(rng, ws, "ternary")
    acc, _ = bit_conv2d(x, w, act, "ternary", strides, padding, pad_value, backend)
    np.testing.assert_array_equal(acc, reference_conv(x, w, strides, padding, int(pad_value)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", ["ternary", "binary"])
@pytest.mark.parametrize("weight", ["ternary", "binary"])
@pytest.mark.parametrize("features", [1, 63, 64, 200])
def test_bit_dense_equals_integer_matmul(backend, act, weight, features):
    rng = np.random.default_rng(features)
    x = random_values(rng, (5, features), act)
    w = random_values(rng, (features, 11), weight)
    acc, counts = bit_conv2d(*as_conv(x, w), act, weight, backend=backend)
    np.testing.assert_array_equal(acc[:, 0, 0, :], x.astype(np.int64) @ w.astype(np.int64))
    assert counts["macs"] == 5 * features * 11


@pytest.mark.parametrize("backend,method", [(b, "csr") for b in BACKENDS] + [("numpy", "gemm")])
@pytest.mark.parametrize("weight", ["ternary", "binary"])
@pytest.mark.parametrize("case", range(len(GRID)))
def test_addsub_int8_equals_integer_conv(backend, method, weight, case):
    rng, xs, ws, strides, padding = conv_case(100 + case, *GRID[case])
    x = random_values(rng, xs, "int8")
    x[0, 0, 0, :] = -127  # extreme values: every product at full magnitude
    w = random_values(rng, ws, weight)
    acc, counts = addsub_conv2d(x, w, weight, strides, padding, 0.0, backend, method)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, reference_conv(x, w, strides, padding))
    total = (
        counts["adds_executed"]
        + counts["skipped_zero_act"]
        + counts["skipped_zero_weight"]
        + counts["skipped_padding"]
    )
    assert total == counts["macs"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_addsub_float_matches_float_conv(backend):
    rng, xs, ws, strides, padding = conv_case(7, 6, 70, 5, 3, 2, True)
    x = rng.normal(size=xs).astype(np.float32)
    w = random_values(rng, ws, "ternary")
    acc, _ = addsub_conv2d(x, w, "ternary", strides, padding, 0.0, backend)
    assert acc.dtype == np.float32
    ref = reference_conv(x.astype(np.float64), w, strides, padding)
    np.testing.assert_allclose(acc, ref, rtol=1e-5, atol=1e-4)


def test_addsub_counts_by_hand():
    """3x3 image, one 3x3 'same' filter with 2 nonzero weights, one zero activation."""
    x = np.ones((1, 3, 3, 1), np.int8)
    x[0, 1, 1, 0] = 0  # the centre pixel
    w = np.zeros((3, 3, 1, 1), np.int8)
    w[1, 1, 0, 0] = 1  # centre tap: valid at all 9 outputs
    w[0, 0, 0, 0] = -1  # top-left tap: valid at the 4 outputs (1..2, 1..2)
    acc, c = addsub_conv2d(x, w, "ternary", padding=(1, 1, 1, 1))
    assert c["adds_static"] == 9 + 4
    assert c["skipped_zero_act"] == 2  # centre tap at output (1,1), top-left tap at (2,2)
    assert c["adds_executed"] == 11
    assert c["skipped_padding"] == 81 - 49  # taps reading real data: (2 + 3 + 2)² = 49
    assert c["skipped_zero_weight"] == 49 - 13
    np.testing.assert_array_equal(
        acc[0, :, :, 0], reference_conv(x, w, (1, 1), (1,) * 4)[0, ..., 0]
    )


def test_binary_zero_padding_is_corrected():
    """All-(-1) activations and weights: a padded zero must not count as -1·-1 = +1."""
    x = -np.ones((1, 3, 3, 2), np.int8)
    w = -np.ones((3, 3, 2, 1), np.int8)
    acc, counts = bit_conv2d(x, w, "binary", "binary", padding=(1, 1, 1, 1))
    assert acc[0, 0, 0, 0] == 4 * 2  # corner: 4 real taps x 2 channels
    assert acc[0, 1, 1, 0] == 9 * 2
    assert counts["padding_corrections"] == 8


def test_ternary_padding_and_tail_need_no_correction():
    x = np.ones((1, 2, 2, 65), np.int8)
    w = np.ones((3, 3, 65, 1), np.int8)
    acc, counts = bit_conv2d(x, w, "ternary", "ternary", padding=(1, 1, 1, 1))
    np.testing.assert_array_equal(acc[0, :, :, 0], np.full((2, 2), 4 * 65))
    # 2x2 output x 9 taps x 2 words; 5 of the 9 taps of every output read padding
    assert counts["words_skipped_zero_act"] == 4 * 5 * 2
    assert counts["padding_corrections"] == 0


def test_pack_roundtrip_and_tail_bits():
    rng = np.random.default_rng(0)
    t = random_values(rng, (3, 4, 70), "ternary")
    s, m = pack_ternary(t)
    assert s.shape == (3, 4, 2) and s.dtype == np.uint64
    np.testing.assert_array_equal(unpack_bits(m, 70), t != 0)
    np.testing.assert_array_equal(unpack_bits(s, 70), t < 0)
    assert np.all(m[..., 1] >> np.uint64(6) == 0)  # channel tail is zero
    b = random_values(rng, (5, 64), "binary")
    np.testing.assert_array_equal(unpack_bits(pack_binary(b), 64), b < 0)
    assert pack_bits(np.ones(1, bool))[0] == 1  # channel 0 is bit 0


def test_popcount_matches_python():
    rng = np.random.default_rng(1)
    words = rng.integers(0, 2**63, size=(7, 5), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    expected = np.array([[bin(int(v)).count("1") for v in row] for row in words])
    np.testing.assert_array_equal(popcount64(words), expected)
    np.testing.assert_array_equal(popcount_sum(words), expected.sum(axis=1))


def test_packed_kernel_counts_zero_words():
    w = np.zeros((1, 1, 130, 2), np.int8)
    w[0, 0, 70, 0] = 1  # only word 1 of filter 0 is nonzero
    packed = pack_kernel(w, "ternary")
    np.testing.assert_array_equal(packed.filters_per_word, [0, 1, 0])


def test_bad_values_rejected():
    with pytest.raises(HwSimError):
        bit_conv2d(np.zeros((1, 2, 2, 3), np.int8), np.ones((1, 1, 3, 1), np.int8), "binary")
    with pytest.raises(HwSimError):
        pack_ternary(np.array([2]))
    with pytest.raises(HwSimError):
        addsub_conv2d(np.full((1, 1, 1, 1), 300, np.int16), np.ones((1, 1, 1, 1), np.int8))
