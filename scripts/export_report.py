"""Size / accuracy table of trained models in every export format (docs/export.md).

    python scripts/export_report.py float=runs/float.h5 binary=runs/binary.h5 \\
        fixed=runs/fixed.h5 log=runs/log.h5 [--data-dir DIR] [--out-dir DIR] \\
        [--markdown FILE] [--json FILE] [--int16x8]

Test set: the CIFAR-10 test split (``keras_ternary.data``: ``--data-dir``, or
``$KERAS_TERNARY_CIFAR10_DIR`` / default locations), normalised as in training; int8
calibration uses the first ``--calib`` training images. ``--npz FILE`` instead takes
arrays ``x_test``, ``y_test``, ``x_calib`` (already preprocessed) from a NumPy archive.
``--int16x8`` adds the int16x8 .tflite (int8 weights, int16 activations) to the tables.
Exit status 0 when every int8 model agrees with Keras on ≥ 99% of the test images and is
within 0.5 accuracy point, 3 otherwise; 2 (one line on stderr) on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from keras_ternary.fileio import atomic_write


def _parse_models(items: list[str]) -> list[tuple[str, str]]:
    models = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise ValueError(f"expected LABEL=PATH, got {item!r}")
        if not os.path.isfile(path):
            raise ValueError(f"model file not found: {path}")
        models.append((label, path))
    if len({label for label, _ in models}) != len(models):
        raise ValueError("model labels must be unique")
    return models


def _data(args):
    import numpy as np

    if args.npz:
        with np.load(args.npz) as z:
            missing = {"x_test", "y_test", "x_calib"} - set(z.files)
            if missing:
                raise ValueError(f"{args.npz} lacks arrays {sorted(missing)}")
            return z["x_test"].astype("float32"), z["y_test"], z["x_calib"].astype("float32")
    from keras_ternary import data as kd

    source = "cifar10_dir" if args.data_dir else "auto"
    d = kd.load_data(
        source,
        data_dir=args.data_dir,
        download=False,
        train_size=args.calib,
        test_size=args.test_size,
    )
    x_test = kd.normalize(d.x_test, d.mean, d.std).numpy()
    x_calib = kd.normalize(d.x_train, d.mean, d.std).numpy()
    return x_test, d.y_test, x_calib


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", metavar="LABEL=PATH", help="trained Keras model files")
    ap.add_argument("--data-dir", help="CIFAR-10 binary directory")
    ap.add_argument("--npz", help="arrays x_test, y_test, x_calib instead of CIFAR-10")
    ap.add_argument("--test-size", type=int, default=None, help="first N test images (all)")
    ap.add_argument("--calib", type=int, default=500, help="int8 calibration images (500)")
    ap.add_argument("--out-dir", help="keep the exported files here (default: temporary)")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    ap.add_argument(
        "--int16x8",
        action="store_true",
        help="also export and measure int16x8 files (int8 weights, int16 activations; slow)",
    )
    args = ap.parse_args(argv)
    try:
        models = _parse_models(args.models)
        x_test, y_test, x_calib = _data(args)
        from keras_ternary.export.evaluation import evaluate_model, markdown_tables

        with tempfile.TemporaryDirectory() as tmp:
            out_dir = args.out_dir or tmp
            os.makedirs(out_dir, exist_ok=True)
            rows = [
                evaluate_model(lab, p, x_test, y_test, x_calib, out_dir, int16x8=args.int16x8)
                for lab, p in models
            ]
        text = markdown_tables(rows)
        print(text)
        if args.markdown:
            atomic_write(args.markdown, text + "\n")
        if args.json:
            atomic_write(args.json, json.dumps([r.to_dict() for r in rows], indent=1) + "\n")
    except Exception as exc:  # noqa: BLE001 - one line, no traceback, for any bad input
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(r.int8_ok for r in rows) else 3


if __name__ == "__main__":
    sys.exit(main())
