"""Typed errors of lcf.

Every error a user can cause is an :class:`LcfError`. Each subclass maps to one exit code of the ``lcf`` command
(see the README), and each message says what is wrong, where (chunk type and byte offset when there is a file), and,
where it helps, what to do about it.

Each subclass also derives from the builtin exception a Python user (and Pillow's conventions) expects for its kind,
so that code written for any image library catches it::

    UsageError                                  -> ValueError   (bad arguments: what to pass instead)
    FormatError, CorruptDataError,
    ModelMismatchError, UnsupportedImageError,
    LcfIOError                                  -> OSError      (a file or its data: Pillow raises OSError, and
                                                                 UnidentifiedImageError is one)
    LcfError, LimitError and the others         -> Exception    (LimitError as Pillow's DecompressionBombError)

The builtin base changes nothing else: ``str(err)``, ``err.args``, ``.message``, ``.chunk``, ``.offset`` and
``exit_code`` are those of :class:`LcfError` (``OSError.errno``, ``strerror`` and ``filename`` are None), and a
handler that catches ``LcfError`` before ``OSError``/``ValueError`` (as the ``lcf`` command does) keeps the exit codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lcf.ratecontrol import Outcome


class LcfError(Exception):
    """Root of every error lcf raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, chunk: str | None = None, offset: int | None = None) -> None:
        self.message = message
        self.chunk = chunk
        self.offset = offset
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.chunk is not None:
            where.append(f"chunk {self.chunk}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class ConversionWarning(UserWarning):
    """Not an error: lcf changed the image it was given to code it (bit depth, colour space, palette, ICC profile,
    orientation; see :mod:`lcf.image`). The Pillow plugin warns with it when saving; the ``lcf`` command prints the
    same notes on stderr."""


class UsageError(LcfError, ValueError):
    """Bad arguments or options."""

    exit_code = 2


class FormatError(LcfError, OSError):
    """The data is not a valid .lcf file: signature, version, chunk order, unknown critical chunk, bad field."""

    exit_code = 3


class CorruptDataError(LcfError, OSError):
    """The file has the right shape but its bytes are damaged: CRC mismatch, truncation, a stream that does not
    decode."""

    exit_code = 4


class LimitError(LcfError):
    """A size exceeds a limit that guards memory (decompression-bomb guard); the limit can be raised explicitly."""

    exit_code = 5


class ModelMismatchError(LcfError, OSError):
    """The file was encoded with other weights than the ones loaded."""

    exit_code = 6


class UnsupportedImageError(LcfError, OSError):
    """An input image that lcf cannot encode (unreadable, animated, zero-sized, ...)."""

    exit_code = 7


class LcfIOError(LcfError, OSError):
    """A file-system error: missing file, permission denied, disk full."""

    exit_code = 8


class DecoderFallbackWarning(UserWarning):
    """Not an error: the file recommends a decoder (synthesis network) that the loaded weights do not have, so it
    was decoded with their default one (spec/lcf.md, "decoder": a decoder SHOULD fall back and say so).
    :meth:`lcf.codec.Codec.decode` and :func:`lcf.api.decode_file` return it as a note (``notes``), the API
    functions that return only pixels warn with it, and the ``lcf`` command prints it on stderr."""


class UnreachableTargetError(LcfError):
    """A rate-control target (``--target-size``, ``--target-bpp``, ``--target-psnr``) that no quality meets: a size
    below the smallest file or a PSNR above the best one. The message gives the nearest reachable value
    (``--keep-nearest`` writes that file instead, :mod:`lcf.ratecontrol`); ``outcome`` the same for reports
    (:class:`lcf.ratecontrol.Outcome`: ``met`` False, ``nearest`` the value)."""

    exit_code = 9

    def __init__(self, message: str, *, outcome: Outcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


class TrainError(LcfError):
    """The training tools (``python -m lcf.train``, :mod:`lcf.train`) cannot go on: missing or unusable data, a
    checkpoint or start folder that is not what it must be, a model that does not fit the output limits. Not raised
    by the ``lcf`` command; ``python -m lcf.train`` prints the message and exits with code 1."""


__all__ = [
    "ConversionWarning",
    "LcfError",
    "UsageError",
    "FormatError",
    "CorruptDataError",
    "LimitError",
    "ModelMismatchError",
    "UnsupportedImageError",
    "LcfIOError",
    "TrainError",
    "UnreachableTargetError",
    "DecoderFallbackWarning",
]
