"""Run the lcf command in a subprocess, as a user types it (real standard input, output and error, exit code).

from run_lcf import lcf                       # tests/ is on sys.path under pytest
result = lcf("encode", src, "-o", "-", input=png_bytes)
result.returncode, result.stdout (bytes), result.stderr (str)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "lcf_cli.main", *map(str, args)]


def lcf(*args: str | Path, input: bytes | None = b"", cwd: Path | None = None, **kwargs: Any):
    """``lcf ARGS...``; ``input`` is standard input (empty by default: never the test's terminal), ``kwargs`` go to
    subprocess.run (stdin=, stdout= for a terminal). Returns the CompletedProcess with stderr decoded."""
    if "stdin" in kwargs:
        input = None
    kwargs.setdefault("stdout", subprocess.PIPE)
    result = subprocess.run(
        command(*args), input=input, stderr=subprocess.PIPE, env=ENV, cwd=cwd, timeout=300, **kwargs
    )
    result.stderr = result.stderr.decode(errors="replace")
    assert "Traceback" not in result.stderr, result.stderr
    return result
