"""Rebuild the paper's figures and tables from run directories.

Every run directory below the given roots (found by its ``config.yaml``) is read: its
configuration says which experiment it belongs to, ``history.csv`` gives the curves,
``summary.json`` the final metrics and ``snapshots/`` the latent-weight histograms. Only
finished runs are used unless ``include_partial`` (then metrics come from the history so far).

Outputs (PNG via matplotlib, Markdown):

* ``fig1.png``  latent-weight histograms near paper epoch 100: fixed Δ0 = 0.1 vs log regime;
* ``fig2.png``  validation accuracy per epoch for fixed Δ and several Δ0;
* ``fig3a.png`` / ``fig3b.png``  accuracy / sparsity per epoch for the growth regimes, Δf = 0.9;
* ``fig4a.png`` / ``fig4b.png``  best accuracy vs final sparsity / entropy of every growth-regime
  configuration (mean ± SD over seeds), binary accuracy as a dotted line;
* ``fig5.png``  best accuracy vs training speed (epoch of the best accuracy) of every run;
* ``tables.md`` Table 1 (fixed Δ0 = 0.1 over seeds) and Table 2 (float, binary and ternary
  regimes), each beside the paper's numbers, plus a list of all runs;
* ``epochs.md`` one table per run: learning rate, Δ, train and test accuracy, sparsity and
  entropy after every epoch (what docs/results.md quotes);
* ``report.md`` links all.

Epochs on the x axes are the runs' own epochs (a reduced-scale run may map them to the paper's
axis differently for Δ and for the learning rate; the tables give the paper span replayed, with
Δ's in parentheses when it differs). A figure whose runs are missing is skipped and the reason
listed in ``report.md``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_ternary import rundir  # noqa: E402
from keras_ternary.config import TrainConfig  # noqa: E402
from keras_ternary.fileio import (  # noqa: E402
    atomic_write_text,
    atomic_write_with,
    check_input_file,
)
from keras_ternary.rundir import RunError, read_history  # noqa: E402

__all__ = ["PAPER_TABLE1", "PAPER_TABLE2", "RunRecord", "collect_runs", "write_report"]

#: Table 1 of the paper: fixed Δ0 = 0.1, ResNet-20* (k = 5), five runs (%).
PAPER_TABLE1 = {
    "accuracy": (91.01, 91.45, 91.47, 91.56, 91.45),
    "sparsity": (44.65, 45.01, 43.43, 44.24, 43.21),
}
#: Table 2 of the paper: (inflation, quantizer, regime) → (acc %, sparsity %, entropy bits).
PAPER_TABLE2: dict[tuple[int, str, str | None], tuple[float, float, float | None]] = {
    (1, "float", None): (91.67, 0.0, None),
    (5, "float", None): (93.61, 0.0, None),
    (5, "binary", None): (91.22, 0.0, 1.00),
    (5, "ternary", "linear"): (92.30, 84.25, 0.78),
    (5, "ternary", "log"): (93.27, 89.75, 0.57),
}
GROWTH_REGIMES = ("linear", "square", "exp", "log")
REGIME_MARKERS = {"linear": "o", "square": "s", "exp": "^", "log": "D", "fixed": "x"}
FIG1_PAPER_EPOCH = 100.0
#: Keys of a run's config.yaml that the report reads: they must be in the file.
REPORT_KEYS = (
    "epochs",
    "paper_epochs",
    "seed",
    "model.quantizer",
    "model.inflation",
    "ternary.regime",
    "ternary.delta0",
    "ternary.multiplier",
    "ternary.delta_max",
)


@dataclass
class RunRecord:
    """One run directory, reduced to what the report needs."""

    path: Path
    config: TrainConfig
    history: list[dict[str, float | None]]
    summary: dict[str, Any] | None
    snapshots: list[Path] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def quantizer(self) -> str:
        return self.config.model.quantizer

    @property
    def regime(self) -> str | None:
        return self.config.ternary.regime if self.quantizer == "ternary" else None

    def param(self, key: str) -> float | None:
        return float(getattr(self.config.ternary, key)) if self.quantizer == "ternary" else None

    @property
    def inflation(self) -> int:
        return self.config.model.inflation

    def group_key(self) -> tuple:
        """Runs that differ only in the seed share this key."""
        return (
            self.inflation,
            self.quantizer,
            self.regime,
            self.param("delta0"),
            self.param("multiplier") if self.regime not in (None, "fixed") else None,
            self.param("delta_max") if self.regime not in (None, "fixed") else None,
            self.config.epochs,
            self.config.paper_epochs,
        )

    # metrics (percent for accuracy and sparsity, as in the paper)
    def best_accuracy(self) -> float | None:
        if self.summary and self.summary.get("best_val_accuracy") is not None:
            return 100.0 * self.summary["best_val_accuracy"]
        values = self.series("val_accuracy")
        return 100.0 * max(values) if values else None

    def best_epoch(self) -> int | None:
        """Training speed: the 1-based epoch of the best validation accuracy (our epochs)."""
        if self.summary and self.summary.get("best_epoch") is not None:
            return int(self.summary["best_epoch"])
        values = self.series("val_accuracy")
        return int(np.argmax(values)) + 1 if values else None

    def final_sparsity(self) -> float | None:
        if self.summary and self.summary.get("final_sparsity") is not None:
            return 100.0 * self.summary["final_sparsity"]
        values = self.series("sparsity")
        if values:
            return 100.0 * values[-1]
        return 0.0 if self.quantizer == "float" else None

    def final_entropy(self) -> float | None:
        if self.summary is not None:
            return self.summary.get("final_entropy")
        values = self.series("entropy")
        return values[-1] if values else None

    def series(self, key: str) -> list[float]:
        return [row[key] for row in self.history if row.get(key) is not None]

    def epochs_axis(self) -> list[float]:
        return [row["epoch"] for row in self.history]

    def span(self) -> str:
        """Paper epochs replayed (learning rate), and for Δ in parentheses if different."""
        config = self.config
        lr_span = config.paper_epochs
        saturate = config.ternary.saturate_epoch
        if self.quantizer == "ternary" and saturate is not None and self.regime != "fixed":
            return f"{lr_span:g}, Δf at epoch {saturate}"
        if self.quantizer != "ternary" or config.ternary.time_scale is None:
            return f"{lr_span:g}"
        delta_span = config.delta_time_scale * config.epochs
        return (
            f"{lr_span:g}"
            if math.isclose(delta_span, lr_span)
            else f"{lr_span:g}, Δ {delta_span:g}"
        )


# --------------------------------------------------------------------------- collecting
def load_run(path: Path) -> RunRecord | None:
    """Read one run directory (None if ``path`` is not a run directory).

    RunError for a run directory whose files cannot be read (not UTF-8, corrupt history.csv)
    or whose config.yaml is not a valid run configuration or lacks a key of
    :data:`REPORT_KEYS` (a hand-written one: those are never filled in with defaults).
    """
    if not rundir.is_run_dir(path):
        return None
    config = rundir.load_run_config(path, required=REPORT_KEYS)
    summary = None
    summary_path = path / "summary.json"
    if os.path.lexists(summary_path):
        try:
            check_input_file(summary_path, "json", "run summary")
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunError(
                f"{summary_path} is unreadable or corrupt ({str(exc)[:200]}); restore it, or "
                "move the run out of the report's directories"
            ) from None
        if not isinstance(summary, dict):
            raise RunError(
                f"{summary_path} does not hold a JSON object (got {type(summary).__name__}); "
                "restore it, or move the run out of the report's directories"
            )
    snapshots = sorted((path / "snapshots").glob("epoch_*.json"))
    return RunRecord(path, config, read_history(path / "history.csv"), summary, snapshots)


def collect_runs(roots: Iterable[str | Path], include_partial: bool = False) -> list[RunRecord]:
    """All run directories under ``roots`` (finished ones, plus partial if asked), by path."""
    runs = []
    seen = set()
    for root in roots:
        for config_path in sorted(Path(root).rglob("config.yaml")):
            run_dir = config_path.parent.resolve()
            if run_dir in seen:
                continue
            seen.add(run_dir)
            run = load_run(config_path.parent)
            if run is None or not run.history:
                continue
            if run.finished or include_partial:
                runs.append(run)
    return runs


def group_runs(runs: Iterable[RunRecord]) -> dict[tuple, list[RunRecord]]:
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[run.group_key()].append(run)
    return dict(sorted(groups.items(), key=lambda kv: _sort_key(kv[0])))


def _sort_key(key: tuple) -> tuple:
    return tuple((0, "") if v is None else (1, v) if isinstance(v, str) else (2, v) for v in key)


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value), as in Table 1."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _label(run: RunRecord, with_k: bool = False) -> str:
    if run.quantizer != "ternary":
        text = "float" if run.quantizer == "float" else "binary"
    elif run.regime == "fixed":
        text = f"fixed Δ0={run.param('delta0'):g}"
    else:
        text = (
            f"{run.regime} Δ0={run.param('delta0'):g} M={run.param('multiplier'):g} "
            f"Δf={run.param('delta_max'):g}"
        )
    return f"{text} (k={run.inflation})" if with_k else text


def _mean_curve(runs: Sequence[RunRecord], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``key`` over the runs, per epoch (over the shortest history)."""
    n = min(len(r.history) for r in runs)
    x = np.asarray(runs[0].epochs_axis()[:n], dtype=float)
    values = []
    for r in runs:
        column = [row.get(key) for row in r.history[:n]]
        values.append([np.nan if v is None else v for v in column])
    return x, np.nanmean(np.asarray(values, dtype=float), axis=0)


