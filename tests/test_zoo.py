"""hw_sim on models nobody here wrote (tests/zoo.py, issue #15).

Each zoo model is saved as ``.h5`` and ``.keras`` and loaded through hw_sim's Python API;
its MACs and kernel weights per layer must equal an independent count from the Keras layer
configs (tests/independent_count.py). Each model that loads is emulated on random images
with float activations and compared with Keras: teacher-forced (each layer fed Keras' input
for it) the integer accumulators exactly and float layers within rounding; free-running,
top-1 on every image whose Keras top-2 logits are not a near tie. What hw_sim does not
support yet is a strict expected failure, so each mark must go when its support lands; a
model hw_sim refuses by design (``refused``) must fail with that one-line error.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from hw_sim import load_graph, profile_model
from hw_sim.emulate import Emulator
from hw_sim.emulation_check import compare_with_keras
from hw_sim.errors import HwSimError
from keras_ternary.layer_table import layer_of_earlier_kernel_op
from tests.independent_count import count_model
from tests.zoo import HAVE_LARQ_ZOO, ZOO, ZooModel

NO_LARQ_ZOO = pytest.mark.skipif(
    not HAVE_LARQ_ZOO,
    reason="larq_zoo not installed (pip install --no-deps larq-zoo zookeeper typeguard, "
    "as .ci/run does)",
)

_BUILT: dict[str, tuple] = {}
_GRAPHS: dict[tuple[str, str], object] = {}


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    yield tmp_path_factory.mktemp("zoo")
    _BUILT.clear()
    _GRAPHS.clear()


def _built(entry: ZooModel, folder) -> tuple:
    """(model, oracle, {format: path}): built and saved once per test module."""
    if entry.name not in _BUILT:
        model = entry.build()
        paths = {fmt: str(folder / f"{entry.name}{fmt}") for fmt in entry.formats}
        for path in paths.values():
            model.save(path)
        _BUILT[entry.name] = (model, count_model(model), paths)
    return _BUILT[entry.name]


def _graph(entry: ZooModel, fmt: str, folder):
    """hw_sim's graph of the saved model, loaded once (a load error is raised again)."""
    key = entry.name, fmt
    if key not in _GRAPHS:
        try:
            _GRAPHS[key] = load_graph(_built(entry, folder)[2][fmt])
        except Exception as exc:  # noqa: BLE001 - kept to be raised by the next test too
            _GRAPHS[key] = exc
    if isinstance(_GRAPHS[key], Exception):
        raise _GRAPHS[key]
    return _GRAPHS[key]


def _marks(entry: ZooModel, reason: str | None) -> list:
    marks = [NO_LARQ_ZOO] if entry.needs_larq_zoo else []
    if reason:
        marks.append(pytest.mark.xfail(strict=True, reason=reason))
    return marks


COUNT_CASES = [
    pytest.param(entry, fmt, id=f"{name}{fmt}", marks=_marks(entry, entry.missing.get(fmt)))
    for name, entry in ZOO.items()
    if not entry.refused
    for fmt in entry.formats
]
REFUSED_CASES = [
    pytest.param(entry, fmt, id=f"{name}{fmt}", marks=_marks(entry, None))
    for name, entry in ZOO.items()
    if entry.refused
    for fmt in entry.formats
]
EMULATION_CASES = [
    pytest.param(
        entry,
        id=name,
        marks=_marks(entry, entry.missing.get(entry.formats[0]) or entry.emulation_missing),
    )
    for name, entry in ZOO.items()
    if not entry.refused
]


