"""``cim``: compute-in-memory crossbars (weight-stationary, bit-serial activations).

The kernel, as a K x C_out matrix (K = kh·kw·C_in rows in im2col order), is tiled over
``rows x cols`` arrays; a ternary weight takes ``ternary_cells`` adjacent columns (2
binary cells, w+ and w-, or 1 ternary cell), a binary weight one. Activations enter
bit-serially: 2 pulses for ternary (+ and - phase), 1 for binary, 8 otherwise (float or
integer activations are assumed converted to int8 at the array input). Per input vector
and pulse:

* a block of ``block_rows`` rows whose weights in an array's columns are all zero is not
  driven (skipped); cells of driven blocks cost ``cim_cell`` each (rows x used columns);
* every used column of an array with at least one driven block is converted by the ADC
  (``adc_conversion`` = adc_fom · 2^adc_bits) and shift-added into the output (int32 add).

Reported: arrays, row/column tiles, utilisation = weights·cells / (arrays·rows·cols).

A grouped / depthwise conv is mapped block-diagonally (an assumption: the simplest honest
mapping, no weight duplication or channel-serial reuse): the crossbar holds the
``(groups·kh·kw·C_in/groups) x C_out`` matrix whose diagonal blocks are the groups' kernels
(group-major rows), and everything else is empty. Only arrays holding some group's weights
exist; row blocks with no weight in an array's columns (including the off-diagonal
ones) are never driven and are not counted as skippable blocks. A depthwise 3x3 layer thus
uses 9 rows x 1 column per channel: utilisation is low, as it is on real crossbars.
Float kernels are not mapped to crossbars: they fall back to digital MACs at the table's
``other_precision`` (int8 by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hw_sim.accelerators.common import (
    CountingModel,
    LayerCount,
    count_epilogue,
    float_kernel_fallback,
)
from hw_sim.errors import HwSimError
from hw_sim.geometry import weight_matrix
from hw_sim.ir import Graph, Op
from hw_sim.technology import Tech

__all__ = ["CimConfig", "CimModel", "activation_pulses", "crossbar_mapping"]


@dataclass(frozen=True)
class CimConfig:
    """Crossbar parameters: section ``accelerators.cim`` of the technology table."""

    rows: int = 128
    cols: int = 128
    adc_bits: int = 5
    block_rows: int = 16
    ternary_cells: int = 2
    weights_resident: bool = True

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1 or self.adc_bits < 1:
            raise HwSimError("cim.rows, cim.cols and cim.adc_bits must be >= 1")
        if self.block_rows < 1 or self.rows % self.block_rows:
            raise HwSimError("cim.block_rows must divide cim.rows")
        if self.ternary_cells not in (1, 2):
            raise HwSimError("cim.ternary_cells must be 1 (ternary cell) or 2 (binary cells)")
        if self.cols % self.ternary_cells:
            raise HwSimError("cim.cols must be a multiple of cim.ternary_cells")


def activation_pulses(act_precision: str) -> int:
    """Input pulses per activation: ternary 2 (+/- phases), binary 1, anything else 8."""
    return {"ternary": 2, "binary": 1}.get(act_precision, 8)


def crossbar_mapping(op: Op, cim: CimConfig) -> dict:
    """Tile a ternary/binary kernel onto crossbars and find the row blocks to drive.

    Returns per-input-pulse counts: ``cell_ops`` (cells in driven blocks x used columns),
    ``conversions`` (used columns of arrays with a driven block), ``active_blocks`` and
    ``blocks`` (real row blocks x column tiles), plus ``arrays``, ``row_tiles``,
    ``col_tiles``, ``cells_per_weight`` and ``utilisation``.
    """
    nz, structural = _crossbar_matrix(op)
    k, cout = nz.shape
    cpw = cim.ternary_cells if op.weight_precision == "ternary" else 1
    per_tile = cim.cols // cpw  # output channels per column tile
    row_tiles = math.ceil(k / cim.rows)
    col_tiles = math.ceil(cout / per_tile)
    b = cim.block_rows
    n_blocks = math.ceil(k / b)
    padded = np.zeros((n_blocks * b, col_tiles * per_tile), dtype=bool)
    padded[:k, :cout] = nz
    active = padded.reshape(n_blocks, b, col_tiles, per_tile).any(axis=(1, 3))
    held = np.zeros_like(padded)
    held[:k, :cout] = structural
    exists = held.reshape(n_blocks, b, col_tiles, per_tile).any(axis=(1, 3))  # has weights
    rows_in_block = np.minimum(b, k - np.arange(n_blocks) * b)
    cols_used = np.minimum(per_tile, cout - np.arange(col_tiles) * per_tile) * cpw
    blocks_per_tile = cim.rows // b
    tile_active = np.zeros((row_tiles * blocks_per_tile, col_tiles), dtype=bool)
    tile_active[:n_blocks] = active
    tile_any = tile_active.reshape(row_tiles, blocks_per_tile, col_tiles).any(axis=1)
    tile_held = np.zeros_like(tile_active)
    tile_held[:n_blocks] = exists
    arrays = int(tile_held.reshape(row_tiles, blocks_per_tile, col_tiles).any(axis=1).sum())
    return {
        "cell_ops": int((active * rows_in_block[:, None] * cols_used[None, :]).sum()),
        "conversions": int((tile_any * cols_used[None, :]).sum()),
        "active_blocks": int(active.sum()),
        "blocks": int(exists.sum()),
        "arrays": arrays,
        "row_tiles": row_tiles,
        "col_tiles": col_tiles,
        "cells_per_weight": cpw,
        "utilisation": op.n_weights * cpw / (arrays * cim.rows * cim.cols),
    }


def _crossbar_matrix(op: Op) -> tuple[np.ndarray, np.ndarray]:
    """(nonzero, holds-a-weight) masks of the ``K x C_out`` crossbar matrix; a grouped conv's
    groups on the diagonal, group-major rows (see the module docstring)."""
    w = weight_matrix(op)
    if op.groups == 1:
        return w != 0, np.ones(w.shape, dtype=bool)
    kg, cg = op.fan_in, op.out_channels // op.groups
    per_group = op.weights.reshape(kg, op.groups, cg)
    nz = np.zeros((op.groups * kg, op.out_channels), dtype=bool)
    held = np.zeros_like(nz)
    for g in range(op.groups):
        rows, cols = slice(g * kg, (g + 1) * kg), slice(g * cg, (g + 1) * cg)
        nz[rows, cols] = per_group[:, g, :] != 0
        held[rows, cols] = True
    return nz, held


class CimModel(CountingModel):
    """Crossbar arrays with row-block skipping, bit-serial inputs and per-column ADCs."""

    name = "cim"
    title = "cim (crossbar compute-in-memory)"
    tech_section = "cim"
    Config = CimConfig

    def action_pj(self, action: str, tech: Tech) -> float:
        """``adc_conversion`` costs ``adc_fom · 2^adc_bits`` (Walden figure of merit)."""
        if action == "adc_conversion":
            return tech.action_pj("adc_fom") * 2 ** self.config(tech).adc_bits
        return tech.action_pj(action)

    def count_compute(self, op: Op, graph: Graph, tech: Tech) -> LayerCount:
        fallback = float_kernel_fallback(op, tech, where="digital ")
        if fallback is not None:
            return fallback
        lc = LayerCount()
        cim = self.config(tech)
        m = crossbar_mapping(op, cim)
        pulses = activation_pulses(op.act_precision)
        vectors = op.output_positions * pulses
        lc.add("compute", "cim_cell", vectors * m["cell_ops"])
        lc.add("compute", "adc_conversion", vectors * m["conversions"])
        lc.add("compute", "int32_add", vectors * m["conversions"])  # shift-add of ADC outputs
        count_epilogue(op, lc)
        lc.unit = "row-block activations"
        lc.executed = vectors * m["active_blocks"]
        lc.skipped = vectors * (m["blocks"] - m["active_blocks"])
        lc.mode = f"crossbar, {op.weight_precision} weights, {pulses}-pulse activations"
        lc.details.update(
            m,
            pulses=pulses,
            weights_resident=cim.weights_resident,
            act_fetch_groups=1,  # an input vector is broadcast to all column tiles
        )
        return lc
