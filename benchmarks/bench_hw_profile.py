"""hw_sim profiling speed: ResNet-20* (inflation 5) profiled vs merely loaded.

The model is saved once to a temporary .h5. Each round (interleaved, medians reported):

* load:     ``tf.keras.models.load_model(path)`` -- the time needed to load the model;
* profile:  ``hw_sim.profile_model(path, accelerator)`` end to end (load, IR conversion through
  the quantizers, counting on every accelerator model and the three baselines);
* count:    the analytic counting alone on the already-converted IR.

Goal (issue 4): profile < 2 x load.

    python benchmarks/bench_hw_profile.py [--rounds 5] [--inflation 5] [--accelerator all]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import keras_ternary as kt  # first: selects tf-keras before larq/TensorFlow load

# isort: split
import tensorflow as tf

import hw_sim
from hw_sim.loaders import load_graph


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inflation", type=int, default=5)
    parser.add_argument("--accelerator", default="all")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"resnet20_star_k{args.inflation}.h5")
        kt.resnet20_star(inflation=args.inflation, seed=0).save(path)
        tf.keras.backend.clear_session()
        # warm-up: first load pays one-off TensorFlow initialisation
        tf.keras.models.load_model(path, compile=False)
        graph = load_graph(path)
        hw_sim.profile_model(graph, args.accelerator)
        loads, profiles, counts = [], [], []
        for _ in range(args.rounds):
            tf.keras.backend.clear_session()
            t, _ = _timed(lambda: tf.keras.models.load_model(path, compile=False))
            loads.append(t)
            tf.keras.backend.clear_session()
            t, report = _timed(lambda: hw_sim.profile_model(path, args.accelerator))
            profiles.append(t)
            t, _ = _timed(lambda: hw_sim.profile_model(graph, args.accelerator))
            counts.append(t)

    load, prof, count = (statistics.median(x) for x in (loads, profiles, counts))
    first = next(iter(report.get("accelerators", {"x": report}).values()))
    macs = first["total"]["macs"]
    print(f"ResNet-20* inflation {args.inflation}: {graph_size(graph)}, {macs:,} dense MACs")
    print(f"load_model (.h5)            {load:8.3f} s  (median of {args.rounds})")
    print(f"hw_sim.profile end to end   {prof:8.3f} s  (accelerator={args.accelerator})")
    print(f"  of which counting only    {count:8.3f} s")
    print(f"ratio profile / load        {prof / load:8.2f} x   (goal < 2 x)")


def graph_size(graph) -> str:
    return f"{len(graph)} ops, {sum(op.n_weights for op in graph.compute_ops):,} weights"


if __name__ == "__main__":
    main()
