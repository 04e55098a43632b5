"""Property-based fuzzing of every file loader: random, truncated and mutated bytes.

Each loader, fed anything, must either succeed or raise its project error (``DataError``,
``ConfigError``, ``RunError``, ``PackedFormatError``, ``ExportError``, ``HwSimError``);
any other exception is a crash for the user and fails the test. A watchdog (SIGALRM)
turns a loader that runs longer than :data:`HANG_S` seconds into a failure, so a hang
cannot stall the suite. Hypothesis runs derandomized (the same examples every run),
without shrinking, with a modest number of examples per loader.

HDF5 files are fuzzed with random bytes and truncations only: byte-flipped HDF5 files can
crash (SIGSEGV) or hang the HDF5 C library itself. The command lines read such files in a
child process first (``keras_ternary.fileio.probe_hdf5``, ``tests/test_hdf5_probe.py``); see
docs/errors.md ("Limits").
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hw_sim.errors import HwSimError
from hw_sim.loaders import load_graph
from hw_sim.technology import load_tech
from keras_ternary import config as kconfig
from keras_ternary import data as kdata
from keras_ternary import rundir
from keras_ternary.export import ExportError, PackedFormatError, pack, read_header, unpack
from keras_ternary.export import packed as packed_mod
from keras_ternary.export.cli import load_representative
from keras_ternary.export.flatbuffer import read_metadata, read_weight_tensors, schema
from tests.helpers import tiny_ternary_model

HANG_S = 10.0

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,  # the watchdog below bounds each example instead
    max_examples=30,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.function_scoped_fixture),
)


#: (loader, input, project error, pending fix) for docs/errors.md
LOADERS: tuple[tuple[str, str, str, str | None], ...] = (
    ("keras_ternary.data.decode_cifar10_records", "CIFAR-10 record bytes", "DataError", None),
    ("keras_ternary.data.load_cifar10_binary", "CIFAR-10 directory", "DataError", None),
    ("keras_ternary.config.load_config", "YAML/TOML text", "ConfigError", None),
    ("keras_ternary.config.load_config", "non-UTF-8 bytes", "ConfigError", None),
    (
        "keras_ternary.config.load_config",
        "integer keys, `extends: 5`",
        "ConfigError",
        None,
    ),
    ("keras_ternary.config.config_from_dict", "random values for every key", "ConfigError", None),
    ("keras_ternary.rundir.read_history", "history.csv", "RunError", None),
    ("keras_ternary.rundir.read_checkpoint_state", "checkpoint .h5", "RunError", None),
    ("keras_ternary.export.read_header / unpack", "packed file", "PackedFormatError", None),
    ("keras_ternary.export.unpack", "packed file, valid checksums", "PackedFormatError", None),
    (
        "keras_ternary.export.read_weight_tensors / read_metadata",
        ".tflite",
        "ExportError",
        None,
    ),
    ("keras_ternary.export.cli.load_representative", "calibration .npy", "ExportError", None),
    ("hw_sim.load_graph", ".h5 (random, truncated) and .keras", "HwSimError", None),
    ("hw_sim.technology.load_tech", "technology YAML/JSON", "HwSimError", None),
)


class LoaderHang(BaseException):  # noqa: N818 - BaseException: loaders must not swallow it
    """A loader ran longer than :data:`HANG_S` seconds."""


@contextlib.contextmanager
def watchdog(seconds: float = HANG_S) -> Iterator[None]:
    def _alarm(signum, frame):
        raise LoaderHang(f"loader still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def clean(call: Callable[[], object], errors: type[BaseException] | tuple) -> object | None:
    """``call()``'s result, or None if it raised one of ``errors``; anything else propagates."""
    with watchdog():
        try:
            return call()
        except errors:
            return None


# --------------------------------------------------------------------------- seed files
def tiny_tflite() -> bytes:
    """A one-operator (int8 CONV_2D) .tflite flatbuffer, built directly with the schema."""
    import flatbuffers

    s = schema()

    def tensor(name: str, shape: list[int], buffer: int) -> object:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = (
            name,
            np.array(shape, np.int32),
            s.TensorType.INT8,
            buffer,
        )
        t.quantization = s.QuantizationParametersT()
        t.quantization.scale = np.array([0.5], np.float32)
        t.quantization.zeroPoint = np.array([0], np.int64)
        return t

    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CONV_2D
    weights = s.BufferT()
    weights.data = np.resize(np.array([255, 0, 1], np.uint8), 54)  # int8 -1, 0, +1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0, 1], np.int32), np.array([2], np.int32)
    graph = s.SubGraphT()
    graph.tensors = [
        tensor("in", [1, 4, 4, 3], 0),
        tensor("w", [2, 3, 3, 3], 1),
        tensor("out", [1, 2, 2, 2], 0),
    ]
    graph.operators, graph.inputs, graph.outputs = (
        [op],
        np.array([0], np.int32),
        np.array([2], np.int32),
    )
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [s.BufferT(), weights]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@functools.cache
def seeds(root: str) -> dict[str, bytes]:
    """Valid files to truncate and mutate: .h5, .keras, packed, .tflite, CIFAR, config."""
    base = Path(root)
    model = tiny_ternary_model()
    model.save(base / "seed.h5")
    model.save(base / "seed.keras")
    pack(model, base / "seed.tkp", coding="ans")
    d = kdata.generate_shapes10(4, 2, seed=0)
    kdata.write_cifar10_binary(base / "seed.bin", d.x_train, d.y_train)
    return {
        "h5": (base / "seed.h5").read_bytes(),
        "keras": (base / "seed.keras").read_bytes(),
        "packed": (base / "seed.tkp").read_bytes(),
        "tflite": tiny_tflite(),
        "cifar": (base / "seed.bin").read_bytes(),
        "config": (
            b"name: fuzz\nepochs: 3\nbatch_size: 8\ndata: {source: shapes10, train_size: 10}\n"
            b"ternary: {regime: log, delta0: 0.1, multiplier: 1.9, delta_max: 0.9}\n"
        ),
    }


