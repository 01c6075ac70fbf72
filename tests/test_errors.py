"""lcf.errors: each error is also the builtin a Python user expects (issue 21), and nothing else about it changed."""

from __future__ import annotations

import pickle

import pytest

from lcf import errors
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

BUILTIN = {
    UsageError: ValueError,
    FormatError: OSError,
    CorruptDataError: OSError,
    ModelMismatchError: OSError,
    UnsupportedImageError: OSError,
    LcfIOError: OSError,
}
EXIT_CODES = {
    LcfError: 1,
    UsageError: 2,
    FormatError: 3,
    CorruptDataError: 4,
    LimitError: 5,
    ModelMismatchError: 6,
    UnsupportedImageError: 7,
    LcfIOError: 8,
}


@pytest.mark.parametrize("cls", list(BUILTIN))
def test_each_error_is_the_builtin_python_code_catches(cls: type[LcfError]) -> None:
    with pytest.raises(BUILTIN[cls]):
        raise cls("bad")
    try:
        raise cls("bad")
    except LcfError as exc:  # and still an LcfError first
        assert exc.exit_code == EXIT_CODES[cls]


def test_limit_error_is_not_an_oserror_as_pillows_bomb_error_is_not() -> None:
    assert not issubclass(LimitError, (OSError, ValueError)) and not issubclass(LcfError, (OSError, ValueError))


@pytest.mark.parametrize("cls", list(EXIT_CODES))
def test_message_args_and_exit_code_are_unchanged(cls: type[LcfError]) -> None:
    exc = cls("CRC mismatch", chunk="HYPR", offset=120)
    assert str(exc) == "CRC mismatch (chunk HYPR, offset 120)" and exc.args == (str(exc),)
    assert (exc.message, exc.chunk, exc.offset, exc.exit_code) == ("CRC mismatch", "HYPR", 120, EXIT_CODES[cls])
    assert str(cls("two words")) == "two words"
    if isinstance(exc, OSError):  # OSError's own fields stay empty: str() is never "[Errno ...]"
        assert (exc.errno, exc.strerror, exc.filename) == (None, None, None)
    again = pickle.loads(pickle.dumps(exc))  # batch workers send errors across processes
    assert type(again) is cls and str(again) == str(exc) and (again.chunk, again.offset) == ("HYPR", 120)


def test_conversion_warning_is_a_user_warning() -> None:
    assert issubclass(errors.ConversionWarning, UserWarning) and "ConversionWarning" in errors.__all__
