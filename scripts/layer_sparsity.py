"""Zeros per quantized layer of a run, from its statistics files or a checkpoint.

    python scripts/layer_sparsity.py RUN/snapshots/epoch_0068.json [RUN/ternary_stats.json ...]
    python scripts/layer_sparsity.py RUN/checkpoints/last.h5

Reads the per-layer statistics that a training run writes (a snapshot ``epoch_NNNN.json`` or
the final ``ternary_stats.json``; no TensorFlow), or computes them from a saved model
(``.h5``/``.keras``, with TensorFlow), and prints, per file, each layer's weights and fraction of
zeros, then the zeros pooled per name prefix before the first ``_`` (a ResNet-20
stage: ``stage1`` has 16 channels, ``stage2`` 32, ``stage3`` 64 at k = 1).
Used by docs/results.md, Finding 6.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def layer_rows(stats: dict) -> list[dict]:
    """The ``layers`` list of a snapshot (``{"stats": {...}}``) or of a ternary_stats file."""
    inner = stats.get("stats", stats)
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        raise ValueError("no per-layer statistics ('layers') in the file")
    return layers


def checkpoint_rows(path: Path) -> list[dict]:
    """Per-layer statistics of a saved model's quantized kernels."""
    import keras_ternary as kt
    from keras_ternary.stats import ternary_stats

    return ternary_stats(kt.load_model(path, compile=False)).to_dict()["layers"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="stats JSON or saved model")
    args = parser.parse_args(argv)
    for path in args.files:
        try:
            if path.suffix in (".h5", ".keras"):
                rows = checkpoint_rows(path)
            else:
                rows = layer_rows(json.loads(path.read_text()))
        except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
            print(f"error: {path}: {err}", file=sys.stderr)
            return 2
        print(f"# {path}")
        print(f"{'layer':28s} {'weights':>8s} {'nonzero':>8s} {'zeros':>7s}")
        pooled: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for layer in rows:
            n, zeros = int(layer["n_weights"]), int(layer["n_zero"])
            print(f"{layer['name']:28s} {n:8d} {n - zeros:8d} {zeros / n:7.1%}")
            group = layer["name"].split("_")[0]
            pooled[group][0] += n
            pooled[group][1] += zeros
        total = sum(n for n, _ in pooled.values()), sum(z for _, z in pooled.values())
        for group, (n, zeros) in pooled.items():
            print(f"{group + ' (pooled)':28s} {n:8d} {n - zeros:8d} {zeros / n:7.1%}")
        print(f"{'all':28s} {total[0]:8d} {total[0] - total[1]:8d} {total[1] / total[0]:7.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
