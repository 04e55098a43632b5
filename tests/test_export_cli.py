"""The ``export`` subcommand: happy paths and one-line errors without partial output."""

from __future__ import annotations

import numpy as np
import pytest

from keras_ternary.cli import main
from keras_ternary.export import read_weight_tensors, unpack
from tests.test_export_models import generated_data, trained_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "ternary.h5"
    trained_model("ternary").save(path)
    return path


def test_export_packed_and_tflite(tmp_path, model_file, capsys):
    out = tmp_path / "m.ktp"
    assert main(["export", str(model_file), "--to", "packed", "--out", str(out)]) == 0
    assert "bits/ternary weight" in capsys.readouterr().out
    x, _ = generated_data(8)
    np.testing.assert_array_equal(
        unpack(out).predict(x, verbose=0), trained_model("ternary").predict(x, verbose=0)
    )
    npy = tmp_path / "calib.npy"
    np.save(npy, generated_data(64, seed=3)[0])
    tfl = tmp_path / "m.tflite"
    argv = ["export", str(model_file), "--to", "tflite", "--representative", str(npy)]
    assert main([*argv, "--out", str(tfl)]) == 0
    said = capsys.readouterr().out
    assert "10/10 ternary kernels stored exactly" in said
    assert "3 pushed back into residual branches" in said
    assert {t.dtype for t in read_weight_tensors(tfl)} == {"INT8"}
    keep = tmp_path / "keep.tflite"
    assert main([*argv, "--keep-residual-bn", "--out", str(keep)]) == 0
    said = capsys.readouterr().out
    assert "10/10 ternary kernels stored exactly" in said and "pushed back" not in said
    assert "DEPTHWISE_CONV_2D" not in {t.op for t in read_weight_tensors(keep)}
    tfl16 = tmp_path / "m16.tflite"
    assert main([*argv, "--mode", "int16x8", "--out", str(tfl16)]) == 0
    assert "(int16x8); 10/10 ternary kernels stored exactly" in capsys.readouterr().out
    assert {t.dtype for t in read_weight_tensors(tfl16)} == {"INT8"}
    packed = ["export", str(model_file), "--to", "packed", "--coding", "2bit", "--json"]
    assert main([*packed, "--out", str(out)]) == 0
    assert '"coding": "2bit"' in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--representative", "nope"], "neither a number"),
        (["--representative", "missing.npy"], "not found"),
        (["--mode", "float", "--io", "int8"], "--io applies"),
    ],
)
def test_bad_arguments_give_one_line(tmp_path, model_file, capsys, extra, message):
    out = tmp_path / "x.tflite"
    code = main(["export", str(model_file), "--to", "tflite", "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code != 0 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not a model")
    for model in (bad, tmp_path / "absent.h5"):
        code = main(["export", str(model), "--to", "packed", "--out", str(tmp_path / "o.ktp")])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "o.ktp").exists()


def test_wrong_representative_shape(tmp_path, model_file, capsys):
    npy = tmp_path / "calib.npy"
    np.save(npy, np.zeros((4, 5, 5, 3), np.float32))
    out = tmp_path / "x.tflite"
    argv = ["export", str(model_file), "--to", "tflite", "--representative", str(npy)]
    assert main([*argv, "--out", str(out)]) == 2
    assert "shape" in capsys.readouterr().err and not out.exists()
