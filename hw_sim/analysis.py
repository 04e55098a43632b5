"""Profile a network: counts per layer, energy = actions x energy per action, baselines.

:func:`profile_model` is the Python API behind ``python -m hw_sim``; it returns the same
data the CLI prints as JSON.
"""

from __future__ import annotations

import os

from hw_sim.accelerators import ACCELERATORS, BASELINES, COMPONENTS, CountingModel
from hw_sim.accelerators.common import LayerCount, count_aux
from hw_sim.errors import HwSimError
from hw_sim.geometry import dense_macs
from hw_sim.ir import Graph
from hw_sim.memory import consumer_map, fused_tensors, layer_memory, tensor_storage_bits
from hw_sim.technology import Tech, load_tech

__all__ = ["analyze", "energy_pj", "profile_model", "tech_summary", "to_graph"]


def energy_pj(
    actions: dict[str, dict[str, float]], tech: Tech, model: CountingModel | None = None
) -> dict[str, float]:
    """Energy by component: Σ_action count(action) · pJ(action), plus ``total``.

    ``model`` prices the actions that depend on its parameters (e.g. ``cim``'s ADC).
    """
    price = tech.action_pj if model is None else lambda action: model.action_pj(action, tech)
    out = {c: 0.0 for c in COMPONENTS}
    for component, bucket in actions.items():
        out[component] += sum(n * price(a) for a, n in bucket.items())
    out["total"] = sum(out[c] for c in COMPONENTS)
    return out


def _plain(value):
    """numpy scalars -> Python numbers, for JSON."""
    if hasattr(value, "item"):
        return value.item()
    return value


def analyze(graph: Graph, model: CountingModel, tech: Tech) -> dict:
    """Count every op of ``graph`` under ``model``; return per-layer rows and totals."""
    model = model.for_tech(tech)  # its other_precision (float layers and tensors)
    readers = consumer_map(graph)
    storage = tensor_storage_bits(graph, model, readers)
    fused = fused_tensors(graph, readers, tech.buffer.fuse_elementwise)
    layers = []
    for op in graph.ops:
        lc = model.count_compute(op, graph, tech) if op.is_compute else LayerCount(mode=op.kind)
        count_aux(op, graph, lc, model)
        mem = layer_memory(op, graph, lc, storage, readers, model, tech, fused)
        n_w, n_zero = op.n_weights, op.n_zero_weights
        layers.append(
            {
                "name": op.name,
                "op": op.kind,
                "type": op.source_type,
                "output_shape": list(op.output_shape),
                "weights": n_w,
                "zero_weights": n_zero,
                "sparsity": n_zero / n_w if n_w else None,
                "weight_precision": op.weight_precision,
                "act_precision": op.act_precision,
                "macs": dense_macs(op),
                "executed": _plain(lc.executed),
                "skipped": _plain(lc.skipped),
                "unit": lc.unit,
                "mode": lc.mode,
                **{k: _plain(v) for k, v in mem.items()},
                "actions": lc.actions,
                "energy_pj": energy_pj(lc.actions, tech, model),
                "details": {k: _plain(v) for k, v in lc.details.items()},
            }
        )
    return {"layers": layers, "total": _totals(layers)}


def _totals(layers: list[dict]) -> dict:
    total = {
        key: sum(row[key] for row in layers)
        for key in (
            "macs",
            "weights",
            "zero_weights",
            "weight_bits_packed",
            "weight_bits_entropy",
            "sram_weight_accesses",
            "sram_act_reads",
            "sram_act_writes",
            "dram_reads",
            "dram_writes",
        )
    }
    total["sparsity"] = total["zero_weights"] / total["weights"] if total["weights"] else None
    executed: dict[str, float] = {}
    skipped: dict[str, float] = {}
    for row in layers:
        if row["unit"]:
            executed[row["unit"]] = executed.get(row["unit"], 0) + row["executed"]
            skipped[row["unit"]] = skipped.get(row["unit"], 0) + row["skipped"]
    total["executed"], total["skipped"] = executed, skipped
    total["energy_pj"] = {
        c: sum(row["energy_pj"][c] for row in layers) for c in (*COMPONENTS, "total")
    }
    return total


