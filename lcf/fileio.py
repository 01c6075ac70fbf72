"""Files in and out: bounded reads, and the one way lcf writes an output (atomic, claimed, never over a stranger).

Every output of lcf (``lcf encode``, ``lcf decode``, ``lcf batch``, :func:`lcf.api.encode_file`, ...) is written
through a *claim*::

    DIR/.NAME.lcf-tmp     the temporary file of the output DIR/NAME: created exclusively (O_EXCL), and locked
         |                (flock) by the one process writing it for as long as it exists under that name
         | write, flush, fsync
         v
    DIR/NAME              renamed into place when complete (or hard-linked, when an existing NAME must be kept)

* A reader of NAME sees the old file or the new one, never a partial one; on an error or Ctrl-C the temporary file
  is deleted, so nothing is left behind.
* Only one process writes NAME at a time: a second one finds the temporary file locked and is told so
  (:func:`claim` returns None), which is how two ``lcf batch`` runs on one folder share the work.
* The only file lcf ever deletes is the temporary file of an output it is about to write (or is cleaning up for):
  the exact name ``.NAME.lcf-tmp``, a regular file, and unlocked, that is, its writer is gone (killed, crashed).
  A symlink, a folder or any other name is never deleted. Where there is no ``flock`` (Windows), a file that
  another process holds open cannot be deleted, which gives the same answer. On a file system without locks (some
  network file systems) lcf cannot tell a live writer from a dead one, so it deletes nothing and reports the output
  as being written by another process until the temporary file is removed by hand.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lcf.container.limits import Limits
from lcf.errors import LcfError, LcfIOError

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None  # type: ignore[assignment]

PathLike = str | os.PathLike[str]

TEMP_SUFFIX = ".lcf-tmp"
"""``.NAME`` + this is the temporary file of the output NAME (see the module docstring)."""

_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def temp_path(path: PathLike) -> Path:
    """The temporary file of the output ``path``: ``DIR/.NAME.lcf-tmp``."""
    path = Path(path)
    return path.parent / f".{path.name}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is the temporary file of an lcf output (``.NAME.lcf-tmp``; never an input, never an output).

    Also recognised, so that a batch does not read them as inputs (never to delete them): the temporary files of lcf
    0.x batches, ``.NAME.lcf-tmp-PID-XXXXXXXX``.
    """
    if not name.startswith(".") or len(name) <= 1 + len(TEMP_SUFFIX):
        return False
    if name.endswith(TEMP_SUFFIX):
        return True
    head, _, tail = name.rpartition(TEMP_SUFFIX + "-")
    pid, _, nonce = tail.partition("-")
    return len(head) > 1 and pid.isdigit() and len(nonce) == 8 and all(c in "0123456789abcdef" for c in nonce)


# -- reading -------------------------------------------------------------------------------------------------------


def read_bytes(path: PathLike, limits: Limits | None = None) -> bytes:
    """The contents of ``path``, refusing (LimitError) a file larger than ``limits.max_file_size`` before reading."""
    limits = limits or Limits()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            limits.check_file_size(size)
            data = f.read() if limits.max_file_size is None else f.read(limits.max_file_size + 1)
    except IsADirectoryError:
        raise LcfIOError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise io_error(exc, path) from None
    limits.check_file_size(len(data))  # the file grew while we read it
    return data


def io_error(exc: OSError, path: PathLike | None = None) -> LcfIOError:
    """An LcfIOError for ``exc`` naming the file: "PATH: No such file or directory"."""
    where = exc.filename if exc.filename is not None else path
    reason = exc.strerror or str(exc)
    return LcfIOError(f"{where}: {reason}" if where is not None else reason)


def write_error(exc: OSError, path: PathLike) -> LcfIOError:
    """An LcfIOError for a failure to write the output ``path`` (disk full, permission denied, ...), exit code 8."""
    return LcfIOError(f"cannot write {path}: {exc.strerror or exc}")


# -- writing -------------------------------------------------------------------------------------------------------


class Claim:
    """The right to write the output ``path``: its temporary file, created and locked by this process.

    Write to ``file``, then :meth:`publish`; or :meth:`abandon` (also what leaving a ``with`` block without
    publishing does). Made by :func:`claim`.
    """

    def __init__(self, path: Path, temp: Path, fd: int) -> None:
        self.path, self.temp = path, temp
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.done = False

    def publish(self, *, replace: bool = True) -> bool:
        """Flush the file to disk and move it into place; True if it was, False if ``path`` exists and ``replace``
        is False (then the existing file is kept and the temporary file deleted). Raises LcfIOError."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            if replace:
                os.replace(self.temp, self.path)
                placed = True
            else:
                placed = self._place_new()
        except OSError as exc:
            self.abandon()
            raise write_error(exc, self.path) from None
        except BaseException:
            self.abandon()
            raise
        if not placed:
            self.abandon()
            return False
        self.done = True
        self.file.close()  # releases the lock, after the temporary name is gone
        return True

    def _place_new(self) -> bool:
        """Move the temporary file to ``path`` unless ``path`` exists (a hard link cannot replace a file)."""
        try:
            os.link(self.temp, self.path, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            if os.path.lexists(self.path):  # a file system without hard links: check, then rename
                return False
            os.replace(self.temp, self.path)
            return True
        os.unlink(self.temp)
        return True

    def abandon(self) -> None:
        """Delete the temporary file (if it is still the one this claim created) and give up the claim."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            if _same_file(self.file.fileno(), self.temp):
                os.unlink(self.temp)
        with contextlib.suppress(OSError):
            self.file.close()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abandon()


