"""Decoded pixels do not depend on the number of torch threads (issue 20).

Before the fix, the first layer of g_s read the coded channels of ŷ in the default (NCHW) layout, where oneDNN's
convolution over such a channel count sums in an order that depends on the thread count: pixels differed by ±1
between 1 and 2 threads. Each decode runs in its own process (``torch.set_num_threads`` before anything is built).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from images import make_rgb

DECODE = """
import sys
import numpy as np
import torch

torch.set_num_threads(int(sys.argv[1]))
from lcf.codec import Codec

codec = Codec()
arrays = {name: codec.decode(open(name, "rb").read()).rgb for name in sys.argv[3:]}
assert torch.get_num_threads() == int(sys.argv[1])
np.savez(sys.argv[2], **{str(i): arrays[name] for i, name in enumerate(sys.argv[3:])})
"""

#: (width, height, kind, quality): before the fix, 6, 4 and 4 samples of these differed between 1 and 2 threads
#: (pixels near a rounding boundary; a larger image differs in more, a 128x128 one in none).
IMAGES = ((256, 256, "noise", 7.0), (256, 256, "noise", 4.0), (256, 256, "edges", 5.0))


def _decode(threads: int, files: list[Path], out: Path) -> list[np.ndarray]:
    subprocess.run([sys.executable, "-c", DECODE, str(threads), str(out), *map(str, files)], check=True, timeout=600)
    with np.load(out) as z:
        return [z[str(i)] for i in range(len(files))]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> list[Path]:
    """The IMAGES, encoded with the shipped weights; in each some channels are coded and some skipped."""
    from lcf.codec import Codec
    from lcf.container import read_container

    codec = Codec()
    folder = tmp_path_factory.mktemp("threads")
    files = []
    for width, height, kind, quality in IMAGES:
        data = codec.encode(make_rgb(width, height, kind), quality)
        coded = codec.decode_symbols(read_container(data)).coded
        assert 0 < coded.sum() < coded.size  # the first layer of g_s reads the coded channels only
        files.append(folder / f"{kind}-{quality:g}.lcf")
        files[-1].write_bytes(data)
    return files


def test_pixels_equal_on_one_and_two_threads(encoded, tmp_path):
    one = _decode(1, encoded, tmp_path / "one.npz")
    two = _decode(2, encoded, tmp_path / "two.npz")
    for path, a, b in zip(encoded, one, two, strict=True):
        assert a.shape == b.shape
        differing = int((a != b).sum())
        assert differing == 0, f"{path.name}: {differing} samples differ between 1 and 2 threads"
