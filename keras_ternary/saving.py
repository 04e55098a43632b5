"""The training-data record a model file carries (loading: :mod:`keras_ternary.modelfile`).

Models written by ``train``/``quickstart`` carry the data they were trained on as a JSON HDF5
attribute :data:`TRAINING_DATA_ATTR`::

    {"source": "shapes10", "train_size": 2000, "seed": 0,
     "mean": [r, g, b], "std": [r, g, b]}

(``source`` is ``"shapes10"`` or ``"cifar10"``; inputs are ``(x / 255 - mean) / std``).
:func:`read_training_data` returns it, or for older files the same from the ``config.yaml``
of the run directory the file lies in, so that export can calibrate on that data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["TRAINING_DATA_ATTR", "read_training_data", "training_data_record"]

TRAINING_DATA_ATTR = "keras_ternary_training_data"


def training_data_record(data: Any, seed: int = 0, data_dir: str | None = None) -> dict[str, Any]:
    """The :data:`TRAINING_DATA_ATTR` record of loaded training data (an ``ArrayData``)."""
    record: dict[str, Any] = {
        "source": "shapes10" if data.name == "shapes10" else "cifar10",
        "train_size": int(len(data.y_train)),
        "seed": int(seed),
        "mean": [float(v) for v in data.mean],
        "std": [float(v) for v in data.std],
    }
    if data_dir and record["source"] == "cifar10":
        record["dir"] = str(data_dir)
    return record


def read_training_data(path: str | os.PathLike) -> dict[str, Any] | None:
    """The training-data record of a model file (see the module docstring), or None.

    From the file's HDF5 attribute, else from ``config.yaml`` of the run directory holding
    the file (``RUN/model.h5`` or ``RUN/checkpoints/*.h5``; without ``mean``/``std``).
    """
    path = Path(path)
    record = _attribute_record(path)
    if record is not None:
        return record
    for folder in (path.parent, path.parent.parent):
        config = folder / "config.yaml"
        if config.is_file():
            return _config_record(config)
    return None


def _attribute_record(path: Path) -> dict[str, Any] | None:
    try:
        import h5py

        if not path.is_file() or not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get(TRAINING_DATA_ATTR)
        record = json.loads(raw) if raw is not None else None
    except (OSError, ValueError, TypeError):
        return None
    return record if isinstance(record, dict) and "source" in record else None


def _config_record(config: Path) -> dict[str, Any] | None:
    import yaml

    try:
        values = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    data = values.get("data") if isinstance(values, dict) else None
    if not isinstance(data, dict):
        return None
    source = "shapes10" if data.get("source") == "shapes10" else "cifar10"
    record: dict[str, Any] = {"source": source, "seed": 0}
    if isinstance(data.get("train_size"), int):
        record["train_size"] = data["train_size"]
    if source == "cifar10" and data.get("dir"):
        record["dir"] = str(data["dir"])
    return record
