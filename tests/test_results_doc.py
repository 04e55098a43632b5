"""docs/results.md quotes its per-epoch tables verbatim from the report's epochs.md.

The tables are regenerated with ``python -m keras_ternary report /work/runs/reduced
/work/runs/reduced-extras --out docs/figures/reduced --include-partial`` and ``python -m
keras_ternary report /work/runs/reduced-faithful --out docs/figures/faithful`` (and
``reduced-compressed`` to ``docs/figures/compressed``, the k = 1 and k = 2 log runs to
``docs/figures/width`` with ``--include-partial``); a table edited by hand in the page, or a
page not updated after the report, fails here.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"
EPOCHS = [
    ROOT / "docs" / "figures" / name / "epochs.md"
    for name in ("reduced", "faithful", "compressed", "width")
]


def _epoch_tables(text: str) -> list[str]:
    """The Markdown tables of ``text`` whose header starts like an epochs.md table."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block and block[0].startswith("| epoch | paper-LR epoch | LR |"):
            tables.append("\n".join(block) + "\n")
        block = []
    return tables


def test_per_epoch_tables_in_results_come_from_epochs_md():
    tables = _epoch_tables(RESULTS.read_text(encoding="utf-8"))
    assert len(tables) >= 5  # log, fixed, binary, float, linear
    source = "\n".join(path.read_text(encoding="utf-8") for path in EPOCHS)
    for table in tables:
        assert table in source, f"a table in docs/results.md is not in epochs.md:\n{table[:300]}"


def test_epoch_table_parser_finds_only_epoch_tables():
    epoch_table = "| epoch | paper-LR epoch | LR |\n|---|---|---|\n| 1 | 12.5 | 5e-03 |\n"
    text = f"intro\n| a | b |\n|---|---|\n| 1 | 2 |\n\n{epoch_table}end\n\n{epoch_table}"
    assert _epoch_tables(text) == [epoch_table, epoch_table]
