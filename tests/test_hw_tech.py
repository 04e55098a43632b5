"""Technology tables: data with sources, overrides change energy exactly as expected."""

import json

import numpy as np
import pytest
import yaml

from hw_sim import HwSimError
from hw_sim.accelerators import ACCELERATORS
from hw_sim.analysis import profile_model
from hw_sim.ir import Graph, Op, Quantizer
from hw_sim.technology import DEFAULT_TECH, load_tech


def small_graph():
    rng = np.random.default_rng(3)
    w = rng.integers(-1, 2, size=(3, 3, 2, 4)).astype(np.int8)
    ops = [
        Op("x", "input", [], (5, 5, 2)),
        Op(
            "conv",
            "conv2d",
            ["x"],
            (5, 5, 4),
            act_precision="ternary",
            weights=w,
            weight_precision="ternary",
            input_quantizer=Quantizer("ternary", delta=0.1),
            padding=(1, 1, 1, 1),
        ),
        Op(
            "bn",
            "batchnorm",
            ["conv"],
            (5, 5, 4),
            gamma=np.ones(4),
            beta=np.zeros(4),
            moving_mean=np.zeros(4),
            moving_variance=np.ones(4),
        ),
        Op("act", "activation", ["bn"], (5, 5, 4), activation="hard_tanh"),
        Op("pool", "global_avgpool", ["act"], (4,)),
    ]
    return Graph("small", ops, ["pool"])


def action_totals(report):
    out = {}
    for row in report["layers"]:
        for bucket in row["actions"].values():
            for action, n in bucket.items():
                out[action] = out.get(action, 0) + n
    return out


def test_default_table_has_horowitz_figures_and_a_source_for_every_entry():
    tech = load_tech()
    expected = {
        "int8_add": 0.03,
        "int32_add": 0.1,
        "int8_mult": 0.2,
        "int32_mult": 3.1,
        "fp32_add": 0.9,
        "fp32_mult": 3.7,
    }
    for action, pj in expected.items():
        assert tech.energy_pj[action] == pj and "[H14]" in tech.sources[action]
    assert all(tech.sources[a] for a in tech.energy_pj)
    assert [pj for _, pj in tech.sram_levels] == [10, 20, 100]
    assert 1300 <= tech.dram_pj <= 2600
    raw = yaml.safe_load(DEFAULT_TECH.read_text())
    assert all("source" in v for v in raw["energy_pj"].values())


@pytest.mark.parametrize("accelerator", ["bitwise", "zeroskip", "cim"])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_override_changes_energy_exactly(tmp_path, accelerator, fmt):
    g = small_graph()
    base = profile_model(g, accelerator)
    counts = action_totals(base)
    override = {
        "energy_pj": {"int32_add": 0.5, "fp32_add": {"value": 2.0, "source": "test"}},
        "dram_access_64b_pj": {"value": 1000},
    }
    path = tmp_path / f"t.{fmt}"
    path.write_text(json.dumps(override) if fmt == "json" else yaml.safe_dump(override))
    new = profile_model(g, accelerator, tech=str(path))
    delta = (
        counts.get("int32_add", 0) * (0.5 - 0.1)
        + counts.get("fp32_add", 0) * (2.0 - 0.9)
        + counts.get("dram", 0) * (1000 - 1950)
    )
    assert counts.get("int32_add", 0) > 0 and counts["fp32_add"] > 0 and counts["dram"] > 0
    assert new["total"]["energy_pj"]["total"] - base["total"]["energy_pj"]["total"] == (
        pytest.approx(delta)
    )
    assert action_totals(new) == counts  # counts never depend on energies
    assert new["tech"]["sources"]["fp32_add"] == "test"
    assert new["tech"]["sources"]["int32_add"] == "override"


def test_buffer_override_selects_sram_level():
    g = small_graph()
    base = profile_model(g, "zeroskip")
    small = profile_model(g, "zeroskip", tech={"buffer": {"act_sram_kib": 8}})
    act = sum(r["sram_act_reads"] + r["sram_act_writes"] for r in base["layers"])
    diff = base["total"]["energy_pj"]["sram"] - small["total"]["energy_pj"]["sram"]
    assert diff == pytest.approx(act * (100 - 10))


@pytest.mark.parametrize(
    "override, message",
    [
        ({"energy_pj": {"fp64_add": 1.0}}, "unknown energy entry"),
        ({"bufer": {}}, "unknown key"),
        ({"energy_pj": {"fp32_add": "cheap"}}, "finite number"),
        ({"energy_pj": {"fp32_add": -1}}, ">= 0"),
        ({"buffer": {"weight_storage": "zip"}}, "weight_storage"),
        ({"accelerators": {"cim": {"block_rows": 7}}}, "block_rows"),
        ({"accelerators": {"zeroskip": {"activation_sparsity": 1.5}}}, "activation_sparsity"),
    ],
)
def test_bad_overrides_raise(override, message):
    """Caught before counting; an accelerator's own section is checked by its model."""
    with pytest.raises(HwSimError, match=message):
        profile_model(small_graph(), "all", tech=override)


def test_each_accelerator_reads_its_own_section():
    tech = load_tech({"accelerators": {"cim": {"adc_bits": 6}}})
    assert ACCELERATORS["cim"].config(tech).adc_bits == 6
    assert ACCELERATORS["cim"].action_pj("adc_conversion", tech) == pytest.approx(0.01 * 2**6)
    with pytest.raises(HwSimError, match="no energy for 'adc_conversion'"):
        tech.action_pj("adc_conversion")  # the table alone knows no accelerator
    summary = profile_model(small_graph(), "cim", tech=tech)["tech"]
    assert summary["cim"]["adc_bits"] == 6 and summary["activation_sparsity"] == 0.0


def test_accelerator_choices_come_from_the_registry():
    import argparse

    from hw_sim.__main__ import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    (action,) = [a for a in parser._actions if a.dest == "accelerator"]
    assert tuple(action.choices) == (*ACCELERATORS, "all")


def test_bad_files_raise(tmp_path):
    with pytest.raises(HwSimError, match="not found"):
        load_tech(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("energy_pj: [unclosed\n")
    with pytest.raises(HwSimError, match="cannot parse"):
        load_tech(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(HwSimError, match="cannot parse"):
        load_tech(bad_json)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(HwSimError, match="mapping"):
        load_tech(scalar)