SEED: dict[str, bytes] = {}


@pytest.fixture(scope="module", autouse=True)
def _seed_files(tmp_path_factory) -> None:
    """Fill :data:`SEED` (a global, so hypothesis does not print the bytes as an argument)."""
    SEED.update(seeds(str(tmp_path_factory.mktemp("fuzz_seeds"))))


def test_seed_files_load(tmp_path):
    """The undamaged seeds load, so the properties below start from valid files."""
    for name in ("h5", "keras"):
        (tmp_path / f"m.{name}").write_bytes(SEED[name])
        assert load_graph(tmp_path / f"m.{name}").ops
    (tmp_path / "m.tkp").write_bytes(SEED["packed"])
    assert unpack(tmp_path / "m.tkp").count_params() > 0
    assert [w.op for w in read_weight_tensors(SEED["tflite"])] == ["CONV_2D"]
    assert len(kdata.decode_cifar10_records(SEED["cifar"])[1]) == 4
    (tmp_path / "run.yaml").write_bytes(SEED["config"])
    assert kconfig.load_config(tmp_path / "run.yaml").name == "fuzz"


@st.composite
def damaged(draw, valid: bytes, max_random: int = 4096) -> bytes:
    """Random bytes, a truncation of ``valid``, or ``valid`` with a few bytes overwritten."""
    kind = draw(st.sampled_from(("random", "truncated", "mutated")))
    if kind == "random":
        return draw(st.binary(max_size=max_random))
    if kind == "truncated":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    out = bytearray(valid)
    for pos, value in draw(
        st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), max_size=12)
    ):
        out[pos] = value
    return bytes(out)


def random_or_truncated(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=4096), st.integers(0, len(valid) - 1).map(lambda n: valid[:n])
    )


