"""Sweep expansion and skipping; the report from fake run directories."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from keras_ternary import cli
from keras_ternary.config import ConfigError, TrainConfig, config_from_dict, dump_yaml
from keras_ternary.report import PAPER_TABLE1, collect_runs, epoch_table, load_run, write_report
from keras_ternary.rundir import atomic_write_json, atomic_write_text, format_history
from keras_ternary.sweep import SweepRun, expand_sweep, load_sweep, run_sweep
from keras_ternary.training import RunResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- sweep
def test_expand_grid_times_variants(tmp_path):
    spec = {
        "sweep": "demo",
        "base": {"epochs": 3, "model": {"inflation": 1}},
        "set": {"ternary.delta0": 0.05},
        "runs": [{"name": "bin", "model.quantizer": "binary"}, {"name": "log"}],
        "grid": {"seed": [0, 1], "ternary.delta_max": [0.5, 0.9]},
    }
    name, runs = expand_sweep(spec, out_root=tmp_path, overrides=["batch_size=32"])
    assert name == "demo" and len(runs) == 8
    assert runs[0].name == "bin_seed=0_delta_max=0.5"
    assert runs[-1].name == "log_seed=1_delta_max=0.9"
    last = runs[-1].config
    assert (last.seed, last.ternary.delta_max, last.ternary.delta0) == (1, 0.9, 0.05)
    assert (last.epochs, last.batch_size, last.model.inflation) == (3, 32, 1)
    assert runs[0].config.model.quantizer == "binary"
    assert last.run_dir == tmp_path / "demo" / "log_seed=1_delta_max=0.9"


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"grid": {"seed": []}}, "non-empty lists"),
        ({"grid": {"seed": [0]}, "colour": 1}, "unknown sweep key colour"),
        ({"runs": [{"name": "a"}, {"name": "a"}]}, "two runs named a"),
        ({"runs": [{"name": "bad", "ternary.regime": "cubic"}]}, "run bad: .*ternary.regime"),
        ({"runs": "x"}, "list of mappings"),
    ],
)
def test_bad_sweeps_are_rejected_before_running(spec, message):
    with pytest.raises(ConfigError, match=message):
        expand_sweep(spec)


def test_shipped_sweeps_expand():
    assert len(load_sweep("paper/table1")[1]) == 5
    assert len(load_sweep("paper/fig4_5")[1]) == 108
    name, runs = load_sweep("reduced/reproduce", "out")
    assert name == "reduced"
    assert [r.name for r in runs] == ["log", "fixed", "binary", "float", "linear"]
    assert all(r.config.model.inflation == 1 and r.config.epochs == 20 for r in runs)
    assert runs[1].config.ternary.regime == "fixed" and runs[0].config.delta_time_scale == 1


def _finish_fake(config: TrainConfig) -> None:
    run_dir = config.run_dir
    atomic_write_text(run_dir / "config.yaml", dump_yaml(config))
    atomic_write_json(run_dir / "summary.json", {"status": "finished"})


def test_sweep_skips_finished_resumes_partial_and_survives_failures(tmp_path):
    _, runs = expand_sweep(
        {"runs": [{"name": n} for n in ("done", "ok", "broken", "later")]}, out_root=tmp_path
    )
    _finish_fake(runs[0].config)
    calls = []

    def fake_train(config, *, resume, time_limit, verbose, log):
        calls.append((config.name, resume))
        if config.name == "broken":
            raise RuntimeError("disk full")
        _finish_fake(config)
        return RunResult(config.run_dir, "finished", config.epochs, {})

    messages: list[str] = []
    result = run_sweep(runs, train_fn=fake_train, log=messages.append)
    assert calls == [("ok", True), ("broken", True), ("later", True)]
    assert result.skipped == ["done"] and result.finished == ["ok", "later"]
    assert result.failed == ["broken"] and not result.complete
    assert any("disk full" in m for m in messages)

    calls.clear()  # the same sweep again: only the failed run is retried
    result = run_sweep(runs, train_fn=fake_train, log=messages.append)
    assert calls == [("broken", True)] and result.skipped == ["done", "ok", "later"]

    calls.clear()  # an exhausted time budget leaves runs pending instead of starting them
    fresh = [SweepRun("p", config_from_dict({"name": "p", "out_dir": str(tmp_path / "p")}))]
    result = run_sweep(fresh, train_fn=fake_train, time_limit=0.0, log=messages.append)
    assert result.pending == ["p"] and not calls


def test_sweep_cli_lists_runs_and_skips_finished(tmp_path, capsys, monkeypatch):
    import keras_ternary.training as training

    trained = []

    def fake_train(config, **kwargs):
        trained.append(config.name)
        _finish_fake(config)
        return RunResult(config.run_dir, "finished", config.epochs, {})

    monkeypatch.setattr(training, "train", fake_train)
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(
        "sweep: tiny\nbase: {epochs: 1, model: {inflation: 1}}\n"
        "runs: [{name: float, model.quantizer: float}, {name: log}]\n"
    )
    argv = ["sweep", str(sweep), "--out-root", str(tmp_path / "runs"), "--data-dir", "/d"]
    assert cli.main([*argv, "--list"]) == 0
    assert [ln.split()[0] for ln in capsys.readouterr().out.splitlines()] == ["new", "new"]
    assert cli.main([*argv, "--only", "log"]) == 0 and trained == ["log"]
    assert cli.main(argv) == 0 and trained == ["log", "float"]
    assert "finished, skipped" in capsys.readouterr().out
    stored = (tmp_path / "runs" / "tiny" / "float" / "config.yaml").read_text()
    assert "dir: /d" in stored


# --------------------------------------------------------------------------- report
def fake_run(
    root: Path,
    name: str,
    overrides: dict,
    best: float,
    sparsity: float | None,
    entropy: float | None,
    epochs: int = 6,
    seed: int = 0,
    snapshots: bool = False,
):
    """A finished run directory with a plausible history, summary and optional snapshots."""
    values = {
        "name": name,
        "epochs": epochs,
        "paper_epochs": 10 * epochs,
        "seed": seed,
        "out_dir": str(root / name),
        "snapshot_epochs": [100],
    }
    for key, value in overrides.items():
        section, _, leaf = key.rpartition(".")
        (values.setdefault(section, {}) if section else values)[leaf] = value
    config = config_from_dict(values)
    run_dir = config.run_dir
    atomic_write_text(run_dir / "config.yaml", dump_yaml(config))
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    rows = []
    for e in range(1, epochs + 1):
        acc = best / 100 - 0.02 * (epochs - e) / epochs if e != epochs - 1 else best / 100
        rows.append(
            {
                "epoch": e,
                "paper_epoch": 10 * e,
                "loss": 1.0 / e,
                "accuracy": acc,
                "val_loss": 1.1 / e,
                "val_accuracy": acc - 0.001 * rng.random() * (e != epochs - 1),
                "lr": 5e-3,
                "delta": 0.1 + 0.01 * e if sparsity is not None else None,
                "sparsity": None if sparsity is None else sparsity / 100 * e / epochs,
                "entropy": None if entropy is None else entropy,
            }
        )
    atomic_write_text(run_dir / "history.csv", format_history(rows))
    q = overrides.get("model.quantizer", "ternary")
    atomic_write_json(
        run_dir / "summary.json",
        {
            "best_val_accuracy": best / 100,
            "best_epoch": epochs - 1,
            "final_sparsity": 0.0 if sparsity is None else sparsity / 100,
            "final_entropy": entropy,
            "quantizer": q,
        },
    )
    if snapshots:
        counts = np.histogram(rng.normal(0, 0.2, 5000).clip(-1, 1), 101, (-1, 1))
        total = {"sparsity": sparsity / 100, "histogram": [counts[0].tolist(), counts[1].tolist()]}
        atomic_write_json(
            run_dir / "snapshots" / "epoch_0006.json",
            {"epoch": 6, "paper_epoch": 60, "delta": 0.3, "stats": {"total": total, "layers": []}},
        )
    return run_dir


@pytest.fixture()
def fake_runs(tmp_path):
    root = tmp_path / "runs"
    fixed = {"ternary.regime": "fixed", "ternary.delta0": 0.1}
    for seed, (acc, sp) in enumerate(
        zip(PAPER_TABLE1["accuracy"], PAPER_TABLE1["sparsity"], strict=True)
    ):
        fake_run(
            root / "table1",
            f"seed={seed}",
            {**fixed, "model.inflation": 5},
            acc,
            sp,
            1.4,
            seed=seed,
            snapshots=seed == 0,
        )
    for d0, acc in ((0.001, 90.5), (0.01, 91.0), (0.3, 80.0)):
        fake_run(
            root / "fig2",
            f"d0={d0}",
            {"ternary.regime": "fixed", "ternary.delta0": d0, "model.inflation": 5},
            acc,
            20 + 100 * d0,
            1.5,
        )
    for regime, acc, sp, ent in (
        ("linear", 92.3, 84.3, 0.78),
        ("square", 92.0, 88.0, 0.65),
        ("exp", 88.0, 95.0, 0.3),
        ("log", 93.3, 89.8, 0.57),
    ):
        for seed in (0, 1):
            fake_run(
                root / "fig3",
                f"{regime}-{seed}",
                {"ternary.regime": regime, "model.inflation": 5},
                acc + seed * 0.1,
                sp,
                ent,
                seed=seed,
                snapshots=regime == "log",
            )
    fake_run(
        root / "fig3",
        "log-df0.7",
        {"ternary.regime": "log", "ternary.delta_max": 0.7, "model.inflation": 5},
        93.0,
        80.0,
        0.7,
    )
    fake_run(
        root / "t2", "float", {"model.quantizer": "float", "model.inflation": 5}, 93.6, None, None
    )
    fake_run(
        root / "t2", "binary", {"model.quantizer": "binary", "model.inflation": 5}, 91.2, 0.0, 1.0
    )
    # an unfinished run is ignored unless asked for
    partial = fake_run(root / "t2", "partial", {"model.quantizer": "float"}, 50.0, None, None)
    (partial / "summary.json").unlink()
    return root


def test_report_builds_every_figure_and_table(fake_runs, tmp_path):
    out = tmp_path / "report"
    result = write_report([fake_runs], out)
    assert result.skipped == {} and result.n_runs == 19
    for name in ("fig1", "fig2", "fig3a", "fig3b", "fig4a", "fig4b", "fig5"):
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    tables = (out / "tables.md").read_text()
    # Table 1 from the paper's own five outcomes reproduces its mean and SD
    assert "| Accuracy | 91.01 | 91.45 | 91.47 | 91.56 | 91.45 | 91.39 | 0.22 |" in tables
    assert "| Sparsity | 44.65 | 45.01 | 43.43 | 44.24 | 43.21 | 44.11 | 0.77 |" in tables
    # Table 2: our rows with the paper's beside, and the accuracy difference to float
    log_row = next(
        ln for ln in tables.splitlines() if ln.startswith("| log Δ0=0.1 M=1.9 Δf=0.9 | 5 ")
    )
    cells = [c.strip() for c in log_row.strip("|").split("|")]
    assert cells[3:8] == ["2", "93.35", "89.80", "0.57", "-0.25"]
    assert cells[8:] == ["93.27", "89.75", "0.57"]
    assert "| binary | 5 |" in tables and " partial: " not in tables and "partial (" not in tables
    report = (out / "report.md").read_text()
    assert "![fig1](fig1.png)" in report and "![fig5](fig5.png)" in report
    assert "[epochs.md](epochs.md)" in report
    epochs = (out / "epochs.md").read_text()
    assert epochs.count("\n## ") == 19  # one section per run
    assert "## binary: binary, k = 5, seed 0, 6 of 6 epochs (finished)" in epochs
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes  # figures too, not mkstemp's 0600

    with_partial = collect_runs([fake_runs], include_partial=True)
    assert len(with_partial) == 20
    write_report([fake_runs], tmp_path / "partial", include_partial=True)
    tables = (tmp_path / "partial" / "tables.md").read_text()
    float_row = next(ln for ln in tables.splitlines() if ln.startswith("| float | 5 "))
    assert "| 2 (1 partial: 6 ep.) |" in float_row
    log_row = next(
        ln for ln in tables.splitlines() if ln.startswith("| log Δ0=0.1 M=1.9 Δf=0.9 | 5 ")
    )
    assert log_row.split("|")[8].strip() == "–"  # no difference to a float group with a partial


def test_report_skips_what_is_missing_and_cli_errors(tmp_path, capsys):
    root = tmp_path / "runs"
    fake_run(root, "float", {"model.quantizer": "float", "model.inflation": 1}, 85.0, None, None)
    out = tmp_path / "rep"
    assert cli.main(["report", str(root), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "skipped fig1" in text and "skipped fig4a" in text and "skipped table1" in text
    assert "91.67" in (out / "tables.md").read_text()  # the paper's ResNet-20 FP beside ours
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["report", str(empty), "--out", str(tmp_path / "rep2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no finished run directories") and err.count("\n") == 1
    assert not (tmp_path / "rep2").exists()


def test_summary_json_is_what_report_reads(fake_runs):
    run = next(r for r in collect_runs([fake_runs]) if r.name == "binary")
    assert run.best_accuracy() == pytest.approx(91.2) and run.final_entropy() == 1.0
    assert json.loads((run.path / "summary.json").read_text())["quantizer"] == "binary"


def test_epoch_table_rows_and_formats(tmp_path):
    run_dir = fake_run(tmp_path, "lin", {"ternary.regime": "linear"}, 50.0, 99.0, 0.5, epochs=3)
    rows = [
        {
            "epoch": 1,
            "paper_epoch": 12.5,
            "accuracy": 0.198,
            "val_accuracy": 0.2552,
            "lr": 5e-3,
            "delta": 0.29,
            "sparsity": 0.99381,
            "entropy": 0.0605,
        },
        {
            "epoch": 2,
            "paper_epoch": 25.0,
            "accuracy": 0.099,
            "val_accuracy": 0.1,
            "lr": 5e-3,
            "delta": 0.48,
            "sparsity": 0.999556,
            "entropy": 0.00599,
        },
        {
            "epoch": 3,
            "paper_epoch": 37.5,
            "accuracy": 0.1,
            "val_accuracy": 0.1,
            "lr": 1e-3,
            "delta": 0.9,
            "sparsity": 1.0,
            "entropy": 0.0,
        },
    ]
    atomic_write_text(run_dir / "history.csv", format_history(rows))
    lines = epoch_table(load_run(run_dir)).splitlines()
    assert lines[0] == (
        "| epoch | paper-LR epoch | LR | Δ | train acc. | test acc. | sparsity | entropy (bits) |"
    )
    assert lines[2] == "| 1 | 12.5 | 5e-03 | 0.290 | 19.8% | 25.5% | 99.4% | 0.06 |"
    # values that would round to 100% or to 0 bits keep their digits; exact ones do not
    assert lines[3] == "| 2 | 25.0 | 5e-03 | 0.480 | 9.9% | 10.0% | 99.956% | 0.0060 |"
    assert lines[4] == "| 3 | 37.5 | 1e-03 | 0.900 | 10.0% | 10.0% | 100.0% | 0.00 |"
    float_dir = fake_run(tmp_path, "fp", {"model.quantizer": "float"}, 80.0, None, None, epochs=2)
    float_lines = epoch_table(load_run(float_dir)).splitlines()
    assert float_lines[0] == "| epoch | paper-LR epoch | LR | train acc. | test acc. |"
    assert len(float_lines) == 4 and all(ln.count("|") == 6 for ln in float_lines)
