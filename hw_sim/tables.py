"""Render profile reports as a text table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

from hw_sim.accelerators import COMPONENTS

__all__ = [
    "compare_accelerators",
    "other_precision_note",
    "reports_of",
    "to_csv",
    "to_json",
    "to_table",
]

_CSV_FIELDS = (
    "name",
    "op",
    "type",
    "weights",
    "zero_weights",
    "sparsity",
    "weight_precision",
    "act_precision",
    "macs",
    "executed",
    "skipped",
    "unit",
    "mode",
    "weight_bits_packed",
    "weight_bits_entropy",
    "act_bits_in",
    "act_bits_out",
    "sram_weight_accesses",
    "sram_act_reads",
    "sram_act_writes",
    "dram_reads",
    "dram_writes",
)


def reports_of(result: dict) -> dict[str, dict]:
    """accelerator name -> single-accelerator report, for one or ``all`` results."""
    if "accelerators" in result:
        return result["accelerators"]
    return {result["accelerator"]: result}


def to_json(result: dict) -> str:
    """The result as indented JSON."""
    return json.dumps(result, indent=2, sort_keys=False) + "\n"


def _shape(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


#: Extra CSV columns when the result holds an ``--emulate`` section (per image, per layer).
_EMULATION_CSV = (
    "emulated_kernel",
    "emulated_act_sparsity",
    "emulated_unit",
    "emulated_executed",
    "emulated_compute_pj",
)


def _emulation_cells(em: dict | None) -> tuple[list[str], dict[str, list], list]:
    """Header, per-layer cells and TOTAL-row cells of the emulation columns (none if absent)."""
    if not em:
        return [], {}, []
    cells = {}
    for r in em["layers"]:
        m = r["measured"]
        cells[r["name"]] = [
            r["kernel"],
            "" if r["act_sparsity"] is None else r["act_sparsity"],
            m["unit"],
            m["executed"],
            r["energy_pj_compute"]["measured"],
        ]
    total = ["", "", "", "", em["total"]["energy_pj_compute"]["measured"]]
    return list(_EMULATION_CSV), cells, total


def to_csv(result: dict) -> str:
    """One row per layer and accelerator, then a TOTAL row per accelerator.

    With an ``--emulate`` section, the columns ``emulated_*`` add what the bit-exact run
    measured for each layer (the same for every accelerator; blank for layers it did not run).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    energy_cols = [f"energy_{c}_pj" for c in (*COMPONENTS, "total")]
    base_names = ("fp32", "int8", "binary")
    em_head, em_cells, em_total = _emulation_cells(result.get("emulation"))
    em_blank = [""] * len(em_head)
    writer.writerow(
        ["accelerator", *_CSV_FIELDS[:2], "output_shape", *_CSV_FIELDS[2:], *energy_cols]
        + [f"baseline_{b}_pj" for b in base_names]
        + em_head
    )
    for name, rep in reports_of(result).items():
        for row in rep["layers"]:
            writer.writerow(
                [name, row["name"], row["op"], _shape(row["output_shape"])]
                + [row[f] for f in _CSV_FIELDS[2:]]
                + [row["energy_pj"][c] for c in (*COMPONENTS, "total")]
                + [row["baselines_pj"][b] for b in base_names]
                + em_cells.get(row["name"], em_blank)
            )
        tot = rep["total"]
        blank = {f: "" for f in _CSV_FIELDS}
        blank.update({k: tot[k] for k in _CSV_FIELDS if k in tot and not isinstance(tot[k], dict)})
        writer.writerow(
            [name, "TOTAL", "", ""]
            + [blank[f] for f in _CSV_FIELDS[2:]]
            + [tot["energy_pj"][c] for c in (*COMPONENTS, "total")]
            + [tot["baselines"][b]["energy_pj"]["total"] for b in base_names]
            + em_total
        )
    return buf.getvalue()


def _num(x: float | None) -> str:
    if x is None or x == "":
        return "-"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.1f}"
    return f"{int(x):,}"


def _nj(pj: float) -> str:
    return f"{pj / 1000:,.1f}"