# --------------------------------------------------------------------------- CIFAR-10 binaries
@FUZZ
@given(data=st.data())
def test_cifar10_records(data):
    raw = data.draw(damaged(SEED["cifar"]))
    result = clean(lambda: kdata.decode_cifar10_records(raw, "fuzz.bin"), kdata.DataError)
    if result is not None:
        images, labels = result
        assert images.shape == (len(raw) // 3073, 32, 32, 3) and labels.max() <= 9


@FUZZ
@given(data=st.data())
def test_cifar10_directory(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("cifar")
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(SEED["cifar"])
    (folder / "test_batch.bin").write_bytes(data.draw(damaged(SEED["cifar"])))
    clean(lambda: kdata.load_cifar10_binary(folder), kdata.DataError)


# --------------------------------------------------------------------------- configuration
@FUZZ
@given(data=st.data(), suffix=st.sampled_from((".yaml", ".toml")))
def test_config_file_random_text(tmp_path_factory, data, suffix):
    text = data.draw(
        st.one_of(
            st.text(max_size=300),
            st.integers(0, len(SEED["config"])).map(lambda n: SEED["config"][:n].decode()),
        )
    )
    path = tmp_path_factory.mktemp("cfg") / f"run{suffix}"
    path.write_text(text)
    clean(lambda: kconfig.load_config(path), kconfig.ConfigError)


@FUZZ
@given(data=st.data())
def test_config_file_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_bytes(data.draw(damaged(SEED["config"])))
    clean(lambda: kconfig.load_config(path), kconfig.ConfigError)


@pytest.mark.parametrize(
    "text", ["1: a\nb: c\n", "model: {1: 2, x: 1}\n", "extends: 5\n", "extends: [a]\n"]
)
def test_config_file_known_crashes(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    clean(lambda: kconfig.load_config(path), kconfig.ConfigError)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
_KEYS = {
    "": (
        "name",
        "epochs",
        "paper_epochs",
        "per_step",
        "batch_size",
        "seed",
        "snapshot_epochs",
        "out_dir",
        "tensorboard",
        "data",
        "model",
        "ternary",
        "optimizer",
    ),
    "data": ("source", "dir", "tfds_dir", "download", "train_size", "test_size", "augment"),
    "model": (
        "quantizer",
        "inflation",
        "input_quantizer",
        "quantize_first_last",
        "blocks_per_stage",
    ),
    "ternary": ("regime", "delta0", "multiplier", "delta_max"),
    "optimizer": ("name", "lr_values", "lr_boundaries"),
}


@st.composite
def config_mappings(draw) -> dict:
    """Mappings over the real config keys (plus the odd unknown key) with random values."""
    out: dict = {}
    for section, keys in _KEYS.items():
        chosen = draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
        target = out if not section else out.setdefault(section, {})
        for key in chosen:
            if not (section == "" and key in _KEYS):
                target[key] = draw(_VALUES)
    if draw(st.booleans()):
        out[draw(st.one_of(st.text(max_size=6), st.integers()))] = draw(_SCALARS)
    return out


@FUZZ
@given(values=config_mappings())
def test_config_values(values):
    config = clean(lambda: kconfig.config_from_dict(values), kconfig.ConfigError)
    if config is not None:
        assert config.epochs >= 1 and config.batch_size >= 1 and config.time_scale > 0


# --------------------------------------------------------------------------- run directories
@FUZZ
@given(text=st.text(alphabet=st.sampled_from("epoch,loss0123.\n x"), max_size=80))
def test_history_csv(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("hist") / "history.csv"
    path.write_text(text)
    clean(lambda: rundir.read_history(path), rundir.RunError)


@FUZZ
@given(data=st.data())
def test_checkpoint_state(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ckpt") / "last.h5"
    path.write_bytes(data.draw(random_or_truncated(SEED["h5"])))
    clean(lambda: rundir.read_checkpoint_state(path), rundir.RunError)


# --------------------------------------------------------------------------- packed format
@FUZZ
@given(data=st.data())
def test_packed_framing(tmp_path_factory, data):
    raw = data.draw(damaged(SEED["packed"]))
    path = tmp_path_factory.mktemp("tkp") / "model.tkp"
    path.write_bytes(raw)
    clean(lambda: read_header(raw), PackedFormatError)
    clean(lambda: unpack(path), PackedFormatError)


def _json_paths(node, prefix=()) -> list[tuple]:
    paths = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            paths += _json_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            paths += _json_paths(value, (*prefix, i))
    return paths


@FUZZ
@given(data=st.data())
def test_packed_metadata_with_valid_checksums(tmp_path_factory, data):
    """Corrupt metadata / payload behind correct checksums: still a PackedFormatError."""
    raw = SEED["packed"]
    meta, payload = read_header(raw)
    paths = [p for p in _json_paths(meta) if p and p[0] != "model_config"]
    path = data.draw(st.sampled_from(paths))
    node = meta
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = data.draw(_VALUES)
    if data.draw(st.booleans()) and payload:
        buf = bytearray(payload)
        buf[data.draw(st.integers(0, len(buf) - 1))] ^= data.draw(st.integers(1, 255))
        payload = bytes(buf)
    blob = zlib.compress(json.dumps(meta).encode())
    target = tmp_path_factory.mktemp("tkp") / "model.tkp"
    target.write_bytes(packed_mod._header(blob, payload) + blob + payload)
    clean(lambda: unpack(target), PackedFormatError)


# --------------------------------------------------------------------------- TFLite / .npy
@FUZZ
@given(data=st.data())
def test_tflite_flatbuffer(data):
    raw = data.draw(damaged(SEED["tflite"]))
    clean(lambda: read_weight_tensors(raw), ExportError)
    clean(lambda: read_metadata(raw, "keras_ternary"), ExportError)


@FUZZ
@given(data=st.data())
def test_representative_npy(tmp_path_factory, data):
    buffer = tmp_path_factory.mktemp("npy") / "seed.npy"
    np.save(buffer, np.zeros((2, 8, 8, 3), np.float32))
    valid = buffer.read_bytes()
    path = buffer.with_name("calibration.npy")
    path.write_bytes(data.draw(damaged(valid)))
    clean(lambda: load_representative(str(path), (8, 8, 3)), ExportError)


# --------------------------------------------------------------------------- hw_sim
@FUZZ
@given(data=st.data(), suffix=st.sampled_from((".h5", ".keras")))
def test_hw_sim_model_loader(tmp_path_factory, data, suffix):
    valid = SEED[suffix.lstrip(".")]
    strategy = random_or_truncated(valid) if suffix == ".h5" else damaged(valid)
    path = tmp_path_factory.mktemp("hw") / f"model{suffix}"
    path.write_bytes(data.draw(strategy))
    clean(lambda: load_graph(path), HwSimError)


@FUZZ
@given(data=st.data(), suffix=st.sampled_from((".yaml", ".json")))
def test_hw_sim_technology_file(tmp_path_factory, data, suffix):
    text = b"energy_pj: {int8_add: 0.03}\nbuffer: {weight_kib: 64}\n"
    path = tmp_path_factory.mktemp("tech") / f"tech{suffix}"
    path.write_bytes(data.draw(damaged(text, max_random=300)))
    clean(lambda: load_tech(path), HwSimError)
