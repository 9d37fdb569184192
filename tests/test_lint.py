"""Lint and types as part of the suite (so CI runs them): ruff on the whole tree with the
project's rules (pyproject.toml: pycodestyle, pyflakes, import order, the asyncio rules that
catch busy-waits and blocking calls in coroutines, bugbear) and mypy on the live paths."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return [sys.executable, "-m", name]


def test_ruff_is_clean() -> None:
    res = subprocess.run([*_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_mypy_is_clean_on_the_live_paths() -> None:
    res = subprocess.run([*_tool("mypy"), "realtime_sda/streaming", "realtime_sda/server"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
