"""lcf.hugepages: PyTorch is asked for huge pages only where the kernel gives them on request, never against the
user's own setting."""

from __future__ import annotations

import pytest

from lcf import hugepages


def _setting(tmp_path, text: str) -> str:
    path = tmp_path / "enabled"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("always [madvise] never\n", "madvise"),
        ("[always] madvise never\n", "always"),
        ("always madvise [never]\n", "never"),
        ("garbage\n", None),
    ],
)
def test_kernel_mode_reads_the_bracketed_choice(tmp_path, text, mode):
    assert hugepages.kernel_mode(_setting(tmp_path, text)) == mode


def test_kernel_mode_of_a_missing_file_is_none(tmp_path):
    assert hugepages.kernel_mode(str(tmp_path / "absent")) is None


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(hugepages.VARIABLE, raising=False)
    monkeypatch.setattr(hugepages.sys, "platform", "linux")
    return monkeypatch


def test_enable_sets_the_variable_only_for_madvise(tmp_path, clean_env):
    import os

    for text in ("[always] madvise never\n", "always madvise [never]\n"):
        assert hugepages.enable(_setting(tmp_path, text)) is False
        assert hugepages.VARIABLE not in os.environ
    assert hugepages.enable(str(tmp_path / "absent")) is False
    assert hugepages.VARIABLE not in os.environ
    assert hugepages.enable(_setting(tmp_path, "always [madvise] never\n")) is True
    assert os.environ[hugepages.VARIABLE] == "1"


def test_enable_leaves_the_users_setting_alone(tmp_path, clean_env):
    import os

    clean_env.setenv(hugepages.VARIABLE, "0")
    assert hugepages.enable(_setting(tmp_path, "always [madvise] never\n")) is False
    assert os.environ[hugepages.VARIABLE] == "0"


def test_enable_does_nothing_off_linux(tmp_path, clean_env):
    import os

    clean_env.setattr(hugepages.sys, "platform", "darwin")
    assert hugepages.enable(_setting(tmp_path, "always [madvise] never\n")) is False
    assert hugepages.VARIABLE not in os.environ


def test_plan_for_keeps_ordinary_pages_below_the_large_size(clean_env):
    import os

    assert hugepages.plan_for(None) is False  # unknown (a pipe): lcf's default
    assert hugepages.VARIABLE not in os.environ
    assert hugepages.plan_for(hugepages.LARGE_IMAGE_PIXELS) is False
    assert hugepages.VARIABLE not in os.environ
    assert hugepages.plan_for(768 * 512) is True
    assert os.environ[hugepages.VARIABLE] == "0"


def test_plan_for_leaves_the_users_setting_alone(clean_env):
    import os

    clean_env.setenv(hugepages.VARIABLE, "1")
    assert hugepages.plan_for(768 * 512) is False
    assert os.environ[hugepages.VARIABLE] == "1"
