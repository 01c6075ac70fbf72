"""Size limits a reader enforces before it allocates anything (spec/lcf.md, "Limits").

The defaults guard against decompression bombs the way Pillow does: ``max_pixels`` is Pillow's ``MAX_IMAGE_PIXELS``
(about a quarter gigapixel, i.e. 1 GiB of 32-bit pixels). ``None`` switches a limit off.
"""

from __future__ import annotations

from dataclasses import dataclass

from lcf.errors import LimitError, UsageError

DEFAULT_MAX_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS
DEFAULT_MAX_CHUNK_LENGTH = 256 * 2**20
DEFAULT_MAX_FILE_SIZE = 2**30


@dataclass(frozen=True)
class Limits:
    """Limits on what a file may claim. Raise them explicitly (``Limits(max_pixels=...)``, ``--max-pixels``)."""

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_chunk_length: int | None = DEFAULT_MAX_CHUNK_LENGTH
    max_file_size: int | None = DEFAULT_MAX_FILE_SIZE

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_chunk_length", "max_file_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UsageError(f"limit {name} must be a positive integer or None (no limit), got {value!r}")

    @classmethod
    def unlimited(cls) -> Limits:
        """No limits beyond the format's own (use only for trusted files)."""
        return cls(max_pixels=None, max_chunk_length=None, max_file_size=None)

    def check_pixels(self, width: int, height: int, *, offset: int | None = None) -> None:
        """Refuse an image of ``width * height`` pixels above ``max_pixels``."""
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise LimitError(
                f"image of {width}x{height} = {width * height} pixels exceeds the limit of {self.max_pixels} pixels "
                "(a guard against decompression bombs); raise it with --max-pixels or Limits(max_pixels=...) "
                "if you trust this file",
                chunk="HEAD",
                offset=offset,
            )

    def check_chunk_length(self, length: int, *, chunk: str | None = None, offset: int | None = None) -> None:
        """Refuse a chunk whose declared payload length is above ``max_chunk_length``."""
        if self.max_chunk_length is not None and length > self.max_chunk_length:
            raise LimitError(
                f"chunk length {length} exceeds the limit of {self.max_chunk_length} bytes; "
                "raise it with Limits(max_chunk_length=...) if you trust this file",
                chunk=chunk,
                offset=offset,
            )

    def check_file_size(self, size: int) -> None:
        """Refuse a file larger than ``max_file_size`` bytes (check before reading it into memory)."""
        if self.max_file_size is not None and size > self.max_file_size:
            raise LimitError(
                f"file of {size} bytes exceeds the limit of {self.max_file_size} bytes; "
                "raise it with Limits(max_file_size=...) if you trust this file"
            )
