"""Layer kernels: convolution and dense layers on the accelerator's arithmetic.

* :func:`bit_conv2d`: ternary/binary activations x ternary/binary kernels on packed
  bit-planes with a popcount GEMM (:mod:`hw_sim.kernels.gemm`), integer accumulators.
* :func:`addsub_conv2d`: int8 (or float) activations x ternary/binary kernels, one add or
  subtract per nonzero weight, zero weights absent and zero activations skipped.
* :func:`mac_conv2d`: float kernels (layers the model left unquantized): fp32 MACs.

All take NHWC activations, HWIO kernels, ``strides`` and explicit ``(top, bottom, left,
right)`` padding holding ``pad_value``; a dense layer is a 1x1 convolution on a 1x1 image
(:func:`as_conv`); a grouped / depthwise convolution is one call per group
(:func:`grouped`, kernels from :func:`split_groups`). Each returns ``(accumulators,
counts)``: ``counts`` holds the data-dependent work of the call (totals over the batch,
see docs/emulation.md).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from hw_sim.errors import HwSimError
from hw_sim.kernels import gemm
from hw_sim.kernels.backend import compiled, resolve
from hw_sim.kernels.bitpack import pack_binary, pack_ternary, pad_fill, pad_planes
from keras_ternary.contract.errors import ContractError
from keras_ternary.contract.geometry import output_hw, tap_validity

__all__ = [
    "PackedKernel",
    "addsub_conv2d",
    "as_conv",
    "binary_padding_correction",
    "bit_conv2d",
    "grouped",
    "mac_conv2d",
    "output_size",
    "pack_kernel",
    "patches",
    "reset_phase_times",
    "split_groups",
    "valid_taps",
]

_LOW = ("ternary", "binary")

#: Integers up to this magnitude are exact in float32 (2^24).
EXACT_FLOAT32 = 1 << 24

#: Seconds spent per kernel phase since the last :func:`reset_phase_times` (benchmarks).
PHASE_SECONDS: dict[str, float] = defaultdict(float)


@contextmanager
def _phase(name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        PHASE_SECONDS[name] += time.perf_counter() - start


def reset_phase_times() -> dict[str, float]:
    """Return the accumulated phase times and start again from zero."""
    out = dict(PHASE_SECONDS)
    PHASE_SECONDS.clear()
    return out


def output_size(in_hw: tuple[int, int], kernel: tuple[int, int], strides, padding) -> tuple:
    """``(H_out, W_out)`` of a window op with explicit padding (``contract.geometry.output_hw``)."""
    try:
        return output_hw(in_hw, kernel, strides, padding)
    except ContractError as exc:
        raise HwSimError(str(exc)) from None


def patches(x: np.ndarray, kernel: tuple[int, int], strides, padding, fill) -> np.ndarray:
    """im2col: ``(B, H, W, C)`` -> ``(B, H_out, W_out, kh, kw, C)`` (a copy).

    ``fill`` is a scalar or a ``(C,)`` vector stored at padded positions.
    """
    kh, kw = kernel
    sh, sw = strides
    top, bottom, left, right = padding
    b, h, w, c = x.shape
    ho, wo = output_size((h, w), kernel, strides, padding)
    if top or bottom or left or right:
        xp = np.empty((b, h + top + bottom, w + left + right, c), dtype=x.dtype)
        xp[...] = fill
        xp[:, top : top + h, left : left + w, :] = x
    else:
        xp = x
    out = np.empty((b, ho, wo, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, :, i, j, :] = xp[
                :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw
            ]
    return out


def valid_taps(in_hw: tuple[int, int], kernel: tuple[int, int], strides, padding) -> np.ndarray:
    """Boolean ``(H_out, W_out, kh, kw)``: the tap reads a real input (not padding)."""
    ho, wo = output_size(in_hw, kernel, strides, padding)
    rows = tap_validity(in_hw[0], kernel[0], strides[0], padding[0], ho)  # (Ho, kh)
    cols = tap_validity(in_hw[1], kernel[1], strides[1], padding[2], wo)  # (Wo, kw)
    return rows[:, None, :, None] & cols[None, :, None, :]


def as_conv(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A dense layer's ``(B, C)`` input and ``(C, N)`` kernel as a 1x1 convolution."""
    return x[:, None, None, :], w[None, None, :, :]


