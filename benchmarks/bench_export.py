"""Benchmark (one run): .tflite size and single-image latency, int8 vs float32 (XNNPACK).

Goals from the export issue: size int8 / float32 <= 0.27 and latency int8 / float32 <= 0.6
for resnet20_star(inflation=1). Also prints the int8 file with the residual batch-norms kept as
a multiply-add (``fold_residual_bn=False``), and the packed (2-bit and entropy-coded) and .h5
sizes.

    python benchmarks/bench_export.py [--inflation 1] [--runs 300] [--threads 1] [--json]

The network is untrained (kernels ternarized at Δ = 0.05, batch-norm statistics from a few
forward passes over generated images): size and latency do not depend on training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import keras_ternary  # noqa: F401  (selects tf-keras)
from keras_ternary import resnet20_star
from keras_ternary.export import load_interpreter, pack, to_tflite


def single_image_latency(path: str, runs: int, threads: int, warmup: int = 20) -> float:
    """Median wall time (ms) of one ``invoke`` on one image, LiteRT with its default XNNPACK."""
    it = load_interpreter(path, num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(inp["dtype"], np.integer):
        x = rng.integers(-128, 128, size=inp["shape"]).astype(inp["dtype"])
    else:
        x = rng.normal(size=inp["shape"]).astype(inp["dtype"])
    it.set_tensor(inp["index"], x)
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def calibrated_model(inflation: int, seed: int = 0):
    model = resnet20_star(inflation=inflation, delta=0.05, seed=seed)
    x = np.random.default_rng(seed).normal(size=(64, 32, 32, 3)).astype("float32")
    for _ in range(10):  # batch-norm moving statistics of this input distribution
        model(x, training=True)
    return model, x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inflation", type=int, default=1)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    model, calib = calibrated_model(args.inflation)
    res: dict = {"model": f"resnet20_star(inflation={args.inflation})", "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {m: os.path.join(tmp, f"{m}.tflite") for m in ("int8", "int8_keep", "float")}
        exp8 = to_tflite(model, paths["int8"], "int8", calib)
        # the int8 default pushes residual batch-norms back into the branches; the other form
        to_tflite(model, paths["int8_keep"], "int8", calib, fold_residual_bn=False)
        to_tflite(model, paths["float"], "float")
        res["int8_kernels_exact"] = f"{sum(k.exact for k in exp8.kernels)}/{len(exp8.kernels)}"
        res["size_int8"] = os.path.getsize(paths["int8"])
        res["size_float32"] = os.path.getsize(paths["float"])
        res["size_ratio"] = res["size_int8"] / res["size_float32"]
        res["latency_ms_int8"] = single_image_latency(paths["int8"], args.runs, args.threads)
        res["latency_ms_float32"] = single_image_latency(paths["float"], args.runs, args.threads)
        res["latency_ratio"] = res["latency_ms_int8"] / res["latency_ms_float32"]
        res["size_int8_residual_bn_kept"] = os.path.getsize(paths["int8_keep"])
        res["latency_ms_int8_residual_bn_kept"] = single_image_latency(
            paths["int8_keep"], args.runs, args.threads
        )
        h5 = os.path.join(tmp, "m.h5")
        model.save(h5)
        res["size_h5"] = os.path.getsize(h5)
        for coding in ("2bit", "ans"):
            rep = pack(model, os.path.join(tmp, f"m.{coding}.ktp"), coding=coding)
            res[f"size_packed_{coding}"] = rep.size_bytes
        res["ans_bits_per_weight"] = rep.bits_per_weight
        res["entropy_bits_per_weight"] = rep.entropy
        res["layer_entropy_bits_per_weight"] = rep.layer_entropy
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        goal = {"size_ratio": 0.27, "latency_ratio": 0.6}
        width = max(len(key) for key in res) + 1
        for key, value in res.items():
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            if key in goal:
                text += f"   (goal <= {goal[key]}: {'met' if value <= goal[key] else 'NOT met'})"
            print(f"{key:{width}s} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