def _rows_per_keras_layer(rows: list[dict]) -> dict[str, list[dict]]:
    """Report rows per Keras layer: a separable layer's ``<name>/depthwise`` op is its own."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        name = row["name"]
        grouped.setdefault(layer_of_earlier_kernel_op(name) or name, []).append(row)
    return grouped


def _per_keras_layer(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """(MACs, weights) per Keras layer (:func:`_rows_per_keras_layer`)."""
    return {
        name: (sum(r["macs"] for r in ops), sum(r["weights"] for r in ops))
        for name, ops in _rows_per_keras_layer(rows).items()
    }


@pytest.mark.parametrize(("entry", "fmt"), COUNT_CASES)
def test_zoo_counts_equal_independent_count(entry: ZooModel, fmt: str, zoo_dir):
    _, oracle, _ = _built(entry, zoo_dir)
    report = profile_model(_graph(entry, fmt, zoo_dir), accelerator="bitwise")
    counted = _per_keras_layer(report["layers"])
    assert {n: counted.get(n) for n in oracle} == {
        n: (c.macs, c.kernel_weights) for n, c in oracle.items()
    }
    assert report["total"]["macs"] == sum(c.macs for c in oracle.values()) > 0


@pytest.mark.parametrize(("entry", "fmt"), REFUSED_CASES)
def test_zoo_refusals_are_one_line(entry: ZooModel, fmt: str, zoo_dir):
    with pytest.raises(HwSimError, match=rf"^[^\n]*{entry.refused}[^\n]*$"):
        _graph(entry, fmt, zoo_dir)


def _decisive(logits: np.ndarray) -> np.ndarray:
    """Images whose top two logits differ by more than 1%: a sign flip upstream cannot swap them."""
    top2 = np.sort(logits, axis=-1)[:, -2:]
    return top2[:, 1] - top2[:, 0] > 1e-2 * np.maximum(1.0, np.abs(top2[:, 1]))


def _check_emulation(model, emulator: Emulator) -> None:
    """Teacher-forced, every compute layer agrees with Keras (integer accumulators exactly);
    free-running, top-1 equals Keras on every decisive image.

    Free-running, the emulator runs on its own activations: where a float value feeding a
    sign or ternary quantizer lies within float rounding of its threshold, TensorFlow's
    kernels (which differ between CPUs, and with grappler's fusions) and numpy can quantize
    it differently, and the flip propagates downstream; so its accumulators are reported,
    not asserted. Teacher-forced, each layer gets the integers TensorFlow's quantizer made
    of Keras' own input, which leaves no room for rounding.
    """
    x = np.random.default_rng(0).normal(size=(4, *model.input_shape[1:])).astype(np.float32)
    agreement, result = compare_with_keras(model, emulator, x)
    forced = agreement["teacher_forced"]
    layers = forced["layers"]
    assert layers, "no layer was compared teacher-forced"
    assert [n for n, s in layers.items() if not s.get("exact", s.get("close"))] == []
    assert sum(s.get("mismatches", 0) for s in layers.values()) == 0
    assert forced["quantizer_mismatches"] == 0
    assert forced["agrees"]
    keras_logits = agreement["keras_logits"]
    decisive = _decisive(keras_logits)
    assert decisive.any()
    np.testing.assert_array_equal(
        result.logits.argmax(-1)[decisive], keras_logits.argmax(-1)[decisive]
    )


@pytest.mark.parametrize("entry", EMULATION_CASES)
def test_zoo_emulation_agrees_with_keras(entry: ZooModel, zoo_dir):
    model, _, _ = _built(entry, zoo_dir)
    graph = _graph(entry, entry.formats[0], zoo_dir)
    _check_emulation(model, Emulator(graph, act_mode="float"))
    if not entry.needs_larq_zoo:  # small models: float-input ternary layers are float above
        x = np.random.default_rng(1).normal(size=(4, *model.input_shape[1:])).astype(np.float32)
        forced = compare_with_keras(model, Emulator(graph, act_mode="int8"), x)[0]
        layers = forced["teacher_forced"]["layers"]
        quantized = [op.name for op in graph.compute_ops if op.is_quantized]
        integer = [n for n, s in layers.items() if s["kind"] == "integer"]
        assert set(integer) == set(quantized) - set(forced["teacher_forced"]["skipped"])
        assert forced["teacher_forced"]["agrees"], layers


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("conv_inputs", "quant_conv2d_1"),  # binary x binary popcount
        ("conv_inputs", "quant_conv2d_3"),  # float kernel, binary input
        ("mlp", "quant_dense"),  # float input, ternary kernel
        ("depthwise", "quant_depthwise_conv2d"),  # grouped popcount
        ("separable", "quant_separable_conv2d/depthwise"),  # compared with its 1x1 op
    ],
)
def test_zoo_emulation_check_fails_on_one_flipped_weight(name: str, layer: str, zoo_dir):
    """A kernel with one weight of one layer negated (integer and float layers) fails the
    check above, and teacher-forced the mismatch stays in that layer."""
    entry = ZOO[name]
    model, _, _ = _built(entry, zoo_dir)
    graph = copy.deepcopy(_graph(entry, entry.formats[0], zoo_dir))
    weights = graph.op(layer).weights
    index = tuple(np.argwhere(weights != 0)[0])
    weights[index] = -weights[index]
    emulator = Emulator(graph, act_mode="float")
    with pytest.raises(AssertionError):
        _check_emulation(model, emulator)
    x = np.random.default_rng(0).normal(size=(4, *model.input_shape[1:])).astype(np.float32)
    forced = compare_with_keras(model, emulator, x)[0]["teacher_forced"]
    wrong = [n for n, s in forced["layers"].items() if not s.get("exact", s.get("close"))]
    assert wrong == [layer_of_earlier_kernel_op(layer) or layer]
