"""Start-up of the lcf command (issue 21): the commands that code nothing import no PyTorch, and what a codec does
when it is made gives the same networks as before it was made cheaper. Times are in benchmarks/cli_startup.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcf.nn.integer import FRAC_BITS, LAYERS, SHIFT_MAX, SHIFT_MIN, float_state

VECTOR = Path(__file__).resolve().parents[1] / "spec" / "vectors" / "gradient-64x48-q4.lcf"

# runs the CLI in this process (as the console script does) and reports which heavy modules it imported
PROBE = """
import sys
from lcf_cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
heavy = sorted(m for m in ("torch", "lcf.codec", "constriction") if m in sys.modules)
print("EXIT", code, "HEAVY", ",".join(heavy) or "-", file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["encode", "--help"],
        ["info", str(VECTOR)],
        ["info", str(VECTOR), "--json"],
        ["validate", str(VECTOR)],
    ],
)
def test_commands_that_code_nothing_import_no_torch(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, check=False
    )
    last = result.stderr.strip().splitlines()[-1]
    assert last == "EXIT 0 HEAVY -", (args, result.stderr[-2000:])


def _float64_reference(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """float_state as it was: every weight and bias through float64, then float32."""
    out = {}
    for layer in LAYERS:
        shift = int(arrays[f"{layer.key}.shift"][0])
        w = arrays[f"{layer.key}.weight"].astype(np.float64) * 2.0**-shift
        b = arrays[f"{layer.key}.bias"].astype(np.float64) * 2.0 ** -(shift + FRAC_BITS)
        out[f"{layer.key}.weight"], out[f"{layer.key}.bias"] = torch.from_numpy(w).float(), torch.from_numpy(b).float()
    return out


def test_float_state_equals_the_float64_route_bit_for_bit() -> None:
    rng = np.random.default_rng(21)
    arrays = {}
    for i, layer in enumerate(LAYERS):
        shift = (SHIFT_MIN, SHIFT_MAX, 13)[i % 3]
        w = rng.integers(-(1 << 15), 1 << 15, size=(7, 5, 3, 3)).astype(np.int16)
        w.flat[:2] = (-(1 << 15), (1 << 15) - 1)  # the extremes of int16
        arrays[f"{layer.key}.weight"] = w
        arrays[f"{layer.key}.bias"] = rng.integers(-(1 << 62), 1 << 62, size=7, dtype=np.int64)  # beyond float32
        arrays[f"{layer.key}.shift"] = np.array([shift], np.int32)
    got, want = float_state(arrays), _float64_reference(arrays)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == torch.float32
        assert torch.equal(got[key], want[key]), key


# runs the CLI in this process and reports the huge-page setting its codec was made under (lcf.hugepages)
PAGES_PROBE = """
import os, sys
from lcf_cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print("EXIT", code, "THP", os.environ.get("THP_MEM_ALLOC_ENABLE", "unset"), file=sys.stderr)
"""


def _pages_of(args: list[str], env: dict[str, str] | None = None) -> str:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | (env or {})
    result = subprocess.run(
        [sys.executable, "-c", PAGES_PROBE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=environ,
    )
    return result.stderr.strip().splitlines()[-1]


def test_small_images_are_coded_without_huge_pages(tmp_path: Path) -> None:
    # huge pages made a Kodak image's first encode ~0.3 s slower (docs/BENCHMARKS.md, issue 21): a process that codes
    # only small images keeps PyTorch's ordinary pages; from a pipe (size unknown) or under the user's own setting,
    # nothing changes
    source = VECTOR.with_name("gradient-64x48-q4.source.png")
    assert _pages_of(["encode", str(source), "-o", str(tmp_path / "a.lcf")]) == "EXIT 0 THP 0"
    assert _pages_of(["decode", str(tmp_path / "a.lcf"), "-o", str(tmp_path / "a.png")]) == "EXIT 0 THP 0"
    user = _pages_of(["encode", str(source), "-o", str(tmp_path / "b.lcf")], {"THP_MEM_ALLOC_ENABLE": "1"})
    assert user == "EXIT 0 THP 1"
    assert (tmp_path / "a.lcf").read_bytes() == (tmp_path / "b.lcf").read_bytes()


def test_a_large_image_keeps_lcfs_default_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from lcf import hugepages
    from lcf_cli.commands.encode import _pixels
    from lcf_cli.files import plan_pages

    big = tmp_path / "big.png"
    Image.new("RGB", (4000, 2000)).save(big)  # 8 MP, header only read
    assert _pixels(big) == 8_000_000 >= hugepages.LARGE_IMAGE_PIXELS
    import os

    monkeypatch.delenv(hugepages.VARIABLE, raising=False)
    plan_pages([big, VECTOR.with_name("gradient-64x48-q4.source.png")], _pixels)
    assert hugepages.VARIABLE not in os.environ
    plan_pages([VECTOR.with_name("gradient-64x48-q4.source.png")], _pixels)
    assert os.environ[hugepages.VARIABLE] == "0"


# runs the CLI in this process and lists the modules it imported that only other commands need
UNUSED_PROBE = """
import sys
from lcf_cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
unused = sorted(m for m in ("lcf.batch", "lcf.batchplan", "rich.progress") if m in sys.modules)
print("EXIT", code, "UNUSED", ",".join(unused) or "-", file=sys.stderr)
"""


def test_encoding_one_file_imports_nothing_for_batch_or_progress_bars(tmp_path: Path) -> None:
    source = VECTOR.with_name("gradient-64x48-q4.source.png")
    for args in (["--version"], ["encode", str(source), "-o", str(tmp_path / "a.lcf")]):
        result = subprocess.run(
            [sys.executable, "-c", UNUSED_PROBE, *args], capture_output=True, text=True, timeout=300, check=False
        )
        assert result.stderr.strip().splitlines()[-1] == "EXIT 0 UNUSED -", (args, result.stderr[-2000:])


def test_networks_built_for_loading_skip_random_init_only_in_their_thread() -> None:
    import threading

    from lcf.nn.model import weights_to_load

    seen = {}

    def elsewhere() -> None:
        seen["other"] = torch.nn.Conv2d(4, 4, 3).weight.detach().clone()

    with weights_to_load():
        conv = torch.nn.Conv2d(4, 4, 3)
        other = threading.Thread(target=elsewhere)
        other.start()
        other.join()
    assert torch.isnan(conv.weight).all() and torch.isnan(conv.bias).all()
    assert torch.isfinite(seen["other"]).all() and seen["other"].abs().sum() > 0  # PyTorch's random init
    assert torch.isfinite(torch.nn.Conv2d(4, 4, 3).weight).all()  # and after the block
    assert torch.nn.init.uniform_.__module__ == "torch.nn.init"


def test_a_codec_runs_only_loaded_parameters(tmp_path: Path) -> None:
    # the codec's model is built without random initialisation (NaN until loaded): every network it ran to encode
    # and decode must be finite, and the bytes are those of the spec's vectors (tests/test_vectors.py checks them all)
    import lcf

    codec = lcf.Codec()
    source = VECTOR.with_name("gradient-64x48-q4.source.png")
    data = codec.encode(source, 4)
    codec.decode(data)
    model = codec.model
    ran = [model.g_a, model.h_a, model.h_s, model.ctx, model.pen_anchor, model.pen_nonanchor, model.gain]
    ran += [model.decoders[name] for name in codec._decoders_loaded]
    for network in ran:
        for name, param in network.named_parameters():
            assert torch.isfinite(param).all(), name


def test_the_console_script_freezes_the_garbage_collector_before_exit(tmp_path: Path) -> None:
    # the interpreter's exit then skips collecting every object PyTorch made (~0.2 s of each lcf call, issue 21);
    # the command's output is complete before
    probe = (
        "import gc, sys\nfrom lcf_cli.main import run\nsys.argv = ['lcf', *sys.argv[1:]]\n"
        "try:\n    run()\nexcept SystemExit as exc:\n    code = exc.code or 0\n"
        "print('EXIT', code, 'FROZEN', gc.get_freeze_count() > 0, file=sys.stderr)\n"
    )
    source, out = VECTOR.with_name("gradient-64x48-q4.source.png"), tmp_path / "a.lcf"
    result = subprocess.run(
        [sys.executable, "-c", probe, "encode", str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stderr.strip().splitlines()[-1] == "EXIT 0 FROZEN True", result.stderr[-2000:]
    assert out.read_bytes()[:4] == VECTOR.read_bytes()[:4]


@pytest.mark.parametrize("preset", [None, "0"])
def test_the_console_script_turns_mkls_memory_manager_off_before_torch_loads(preset: str | None) -> None:
    # MKL reads MKL_DISABLE_FAST_MM when PyTorch loads it: the console script sets it before any import of torch
    # (issue 20: its cached buffers otherwise stay on top of a large decode's peak); a value the user set wins
    probe = (
        "import os, sys\nfrom lcf_cli.main import run\nsys.argv = ['lcf', 'info', sys.argv[1]]\n"
        "early = 'torch' in sys.modules\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "print('MKL', os.environ.get('MKL_DISABLE_FAST_MM'), 'EARLY', early, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MKL_DISABLE_FAST_MM"}
    if preset is not None:
        env["MKL_DISABLE_FAST_MM"] = preset
    result = subprocess.run(
        [sys.executable, "-c", probe, str(VECTOR)], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.stderr.strip().splitlines()[-1] == f"MKL {preset or '1'} EARLY False", result.stderr[-2000:]
