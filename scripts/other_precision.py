"""Energy of a larq_zoo network (random weights) under ``other_precision`` int8 and float32.

``python scripts/other_precision.py [--model BinaryResNetE18] [--size 224]`` prints, for both
settings, the energy of every accelerator and baseline (mJ per image) -- the numbers quoted
in docs/hw_sim.md ("Float layers: other_precision"). Needs larq_zoo.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hw_sim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="BinaryResNetE18")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    import larq_zoo as lqz

    from hw_sim.analysis import profile_model, to_graph
    from hw_sim.technology import load_tech

    model = getattr(lqz.literature, args.model, None) or getattr(lqz.sota, args.model)
    keras_model = model(input_shape=(args.size, args.size, 3), weights=None)
    graph = to_graph(keras_model)
    print(f"{args.model} {args.size}x{args.size}, weights=None; energy per image in mJ")
    print("| other_precision | bitwise | zeroskip | cim | FP32 baseline | INT8 | binary |")
    print("|---|---|---|---|---|---|---|")
    for precision in ("float32", "int8"):
        result = profile_model(graph, "all", load_tech({"other_precision": precision}))
        reports = result["accelerators"]
        cells = [reports[n]["total"]["energy_pj"]["total"] for n in ("bitwise", "zeroskip", "cim")]
        bases = reports["bitwise"]["total"]["baselines"]
        cells += [bases[n]["energy_pj"]["total"] for n in ("fp32", "int8", "binary")]
        print(f"| {precision} | " + " | ".join(f"{c / 1e9:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