def claim(path: PathLike) -> Claim | None:
    """Claim the output ``path``: create and lock its temporary file; None if another process is writing ``path``.

    A temporary file left by a process that is gone is deleted first. Raises LcfIOError when the folder is missing
    or not writable, or when the temporary name is taken by something lcf did not make (a folder, a symlink).
    """
    path = Path(path)
    temp = temp_path(path)
    for _ in range(10):
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            state = _remove_if_stale(temp, path)
            if state == "busy":
                return None
            continue  # removed or gone: try again
        except FileNotFoundError:
            folder = path.parent if str(path.parent) else Path(".")
            raise LcfIOError(f"{path}: No such file or directory (no such folder: {folder})") from None
        except OSError as exc:
            raise write_error(exc, path) from None
        try:
            _lock(fd, blocking=True)
            if _same_file(fd, temp):
                return Claim(path, temp, fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # another process took our file for a stale one in the instant before we locked it: again
    raise LcfIOError(f"cannot write {path}: its temporary file {temp.name} keeps changing (another program?)")


def remove_stale_temp(path: PathLike) -> bool:
    """Delete the temporary file of the output ``path`` if its writer is gone; True if one was deleted."""
    temp = temp_path(path)
    if not os.path.lexists(temp):
        return False
    return _remove_if_stale(temp, Path(path)) == "removed"


def atomic_write(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` (replacing it) through a claim: the old file or the new one, never a partial one.

    Raises LcfIOError, also when another process is writing ``path`` at this moment.
    """
    with atomic_output(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[BinaryIO]:
    """A binary file to write the output ``path`` into; it replaces ``path`` when the block ends without an error.

    An OSError with an errno inside the block (disk full) becomes an LcfIOError naming ``path``; any other exception
    passes through unchanged. Either way the temporary file is deleted.
    """
    held = claim(path)
    if held is None:
        raise LcfIOError(
            f"cannot write {path}: another lcf process is writing it right now (its temporary file "
            f"{temp_path(path).name} is in use); try again when it is done"
        )
    with held:
        try:
            yield held.file
        except OSError as exc:
            if exc.errno is None:
                raise
            raise write_error(exc, path) from None
        held.publish(replace=True)


def _remove_if_stale(temp: Path, path: Path) -> str:
    """ "removed" (its writer was gone), "gone" (it vanished meanwhile) or "busy" (a live process holds it)."""
    try:
        fd = os.open(
            temp,
            os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0),
        )
    except FileNotFoundError:
        return "gone"
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(temp):
            raise _not_ours(temp, path, "a symlink") from None
        raise write_error(exc, path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _not_ours(temp, path, "not a regular file")
        if not _lock(fd, blocking=False):  # held by a live process, or no locks here: cannot tell, keep it
            return "busy"
        if not _same_file(fd, temp):
            return "gone"
        try:
            os.unlink(temp)
        except PermissionError:
            if fcntl is None:
                return "busy"  # Windows: open in another process
            raise
        return "removed"
    except LcfError:
        raise
    except OSError as exc:
        raise write_error(exc, path) from None
    finally:
        os.close(fd)


def _not_ours(temp: Path, path: Path, what: str) -> LcfIOError:
    return LcfIOError(
        f"cannot write {path}: {temp} exists and is {what}, not a temporary file of lcf; "
        "move it away (lcf never deletes it)"
    )


def _lock(fd: int, *, blocking: bool) -> bool | None:
    """True when locked, False when another process holds the lock, None where locks are not supported."""
    if fcntl is None:  # pragma: no cover  (Windows: see _remove_if_stale)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a file system without locks
            return None
        raise
    return True


def _same_file(fd: int, name: Path) -> bool:
    """Whether the open file ``fd`` is still the file called ``name``."""
    try:
        a, b = os.fstat(fd), os.lstat(name)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


__all__ = [
    "TEMP_SUFFIX",
    "Claim",
    "atomic_output",
    "atomic_write",
    "claim",
    "io_error",
    "is_temp_name",
    "read_bytes",
    "remove_stale_temp",
    "temp_path",
    "write_error",
]
