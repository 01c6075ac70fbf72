"""lcf never destroys a user's file (issue 20): ``lcf encode``/``lcf decode`` refuse an output that is their input,
``lcf batch`` keeps off every file it did not create, and a full disk is an output error (exit code 8).

Each refusal is checked to come before any work: the weights folder given is missing, so a check made after loading
the weights would fail with exit code 8 instead of 2.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from images import make_rgb, to_bytes
from typer.testing import CliRunner

from lcf.container import SIGNATURE, read_container
from lcf_cli.main import app

runner = CliRunner()

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def lcf_cli(*args: str | Path):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def png(seed: int = 0, size: int = 16) -> bytes:
    return to_bytes(make_rgb(size, size, "mixed", seed=seed), "PNG")


def files(root: Path) -> dict[str, bytes]:
    """Every entry below ``root`` (relative path -> bytes, or "-> target" for a symlink), hidden ones included."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = f"-> {os.readlink(path)}".encode()
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    path.write_bytes(png())
    return path


@pytest.fixture
def lcf_file(tmp_path: Path, tiny_codec) -> Path:
    path = tmp_path / "x.lcf"
    path.write_bytes(tiny_codec.encode(make_rgb(16, 12, "mixed"), 4.0))
    return path


# -- lcf encode / lcf decode ---------------------------------------------------------------------------------------


def test_encode_refuses_its_input_as_output(tmp_path: Path, photo: Path) -> None:
    original = photo.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.png").symlink_to(photo)
    os.link(photo, tmp_path / "hard.png")
    before = files(tmp_path)
    for output in (photo, tmp_path / "sub" / ".." / "a.png", tmp_path / "link.png", tmp_path / "hard.png"):
        result = lcf_cli("encode", photo, "-o", output, "--weights", tmp_path / "no-weights")
        assert result.exit_code == 2, (output, result.output)
        assert "is the input" in result.stderr and "destroy" in result.stderr
    assert files(tmp_path) == before and photo.read_bytes() == original


def test_decode_refuses_its_input_and_lcf_outputs_unless_asked(
    tmp_path: Path, lcf_file: Path, tiny_weights: Path
) -> None:
    original = lcf_file.read_bytes()
    same = lcf_cli("decode", lcf_file, "-o", lcf_file, "--weights", tmp_path / "no-weights")
    assert same.exit_code == 2 and "is the input" in same.stderr
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    before = files(tmp_path)
    still_same = lcf_cli(
        "decode", lcf_file, "-o", tmp_path / "alias" / "x.lcf", "--reencode", "--weights", tiny_weights
    )
    assert still_same.exit_code == 2 and "is the input" in still_same.stderr
    other = lcf_cli("decode", lcf_file, "-o", tmp_path / "y.LCF", "--weights", tmp_path / "no-weights")
    assert other.exit_code == 2 and "--reencode" in other.stderr and "y.png" in other.stderr
    assert files(tmp_path) == before and lcf_file.read_bytes() == original
    asked = lcf_cli("decode", lcf_file, "-o", tmp_path / "y.lcf", "--reencode", "--weights", tiny_weights)
    assert asked.exit_code == 0, asked.output
    assert read_container((tmp_path / "y.lcf").read_bytes()).header.width == 16
    assert lcf_file.read_bytes() == original


def test_dash_is_refused_not_written(tmp_path: Path, monkeypatch) -> None:
    """lcf batch works on folders: "-" is refused, not created (lcf encode/decode read and write pipes:
    tests/test_pipes.py)."""
    monkeypatch.chdir(tmp_path)
    before = files(tmp_path)
    for args in (["batch", tmp_path, "-"], ["batch", "-", tmp_path / "out"]):
        result = lcf_cli(*args, "--weights", tmp_path / "no-weights")
        assert result.exit_code == 2, (args, result.output)
        assert "not supported yet" in result.stderr
    assert files(tmp_path) == before


# -- lcf batch: temporary files ------------------------------------------------------------------------------------


