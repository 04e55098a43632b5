"""The zoo table of docs/hw_sim.md: models nobody here wrote, through hw_sim.

    python scripts/zoo_table.py [--out zoo.md] [--only NAME ...]

For each model of the test zoo (tests/zoo.py: small Keras/larq models with every supported
layer type, larq_zoo architectures with weights=None when larq_zoo is installed), built
seeded with random weights: save it (.h5), load it in hw_sim (load time), profile it on
every accelerator (profile time), count MACs, and emulate 4 random inputs against Keras
(teacher-forced, each layer fed Keras' input: integer accumulators exact and float layers
within rounding? free-running: top-1 equal on the images whose top-2 logits are not a near
tie?). Prints a markdown table (and writes it with --out). Models hw_sim refuses appear with
their one-line reason.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

UNITS = 1e6  # pJ -> µJ


def _row(entry, folder: Path) -> str:
    from hw_sim import load_graph, profile_model
    from hw_sim.emulate import Emulator
    from hw_sim.emulation_check import compare_with_keras
    from hw_sim.errors import HwSimError

    model = entry.build()
    fmt = next((f for f in entry.formats if f not in entry.missing), entry.formats[0])
    path = folder / f"{entry.name}{fmt}"
    model.save(path)
    start = time.perf_counter()
    try:
        graph = load_graph(str(path))
    except HwSimError as exc:
        reason = str(exc).splitlines()[0].replace(str(path), path.name)[:110]
        return f"| {entry.name} | {fmt} | refused: {reason} |" + " |" * 9
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    report = profile_model(graph, "all")
    profile_s = time.perf_counter() - start
    accel = report["accelerators"]
    first = next(iter(accel.values()))["total"]
    energies = [accel[name]["total"]["energy_pj"]["total"] / UNITS for name in accel]
    baselines = first["baselines"]
    base = [baselines[name]["energy_pj"]["total"] / UNITS for name in ("fp32", "int8", "binary")]
    x = np.random.default_rng(0).normal(size=(4, *model.input_shape[1:])).astype(np.float32)
    agreement, result = compare_with_keras(model, Emulator(graph, act_mode="float"), x)
    logits = agreement["keras_logits"]
    top2 = np.sort(logits, axis=-1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > 1e-4 * np.maximum(1.0, np.abs(top2[:, 1]))
    same = int((result.logits.argmax(-1) == logits.argmax(-1))[decisive].sum())
    exact = "yes" if agreement["teacher_forced"]["agrees"] else "no"
    cells = [
        entry.name,
        fmt,
        f"{first['macs']:,}",
        f"{100 * (first['sparsity'] or 0):.1f}%",
        *(f"{e:.3f}" for e in energies),
        *(f"{e:.3f}" for e in base),
        f"{exact}, {same}/{int(decisive.sum())}",
        f"{load_s:.1f} / {profile_s:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table to this markdown file")
    parser.add_argument("--only", nargs="+", help="zoo model names (default: all)")
    args = parser.parse_args()
    from hw_sim.accelerators import ACCELERATORS
    from tests.zoo import HAVE_LARQ_ZOO, ZOO

    names = args.only or list(ZOO)
    header = (
        "| model | file | MACs | zero weights | "
        + " | ".join(f"{name} µJ" for name in ACCELERATORS)
        + " | FP32 µJ | INT8 µJ | binary µJ | teacher-forced exact, top-1 equal"
        + " | load / profile s |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            entry = ZOO[name]
            if entry.needs_larq_zoo and not HAVE_LARQ_ZOO:
                continue
            lines.append(_row(entry, Path(tmp)))
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
