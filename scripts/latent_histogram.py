"""How the latent (real-valued) weights of a trained ternary model are spread.

    python scripts/latent_histogram.py CHECKPOINT.h5

Prints, over every ternary-quantized kernel of the model, the number of weights and the
fraction whose latent magnitude |w| exceeds each threshold, and the fraction at the clip
(|w| >= 0.9999). Used by docs/results.md, Finding 6.
"""

from __future__ import annotations

import argparse

import numpy as np

THRESHOLDS = (0.1, 0.5, 0.8, 0.9, 0.95, 0.99)


def latent_magnitudes(model) -> np.ndarray:
    """|w| of the latent weights of every quantized kernel of ``model``, concatenated."""
    from keras_ternary.stats import quantized_weights

    parts = [np.abs(np.asarray(qk.kernel).ravel()) for qk in quantized_weights(model)]
    if not parts:
        raise SystemExit("error: the model has no quantized kernel")
    return np.concatenate(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a model saved by keras_ternary (.h5 or .keras)")
    args = parser.parse_args()
    import keras_ternary as kt

    w = latent_magnitudes(kt.load_model(args.checkpoint, compile=False))
    print(f"weights: {w.size}")
    for t in THRESHOLDS:
        print(f"|w| > {t}: {np.mean(w > t):.4f}")
    print(f"at the clip (|w| >= 0.9999): {np.mean(w >= 0.9999):.4f}")


if __name__ == "__main__":
    main()
