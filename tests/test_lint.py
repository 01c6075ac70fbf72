"""The tree passes ruff (lint and format) and mypy as configured in pyproject.toml, so that `.ci/run` (this suite)
refuses a change that breaks them. The tools' versions are pinned in the ``test`` extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module", autouse=True)
def _tools_installed():
    for name in ("ruff", "mypy"):
        if tool(name, "--version").returncode != 0:
            pytest.fail(f'{name} is not installed: pip install -e ".[test]"')


def test_ruff_check_finds_nothing():
    result = tool("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing():
    result = tool("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing():
    result = tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
