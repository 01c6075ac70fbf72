"""File helpers behind the CLI: atomic writes (no partial outputs ever), bounded reads, OSError -> LcfIOError."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lcf import api
from lcf.api import Limits, atomic_write, read_bytes
from lcf.errors import LcfIOError, LimitError, UsageError


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "out.lcf"
    atomic_write(path, b"first")
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["out.lcf"]


def test_atomic_write_respects_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "out.lcf"
    atomic_write(path, b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.lcf"
    path.write_bytes(b"old")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(LcfIOError, match="No space left on device"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.lcf"]


def test_interrupted_write_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.lcf", b"data")
    assert os.listdir(tmp_path) == []


def test_atomic_write_into_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(LcfIOError, match="No such file or directory"):
        atomic_write(tmp_path / "missing" / "out.lcf", b"x")


def test_read_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.lcf"
    path.write_bytes(b"x" * 100)
    assert read_bytes(path) == b"x" * 100
    with pytest.raises(LimitError, match="file of 100 bytes exceeds the limit of 99"):
        read_bytes(path, Limits(max_file_size=99))
    with pytest.raises(LcfIOError, match="No such file"):
        read_bytes(tmp_path / "missing.lcf")
    with pytest.raises(LcfIOError, match="is a folder"):
        read_bytes(tmp_path)


@pytest.mark.parametrize("quality", [0.99, 7.01, float("nan"), float("inf"), True, "4"])
def test_quality_is_checked(quality: object) -> None:
    with pytest.raises(UsageError, match="quality must be a number in 1..7"):
        api.check_quality(quality)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "device, ok", [("cpu", True), ("cuda", True), ("cuda:1", True), ("gpu", False), ("cuda:", False), ("CPU", False)]
)
def test_device_is_checked(device: str, ok: bool) -> None:
    if ok:
        assert api.check_device(device) == device
    else:
        with pytest.raises(UsageError):
            api.check_device(device)
