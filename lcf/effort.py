"""Encoder effort: defined in :mod:`lcf.options` with the other options (what effort buys, and its levels); these
names stay importable from here for the modules and scripts that import them from lcf.effort."""

from __future__ import annotations

from lcf.options import DEFAULT_EFFORT, EFFORT_ITERATIONS, MAX_EFFORT, check_effort

__all__ = ["DEFAULT_EFFORT", "EFFORT_ITERATIONS", "MAX_EFFORT", "check_effort"]
