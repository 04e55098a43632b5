"""Training throughput of ResNet-20* (inflation 1, batch 256): Ternary vs float vs larq SteTern.

Measured in one run, variants interleaved in a shuffled order every round so that machine
load affects them alike; each figure is the median over rounds of images/s after warm-up.
Targets (issue 2): Ternary >= 0.90 × float Conv2D and >= 0.97 × larq SteTern.

A second measurement isolates the quantizers: forward and backward pass of Ternary and SteTern
alone over kernels of the model's shapes, as a share of one training step. It tells whether a
Ternary / SteTern ratio below 1 can come from the quantizer or is load noise.

    python benchmarks/bench_training_throughput.py [--rounds 5] [--steps 6] [--batch 256]
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras_ternary as kt  # first: selects tf-keras before larq/TensorFlow load

# isort: split
import larq as lq
import numpy as np
import tensorflow as tf

VARIANTS = {
    "float Conv2D": None,
    "larq SteTern": lq.quantizers.SteTern(threshold_value=0.1),
    "keras_ternary Ternary": "ternary",
}


def _compiled(quantizer, inflation: int) -> tf.keras.Model:
    model = kt.resnet20_star(inflation=inflation, quantizer=quantizer, seed=0)
    model.compile(
        tf.keras.optimizers.Adam(5e-3),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _quantizer_seconds(quantizer, shapes: list[tuple[int, ...]], repeats: int) -> float:
    """Median seconds of one forward + backward pass of ``quantizer`` over kernels of ``shapes``."""
    rng = np.random.default_rng(1)
    kernels = [tf.Variable(rng.uniform(-1, 1, size=s).astype("float32")) for s in shapes]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            total = tf.add_n([tf.reduce_sum(quantizer(k)) for k in kernels])
        return tape.gradient(total, kernels)

    step()  # trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            step()
        times.append((time.perf_counter() - start) / 10)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per variant")
    parser.add_argument("--steps", type=int, default=6, help="training steps per round")
    parser.add_argument("--batch", type=int, default=256, help="batch size")
    parser.add_argument("--inflation", type=int, default=1, help="ResNet-20* inflation")
    args = parser.parse_args()

    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch)
    models = {name: _compiled(q, args.inflation) for name, q in VARIANTS.items()}
    for model in models.values():  # warm-up: trace and first steps
        for _ in range(2):
            model.train_on_batch(x, y)
    rates: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for _ in range(args.rounds):
        rng.shuffle(order)  # no variant always runs first (or right after another)
        for name in order:
            model = models[name]
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(x, y)
            rates[name].append(args.steps * args.batch / (time.perf_counter() - start))
    med = {name: statistics.median(r) for name, r in rates.items()}
    print(
        f"ResNet-20* inflation {args.inflation}, batch {args.batch}, "
        f"{args.rounds} rounds × {args.steps} steps"
    )
    for name, rate in med.items():
        spread = f"{min(rates[name]):.0f}–{max(rates[name]):.0f}"
        print(f"  {name:24s} {rate:8.1f} images/s  (rounds: {spread})")
    ternary = med["keras_ternary Ternary"]
    print(f"Ternary / float   = {ternary / med['float Conv2D']:.3f}  (target >= 0.90)")
    print(f"Ternary / SteTern = {ternary / med['larq SteTern']:.3f}  (target >= 0.97)")

    shapes = [
        tuple(w.shape)
        for w in models["keras_ternary Ternary"].trainable_weights
        if "kernel" in w.name
    ]
    step_s = args.batch / ternary
    print(
        f"Quantizers alone, forward + backward over the {len(shapes)} kernels "
        f"({sum(int(np.prod(s)) for s in shapes):,} weights):"
    )
    for name, quantizer in (
        ("keras_ternary Ternary", kt.Ternary(0.1)),
        ("larq SteTern", VARIANTS["larq SteTern"]),
    ):
        seconds = _quantizer_seconds(quantizer, shapes, args.rounds)
        print(f"  {name:24s} {seconds * 1e6:8.0f} µs  = {seconds / step_s:.2%} of a training step")


if __name__ == "__main__":
    main()
