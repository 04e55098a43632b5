"""Evaluate trained models across export formats: sizes and accuracy (scripts/export_report.py).

For each labelled Keras model file: the sizes of the .h5, .tflite float32, .tflite int8,
2-bit packed and entropy-coded packed files; sparsity, empirical entropy and coded bits per
ternary weight; and on a test set the top-1 agreement of each .tflite with Keras and the
accuracies. The issue's acceptance criteria are checked for the int8 files (and, when
requested, the int16x8 files): agreement ≥ 99% and accuracy within 0.5 point of Keras.
For int8 it also gives the logits' rms error and the share of close calls (test images
whose two best Keras logits are within two rms errors, see
:class:`~keras_ternary.export.tflite.Agreement`), which tell a fragile model from a bad
conversion.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from keras_ternary.export.packed import pack
from keras_ternary.export.tflite import compare_with_keras, to_tflite

__all__ = ["ModelReport", "evaluate_model", "markdown_tables"]

MIN_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.005


@dataclass
class ModelReport:
    """One row of the report (sizes in bytes, rates in bits per ternary weight)."""

    label: str
    source: str
    size_h5: int
    size_tflite_float32: int
    size_tflite_int8: int
    size_packed_2bit: int
    size_packed_ans: int
    n_ternary: int
    sparsity: float | None
    entropy: float | None
    layer_entropy: float | None
    ans_bits_per_weight: float | None
    int8_kernels_exact: str
    n_test: int
    keras_accuracy: float
    float_agreement: float
    float_accuracy: float
    int8_agreement: float
    int8_accuracy: float
    size_tflite_int16x8: int | None = None
    int16x8_agreement: float | None = None
    int16x8_accuracy: float | None = None
    int8_rms_diff: float | None = None
    int8_close_calls: float | None = None

    def _ok(self, agreement: float | None, accuracy: float | None) -> bool | None:
        if agreement is None or accuracy is None:
            return None
        return (
            agreement >= MIN_AGREEMENT
            and abs(accuracy - self.keras_accuracy) <= MAX_ACCURACY_DROP + 1e-12
        )

    @property
    def int8_ok(self) -> bool:
        """Agreement ≥ 99% and accuracy within 0.5 point of the Keras model."""
        return bool(self._ok(self.int8_agreement, self.int8_accuracy))

    @property
    def int16x8_ok(self) -> bool | None:
        """The same criterion for the int16x8 file (None if it was not made)."""
        return self._ok(self.int16x8_agreement, self.int16x8_accuracy)

    def to_dict(self) -> dict:
        return {**asdict(self), "int8_ok": self.int8_ok, "int16x8_ok": self.int16x8_ok}


def evaluate_model(
    label: str,
    model_path: str,
    x_test: np.ndarray,
    y_test: np.ndarray,
    x_calib: np.ndarray,
    out_dir: str,
    int16x8: bool = False,
) -> ModelReport:
    """Export one model to every format in ``out_dir`` and measure it (see module docstring).

    ``int16x8`` also exports and measures the int16x8 .tflite (reference kernels: slow).
    """
    from keras_ternary.modelfile import load_model
    from keras_ternary.stats import ternary_stats

    # a corrupt file must not crash this process, a Lambda layer not run (docs/errors.md)
    model = load_model(model_path, compile=False)
    base = os.path.join(out_dir, label)
    fl = to_tflite(model, base + ".float32.tflite", "float")
    i8 = to_tflite(model, base + ".int8.tflite", "int8", x_calib)
    two = pack(model, base + ".2bit.ktp", coding="2bit")
    ans = pack(model, base + ".ktp", coding="ans")
    stats = ternary_stats(model)
    has_ternary = ans.n_ternary > 0
    agree_f = compare_with_keras(model, fl.path, x_test, y_test)
    agree_8 = compare_with_keras(model, i8.path, x_test, y_test)
    extra = {}
    if int16x8:
        i16 = to_tflite(model, base + ".int16x8.tflite", "int16x8", x_calib)
        agree_16 = compare_with_keras(model, i16.path, x_test, y_test)
        extra = {
            "size_tflite_int16x8": i16.size_bytes,
            "int16x8_agreement": agree_16.top1_agreement,
            "int16x8_accuracy": agree_16.tflite_accuracy,
        }
    return ModelReport(
        label=label,
        source=model_path,
        size_h5=os.path.getsize(model_path),
        size_tflite_float32=fl.size_bytes,
        size_tflite_int8=i8.size_bytes,
        size_packed_2bit=two.size_bytes,
        size_packed_ans=ans.size_bytes,
        n_ternary=ans.n_ternary,
        sparsity=stats.total.sparsity if has_ternary else None,
        entropy=ans.entropy if has_ternary else None,
        layer_entropy=ans.layer_entropy if has_ternary else None,
        ans_bits_per_weight=ans.bits_per_weight if has_ternary else None,
        int8_kernels_exact=f"{sum(k.exact for k in i8.kernels)}/{len(i8.kernels)}",
        n_test=len(x_test),
        keras_accuracy=agree_8.keras_accuracy,
        float_agreement=agree_f.top1_agreement,
        float_accuracy=agree_f.tflite_accuracy,
        int8_agreement=agree_8.top1_agreement,
        int8_accuracy=agree_8.tflite_accuracy,
        int8_rms_diff=agree_8.rms_diff,
        int8_close_calls=agree_8.close_calls,
        **extra,
    )


def _kb(n: int) -> str:
    return f"{n / 1024:.1f}"


def _opt(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _criterion_cells(r: ModelReport, agreement: float, accuracy: float, ok: bool) -> str:
    """Table cells ``agree. | acc. | Δacc (points) | yes/NO |`` of one quantized file."""
    delta = 100 * (accuracy - r.keras_accuracy)
    return (
        f"{100 * agreement:.2f}% | {100 * accuracy:.2f}% | {delta:+.2f} | {'yes' if ok else 'NO'} |"
    )


def markdown_tables(rows: list[ModelReport]) -> str:
    """Two markdown tables: sizes / compression, and accuracy / agreement."""
    out = [
        "| model | .h5 (KiB) | .tflite float32 | .tflite int8 | 2-bit packed | entropy-coded "
        "| sparsity | entropy (bits/w) | Σ n·H per layer | coded (bits/w) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.label} | {_kb(r.size_h5)} | {_kb(r.size_tflite_float32)} | "
            f"{_kb(r.size_tflite_int8)} | {_kb(r.size_packed_2bit)} | {_kb(r.size_packed_ans)} | "
            f"{_pct(r.sparsity)} | {_opt(r.entropy, '.3f')} | {_opt(r.layer_entropy, '.3f')} | "
            f"{_opt(r.ans_bits_per_weight, '.3f')} |"
        )
    out += [
        "",
        "| model | test images | Keras acc. | float32 agree. | int8 kernels exact | int8 agree. "
        "| int8 acc. | Δacc (points) | ≥99% & ≤0.5 pt | int8 logit rms err. | close calls |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.label} | {r.n_test} | {100 * r.keras_accuracy:.2f}% | "
            f"{100 * r.float_agreement:.2f}% | {r.int8_kernels_exact} | "
            + _criterion_cells(r, r.int8_agreement, r.int8_accuracy, r.int8_ok)
            + f" {_opt(r.int8_rms_diff, '.4f')} | {_pct(r.int8_close_calls)} |"
        )
    with16 = [r for r in rows if r.int16x8_ok is not None]
    if with16:
        out += [
            "",
            "| model | .tflite int16x8 (KiB) | int16x8 agree. | int16x8 acc. | Δacc (points) "
            "| ≥99% & ≤0.5 pt |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in with16:
            out.append(
                f"| {r.label} | {_kb(r.size_tflite_int16x8)} | "
                + _criterion_cells(r, r.int16x8_agreement, r.int16x8_accuracy, r.int16x8_ok)
            )
    return "\n".join(out)