# --------------------------------------------------------------------------- figures
def _plot_curve(ax: plt.Axes, members: Sequence[RunRecord], key: str) -> None:
    """One group's mean ``key`` per epoch in percent, with markers (a 1-epoch run shows too)."""
    x, y = _mean_curve(members, key)
    ax.plot(
        x,
        100 * y,
        marker=REGIME_MARKERS.get(members[0].regime or "", "."),
        markersize=3,
        label=f"{_label(members[0], True)} (n={len(members)})",
    )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs


def _save(fig: plt.Figure, path: Path) -> None:
    """Save a figure atomically as PNG (mode from the umask, like every other output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_with(
            path,
            lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"),
            suffix=".png",
        )
    finally:
        plt.close(fig)


def _closest_snapshot(run: RunRecord, paper_epoch: float) -> dict[str, Any] | None:
    best, best_dist = None, math.inf
    for path in run.snapshots:
        try:
            check_input_file(path, "json", "snapshot")
            snap = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        dist = abs(float(snap["paper_epoch"]) - paper_epoch)
        if dist < best_dist:
            best, best_dist = snap, dist
    return best


def figure1(runs: Sequence[RunRecord], path: Path) -> str | None:
    """Fig. 1: latent-weight histograms near paper epoch 100, fixed Δ0=0.1 vs log regime."""

    def pick(pred: Callable[[RunRecord], bool]) -> RunRecord | None:
        cands = [r for r in runs if r.quantizer == "ternary" and r.snapshots and pred(r)]
        cands.sort(key=lambda r: (abs((r.param("multiplier") or 0) - 1.9), r.config.seed))
        return cands[0] if cands else None

    fixed = pick(lambda r: r.regime == "fixed" and math.isclose(r.param("delta0"), 0.1))
    log = pick(lambda r: r.regime == "log")
    if fixed is None or log is None:
        return "needs a ternary fixed-Δ0=0.1 run and a log-regime run, both with snapshots"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, run, tag in zip(axes, (fixed, log), ("(a)", "(b)"), strict=True):
        snap = _closest_snapshot(run, FIG1_PAPER_EPOCH)
        counts, edges = snap["stats"]["total"]["histogram"]
        counts, edges = np.asarray(counts, float), np.asarray(edges, float)
        density = counts / max(counts.sum(), 1.0)
        ax.bar(edges[:-1], density, width=np.diff(edges), align="edge", color="tab:blue")
        delta = snap.get("delta")
        if delta is not None:
            for sign in (-1, 1):
                ax.axvline(sign * delta, color="tab:red", ls="--", lw=1)
        total = snap["stats"]["total"]
        ax.set_title(
            f"{tag} {_label(run)}\nafter epoch {snap['epoch']}, "
            f"Δ={delta:.3f}, sparsity {100 * total['sparsity']:.1f}%",
            fontsize=9,
        )
        ax.set_xlabel("latent weight")
    axes[0].set_ylabel("fraction of weights")
    _save(fig, path)
    return None


def figure2(runs: Sequence[RunRecord], path: Path) -> str | None:
    """Fig. 2: validation accuracy per epoch, fixed Δ, one curve per Δ0 (mean over seeds)."""
    chosen = [r for r in runs if r.regime == "fixed"]
    if not chosen:
        return "needs ternary runs with the fixed regime"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for _, members in group_runs(chosen).items():
        _plot_curve(ax, members, "val_accuracy")
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Fixed Δ")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
    return None


def figure3(runs: Sequence[RunRecord], path_a: Path, path_b: Path) -> str | None:
    """Fig. 3: accuracy (a) and sparsity (b) per epoch for the growth regimes with Δf = 0.9."""
    chosen = [
        r for r in runs if r.regime in GROWTH_REGIMES and math.isclose(r.param("delta_max"), 0.9)
    ]
    if not chosen:
        return "needs growth-regime runs (linear/square/exp/log) with delta_max 0.9"
    groups = group_runs(chosen)
    for key, path, ylabel in (
        ("val_accuracy", path_a, "validation accuracy (%)"),
        ("sparsity", path_b, "sparsity (%)"),
    ):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for members in groups.values():
            _plot_curve(ax, members, key)
        ax.set(xlabel="epoch", ylabel=ylabel, title="Δ growth regimes, Δf = 0.9")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        _save(fig, path)
    return None


def _binary_accuracy(runs: Sequence[RunRecord]) -> float | None:
    values = [r.best_accuracy() for r in runs if r.quantizer == "binary"]
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def figure4(runs: Sequence[RunRecord], path_a: Path, path_b: Path) -> str | None:
    """Fig. 4: best accuracy vs final sparsity (a) and entropy (b) per growth configuration."""
    chosen = [r for r in runs if r.regime in GROWTH_REGIMES]
    if not chosen:
        return "needs growth-regime runs"
    groups = group_runs(chosen)
    binary = _binary_accuracy(runs)
    cmap = plt.get_cmap("viridis")
    dfs = sorted({r.param("delta_max") for r in chosen})
    for metric, path, xlabel in (
        (RunRecord.final_sparsity, path_a, "sparsity (%)"),
        (RunRecord.final_entropy, path_b, "entropy (bits/symbol)"),
    ):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        seen_labels = set()
        for members in groups.values():
            xs = [metric(r) for r in members]
            ys = [r.best_accuracy() for r in members]
            xm, xs_sd = _mean_sd(xs)
            ym, ys_sd = _mean_sd(ys)
            run = members[0]
            colour = cmap(dfs.index(run.param("delta_max")) / max(len(dfs) - 1, 1))
            label = f"{run.regime}, Δf={run.param('delta_max'):g}"
            ax.errorbar(
                xm,
                ym,
                xerr=xs_sd,
                yerr=ys_sd,
                marker=REGIME_MARKERS[run.regime],
                color=colour,
                ls="none",
                capsize=2,
                label=None if label in seen_labels else label,
            )
            seen_labels.add(label)
            ax.annotate(
                f"M={run.param('multiplier'):g}",
                (xm, ym),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
        if binary is not None:
            ax.axhline(binary, color="k", ls=":", label="binary")
        ax.set(xlabel=xlabel, ylabel="best validation accuracy (%)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        _save(fig, path)
    return None


def figure5(runs: Sequence[RunRecord], path: Path) -> str | None:
    """Fig. 5: best accuracy vs training speed (epoch of the best accuracy) for every run."""
    chosen = [r for r in runs if r.quantizer == "ternary"]
    if not chosen:
        return "needs ternary runs"
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    seen = set()
    for run in chosen:
        speed = run.best_epoch()
        label = run.regime if run.regime not in seen else None
        seen.add(run.regime)
        ax.scatter(
            speed,
            run.best_accuracy(),
            marker=REGIME_MARKERS.get(run.regime, "o"),
            label=label,
            alpha=0.8,
        )
    ax.set(
        xlabel="training speed: epoch of best accuracy",
        ylabel="best validation accuracy (%)",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
    return None


# --------------------------------------------------------------------------- tables
def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table1(runs: Sequence[RunRecord]) -> str | None:
    """Table 1: accuracy and sparsity of fixed Δ0 = 0.1 runs (each seed, mean, SD)."""
    chosen = [r for r in runs if r.regime == "fixed" and math.isclose(r.param("delta0"), 0.1)]
    if not chosen:
        return None
    lines = []
    for key, members in group_runs(chosen).items():
        members = sorted(members, key=lambda r: r.config.seed)
        n = len(members)
        lines += [
            f"**Table 1 — fixed Δ0 = 0.1, k = {key[0]}, {members[0].config.epochs} epochs "
            f"(paper span {members[0].span()}), {n} seed(s)**",
            "",
            "| | " + " | ".join(f"seed {r.config.seed}" for r in members) + " | Mean | SD |",
            "|---" * (n + 3) + "|",
        ]
        for title, metric in (
            ("Accuracy", RunRecord.best_accuracy),
            ("Sparsity", RunRecord.final_sparsity),
        ):
            values = [metric(r) for r in members]
            mean, sd = _mean_sd(values)
            lines.append(
                f"| {title} | "
                + " | ".join(_fmt(v) for v in values)
                + f" | {_fmt(mean)} | {_fmt(sd)} |"
            )
        lines.append("")
    paper_rows = []
    for title, values in (
        ("Accuracy", PAPER_TABLE1["accuracy"]),
        ("Sparsity", PAPER_TABLE1["sparsity"]),
    ):
        mean, sd = _mean_sd(values)
        paper_rows.append(
            f"| {title} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {mean:.2f} | {sd:.2f} |"
        )
    lines += [
        "Paper (ResNet-20*, k = 5, 500 epochs):",
        "",
        "| | run 1 | run 2 | run 3 | run 4 | run 5 | Mean | SD |",
        "|---|---|---|---|---|---|---|---|",
        *paper_rows,
        "",
    ]
    return "\n".join(lines)


def table2(runs: Sequence[RunRecord]) -> str | None:
    """Table 2: float, binary and ternary configurations, with the paper's values beside."""
    if not runs:
        return None
    lines = [
        "**Table 2 — accuracy, sparsity, entropy (mean over seeds) and the paper's values**",
        "",
        "| Model | k | epochs (paper span) | runs | Acc. (%) | Sparsity (%) | Entropy (bits/sym) "
        "| Acc. diff. vs FP (%) | paper Acc. | paper Sparsity | paper Entropy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = group_runs(runs)
    fp_acc: dict[tuple, float] = {}
    for key, members in groups.items():
        if key[1] == "float" and all(r.finished for r in members):  # no diff to a partial FP
            fp_acc[(key[0], key[6], key[7])] = _mean_sd([r.best_accuracy() for r in members])[0]
    order = {"float": 0, "binary": 1, "ternary": 2}
    for key, members in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        run = members[0]
        acc = _mean_sd([r.best_accuracy() for r in members])[0]
        sparsity = _mean_sd([r.final_sparsity() for r in members])[0]
        entropies = [r.final_entropy() for r in members if r.final_entropy() is not None]
        entropy = _mean_sd(entropies)[0] if entropies else None
        fp = fp_acc.get((key[0], key[6], key[7]))
        diff = None if fp is None or run.quantizer == "float" else acc - fp
        paper = None
        if run.regime is None or (
            math.isclose(run.param("delta0"), 0.1) and math.isclose(run.param("delta_max"), 0.9)
        ):  # the paper's Table 2 settings
            paper = PAPER_TABLE2.get((key[0], run.quantizer, run.regime)) or PAPER_TABLE2.get(
                (5, run.quantizer, run.regime)
            )
        paper_cells = (
            ["–", "–", "–"]
            if paper is None
            else [
                _fmt(paper[0])
                + ("" if (key[0], run.quantizer, run.regime) in PAPER_TABLE2 else " (k=5)"),
                _fmt(paper[1]),
                _fmt(paper[2]),
            ]
        )
        partial = [r for r in members if not r.finished]
        n_runs = str(len(members)) + (
            f" ({len(partial)} partial: {', '.join(str(len(r.history)) for r in partial)} ep.)"
            if partial
            else ""
        )
        lines.append(
            f"| {_label(run)} | {key[0]} | {run.config.epochs} ({run.span()})"
            f" | {n_runs} | {_fmt(acc)} | {_fmt(sparsity)} | {_fmt(entropy)} "
            f"| {_fmt(diff)} | " + " | ".join(paper_cells) + " |"
        )
    lines += [
        "",
        "Paper rows other than ResNet-20 (FP) are for ResNet-20* (k = 5) after 500 epochs; "
        "'(k=5)' marks a paper value shown beside a run of another width. Accuracy is the best "
        "validation (test-set) accuracy over training, sparsity and entropy those of the final "
        "weights. A partial run counts with the epochs it has so far; no difference to float is "
        "computed against a partial float run.",
        "",
    ]
    return "\n".join(lines)


def runs_table(runs: Sequence[RunRecord]) -> str:
    """Every run, one row each."""
    lines = [
        "| run | status | quantizer | regime | Δ0 | M | Δf | k | seed | epochs (paper span) "
        "| best acc. (%) | best epoch | sparsity (%) | entropy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.path.name} | {'finished' if r.finished else f'partial ({len(r.history)})'} "
            f"| {r.quantizer} | {r.regime or '–'} | {_fmt(r.param('delta0'), 3)} "
            f"| {_fmt(r.param('multiplier'), 2)} | {_fmt(r.param('delta_max'), 2)} "
            f"| {r.inflation} | {r.config.seed} "
            f"| {r.config.epochs} ({r.span()}) | {_fmt(r.best_accuracy())} "
            f"| {r.best_epoch()} "
            f"| {_fmt(r.final_sparsity())} | {_fmt(r.final_entropy(), 3)} |"
        )
    return "\n".join(lines) + "\n"


def _percent(fraction: float | None) -> str:
    """A fraction as a percentage with one decimal, more where one would round to 0 or 100."""
    if fraction is None:
        return "–"
    value = 100.0 * fraction
    if 0.0 < value < 0.05 or 99.95 <= value < 100.0:
        return f"{value:.3f}%"
    return f"{value:.1f}%"


def _bits(value: float | None) -> str:
    """Entropy in bits: two decimals, four for small nonzero values."""
    if value is None:
        return "–"
    return f"{value:.4f}" if 0.0 < value < 0.01 else f"{value:.2f}"


def epoch_table(run: RunRecord) -> str:
    """One run's ``history.csv`` as a Markdown table, one row per epoch.

    *LR* is the rate used during the epoch; *train acc.* is measured during the epoch (with
    augmentation), *test acc.* after it. Ternary runs add Δ, sparsity and entropy (bits).
    """
    ternary = run.quantizer == "ternary"
    head = ["epoch", "paper-LR epoch", "LR"] + (["Δ"] if ternary else [])
    head += ["train acc.", "test acc."] + (["sparsity", "entropy (bits)"] if ternary else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in run.history:
        paper_epoch, lr = row.get("paper_epoch"), row.get("lr")
        cells = [
            f"{row['epoch']:.0f}",
            "–" if paper_epoch is None else f"{paper_epoch:.1f}",
            "–" if lr is None else f"{lr:.0e}",
        ]
        if ternary:
            cells.append(_fmt(row.get("delta"), 3))
        cells += [_percent(row.get("accuracy")), _percent(row.get("val_accuracy"))]
        if ternary:
            cells += [_percent(row.get("sparsity")), _bits(row.get("entropy"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def epochs_document(runs: Sequence[RunRecord]) -> str:
    """``epochs.md``: a heading and :func:`epoch_table` for every run."""
    parts = ["# Per-epoch history of every run", ""]
    for run in runs:
        status = "finished" if run.finished else "partial"
        parts += [
            f"## {run.path.name}: {_label(run)}, k = {run.inflation}, seed {run.config.seed}, "
            f"{len(run.history)} of {run.config.epochs} epochs ({status})",
            "",
            epoch_table(run),
        ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- report
FIGURES = ("fig1", "fig2", "fig3a", "fig3b", "fig4a", "fig4b", "fig5")


@dataclass
class ReportResult:
    """Files written and figures skipped (with the reason)."""

    written: list[Path]
    skipped: dict[str, str]
    n_runs: int


def write_report(
    roots: Iterable[str | Path], out_dir: str | Path, include_partial: bool = False
) -> ReportResult:
    """Build every figure and table from the runs under ``roots`` into ``out_dir``."""
    roots = list(roots)
    out = Path(out_dir)
    runs = collect_runs(roots, include_partial)
    if not runs:
        raise FileNotFoundError(
            f"no {'' if include_partial else 'finished '}run directories under "
            f"{', '.join(map(str, roots))}"
            + ("" if include_partial else " (use --include-partial for unfinished runs)")
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create the report directory {out}: {exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunError(f"cannot write to the report directory {out}: permission denied")
    skipped: dict[str, str] = {}
    jobs: list[tuple[tuple[str, ...], Callable[[], str | None]]] = [
        (("fig1",), lambda: figure1(runs, out / "fig1.png")),
        (("fig2",), lambda: figure2(runs, out / "fig2.png")),
        (("fig3a", "fig3b"), lambda: figure3(runs, out / "fig3a.png", out / "fig3b.png")),
        (("fig4a", "fig4b"), lambda: figure4(runs, out / "fig4a.png", out / "fig4b.png")),
        (("fig5",), lambda: figure5(runs, out / "fig5.png")),
    ]
    written = []
    for names, job in jobs:
        reason = job()
        for name in names:
            if reason is None:
                written.append(out / f"{name}.png")
            else:
                skipped[name] = reason
    t1 = table1(runs)
    t2 = table2(runs)
    if t1 is None:
        skipped["table1"] = "needs ternary runs with the fixed regime and Δ0 = 0.1"
    tables = "\n".join(part for part in (t1, t2) if part) + "\n**All runs**\n\n" + runs_table(runs)
    atomic_write_text(out / "tables.md", tables)
    written.append(out / "tables.md")
    atomic_write_text(out / "epochs.md", epochs_document(runs))
    written.append(out / "epochs.md")
    captions = {
        "fig1": "Fig. 1 — latent-weight distribution near paper epoch 100: fixed Δ vs log regime",
        "fig2": "Fig. 2 — accuracy for several Δ0, fixed Δ",
        "fig3a": "Fig. 3a — accuracy per epoch of the growth regimes (Δf = 0.9)",
        "fig3b": "Fig. 3b — sparsity per epoch of the growth regimes (Δf = 0.9)",
        "fig4a": "Fig. 4a — accuracy vs sparsity",
        "fig4b": "Fig. 4b — accuracy vs entropy",
        "fig5": "Fig. 5 — accuracy vs training speed",
    }
    body = [f"# Report: {len(runs)} run(s) from {', '.join(map(str, roots))}", ""]
    for name in FIGURES:
        if name in skipped:
            body.append(f"- {captions[name]}: *skipped — {skipped[name]}*")
        else:
            body += [f"### {captions[name]}", "", f"![{name}]({name}.png)", ""]
    body += ["", tables, "", "Per-epoch history of every run: [epochs.md](epochs.md)", ""]
    atomic_write_text(out / "report.md", "\n".join(body))
    written.append(out / "report.md")
    return ReportResult(written, skipped, len(runs))