def test_batch_deletes_only_its_own_temporary_files(tmp_path: Path, tiny_weights: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "a.png").write_bytes(png(1))
    (src / "b.png").write_bytes(png(2))
    (src / "photo.lcf-tmp-4000000-ab.png").write_bytes(png(3))  # a user's image with an unlucky name: an input
    out.mkdir()
    keep = tmp_path / "keep.txt"
    keep.write_bytes(b"a user's file")
    users = {
        "notes.lcf-tmp-4000000-ab.txt": b"notes",  # lcf 0.x deleted this one
        ".a.lcf.lcf-tmp-4000000-0badf00d": b"an lcf 0.x temporary?",  # ... and this one: now never
        "a.lcf.lcf-tmp": b"no leading dot",
        ".zz.lcf.lcf-tmp": b"not the temporary file of a planned output",
    }
    for name, data in users.items():
        (out / name).write_bytes(data)
    (out / ".b.lcf.lcf-tmp").symlink_to(keep)  # the temporary name of b.lcf, but a symlink: never deleted
    result = lcf_cli("batch", src, out, "--weights", tiny_weights, "--json")
    doc = json.loads(result.stdout)
    status = {Path(f["src"]).name: (f["status"], f["exit_code"]) for f in doc["files"]}
    assert status == {"a.png": ("ok", 0), "b.png": ("failed", 8), "photo.lcf-tmp-4000000-ab.png": ("ok", 0)}
    assert "not a temporary file of lcf" in doc["files"][1]["error"] and result.exit_code == 8
    assert doc["summary"]["cleaned_temp_files"] == 0
    assert keep.read_bytes() == b"a user's file" and os.readlink(out / ".b.lcf.lcf-tmp") == str(keep)
    assert {name: files(out)[name] for name in users} == users
    assert sorted(files(out)) == sorted([*users, ".b.lcf.lcf-tmp", "a.lcf", "photo.lcf-tmp-4000000-ab.lcf"])


# -- lcf batch: collisions, links, overlapping folders ---------------------------------------------------------


def test_batch_refuses_colliding_inputs_before_any_work(tmp_path: Path, tiny_weights: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "x.png").write_bytes(png(1))
    (src / "x.PNG").write_bytes(png(2))
    (src / "y.png").write_bytes(png(3))
    for _ in range(2):  # and again: the same answer, nothing half done
        result = lcf_cli("batch", src, out, "--weights", tmp_path / "no-weights")
        assert result.exit_code == 2, result.output
        assert "x.PNG, x.png" in result.stderr and "--exclude" in result.stderr
        assert "nothing was converted" in result.stderr
        assert not out.exists()
    resolved = lcf_cli("batch", src, out, "--exclude", "x.PNG", "--weights", tiny_weights)
    assert resolved.exit_code == 0, resolved.output
    assert sorted(files(out)) == ["x.lcf", "y.lcf"]


