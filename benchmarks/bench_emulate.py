"""Emulated inference throughput vs TensorFlow float inference of the same model.

Builds ``resnet20_star(inflation=K, quantizer="ternary", input_quantizer=...)`` (random
weights, batch-norm statistics fitted on the benchmark images so activations are
realistic), then in one run measures

* TensorFlow: ``model(x, training=False)`` in a compiled ``tf.function`` (float32);
* the emulator on each kernel back-end (numba, numpy) with its per-step timing,

and prints images/s, the ratio emulation / TensorFlow (goal >= 0.1) and where the
emulator's time goes. Usage::

    python benchmarks/bench_emulate.py [--inflation 1] [--images 128] [--batch 64]
        [--input-quantizer ternary|binary|none] [--backends numba,numpy]
"""

from __future__ import annotations

import keras_ternary

# isort: split
import argparse
import time

import numpy as np
import tensorflow as tf

from hw_sim.emulate import Emulator
from hw_sim.kernels.backend import available_backends
from hw_sim.kernels.conv import reset_phase_times
from hw_sim.loaders.keras import from_keras_model


def fit_batchnorm(model: tf.keras.Model, x: np.ndarray) -> None:
    """Set every batch-norm's moving statistics to those of its input on ``x``."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            probe = tf.keras.Model(model.input, layer.input)
            v = probe.predict(x, verbose=0, batch_size=64).reshape(-1, layer.gamma.shape[0])
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, v.mean(0), v.var(0)])


def best_rate(fn, n_images: int, repeats: int) -> float:
    """Images per second of the fastest of ``repeats`` runs (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_images / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inflation", type=int, default=1)
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--input-quantizer", default="ternary", choices=("ternary", "binary", "none"))
    p.add_argument("--backends", default=",".join(reversed(available_backends())))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    iq = None if args.input_quantizer == "none" else args.input_quantizer
    model = keras_ternary.resnet20_star(
        inflation=args.inflation, quantizer="ternary", input_quantizer=iq, seed=0
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.images, 32, 32, 3)).astype(np.float32)
    fit_batchnorm(model, x[: min(256, len(x))])
    graph = from_keras_model(model)

    infer = tf.function(lambda batch: model(batch, training=False))

    def run_tf() -> None:
        for s in range(0, len(x), args.batch):
            infer(tf.constant(x[s : s + args.batch])).numpy()

    tf_rate = best_rate(run_tf, len(x), args.repeats)
    print(
        f"model {model.name}: {model.count_params():,} parameters, "
        f"input quantizer {args.input_quantizer}, {args.images} images, batch {args.batch}"
    )
    print(f"TensorFlow float32 inference: {tf_rate:8.1f} images/s")
    for backend in args.backends.split(","):
        emu = Emulator(graph, backend=backend, calibration=x[:64])
        rate = best_rate(lambda e=emu: e.run(x, batch_size=args.batch), len(x), args.repeats)
        emu.seconds.clear()
        reset_phase_times()
        start = time.perf_counter()
        emu.run(x, batch_size=args.batch)
        wall = time.perf_counter() - start
        phases = reset_phase_times()
        print(
            f"emulator [{backend:5s}] act_mode={emu.act_mode}: {rate:8.1f} images/s, "
            f"ratio emulation/TF = {rate / tf_rate:.3f} (goal >= 0.1)"
        )
        print(f"  where the time goes (one pass, {wall:.3f} s):")
        for name, sec in sorted(emu.seconds.items(), key=lambda kv: -kv[1]):
            print(f"    {name:34s} {sec:7.3f} s  {100 * sec / wall:5.1f} %")
        print("  inside the kernels:")
        for name, sec in sorted(phases.items(), key=lambda kv: -kv[1]):
            print(f"    {name:34s} {sec:7.3f} s  {100 * sec / wall:5.1f} %")


if __name__ == "__main__":
    main()
