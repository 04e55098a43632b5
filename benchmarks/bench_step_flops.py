"""Compute of one training step and one epoch of ResNet-20* (paper scale: k = 5, batch 256).

Counts floating-point operations with TensorFlow's graph profiler (``float_operation``) over
the traced forward pass and over a traced training step (forward, loss, gradients), and
cross-checks the forward count against ``hw_sim``'s multiply-accumulate count of the same
model (1 MAC = 2 FLOPs). Then times a few training steps on this machine (the only measured
time here; the GPU figures in docs/distributed.md are estimates derived from the counts).

    python benchmarks/bench_step_flops.py [--inflation 5] [--batch 256] [--timed-steps 3]
"""

from __future__ import annotations

import argparse
import json
import time

import keras_ternary as kt  # first: selects tf-keras before larq/TensorFlow load

# isort: split
import numpy as np
import tensorflow as tf

import hw_sim
from keras_ternary import data as data_lib

CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000


def graph_flops(fn: tf.types.experimental.GenericFunction, *specs: tf.TensorSpec) -> int:
    """FLOPs TensorFlow's profiler counts in the graph of ``fn`` traced for ``specs``."""
    graph = fn.get_concrete_function(*specs).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inflation", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--timed-steps", type=int, default=3)
    args = parser.parse_args()

    model = kt.resnet20_star(inflation=args.inflation, quantizer="ternary", seed=0)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    image = tf.TensorSpec([args.batch, 32, 32, 3], tf.float32)
    label = tf.TensorSpec([args.batch], tf.int64)

    @tf.function
    def forward(x):
        return model(x, training=False)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    fwd = graph_flops(forward, image) / args.batch
    step = graph_flops(train_step, image, label)
    macs = hw_sim.profile_model(model, accelerator="zeroskip")["total"]["macs"]
    steps = data_lib.steps_per_epoch(CIFAR_TRAIN, args.batch)
    per_image_train = step / args.batch
    epoch = per_image_train * CIFAR_TRAIN + fwd * CIFAR_TEST

    model.compile(tf.keras.optimizers.Adam(5e-3), loss_fn)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch)
    model.train_on_batch(x, y)  # trace and warm up
    times = []
    for _ in range(args.timed_steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    step_s = float(np.median(times))

    print(
        json.dumps(
            {
                "inflation": args.inflation,
                "batch": args.batch,
                "trainable_params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
                "hw_sim_forward_macs_per_image": macs,
                "tf_forward_flops_per_image": fwd,
                "forward_flops_over_2_macs": fwd / (2 * macs),
                "tf_train_step_flops": step,
                "train_over_forward": per_image_train / fwd,
                "steps_per_epoch": steps,
                "epoch_flops_train_plus_eval": epoch,
                "run_flops_500_epochs": 500 * epoch,
                "measured_step_s_here": step_s,
                "measured_tflops_here": step / step_s / 1e12,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
