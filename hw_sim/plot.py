"""Energy breakdown plot: stacked bars per layer and component, one panel per accelerator."""

from __future__ import annotations

import io

from hw_sim.accelerators import COMPONENTS
from hw_sim.tables import reports_of
from keras_ternary.fileio import atomic_write

__all__ = ["plot_energy"]


def plot_energy(result: dict, path: str) -> None:
    """Write a PNG of energy (nJ) per layer, stacked by component; atomic replace.

    Raises:
        keras_ternary.fileio.WriteError: ``path`` cannot be written (an ``OSError`` naming
            it; its directory is missing, ...).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = reports_of(result)
    fig, axes = plt.subplots(len(reports), 1, figsize=(12, 3.5 * len(reports)), squeeze=False)
    for ax, rep in zip(axes[:, 0], reports.values(), strict=True):
        layers = [r for r in rep["layers"] if r["energy_pj"]["total"] > 0]
        x = range(len(layers))
        bottom = [0.0] * len(layers)
        for component in COMPONENTS:
            values = [r["energy_pj"][component] / 1000 for r in layers]
            ax.bar(x, values, bottom=bottom, label=component)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_xticks(list(x))
        ax.set_xticklabels([r["name"] for r in layers], rotation=90, fontsize=6)
        ax.set_ylabel("energy (nJ)")
        total = rep["total"]["energy_pj"]["total"] / 1e6
        ax.set_title(f"{rep['model']} on {rep['title']}: {total:,.2f} µJ per inference")
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=120)
    finally:
        plt.close(fig)
    atomic_write(path, buffer.getvalue())