def to_table(result: dict) -> str:
    """A fixed-width per-layer table (energies in nJ) with totals and baseline savings."""
    out = []
    for rep in reports_of(result).values():
        out.append(f"model {rep['model']}  accelerator {rep['title']}  tech {rep['tech']['name']}")
        out.append(other_precision_note(rep["tech"]))
        head = [
            "layer",
            "op",
            "output",
            "weights",
            "sparsity",
            "dense MACs",
            "executed",
            "skipped",
            "unit",
            "W bits",
            *[f"{c} nJ" for c in COMPONENTS],
            "total nJ",
        ]
        rows = []
        for r in rep["layers"]:
            rows.append(
                [
                    r["name"],
                    r["op"],
                    _shape(r["output_shape"]),
                    _num(r["weights"]),
                    "-" if r["sparsity"] is None else f"{100 * r['sparsity']:.1f}%",
                    _num(r["macs"]),
                    _num(r["executed"]),
                    _num(r["skipped"]),
                    r["unit"] or "-",
                    _num(r["weight_bits_packed"]),
                    *[_nj(r["energy_pj"][c]) for c in COMPONENTS],
                    _nj(r["energy_pj"]["total"]),
                ]
            )
        t = rep["total"]
        sparsity = "-" if t["sparsity"] is None else f"{100 * t['sparsity']:.1f}%"
        executed = sum(t["executed"].values())
        skipped = sum(t["skipped"].values())
        rows.append(
            [
                "TOTAL",
                "",
                "",
                _num(t["weights"]),
                sparsity,
                _num(t["macs"]),
                _num(executed),
                _num(skipped),
                "mixed" if len(t["executed"]) > 1 else next(iter(t["executed"]), "-"),
                _num(t["weight_bits_packed"]),
                *[_nj(t["energy_pj"][c]) for c in COMPONENTS],
                _nj(t["energy_pj"]["total"]),
            ]
        )
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
        left = {0, 1, 2, 8}

        def fmt(cells, widths=widths, left=left):
            return "  ".join(
                str(c).ljust(w) if i in left else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        out.append(fmt(head))
        out.append("  ".join("-" * w for w in widths))
        out.extend(fmt(r) for r in rows[:-1])
        out.append("  ".join("-" * w for w in widths))
        out.append(fmt(rows[-1]))
        out.append(
            f"weight memory: {_num(t['weight_bits_packed'])} bits packed, "
            f"{_num(t['weight_bits_entropy'])} bits entropy-coded estimate"
        )
        for base in t["baselines"].values():
            saving = base["saving_x"]
            out.append(
                f"vs {base['title']}: {_nj(base['energy_pj']['total'])} nJ -> "
                f"{'-' if saving is None else f'{saving:.2f}x'} energy saving"
            )
        out.extend(_fallback_notes(rep))
        out.append("")
    comparison = compare_accelerators(result)
    if comparison:
        out.append(comparison)
        out.append("")
    if result.get("emulation"):
        out.append(emulation_table(result["emulation"]))
    return "\n".join(out)


def other_precision_note(tech: dict) -> str:
    """The header line stating the table's ``other_precision`` (see docs/hw_sim.md)."""
    precision = tech.get("other_precision", "float32")
    return (
        f"float-kernel layers, float and int32 tensors: {precision} in every model (accelerators "
        "and baselines alike; --other-precision)"
    )


def _fallback_notes(rep: dict) -> list[str]:
    """Lines naming the layers computed by a fallback rule (the ``mode`` field says which)."""
    notes: dict[str, list[str]] = {}
    for r in rep["layers"]:
        mode = r.get("mode") or ""
        if mode.startswith("fallback: "):
            notes.setdefault(mode.removeprefix("fallback: "), []).append(r["name"])
    n_weight_layers = sum(bool(r["weights"]) for r in rep["layers"])
    return [
        f"note: {len(names)} of {n_weight_layers} weight layers ({_names(names)}) use a "
        f"fallback rule: {rule}"
        + (
            "; their activations are not ternary/binary, so there are no bit-planes to "
            "pop-count and they cost what zeroskip's add/subtract rule costs"
            if "add/sub" in rule
            else ""
        )
        for rule, names in notes.items()
    ]


def _names(names: list[str], shown: int = 3) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f", … {more} more" if more > 0 else "")