def test_batch_symlinks_stay_in_src_and_every_skipped_entry_is_reported(tmp_path: Path, tiny_weights: Path) -> None:
    src, out, elsewhere = tmp_path / "src", tmp_path / "out", tmp_path / "elsewhere"
    src.mkdir()
    elsewhere.mkdir()
    (src / "a.png").write_bytes(png(1))
    (elsewhere / "secret.png").write_bytes(png(2))
    (src / "inside.png").symlink_to(src / "a.png")  # stays in SRC: read
    (src / "outside.png").symlink_to(elsewhere / "secret.png")  # leaves SRC: not read unless --follow-symlinks
    (src / "dangling.png").symlink_to(tmp_path / "gone.png")
    (src / "folder").symlink_to(elsewhere, target_is_directory=True)
    os.mkfifo(src / "pipe.png")
    result = lcf_cli("batch", src, out, "--weights", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [Path(f["src"]).name for f in doc["files"]] == ["a.png", "inside.png"]
    reasons = {Path(e["path"]).name: e["reason"] for e in doc["left_out"]}
    assert sorted(reasons) == ["dangling.png", "folder", "outside.png", "pipe.png"]
    assert "outside SRC" in reasons["outside.png"] and "--follow-symlinks" in reasons["outside.png"]
    assert "broken symlink" in reasons["dangling.png"] and "never followed" in reasons["folder"]
    assert "not a regular file" in reasons["pipe.png"] and doc["summary"]["left_out"] == 4
    text = lcf_cli("batch", src, tmp_path / "out2", "--weights", tiny_weights)
    assert text.exit_code == 0 and f"SKIP  {src / 'outside.png'}: a symlink to a file outside SRC" in text.stderr
    assert "left out" in text.stderr and text.stderr.count("SKIP  ") == 4
    followed = lcf_cli("batch", src, out, "--follow-symlinks", "--weights", tiny_weights, "--json")
    doc = json.loads(followed.stdout)
    assert [(Path(f["src"]).name, f["status"]) for f in doc["files"]] == [
        ("a.png", "skipped"),
        ("inside.png", "skipped"),
        ("outside.png", "ok"),
    ]
    assert sorted(Path(e["path"]).name for e in doc["left_out"]) == ["dangling.png", "folder", "pipe.png"]
    assert sorted(files(out)) == ["a.lcf", "inside.lcf", "outside.lcf"]


def test_batch_outputs_never_land_on_or_among_inputs(tmp_path: Path, tiny_weights: Path, lcf_file: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(png(1))
    (src / "a.lcf").write_bytes(lcf_file.read_bytes())
    (tmp_path / "alias").symlink_to(src, target_is_directory=True)
    before = files(src)
    for dst, extra in (
        (src, []),
        (tmp_path / "alias", []),
        (src / "sub" / "..", ["--to", "png", "--overwrite"]),
        (tmp_path, []),
    ):
        result = lcf_cli("batch", src, dst, *extra, "--weights", tmp_path / "no-weights")
        assert result.exit_code == 2, (dst, result.output)
        assert ("is SRC" in result.stderr) or ("lies inside DST" in result.stderr)
    assert files(src) == before
    # a folder of DST that is a symlink into SRC: the output would land there
    out = tmp_path / "out"
    out.mkdir()
    (src / "deep").mkdir()
    (src / "deep" / "b.png").write_bytes(png(2))
    (out / "deep").symlink_to(src / "deep", target_is_directory=True)
    before = files(src)
    result = lcf_cli("batch", src, out, "--exclude", "a.lcf", "--weights", tmp_path / "no-weights")
    assert result.exit_code == 2 and "inside SRC" in result.stderr and "deep/b.lcf" in result.stderr
    assert files(src) == before
    # DST inside SRC is never read (its outputs never become inputs), nor is a symlink in SRC into it
    inner = src / "inner"
    encoded = lcf_cli("batch", src, inner, "--exclude", "deep", "--weights", tiny_weights)
    assert encoded.exit_code == 0, encoded.output
    (src / "into-dst.lcf").symlink_to(inner / "a.lcf")
    decoded = lcf_cli("batch", src, inner, "--to", "png", "--exclude", "deep", "--json", "--weights", tiny_weights)
    doc = json.loads(decoded.stdout)
    assert [(Path(f["src"]).name, f["status"]) for f in doc["files"]] == [("a.lcf", "ok")]
    assert [Path(e["path"]).name for e in doc["left_out"]] == ["into-dst.lcf"]
    assert "into DST" in doc["left_out"][0]["reason"]
    assert sorted(files(inner)) == ["a.lcf", "a.png"]


def test_batch_without_inputs_says_what_it_looked_for(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = lcf_cli("batch", empty, tmp_path / "out", "--weights", tmp_path / "no-weights")
    assert result.exit_code == 2 and "no image found in" in result.stderr
    assert ".png" in result.stderr and ".jpg" in result.stderr and "--include" in result.stderr
    (empty / "readme.txt").write_text("not an image")
    decoding = lcf_cli("batch", empty, tmp_path / "out", "--to", "png")
    assert decoding.exit_code == 2 and "no .lcf file found" in decoding.stderr
    assert "1 file(s) of other types ignored" in decoding.stderr
    assert not (tmp_path / "out").exists()


# -- lcf batch: two runs at once -----------------------------------------------------------------------------------


def test_two_batches_at_once_share_the_work(tmp_path: Path, tiny_weights: Path, tiny_codec) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    names = [f"{k:02d}.png" for k in range(12)]
    for k, name in enumerate(names):
        (src / name).write_bytes(png(k, size=32))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        sys.executable,
        "-m",
        "lcf_cli.main",
        "batch",
        str(src),
        str(out),
        "--weights",
        str(tiny_weights),
        "--json",
    ]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    docs = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr.decode()
        docs.append(json.loads(stdout))
    written = [name for doc in docs for f in doc["files"] if f["status"] == "ok" for name in [Path(f["src"]).name]]
    assert sorted(written) == names  # every output written, and by one run only
    for doc in docs:
        assert all(
            f["status"] == "ok" or f["note"] in ("output exists", "another lcf process is writing its output")
            for f in doc["files"]
        )
    assert files(out) == {name[:-4] + ".lcf": tiny_codec.encode(src / name, 4.0) for name in names}


# -- a full disk is an output error --------------------------------------------------------------------------------


def _disk_full_at_fsync(monkeypatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_is_an_output_error(
    tmp_path: Path, photo: Path, lcf_file: Path, tiny_weights: Path, monkeypatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "b.png").write_bytes(png(4))
    (src / "c.lcf").write_bytes(lcf_file.read_bytes())
    before = files(tmp_path)
    _disk_full_at_fsync(monkeypatch)
    for args, output in (
        (["encode", photo, "-o", tmp_path / "a.lcf"], "a.lcf"),
        (["decode", lcf_file, "-o", tmp_path / "x.png"], "x.png"),
        (["batch", src, tmp_path / "out"], "b.lcf"),
        (["batch", src, tmp_path / "out", "--to", "jpg"], "c.jpg"),
    ):
        result = lcf_cli(*args, "--weights", tiny_weights)
        assert result.exit_code == 8, (args, result.output)
        assert "No space left on device" in result.stderr and output in result.stderr
    assert {k: v for k, v in files(tmp_path).items() if not k.startswith("out")} == before
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # no partial or temporary file


def test_disk_full_when_moving_into_place(tmp_path: Path, photo: Path, tiny_weights: Path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    monkeypatch.setattr(os, "link", full)
    result = lcf_cli("encode", photo, "-o", tmp_path / "a.lcf", "--weights", tiny_weights)
    assert result.exit_code == 8 and "No space left on device" in result.stderr and "a.lcf" in result.stderr
    src = tmp_path / "src"
    src.mkdir()
    (src / "b.png").write_bytes(png(4))
    batch = lcf_cli("batch", src, tmp_path / "out", "--weights", tiny_weights)
    assert batch.exit_code == 8 and "No space left on device" in batch.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "out", "src"]
    assert not list((tmp_path / "out").iterdir())


def test_a_live_writer_is_never_disturbed(tmp_path: Path, photo: Path, tiny_weights: Path) -> None:
    """Another process writing DST (its temporary file locked): encode says so and leaves both files alone."""
    out = tmp_path / "a.lcf"
    out.write_bytes(SIGNATURE + b"an earlier file")
    temp = tmp_path / ".a.lcf.lcf-tmp"
    temp.write_bytes(b"being written")
    with open(temp, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = lcf_cli("encode", photo, "-o", out, "--weights", tiny_weights)
    assert result.exit_code == 8 and "another lcf process is writing it" in result.stderr
    assert temp.read_bytes() == b"being written" and out.read_bytes() == SIGNATURE + b"an earlier file"
