"""A wheel that works anywhere: built as ``python -m build`` builds it (the sdist, then the wheel from the sdist),
installed into a fresh virtual environment, it encodes and decodes from another folder with the weights it carries,
and decodes a file of an older, released model (a tiny one planted in weights/released/ of the copy built here).

Nothing is downloaded: the build runs without isolation (setuptools of this environment), and the venv sees this
environment's packages (--system-site-packages) for torch & co.; lcf itself comes from the wheel (checked). The
tree is copied first, so that building writes nothing into the checkout (build/, *.egg-info), and files that must
never ship are planted in the copy (runs/, .data/). About 30-60 s; deselect with -m 'not wheel'.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from lcf import models
from lcf.weights import read_manifest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parent.parent
SPEC_WEIGHTS = ROOT / "spec" / "vectors" / "weights"
NOT_THE_TREE = shutil.ignore_patterns(
    ".git",
    "runs",
    ".data",
    ".ckpt",
    ".whl",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".ruff_cache",
    ".benchmarks",
)
SDIST_TOP = {
    "lcf",
    "cli",
    "weights",
    "README.md",
    "pyproject.toml",
    "MANIFEST.in",
    "PKG-INFO",
    "setup.cfg",
    "lcf.egg-info",
}
WHEEL_TOP = {"lcf", "lcf_cli", "lcf_weights", "lcf-0.1.0.dist-info"}
SLACK = 2 << 20  # the wheel: the weights (zip-compressed) plus lcf's code, a few hundred KB


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tree copied, with runs/, .data/ and a released tiny model planted; its sdist and the wheel built from it."""
    from images import make_rgb

    from lcf import api

    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_THE_TREE)
    for planted in ("runs/gpu/checkpoint.safetensors", ".data/shard-00/img.png", "weights/notes.txt"):
        (src / planted).parent.mkdir(parents=True, exist_ok=True)
        (src / planted).write_bytes(b"must not ship")
    tiny = models.release_copy(SPEC_WEIGHTS, src / "weights" / "released" / read_manifest(SPEC_WEIGHTS).model_id.hex())
    tiny_file = tmp / "tiny.lcf"
    tiny_file.write_bytes(api.encode_image(make_rgb(40, 24, "mixed"), weights=SPEC_WEIGHTS))

    sdist_dir, wheel_dir = tmp / "sdist", tmp / "dist"
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    name = run(sys.executable, "-c", code, sdist_dir, cwd=src).stdout.strip().splitlines()[-1]
    sdist = sdist_dir / name
    with tarfile.open(sdist) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
        tar.extractall(tmp / "unpacked", **safe)
        members = [m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name]
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        wheel_dir,
        tmp / "unpacked" / sdist.name.removesuffix(".tar.gz"),
        cwd=tmp,
    )
    (wheel,) = wheel_dir.glob("lcf-*.whl")
    return {"tmp": tmp, "src": src, "sdist_members": members, "wheel": wheel, "tiny": tiny, "tiny_file": tiny_file}


def test_the_sdist_holds_the_code_and_the_weights_only(built: dict) -> None:
    members = built["sdist_members"]
    assert {m.split("/")[0] for m in members} <= SDIST_TOP, sorted({m.split("/")[0] for m in members} - SDIST_TOP)
    weights = read_manifest(ROOT / "weights")
    for file in (weights.entropy_file, weights.encoder_file, *(d.file for d in weights.decoders.values())):
        assert f"weights/{file}" in members
    assert f"weights/released/{built['tiny'].model_id.hex()}/entropy.safetensors" in members
    assert "weights/notes.txt" not in members


def test_the_wheel_holds_lcf_and_its_weights_only(built: dict) -> None:
    with zipfile.ZipFile(built["wheel"]) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == WHEEL_TOP, sorted(tops)
    weights = read_manifest(ROOT / "weights")
    shipped = [weights.entropy_file, weights.encoder_file, *(d.file for d in weights.decoders.values())]
    for file in [*shipped, "manifest.json", "README.md"]:
        assert f"lcf_weights/{file}" in names
    released = f"lcf_weights/released/{built['tiny'].model_id.hex()}"
    files = {f"{released}/{p.name}" for p in built["tiny"].root.iterdir()}
    assert {n for n in names if n.startswith(released)} == files
    assert "lcf_weights/notes.txt" not in names
    weights_bytes = sum((ROOT / "weights" / f).stat().st_size for f in shipped)
    tiny_bytes = models.folder_bytes(built["tiny"].root)
    assert weights_bytes // 2 < built["wheel"].stat().st_size < weights_bytes + tiny_bytes + SLACK


def test_the_installed_wheel_encodes_and_decodes_anywhere(built: dict) -> None:
    from images import make_rgb

    tmp = built["tmp"]
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv, cwd=tmp)
    python = venv / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "--ignore-installed",
        built["wheel"],
        cwd=tmp,
    )
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LCF_WEIGHTS", "LCF_WEIGHTS_PATH")}
    env["OMP_NUM_THREADS"] = "1"

    where = run(
        python,
        "-c",
        "import json, lcf, lcf_cli, lcf.weights as w; print(json.dumps([lcf.__file__, "
        "lcf_cli.__file__, str(w.DEFAULT_WEIGHTS)]))",
        cwd=elsewhere,
        env=env,
    )
    site = venv.resolve()
    assert all(Path(p).resolve().is_relative_to(site) for p in json.loads(where.stdout)), where.stdout

    make_rgb(72, 40, "mixed").save(elsewhere / "photo.png")
    lcf = venv / "bin" / "lcf"
    run(lcf, "encode", "photo.png", "-o", "photo.lcf", cwd=elsewhere, env=env)
    run(lcf, "decode", "photo.lcf", "-o", "back.png", cwd=elsewhere, env=env)
    from PIL import Image

    with Image.open(elsewhere / "back.png") as back:
        assert back.size == (72, 40)

    shutil.copy(built["tiny_file"], elsewhere / "old.lcf")  # a file of the released (older) model
    run(lcf, "decode", "old.lcf", "-o", "old.png", cwd=elsewhere, env=env)
    doc = json.loads(run(lcf, "info", "old.lcf", "--json", cwd=elsewhere, env=env).stdout)
    assert doc["model"]["installed"] and doc["model"]["source"] == "released"
    assert Path(doc["model"]["weights"]).resolve().is_relative_to(site)