def compare_accelerators(result: dict) -> str:
    """One line comparing total energies of several accelerators ('' for a single one).

    Each accelerator's total relative to the lowest, and the saving against the INT8 MAC
    baseline (the same for all of them).
    """
    reports = reports_of(result)
    if len(reports) < 2:
        return ""
    totals = {name: rep["total"]["energy_pj"]["total"] for name, rep in reports.items()}
    best = min(totals, key=totals.get)
    int8 = next(iter(reports.values()))["total"]["baselines"].get("int8")
    parts = []
    for name, pj in totals.items():
        rel = "best" if name == best else f"{pj / totals[best]:.2f}x best"
        vs8 = ""
        if int8 and pj > 0:
            vs8 = f", {int8['energy_pj']['total'] / pj:.2f}x less than INT8 MACs"
        parts.append(f"{name} {_nj(pj)} nJ ({rel}{vs8})")
    return "accelerators compared (total energy): " + "; ".join(parts)


def _layers(n: int) -> str:
    return f"{n} layer" + ("" if n == 1 else "s")


def _teacher_forced_line(forced: dict) -> str:
    """One line on the teacher-forced comparison (``compare_with_keras``)."""
    layers = forced["layers"]
    integer = {n: s for n, s in layers.items() if s["kind"] == "integer"}
    floats = [s for s in layers.values() if s["kind"] == "float"]
    parts = []
    if integer:
        wrong = {n: s["mismatches"] for n, s in integer.items() if s["mismatches"]}
        parts.append(
            f"integer accumulators exact ({_layers(len(integer))})"
            if not wrong
            else "integer accumulators MISMATCH ("
            + ", ".join(f"{n}: {m} of {integer[n]['values']}" for n, m in wrong.items())
            + ")"
        )
    if floats:
        rel = max(s["max_abs_diff"] / max(1.0, s["max_abs"]) for s in floats)
        verdict = "within rounding" if forced["float_close"] else "MISMATCH"
        parts.append(f"float layers {verdict} (max rel. diff {rel:.2g}, {_layers(len(floats))})")
    quantized = sum(s.get("quantizer_values", 0) for s in layers.values())
    if quantized:
        differ = forced["quantizer_mismatches"]
        at = forced["quantizer_at_threshold"]
        parts.append(
            f"input quantizers {'as' if not differ else 'MISMATCH with'} TensorFlow's "
            f"({differ} of {quantized:,} values differ"
            + (f", {at} more at a threshold" if at else "")
            + ")"
        )
    if forced["skipped"]:
        parts.append("not compared: " + ", ".join(forced["skipped"]))
    return "agreement with Keras (teacher-forced, each layer fed Keras' input): " + "; ".join(
        parts or ["no layer"]
    )


def emulation_table(em: dict) -> str:
    """The ``--emulate`` section: agreement, accuracy, activation sparsity, measured counts."""
    out = [
        f"emulation: {em['images']} images from {em.get('source', '?')}, activations "
        f"{em['act_mode']}, backend {em['backend']} (counts and energy per image)"
    ]
    agreement = em.get("agreement")
    if agreement:
        exact = agreement["accumulators_exact"] if agreement["accumulators"] else None
        out.append(
            f"agreement with Keras (free-running): top-1 {100 * agreement['top1_agreement']:.2f}%, "
            f"max |logit diff| {agreement['max_abs_logit_diff']:.3g}, integer accumulators "
            + ("n/a" if exact is None else ("exact" if exact else "MISMATCH"))
        )
        if agreement.get("teacher_forced"):
            out.append(_teacher_forced_line(agreement["teacher_forced"]))
    accuracy = em.get("accuracy")
    if accuracy:
        out.append("accuracy: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in accuracy.items()))
    head = [
        "layer",
        "kernel",
        "act sparsity",
        "executed",
        "static",
        "analytic",
        "unit",
        "analytic nJ",
        "measured nJ",
    ]
    rows = []
    for r in em["layers"]:
        m = r["measured"]
        rows.append(
            [
                r["name"],
                r["kernel"],
                "-" if r["act_sparsity"] is None else f"{100 * r['act_sparsity']:.1f}%",
                _num(m["executed"]),
                _num(m.get("executed_static")),
                _num(r["analytic"]["executed"]),
                m["unit"],
                _nj(r["energy_pj_compute"]["analytic"]),
                _nj(r["energy_pj_compute"]["measured"]),
            ]
        )
    t = em["total"]["energy_pj_compute"]
    rows.append(["TOTAL", "", "", "", "", "", "", _nj(t["analytic"]), _nj(t["measured"])])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    left = {0, 1, 6}

    def fmt(cells):
        return "  ".join(
            str(c).ljust(w) if i in left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out += [fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows[:-1])]
    out += ["  ".join("-" * w for w in widths), fmt(rows[-1]), ""]
    return "\n".join(out)
