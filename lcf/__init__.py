"""lcf: a learned image codec and its .lcf file format."""

from lcf.errors import (
    CorruptDataError,
    FormatError,
    LcfError,
    LcfIOError,
    LimitError,
    ModelMismatchError,
    UnsupportedImageError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "LcfError",
    "UsageError",
    "FormatError",
    "CorruptDataError",
    "LimitError",
    "ModelMismatchError",
    "UnsupportedImageError",
    "LcfIOError",
]