def split_groups(w: np.ndarray, groups: int) -> list[np.ndarray]:
    """A grouped HWIO kernel ``(kh, kw, C/g, N)`` as ``groups`` kernels ``(kh, kw, C/g, N/g)``
    (group ``g`` owns output channels ``[g·N/groups, (g+1)·N/groups)``, :mod:`hw_sim.ir`)."""
    if w.shape[-1] % groups:
        raise HwSimError(f"groups={groups} does not divide the kernel's {w.shape[-1]} filters")
    return np.split(w, groups, axis=-1)


#: Counts that describe the call rather than add up over groups.
_SHARED_COUNTS = ("kernel", "variant", "images", "positions")


def grouped(conv, x: np.ndarray, kernels: list, **kwargs) -> tuple[np.ndarray, dict]:
    """Run ``conv(x_g, kernels[g], **kwargs)`` on each group's input channels.

    ``x`` is split into ``len(kernels)`` equal channel slices; the accumulators are
    concatenated along channels (group order) and the counts summed over groups (``images``
    and ``positions`` and the descriptive strings are those of one group).
    """
    if len(kernels) == 1:
        return conv(x, kernels[0], **kwargs)
    if x.shape[-1] % len(kernels):
        raise HwSimError(f"{x.shape[-1]} input channels do not split into {len(kernels)} groups")
    results = [
        conv(part, k, **kwargs)
        for part, k in zip(np.split(x, len(kernels), axis=-1), kernels, strict=True)
    ]
    counts = dict(results[0][1])
    for _, c in results[1:]:
        for key, value in c.items():
            if key not in _SHARED_COUNTS:
                counts[key] += value
    return np.concatenate([acc for acc, _ in results], axis=-1), counts


