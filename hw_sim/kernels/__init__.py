"""Accelerator arithmetic in numpy (and numba): bit-plane packing, popcount GEMM /
convolution, zero-skipping add/subtract, and integer thresholds.

Every kernel returns exact integers for integer inputs (see docs/emulation.md); tests check
each against a plain numpy integer dot product / convolution.
"""

from hw_sim.kernels.backend import available_backends, resolve
from hw_sim.kernels.bitpack import pack_binary, pack_bits, pack_ternary, unpack_bits
from hw_sim.kernels.conv import (
    PackedKernel,
    addsub_conv2d,
    as_conv,
    bit_conv2d,
    mac_conv2d,
    pack_kernel,
)
from hw_sim.kernels.popcount import popcount64

__all__ = [
    "PackedKernel",
    "addsub_conv2d",
    "as_conv",
    "available_backends",
    "bit_conv2d",
    "mac_conv2d",
    "pack_binary",
    "pack_bits",
    "pack_kernel",
    "pack_ternary",
    "popcount64",
    "resolve",
    "unpack_bits",
]
