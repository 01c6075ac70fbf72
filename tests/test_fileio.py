"""lcf.fileio: the one atomic write of lcf. Claims (one writer per output), publishing without replacing, and the
only files it may delete (its own temporary files, of a writer that is gone)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from lcf import fileio
from lcf.errors import LcfIOError


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_claim_is_exclusive_until_published(tmp_path: Path) -> None:
    out = tmp_path / "a.lcf"
    first = fileio.claim(out)
    assert first is not None and first.temp == tmp_path / ".a.lcf.lcf-tmp"
    assert fileio.claim(out) is None  # another writer (flock: another open file, here or in another process)
    first.file.write(b"data")
    assert first.publish() is True
    assert out.read_bytes() == b"data" and names(tmp_path) == ["a.lcf"]
    second = fileio.claim(out)
    assert second is not None
    second.abandon()
    assert names(tmp_path) == ["a.lcf"]


def test_publish_without_replace_keeps_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "a.lcf"
    with fileio.claim(out) as held:
        out.write_bytes(b"someone else's")
        held.file.write(b"ours")
        assert held.publish(replace=False) is False
    assert out.read_bytes() == b"someone else's" and names(tmp_path) == ["a.lcf"]
    with fileio.claim(tmp_path / "b.lcf") as held:
        held.file.write(b"new")
        assert held.publish(replace=False) is True
    assert (tmp_path / "b.lcf").read_bytes() == b"new" and names(tmp_path) == ["a.lcf", "b.lcf"]


def test_only_an_unlocked_temporary_file_is_deleted(tmp_path: Path) -> None:
    out = tmp_path / "a.lcf"
    temp = fileio.temp_path(out)
    temp.write_bytes(b"left by a killed run")
    with open(temp, "rb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        assert fileio.remove_stale_temp(out) is False and fileio.claim(out) is None
    assert temp.read_bytes() == b"left by a killed run"
    assert fileio.remove_stale_temp(out) is True and not temp.exists()
    temp.write_bytes(b"left again")
    held = fileio.claim(out)  # a claim takes over a stale temporary file
    assert held is not None and held.temp == temp
    held.abandon()
    assert names(tmp_path) == []


@pytest.mark.parametrize("kind", ["symlink", "folder", "fifo"])
def test_what_lcf_did_not_make_is_never_deleted(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "a.lcf"
    temp = fileio.temp_path(out)
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"a user's file")
    if kind == "symlink":
        temp.symlink_to(precious)
    elif kind == "folder":
        temp.mkdir()
    else:
        os.mkfifo(temp)
    with pytest.raises(LcfIOError, match="not a temporary file of lcf"):
        fileio.claim(out)
    with pytest.raises(LcfIOError, match="not a temporary file of lcf"):
        fileio.atomic_write(out, b"x")
    assert os.path.lexists(temp) and precious.read_bytes() == b"a user's file" and not out.exists()


def test_disk_full_inside_the_block_is_an_output_error(tmp_path: Path) -> None:
    out = tmp_path / "a.png"
    out.write_bytes(b"old")
    with pytest.raises(LcfIOError, match=f"cannot write {out}: No space left on device"):
        with fileio.atomic_output(out):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(OSError, match="cannot write mode RGBA as JPEG") as other:  # not a file-system error
        with fileio.atomic_output(out):
            raise OSError("cannot write mode RGBA as JPEG")
    assert not isinstance(other.value, LcfIOError)
    assert out.read_bytes() == b"old" and names(tmp_path) == ["a.png"]


def test_a_temporary_file_taken_in_the_instant_before_the_lock_is_not_used(tmp_path: Path, monkeypatch) -> None:
    """Another process may take our new file for a stale one between its creation and our lock; then the name
    no longer leads to our file, and the claim starts again instead of writing into a file nobody can see."""
    out = tmp_path / "a.lcf"
    real_lock, stolen = fileio._lock, []

    def lock(fd: int, *, blocking: bool):
        if blocking and not stolen:
            stolen.append(True)
            os.unlink(fileio.temp_path(out))  # the other process deletes it, then claims the name itself
            fileio.temp_path(out).write_bytes(b"the other process's")
        return real_lock(fd, blocking=blocking)

    monkeypatch.setattr(fileio, "_lock", lock)
    with fileio.claim(out) as held:  # the other one's file is unlocked here (it "died"): ours after a retry
        assert held is not None and os.fstat(held.file.fileno()).st_ino == fileio.temp_path(out).stat().st_ino
        held.file.write(b"ours")
        held.publish()
    assert out.read_bytes() == b"ours" and names(tmp_path) == ["a.lcf"]


def test_temp_names() -> None:
    assert fileio.temp_path("dir/a.lcf") == Path("dir/.a.lcf.lcf-tmp")
    assert fileio.is_temp_name(".a.lcf.lcf-tmp") and fileio.is_temp_name(".a.png.lcf-tmp")
    assert fileio.is_temp_name(".a.lcf.lcf-tmp-123-0badf00d")  # lcf 0.x batches: never an input (never deleted)
    for name in (
        "a.lcf",
        "a.lcf.lcf-tmp",
        ".lcf-tmp",
        "notes.lcf-tmp-4000000-ab.txt",
        ".a.lcf.lcf-tmp-1-xyz",
        ".a.lcf.lcf-tmp-x-0badf00d",
        ".c.png.1a2b3c4d.tmp",
    ):
        assert not fileio.is_temp_name(name), name
