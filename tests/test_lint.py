"""The code base stays ruff-clean (rules in pyproject.toml)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by the [dev] extra")
def test_ruff_check():
    r = subprocess.run(["ruff", "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by the [dev] extra")
def test_ruff_format():
    """Formatted as ``ruff format`` leaves it (ruff pinned in [dev]: its style changes with
    minor versions), Markdown code blocks included."""
    r = subprocess.run(
        ["ruff", "format", "--check", "--no-cache", str(ROOT)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
