"""Is a ternary model's test accuracy lost to stale batch-norm statistics?

    python scripts/bn_recalibration.py MODEL.h5 --data-dir DIR [--batches 40] [--batch-size 256]

Evaluates the model on the CIFAR-10 test set twice: with the batch-norm moving statistics it
was saved with, and after re-estimating them (a pass over ``--batches`` training batches,
no augmentation, the weights untouched: each batch-norm layer's moving mean and variance
become the average of the batch statistics). Also reports the accuracy on the first 10,000
training images. A large gain after re-estimation means that the moving statistics lag the
network (e.g. ternarized weights flipping at the threshold faster than the moving averages
follow), not that the weights cannot fit. Prints one JSON object. Bad input: one error line,
exit status 2.
"""

from __future__ import annotations

import keras_ternary  # noqa: F401  (tf.keras = Keras 2; registers the custom layers)

# isort: split
import argparse
import json
import sys

import numpy as np
import tensorflow as tf

from keras_ternary import data as kd
from keras_ternary.modelfile import ModelFileError, load_model
from keras_ternary.stats import ternary_stats


def _accuracy(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, batch: int) -> float:
    logits = model.predict(x, batch_size=batch, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def reestimate_batchnorm(model: tf.keras.Model, x: np.ndarray, batch: int, batches: int) -> int:
    """Set every BatchNormalization's moving statistics to the mean of ``batches`` batches."""
    layers = [
        layer for layer in model.submodules if isinstance(layer, tf.keras.layers.BatchNormalization)
    ]
    saved = [layer.momentum for layer in layers]
    n = min(batches, len(x) // batch)
    try:
        for i in range(n):
            for layer in layers:  # running mean over batches: moving = (i·moving + batch)/(i+1)
                layer.momentum = i / (i + 1)
            model(x[i * batch : (i + 1) * batch], training=True)
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data-dir", required=True, help="directory with cifar-10-batches-bin")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model, compile=False)
        data = kd.load_data("cifar10_dir", args.data_dir)
    except (ModelFileError, kd.DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    x_test = kd.normalize(data.x_test, data.mean, data.std).numpy()
    x_train = kd.normalize(data.x_train[:10000], data.mean, data.std).numpy()
    y_train = data.y_train[:10000]
    stats = ternary_stats(model, histogram=False)
    report = {
        "model": args.model,
        "sparsity": stats.sparsity,
        "test_accuracy_saved_bn": _accuracy(model, x_test, data.y_test, args.batch_size),
        "train_accuracy_saved_bn": _accuracy(model, x_train, y_train, args.batch_size),
    }
    order = np.random.default_rng(0).permutation(len(x_train))
    report["bn_batches"] = reestimate_batchnorm(
        model, x_train[order], args.batch_size, args.batches
    )
    report["test_accuracy_reestimated_bn"] = _accuracy(model, x_test, data.y_test, args.batch_size)
    report["train_accuracy_reestimated_bn"] = _accuracy(model, x_train, y_train, args.batch_size)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
