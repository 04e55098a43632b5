"""scripts/export_report.py on small trained models and generated data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_export_models import generated_data, trained_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_report.py"


def _script():
    spec = importlib.util.spec_from_file_location("export_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    paths = {}
    for kind in ("ternary",):
        paths[kind] = tmp / f"{kind}.h5"
        trained_model(kind).save(paths[kind])
    x_test, y_test = generated_data(300, seed=21)
    npz = tmp / "data.npz"
    np.savez(npz, x_test=x_test, y_test=y_test, x_calib=generated_data(64, seed=22)[0])
    return tmp, paths, npz


def test_report_table_and_numbers(inputs, capsys):
    tmp, paths, npz = inputs
    out_json, out_md = tmp / "r.json", tmp / "r.md"
    argv = [f"{k}={p}" for k, p in paths.items()]
    argv += ["--npz", str(npz), "--json", str(out_json), "--markdown", str(out_md)]
    argv += ["--out-dir", str(tmp / "files"), "--int16x8"]
    code = _script().main(argv)
    rows = {r["label"]: r for r in json.loads(out_json.read_text())}
    assert code == (0 if all(r["int8_ok"] for r in rows.values()) else 3)
    t = rows["ternary"]
    assert t["size_packed_ans"] < t["size_packed_2bit"] < t["size_tflite_int8"]
    assert t["size_tflite_int8"] < t["size_tflite_float32"] and t["int8_kernels_exact"] == "10/10"
    assert abs(t["ans_bits_per_weight"] - t["entropy"]) < 0.05 and 0 < t["sparsity"] < 1
    for r in rows.values():
        assert r["n_test"] == 300 and r["float_agreement"] == 1.0
        assert r["int8_agreement"] >= 0.9
        assert r["int16x8_agreement"] >= r["int8_agreement"] - 0.01
        assert r["size_tflite_int8"] <= r["size_tflite_int16x8"] < r["size_tflite_float32"]
        assert r["int16x8_ok"] == (
            r["int16x8_agreement"] >= 0.99
            and abs(r["int16x8_accuracy"] - r["keras_accuracy"]) <= 0.005 + 1e-12
        )
        assert r["keras_accuracy"] == pytest.approx(
            np.mean(
                trained_model(r["label"])
                .predict(generated_data(300, seed=21)[0], verbose=0)
                .argmax(-1)
                == generated_data(300, seed=21)[1]
            )
        )
    md = out_md.read_text()
    assert "| ternary |" in md and "entropy-coded" in md and "int16x8 agree." in md
    assert md.strip() in capsys.readouterr().out
    assert (tmp / "files" / "ternary.int8.tflite").is_file()
    assert (tmp / "files" / "ternary.int16x8.tflite").is_file()


def test_markdown_of_a_float_model_row():
    from keras_ternary.export.evaluation import ModelReport, markdown_tables

    row = ModelReport(
        "float",
        "f.h5",
        1000,
        900,
        300,
        950,
        950,
        0,
        None,
        None,
        None,
        None,
        "0/0",
        10,
        0.9,
        1.0,
        0.9,
        0.99,
        0.896,
        int8_rms_diff=0.0421,
        int8_close_calls=0.047,
    )
    assert row.int8_ok
    text = markdown_tables([row])
    assert "| float | 1.0 | 0.9 | 0.3 |" in text and "—" in text
    assert "| yes | 0.0421 | 4.7% |" in text
    assert row.int16x8_ok is None and "int16x8" not in text  # not requested
    row.int8_agreement = 0.98
    assert not row.int8_ok and "| NO |" in markdown_tables([row])


def test_report_bad_input(inputs, capsys):
    tmp, paths, npz = inputs
    script = _script()
    assert script.main(["nolabel", "--npz", str(npz)]) == 2
    assert "LABEL=PATH" in capsys.readouterr().err
    assert script.main([f"x={tmp / 'missing.h5'}", "--npz", str(npz)]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp / "bad.npz"
    np.savez(bad, x_test=np.zeros(1))
    assert script.main([f"t={paths['ternary']}", "--npz", str(bad)]) == 2
    assert "lacks arrays" in capsys.readouterr().err
