"""The examples of README.md's "Python API" section run, against the conformance vectors' tiny weights.

The section's ```python blocks are executed in order, in one namespace, in a temporary folder holding a
``photo.png``. The weights are passed the way the README tells users to: ``LCF_WEIGHTS`` (the examples themselves
use the default weights, as a user would).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_WEIGHTS = ROOT / "spec" / "vectors" / "weights"


def python_api_examples() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Python API")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end >= 0 else len(readme)]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_section_has_examples_of_every_entry_point() -> None:
    code = "\n".join(python_api_examples())
    for name in (
        "lcf.encode(",
        "lcf.decode(",
        "lcf.Codec(",
        "np.asarray(",
        "Image.open(",
        '.save("photo.lcf"',
        "api.encode_file(",
        "api.decode_file(",
        "api.inspect_file(",
        "read_container(",
    ):
        assert name in code, name


@pytest.fixture
def fresh_codecs():
    """lcf.codec_cache keeps one Codec per weights folder; keep the tiny-weights one out of other tests."""
    import lcf.codec_cache
    import lcf.pillow

    cache = getattr(lcf.codec_cache, "_codec_for", None)
    if cache is not None:
        cache.cache_clear()
    yield
    if cache is not None:
        cache.cache_clear()
    lcf.pillow.register()  # the plugin's default options


def test_python_api_examples_run(tmp_path, monkeypatch, fresh_codecs) -> None:
    from PIL import Image

    monkeypatch.setenv("LCF_WEIGHTS", str(TINY_WEIGHTS))
    monkeypatch.chdir(tmp_path)
    y, x = np.indices((48, 64))
    Image.fromarray(np.dstack([x * 4, y * 5, (x + y) * 2]).astype(np.uint8)).save("photo.png")
    namespace: dict = {}
    for i, block in enumerate(python_api_examples()):
        try:
            exec(compile(block, f"README.md Python API example {i + 1}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"README.md Python API example {i + 1} fails: {type(exc).__name__}: {exc}\n{block}")
    assert Path("photo.lcf").read_bytes()[:4] == b"\x8bLCF"
    assert namespace["back"].shape == namespace["pixels"].shape == (48, 64, 3)
    assert namespace["decoded"].rgb.shape == (48, 64, 3)
    assert namespace["size"] == (64, 48) and namespace["mode"] == "RGB"
    with Image.open("photo-back.png") as im:
        assert im.size == (64, 48)