def to_graph(model, safe_mode: bool = True) -> Graph:
    """A :class:`Graph` from a Graph, a model file path, or an in-memory tf.keras model.

    ``safe_mode=False`` allows a model file holding Python code (a ``Lambda`` layer).
    """
    if isinstance(model, Graph):
        return model
    if isinstance(model, str | os.PathLike):
        from hw_sim.loaders import load_graph

        return load_graph(model, safe_mode=safe_mode)
    if hasattr(model, "layers") and hasattr(model, "get_config"):
        from hw_sim.loaders.keras import from_keras_model

        return from_keras_model(model)
    raise HwSimError(f"cannot profile a {type(model).__name__}: give a path, Graph or Keras model")


def tech_summary(tech: Tech) -> dict:
    """The table's summary in a report, with every accelerator's own parameters."""
    out = tech.table()
    for model in ACCELERATORS.values():
        out.update(model.tech_summary(tech))
    return out


def _with_baselines(graph: Graph, report: dict, tech: Tech, baselines: dict[str, dict]) -> dict:
    for i, row in enumerate(report["layers"]):
        row["baselines_pj"] = {
            name: base["layers"][i]["energy_pj"]["total"] for name, base in baselines.items()
        }
    mine = report["total"]["energy_pj"]["total"]
    report["total"]["baselines"] = {
        name: {
            "title": BASELINES[name].title,
            "energy_pj": base["total"]["energy_pj"],
            "saving_x": base["total"]["energy_pj"]["total"] / mine if mine else None,
        }
        for name, base in baselines.items()
    }
    return report


def profile_model(model, accelerator: str = "bitwise", tech=None) -> dict:
    """Profile ``model`` (path, :class:`Graph` or tf.keras model) on one or all accelerators.

    Args:
        model: a ``.h5`` / ``.keras`` path (or any registered suffix), a Graph or a model.
        accelerator: a name of :data:`hw_sim.accelerators.ACCELERATORS` (``"bitwise"``,
            ``"zeroskip"``, ``"cim"``) or ``"all"``.
        tech: technology override: a YAML/JSON path, a dict, a :class:`Tech`, or None.

    Returns:
        For one accelerator ``{"model", "source", "accelerator", "title", "tech", "layers",
        "total"}`` where each layer has ``name, op, weights, zero_weights, macs, executed,
        skipped, energy_pj{compute, aux, sram, dram, total}, baselines_pj, ...`` and
        ``total`` has ``macs``, ``energy_pj`` and ``baselines{fp32,int8,binary}`` with
        ``saving_x`` (baseline energy / accelerator energy). For ``"all"``:
        ``{"model", "source", "tech", "accelerators": {name: report}}``.
    """
    names = list(ACCELERATORS) if accelerator == "all" else [accelerator]
    for name in names:
        if name not in ACCELERATORS:
            raise HwSimError(
                f"unknown accelerator {name!r}; choose from {', '.join(ACCELERATORS)} or all"
            )
    tech = load_tech(tech)
    summary = tech_summary(tech)  # checks every accelerator's section before counting
    graph = to_graph(model)
    baselines = {name: analyze(graph, m, tech) for name, m in BASELINES.items()}
    reports = {}
    for name in names:
        report = analyze(graph, ACCELERATORS[name], tech)
        reports[name] = {
            "model": graph.name,
            "source": graph.source,
            "accelerator": name,
            "title": ACCELERATORS[name].title,
            "tech": summary,
            **_with_baselines(graph, report, tech, baselines),
        }
    if accelerator != "all":
        return reports[accelerator]
    return {
        "model": graph.name,
        "source": graph.source,
        "tech": summary,
        "accelerators": reports,
    }