@dataclass
class PackedKernel:
    """A ternary/binary kernel in the forms the kernels consume (built once per layer).

    Attributes:
        kind: ``"ternary"`` or ``"binary"``.
        values: the ``(kh, kw, C, N)`` int8 kernel.
        sign: ``(N, kh·kw·nw)`` sign-plane words (bit 1 = -1), one row per filter.
        nonzero: ``(N, kh·kw·nw)`` nonzero-plane words (ternary only).
        filters_per_word: ``(kh·kw·nw,)`` filters whose word at that position is nonzero.
    """

    kind: str
    values: np.ndarray
    sign: np.ndarray
    nonzero: np.ndarray | None
    filters_per_word: np.ndarray
    _csr: tuple | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.values.shape)

    @property
    def tap_sums(self) -> np.ndarray:
        """``(kh, kw, N)``: Σ over input channels of the kernel (binary padding correction)."""
        return self.values.sum(axis=2, dtype=np.int64)

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per input tap ``k``: filters with weight +1 / -1 (``pos_ptr, pos_cols, neg_*``)."""
        if self._csr is None:
            flat = self.values.reshape(-1, self.values.shape[-1])
            parts = []
            for sign in (1, -1):
                rows, cols = np.nonzero(flat == sign)
                ptr = np.zeros(flat.shape[0] + 1, dtype=np.int64)
                np.cumsum(np.bincount(rows, minlength=flat.shape[0]), out=ptr[1:])
                parts += [ptr, cols.astype(np.int32)]
            self._csr = tuple(parts)
        return self._csr


def pack_kernel(w: np.ndarray, kind: str) -> PackedKernel:
    """Pack an HWIO ternary/binary kernel along its input channels, per tap and filter."""
    if kind not in _LOW:
        raise HwSimError(f"pack_kernel: kind must be ternary or binary, got {kind!r}")
    w = np.asarray(w)
    if w.ndim != 4:
        raise HwSimError(f"pack_kernel: expected an HWIO kernel, got shape {w.shape}")
    values = w.astype(np.int8)
    n = w.shape[-1]
    per_filter = np.moveaxis(values, -1, 0)  # (N, kh, kw, C)
    if kind == "ternary":
        sign, nonzero = pack_ternary(per_filter)
        nonzero = nonzero.reshape(n, -1)
        filters = (nonzero != 0).sum(axis=0).astype(np.int64)
    else:
        sign, nonzero = pack_binary(per_filter), None
        filters = np.full(sign.shape[1] * sign.shape[2] * sign.shape[3], n, dtype=np.int64)
    return PackedKernel(kind, values, sign.reshape(n, -1), nonzero, filters)


def binary_padding_correction(
    kernel: PackedKernel, in_hw: tuple[int, int], strides, padding, pad_value: float
) -> np.ndarray | None:
    """``(H_out, W_out, N)`` to subtract when binary activations are zero-padded.

    Padding is stored as +1 (a binary plane cannot hold 0), so every padded tap added
    ``Σ_c w[tap, c, n]`` that a true 0 would not: subtract those sums.
    """
    if pad_value != 0 or not any(padding):
        return None
    kh, kw = kernel.shape[:2]
    padded = ~valid_taps(in_hw, (kh, kw), strides, padding)  # (Ho, Wo, kh, kw)
    return np.einsum("ijab,abn->ijn", padded.astype(np.int64), kernel.tap_sums)


def _check_values(x: np.ndarray, kind: str) -> None:
    ok = (x == 1) | (x == -1) if kind == "binary" else (x == 1) | (x == 0) | (x == -1)
    if not np.all(ok):
        raise HwSimError(
            f"{kind} activations hold values other than "
            f"{'-1 and +1' if kind == 'binary' else '-1, 0 and +1'}"
        )


def bit_conv2d(
    x: np.ndarray,
    kernel: PackedKernel | np.ndarray,
    act: str,
    weight: str | None = None,
    strides=(1, 1),
    padding=(0, 0, 0, 0),
    pad_value: float = 0.0,
    backend: str = "auto",
) -> tuple[np.ndarray, dict]:
    """Popcount convolution of ternary/binary activations ``(B, H, W, C)`` with a
    ternary/binary HWIO kernel; returns ``int32`` ``(B, H_out, W_out, N)`` and counts."""
    if act not in _LOW:
        raise HwSimError(f"bit_conv2d: activations must be ternary or binary, got {act!r}")
    if not isinstance(kernel, PackedKernel):
        kernel = pack_kernel(kernel, weight or ("ternary" if np.any(kernel == 0) else "binary"))
    kh, kw, c, n = kernel.shape
    b, h, w, cx = x.shape
    if cx != c:
        raise HwSimError(f"bit_conv2d: input has {cx} channels, kernel expects {c}")
    x = np.asarray(x)
    _check_values(x, act)
    ho, wo = output_size((h, w), (kh, kw), strides, padding)
    with _phase("pack"):
        if act == "ternary":
            sa, ma = pack_ternary(x)
            sa = pad_planes(sa, padding, pad_fill("ternary", "sign", pad_value, c))
            ma = pad_planes(ma, padding, pad_fill("ternary", "nonzero", pad_value, c))
        else:
            fill_value = 1.0 if pad_value == 0 else pad_value  # 0 stored as +1, corrected below
            sa = pad_planes(pack_binary(x), padding, pad_fill("binary", "sign", fill_value, c))
            ma = None
    with _phase("im2col"):
        sa = patches(sa, (kh, kw), strides, (0, 0, 0, 0), 0).reshape(b * ho * wo, -1)
        if ma is not None:
            ma = patches(ma, (kh, kw), strides, (0, 0, 0, 0), 0).reshape(b * ho * wo, -1)
    with _phase("popcount gemm"):
        if act == "ternary" and kernel.kind == "ternary":
            acc = gemm.gemm_tt(ma, sa, kernel.nonzero, kernel.sign, backend)
        elif act == "ternary":
            acc = gemm.gemm_tb(ma, sa, kernel.sign, backend)
        elif kernel.kind == "ternary":
            acc = gemm.gemm_bt(sa, kernel.nonzero, kernel.sign, backend)
        else:
            acc = gemm.gemm_bb(sa, kernel.sign, kh * kw * c, backend)
    acc = acc.reshape(b, ho, wo, n)
    corrected = 0
    if act == "binary":
        corr = binary_padding_correction(kernel, (h, w), strides, padding, pad_value)
        if corr is not None:
            acc -= corr.astype(np.int32)[None]
            corrected = b * int(np.any(corr != 0, axis=-1).sum()) * n
    with _phase("counts"):
        counts = _bit_counts(kernel, act, ma, b * ho * wo, x, b, corrected)
    return acc, counts


def _bit_counts(kernel: PackedKernel, act: str, ma, positions: int, x, batch: int, corrected: int):
    """Word-level work of one bit convolution (see docs/emulation.md)."""
    n = kernel.shape[-1]
    per_word = kernel.filters_per_word  # filters needing each word position
    words_total = positions * n * per_word.size
    static = positions * int(per_word.sum())
    skipped_act = 0
    shared = 0
    if act == "ternary":
        zero_act = ma == 0  # (P, Kw): all-zero activation words (incl. padding), skippable
        skipped_act = int(zero_act.sum(axis=0).astype(np.int64) @ per_word)
        if kernel.kind == "binary":
            shared = int(ma.size - zero_act.sum())  # popcnt(m_a) of each nonzero act word
    executed = static - skipped_act
    per_exec = 2 if (act, kernel.kind) == ("ternary", "ternary") else 1
    return {
        "kernel": "popcount",
        "variant": f"{act} act x {kernel.kind} weight",
        "images": batch,
        "positions": positions,
        "macs": positions * n * int(np.prod(kernel.shape[:3])),
        "words_total": words_total,
        "words_skipped_zero_weight": words_total - static,
        "words_executed_static": static,
        "words_skipped_zero_act": skipped_act,
        "words_executed": executed,
        "popcounts": executed * per_exec + shared,
        "act_values": int(x.size),
        "act_zeros": int(np.count_nonzero(x == 0)),
        "padding_corrections": corrected,
    }


def addsub_conv2d(
    x: np.ndarray,
    kernel: PackedKernel | np.ndarray,
    weight: str | None = None,
    strides=(1, 1),
    padding=(0, 0, 0, 0),
    pad_value: float = 0.0,
    backend: str = "auto",
    method: str = "auto",
) -> tuple[np.ndarray, dict]:
    """Zero-skipping add/subtract convolution of int8 or float activations ``(B, H, W, C)``.

    int8 inputs accumulate in ``int32`` (exact), float inputs in ``float32``.

    ``method``: ``"csr"`` runs the add/subtract kernel itself (one add or subtract per
    nonzero weight, per-tap lists of filters); ``"gemm"`` (int8 only) evaluates the same
    integer sums with a float32 BLAS GEMM, which is *exact* because every operand and
    every partial sum is an integer of magnitude ``<= 127·K < 2^24``; ``"auto"`` uses
    ``"gemm"`` where that bound holds, else ``"csr"``. Counts do not depend on it.
    """
    if not isinstance(kernel, PackedKernel):
        kernel = pack_kernel(kernel, weight or ("ternary" if np.any(kernel == 0) else "binary"))
    kh, kw, c, n = kernel.shape
    b, h, w, cx = x.shape
    if cx != c:
        raise HwSimError(f"addsub_conv2d: input has {cx} channels, kernel expects {c}")
    integer = np.issubdtype(x.dtype, np.integer)
    if integer and (x.min(initial=0) < -128 or x.max(initial=0) > 127):
        raise HwSimError("addsub_conv2d: integer activations must fit int8")
    act_dtype, acc_dtype = (np.int8, np.int32) if integer else (np.float32, np.float32)
    x = x.astype(act_dtype, copy=False)
    ho, wo = output_size((h, w), (kh, kw), strides, padding)
    with _phase("im2col"):
        cols = patches(x, (kh, kw), strides, padding, act_dtype(pad_value))
        cols = cols.reshape(b * ho * wo, -1)
    if method not in ("auto", "csr", "gemm"):
        raise HwSimError(f"addsub_conv2d: unknown method {method!r}")
    exact_gemm = integer and 127 * cols.shape[1] < EXACT_FLOAT32
    if method == "gemm" and not exact_gemm:
        raise HwSimError("addsub_conv2d: the GEMM method is exact only for int8 activations")
    if method == "gemm" or (method == "auto" and exact_gemm):
        with _phase("add/sub (exact GEMM)"):
            ternary = kernel.values.reshape(-1, n).astype(np.float32)
            out = (cols.astype(np.float32) @ ternary).astype(np.int32)
    else:
        with _phase("add/sub"):
            out = _addsub_rows(cols, kernel, acc_dtype, backend)
    with _phase("counts"):
        counts = _addsub_counts(kernel, cols, (h, w), strides, padding, pad_value, x, b)
    return out.reshape(b, ho, wo, n), counts


def _addsub_rows(cols: np.ndarray, kernel: PackedKernel, acc_dtype, backend: str) -> np.ndarray:
    """``(P, K)`` activation rows -> ``(P, N)``: Σ_{w=+1} a - Σ_{w=-1} a per filter."""
    n = kernel.shape[-1]
    out = np.zeros((cols.shape[0], n), dtype=acc_dtype)
    if resolve(backend) == "numba":
        compiled().addsub(cols, *kernel.csr(), out)
        return out
    flat = kernel.values.reshape(-1, n)
    for f in range(n):
        plus, minus = np.flatnonzero(flat[:, f] == 1), np.flatnonzero(flat[:, f] == -1)
        out[:, f] = cols[:, plus].sum(axis=1, dtype=acc_dtype)
        out[:, f] -= cols[:, minus].sum(axis=1, dtype=acc_dtype)
    return out


def _addsub_counts(kernel, cols, in_hw, strides, padding, pad_value, x, batch) -> dict:
    kh, kw, c, n = kernel.shape
    nnz = (kernel.values.reshape(-1, n) != 0).sum(axis=1).astype(np.int64)  # (K,) per tap
    valid = valid_taps(in_hw, (kh, kw), strides, padding)  # (Ho, Wo, kh, kw)
    valid_k = np.repeat(valid.reshape(valid.shape[0] * valid.shape[1], kh * kw), c, axis=1)
    if pad_value != 0:
        valid_k = np.ones_like(valid_k)  # nonzero padding is a real operand
    per_image_valid = valid_k.sum(axis=0).astype(np.int64)  # (K,) positions reading real data
    static = batch * int(per_image_valid @ nnz)
    zero = (cols == 0).reshape(batch, -1, cols.shape[1]) & valid_k[None]
    skipped_act = int(zero.sum(axis=(0, 1)).astype(np.int64) @ nnz)
    positions = cols.shape[0]
    macs = positions * n * cols.shape[1]
    real = batch * int(per_image_valid.sum()) * n
    return {
        "kernel": "addsub",
        "variant": f"{'int8' if np.issubdtype(x.dtype, np.integer) else 'float32'} act x "
        f"{kernel.kind} weight",
        "images": batch,
        "positions": positions,
        "macs": macs,
        "adds_static": static,
        "adds_executed": static - skipped_act,
        "skipped_zero_weight": real - static,
        "skipped_zero_act": skipped_act,
        "skipped_padding": macs - real,
        "act_values": int(x.size),
        "act_zeros": int(np.count_nonzero(x == 0)),
    }


def mac_conv2d(x: np.ndarray, w: np.ndarray, strides=(1, 1), padding=(0, 0, 0, 0), pad_value=0.0):
    """Float kernel: dense fp32 multiply-accumulate (im2col x GEMM); returns ``float32``."""
    kh, kw, c, n = w.shape
    b = x.shape[0]
    x = x.astype(np.float32, copy=False)
    cols = patches(x, (kh, kw), strides, padding, np.float32(pad_value))
    ho, wo = cols.shape[1:3]
    with _phase("fp32 gemm"):
        out = cols.reshape(b * ho * wo, -1) @ w.reshape(-1, n).astype(np.float32)
    counts = {
        "kernel": "mac",
        "variant": "fp32 MAC",
        "images": b,
        "positions": b * ho * wo,
        "macs": b * ho * wo * kh * kw * c * n,
        "act_values": int(x.size),
        "act_zeros": int(np.count_nonzero(x == 0)),
    }
    return out.reshape(b, ho, wo, n), counts
