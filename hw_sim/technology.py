"""Technology tables as data: energy per action, buffer model, accelerator parameters.

The default table is ``hw_sim/tech/horowitz45.yaml`` (Horowitz, ISSCC 2014, 45 nm, plus
stated assumptions). :func:`load_tech` deep-merges an override file (YAML or JSON) or
dict onto it; unknown keys are rejected so a typo cannot silently keep a default.

The table knows no accelerator: each accelerator model reads its own section
``accelerators.<name>`` through :meth:`Tech.section` (see
:class:`hw_sim.accelerators.CountingModel`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from hw_sim.errors import HwSimError

__all__ = ["DEFAULT_TECH", "MAC_ACTIONS", "OTHER_PRECISIONS", "BufferModel", "Tech", "load_tech"]

T = TypeVar("T")

DEFAULT_TECH = Path(__file__).with_name("tech") / "horowitz45.yaml"
_STORAGE = ("packed", "entropy")

#: Precision of a dense multiply-accumulate -> (multiply action, accumulate action).
MAC_ACTIONS: dict[str, tuple[str, str]] = {
    "int8": ("int8_mult", "int32_add"),
    "float32": ("fp32_mult", "fp32_add"),
}

#: Values of ``other_precision``: how every model (accelerators and baselines) runs the
#: layers with float kernels and stores float and int32 tensors.
OTHER_PRECISIONS = tuple(MAC_ACTIONS)


@dataclass(frozen=True)
class BufferModel:
    """Layer-by-layer execution from a weight SRAM and an activation SRAM (docs/hw_sim.md)."""

    weight_sram_kib: float = 32.0
    act_sram_kib: float = 256.0
    pe_rows: int = 16
    pe_cols: int = 16
    window_reuse: bool = True
    fuse_elementwise: bool = True
    weight_storage: str = "packed"

    def __post_init__(self) -> None:
        if self.weight_sram_kib <= 0 or self.act_sram_kib <= 0:
            raise HwSimError("buffer sizes must be > 0 KiB")
        if self.pe_rows < 1 or self.pe_cols < 1:
            raise HwSimError("buffer.pe_rows and buffer.pe_cols must be >= 1")
        if self.weight_storage not in _STORAGE:
            raise HwSimError(f"buffer.weight_storage must be one of {_STORAGE}")


@dataclass(frozen=True)
class Tech:
    """A resolved technology table."""

    name: str
    energy_pj: dict[str, float]
    sources: dict[str, str]
    sram_levels: tuple[tuple[float, float], ...]  # (capacity KiB, pJ per 64-bit access)
    dram_pj: float
    buffer: BufferModel
    accelerators: dict[str, dict]  # section name -> the accelerator's parameters, as written
    raw: dict
    other_precision: str = "int8"  # float-kernel layers, float/int32 tensors (OTHER_PRECISIONS)

    def __post_init__(self) -> None:
        if self.other_precision not in OTHER_PRECISIONS:
            raise HwSimError(
                f"technology entry other_precision must be one of {', '.join(OTHER_PRECISIONS)}"
                f", got {self.other_precision!r}"
            )

    def with_other_precision(self, precision: str | None) -> Tech:
        """This table with ``other_precision`` replaced (``None``: unchanged)."""
        if precision is None or precision == self.other_precision:
            return self
        raw = {**self.raw, "other_precision": precision}
        return dataclasses.replace(self, other_precision=precision, raw=raw)

    def sram_pj(self, capacity_kib: float) -> float:
        """pJ per 64-bit access of a buffer: smallest listed capacity >= its size."""
        for capacity, pj in self.sram_levels:
            if capacity_kib <= capacity:
                return pj
        return self.sram_levels[-1][1]

    def action_pj(self, action: str) -> float:
        """Energy of one action; memory actions resolve through the buffer model."""
        if action == "sram_weight":
            return self.sram_pj(self.buffer.weight_sram_kib)
        if action == "sram_act":
            return self.sram_pj(self.buffer.act_sram_kib)
        if action == "dram":
            return self.dram_pj
        try:
            return self.energy_pj[action]
        except KeyError:
            raise HwSimError(
                f"technology table {self.name!r} has no energy for {action!r}"
            ) from None

    def section(self, name: str, kind: type[T]) -> T:
        """Section ``accelerators.<name>`` as a ``kind`` (a dataclass that checks itself)."""
        try:
            return kind(**self.accelerators[name])
        except KeyError:
            raise HwSimError(
                f"technology table {self.name!r} has no section accelerators.{name}"
            ) from None
        except TypeError as exc:
            raise HwSimError(f"malformed technology table: accelerators.{name}: {exc}") from None

    def table(self) -> dict:
        """JSON-ready summary: every energy used, with its source."""
        return {
            "name": self.name,
            "other_precision": self.other_precision,
            "energy_pj": dict(self.energy_pj),
            "sources": dict(self.sources),
            "sram_read_64b_pj": [{"capacity_kib": c, "value": v} for c, v in self.sram_levels],
            "dram_access_64b_pj": self.dram_pj,
            "buffer": self.buffer.__dict__.copy(),
        }


def _read_file(path: str | os.PathLike) -> dict:
    from keras_ternary.config import ConfigError, parse_yaml
    from keras_ternary.fileio import check_input_file

    path = os.fspath(path)
    try:  # a regular file of at most 1 MB (a FIFO would block)
        check_input_file(path, "config", "technology file")
    except OSError as exc:
        raise HwSimError(str(exc)) from None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.lower().endswith(".json"):
            data = json.loads(text)
        else:  # bounded YAML: alias bombs are refused
            data = parse_yaml(text, f"technology file {path}")
    except ConfigError as exc:
        raise HwSimError(str(exc)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HwSimError(f"cannot parse technology file {path}: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise HwSimError(f"technology file {path} must hold a mapping at top level")
    return data


def _merge(base: dict, override: dict, where: str = "") -> dict:
    """Deep-merge ``override`` into a copy of ``base``; unknown keys raise."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}{key}"
        if key not in base:
            raise HwSimError(f"technology override: unknown key {path!r}")
        if path == "energy_pj":
            if not isinstance(value, dict):
                raise HwSimError("technology override: energy_pj must be a mapping")
            for action, entry in value.items():
                if action not in base[key]:
                    raise HwSimError(f"technology override: unknown energy entry {action!r}")
                if not isinstance(entry, dict):
                    entry = {"value": entry}
                out[key][action] = {"source": "override", **entry}
        elif isinstance(base[key], dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, f"{path}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _number(value, what: str) -> float:
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HwSimError(f"technology entry {what} must be a finite number, got {value!r}")
    if value < 0:
        raise HwSimError(f"technology entry {what} must be >= 0, got {value}")
    return float(value)


def _build(raw: dict) -> Tech:
    try:
        energy = {k: _number(v, f"energy_pj.{k}") for k, v in raw["energy_pj"].items()}
        sources = {
            k: v.get("source", "") if isinstance(v, dict) else ""
            for k, v in raw["energy_pj"].items()
        }
        levels = sorted(
            (
                _number(e["capacity_kib"], "sram capacity"),
                _number(e, "sram_read_64b_pj"),
            )
            for e in raw["sram_read_64b_pj"]
        )
        if not levels:
            raise HwSimError("technology entry sram_read_64b_pj needs at least one level")
        dram = _number(raw["dram_access_64b_pj"], "dram_access_64b_pj")
        buffer = BufferModel(**raw["buffer"])
        accelerators = {name: dict(section) for name, section in raw["accelerators"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise HwSimError(f"malformed technology table: {type(exc).__name__}: {exc}") from None
    return Tech(
        name=str(raw.get("name", "custom")),
        energy_pj=energy,
        sources=sources,
        sram_levels=tuple(levels),
        dram_pj=dram,
        buffer=buffer,
        accelerators=accelerators,
        raw=raw,
        other_precision=raw.get("other_precision", "int8"),
    )


def load_tech(override: str | os.PathLike | dict | Tech | None = None) -> Tech:
    """The default table, optionally overridden by a YAML/JSON file or a dict."""
    if isinstance(override, Tech):
        return override
    raw = _read_file(DEFAULT_TECH)
    if override is not None:
        data = override if isinstance(override, dict) else _read_file(override)
        raw = _merge(raw, data)
        if "name" not in data:
            raw["name"] = f"{raw['name']}+override"
    return _build(raw)
