"""lcf batch (lcf.batch through lcf.api.batch and the CLI): a test tree built in code, good and bad files, both
directions, globs, overwrite, resume, metadata, no partial outputs, JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from images import exif_bytes, make_gray, make_mode, make_palette, make_rgb, make_rgba, srgb_icc, to_bytes, xmp_packet
from PIL import Image
from typer.testing import CliRunner

from lcf import api
from lcf.batch import clean_stale_temps, is_temp_name
from lcf.container import read_container
from lcf.errors import UsageError
from lcf_cli.main import app

runner = CliRunner()

# name -> (bytes of the file, (width, height), decoded mode)
GOOD: dict[str, tuple[bytes, tuple[int, int], str]] = {}


def _good_files() -> dict[str, tuple[bytes, tuple[int, int], str]]:
    if not GOOD:
        transparent_p = make_palette(19, 11, transparency=True)
        GOOD.update(
            {
                "rgb.png": (to_bytes(make_rgb(32, 24, "mixed"), "PNG"), (32, 24), "RGB"),
                "rgba.png": (to_bytes(make_rgba(21, 17, alpha="noise"), "PNG"), (21, 17), "RGBA"),
                "gray/l.png": (to_bytes(make_gray(16, 16, "edges"), "PNG"), (16, 16), "L"),
                "gray/la.png": (to_bytes(make_mode("LA", 13, 9), "PNG"), (13, 9), "LA"),
                "gray/deep/i16.png": (to_bytes(make_mode("I;16", 12, 10), "PNG"), (12, 10), "L"),
                "palette/p.gif": (to_bytes(make_palette(20, 12), "GIF"), (20, 12), "RGB"),
                "palette/p-transparent.png": (to_bytes(transparent_p, "PNG"), (19, 11), "RGBA"),
                "print/cmyk.jpg": (to_bytes(make_mode("CMYK", 24, 16), "JPEG", quality=95), (24, 16), "RGB"),
                "sizes/1x1.png": (to_bytes(make_rgb(1, 1, "noise"), "PNG"), (1, 1), "RGB"),
                "sizes/1x300.png": (to_bytes(make_rgb(1, 300, "gradient"), "PNG"), (1, 300), "RGB"),
                "sizes/odd 17x13.ppm": (to_bytes(make_rgb(17, 13, "text"), "PPM"), (17, 13), "RGB"),
                "sizes/65x3.bmp": (to_bytes(make_rgb(65, 3, "checker"), "BMP"), (65, 3), "RGB"),
            }
        )
    return GOOD


BAD_IMAGES = {"bad/notes.png": b"these are notes, not a PNG\n", "bad/empty.jpg": b""}


def lcf_cli(*args: str | Path):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def build_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative path -> bytes), hidden and temporary ones included."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def lcf_name(name: str) -> str:
    return name.rsplit(".", 1)[0] + ".lcf"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("photos")
    build_tree(src, {name: data for name, (data, _, _) in _good_files().items()})
    build_tree(src, BAD_IMAGES)
    build_tree(src, {"readme.txt": b"not an image: ignored", ".DS_Store": b"\0\1"})
    return src


@pytest.fixture(scope="module")
def encoded(photos: Path, tmp_path_factory, tiny_weights: Path) -> tuple[Path, api.BatchReport]:
    before = tree(photos)
    out = tmp_path_factory.mktemp("encoded") / "out"
    report = api.batch(photos, out, quality=5.0, weights=tiny_weights)
    assert tree(photos) == before  # sources are never modified
    return out, report


# -- encoding a tree ---------------------------------------------------------------------------------------------


def test_encode_converts_good_files_lists_bad_ones(encoded, photos):
    out, report = encoded
    good = _good_files()
    assert sorted(tree(out)) == sorted(lcf_name(n) for n in good)  # nothing else: no partial or temporary file
    status = {item.src.relative_to(photos).as_posix(): item for item in report.items}
    assert sorted(status) == sorted([*good, *BAD_IMAGES])  # readme.txt, .DS_Store: not images, ignored
    assert all(status[n].status == "ok" for n in good)
    assert [i.src.name for i in report.failed] == ["empty.jpg", "notes.png"]  # sorted order
    assert all(i.exit_code == 7 and "cannot identify image file" in i.error for i in report.failed)
    assert report.exit_code == 7 and report.ignored == 2
    for name, (_, (w, h), mode) in good.items():
        header = read_container((out / lcf_name(name)).read_bytes()).header
        assert (header.width, header.height, header.quality) == (w, h, 5.0)
        assert header.color.name == ("GRAY8" if mode in ("L", "LA") else "RGB8")


def test_encode_report_sizes(encoded):
    out, report = encoded
    done = report.done
    assert report.bytes_out == sum(i.dst.stat().st_size for i in done) > 0
    assert all(i.dst.parent == out or out in i.dst.parents for i in done)
    assert report.mean_bpp == pytest.approx(report.bytes_out * 8 / sum(i.pixels for i in done))
    assert all(i.bpp == pytest.approx(i.bytes_out * 8 / i.pixels) for i in done)


def test_rerun_skips_everything_and_still_reports_the_failures(encoded, photos, tiny_weights):
    out, _ = encoded
    before = tree(out)
    report = api.batch(photos, out, quality=5.0, weights=tiny_weights)
    assert len(report.skipped) == len(_good_files()) and not report.done and len(report.failed) == 2
    assert tree(out) == before


def test_decode_mirrors_folders_and_lists_damaged_files(encoded, tmp_path, tiny_weights):
    out, _ = encoded
    src = tmp_path / "lcf"
    build_tree(src, tree(out))
    good = tree(out)["rgb.lcf"]
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x04
    build_tree(
        src,
        {
            "damaged/a-truncated.lcf": good[: len(good) - 7],
            "damaged/b-flipped.lcf": bytes(flipped),
            "damaged/c-not-lcf.lcf": b"GIF89a, really",
            "damaged/d-empty.lcf": b"",
        },
    )
    back = tmp_path / "back"
    result = lcf_cli("batch", src, back, "--to", "png", "--weights", tiny_weights)
    assert result.exit_code == 4, result.output  # the first failure in sorted order: the truncated file
    for name in ("a-truncated", "b-flipped", "c-not-lcf", "d-empty"):
        assert f"damaged/{name}.lcf: " in result.stderr
    decoded = tree(back)
    assert sorted(decoded) == sorted(n.rsplit(".", 1)[0] + ".png" for n in _good_files())
    for name, (_, (w, h), mode) in _good_files().items():
        with Image.open(back / (name.rsplit(".", 1)[0] + ".png")) as im:
            assert (im.size, im.mode) == ((w, h), mode)


def test_metadata_and_alpha_survive_a_round_trip(tmp_path, tiny_weights):
    rgba = make_rgba(23, 19, kind="noise", alpha="noise")
    icc, exif, xmp = srgb_icc(), exif_bytes(orientation=None), xmp_packet()
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode(), zip=False)
    build_tree(
        tmp_path / "src",
        {
            "meta/rgba.png": to_bytes(rgba, "PNG", icc_profile=icc, exif=exif, pnginfo=info),
            "meta/la.png": to_bytes(make_mode("LA", 9, 14), "PNG"),
        },
    )
    assert api.batch(tmp_path / "src", tmp_path / "lcf", weights=tiny_weights).exit_code == 0
    assert api.batch(tmp_path / "lcf", tmp_path / "png", to="png", weights=tiny_weights).exit_code == 0
    with Image.open(tmp_path / "png" / "meta" / "rgba.png") as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3], np.asarray(rgba)[..., 3])  # alpha, byte for byte
        assert im.info["icc_profile"] == icc
        assert im.info["exif"] == exif
        assert (im.info.get("xmp") or im.info["XML:com.adobe.xmp"].encode()) == xmp
    with Image.open(tmp_path / "png" / "meta" / "la.png") as im:
        assert im.mode == "LA"
        assert np.array_equal(np.asarray(im)[..., 1], np.asarray(make_mode("LA", 9, 14))[..., 1])


def test_include_exclude_and_overwrite(photos, tmp_path, tiny_weights):
    out = tmp_path / "out"
    report = api.batch(photos, out, include=["*.png"], exclude=["gray", "sizes/1x*"], weights=tiny_weights)
    expected = {"rgb.lcf", "rgba.lcf", "palette/p-transparent.lcf", "bad/notes.lcf"}
    assert {i.dst.relative_to(out).as_posix() for i in report.items} == expected
    assert set(tree(out)) == expected - {"bad/notes.lcf"}
    # an include pattern selects files whatever their extension (here: a text file, which then fails)
    texts = api.batch(photos, tmp_path / "txt", include=["readme.txt"], weights=tiny_weights)
    assert [(i.src.name, i.status, i.exit_code) for i in texts.items] == [("readme.txt", "failed", 7)]
    # overwrite: the same outputs written again (different quality -> different bytes)
    first = tree(out)
    again = api.batch(photos, out, include=["*.png"], exclude=["gray", "sizes/1x*"], weights=tiny_weights)
    assert len(again.skipped) == 3 and tree(out) == first
    redo = api.batch(photos, out, quality=1.0, include=["rgb*.png"], overwrite=True, weights=tiny_weights)
    assert [i.status for i in redo.items] == ["ok", "ok"]
    assert read_container(tree(out)["rgb.lcf"]).header.quality == 1.0
    assert tree(out)["palette/p-transparent.lcf"] == first["palette/p-transparent.lcf"]


def test_cli_json_and_summary(photos, tmp_path, tiny_weights):
    result = lcf_cli(
        "batch",
        photos,
        tmp_path / "out",
        "--include",
        "sizes/*",
        "--exclude",
        "*.bmp",
        "--json",
        "--weights",
        tiny_weights,
        "-q",
        "3",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["summary"]["done"] == 3 and doc["summary"]["failed"] == 0 and doc["summary"]["skipped"] == 0
    assert doc["summary"]["bytes_out"] == sum(f["bytes_out"] for f in doc["files"]) > 0
    assert [Path(f["src"]).name for f in doc["files"]] == ["1x1.png", "1x300.png", "odd 17x13.ppm"]
    assert all(f["status"] == "ok" and f["bpp"] > 0 for f in doc["files"])
    text = lcf_cli("batch", photos, tmp_path / "out", "--include", "sizes/*", "--weights", tiny_weights)
    assert text.exit_code == 0 and text.stdout == ""
    assert "1 done, 3 skipped, 0 failed" in text.stderr and "mean bpp" in text.stderr


def die_on_b(src: Path, dst: Path) -> api.BatchItem:
    """Run in a worker process: crash (as a segfault or the OOM killer would) on b.png."""
    from lcf import batch as batch_module

    if src.name == "b.png":
        os._exit(3)
    return batch_module._work(src, dst)


def test_a_worker_that_dies_fails_only_its_file(tmp_path, tiny_weights, tiny_codec):
    """Worker processes write what this process writes, and a crash of one costs only the file it was on (the
    other files it held are retried). The CLI's --workers is tested in test_batch_kill.py."""
    from lcf import batch as batch_module

    src = build_tree(
        tmp_path / "src", {f"{k}.png": to_bytes(make_rgb(8, 8, seed=i), "PNG") for i, k in enumerate("abcde")}
    )
    settings = batch_module.settings_for("lcf", 4.0, None, "cpu", tiny_weights, None)
    plan = batch_module.make_plan(src, tmp_path / "out", settings, (), (), False)
    items: dict[str, api.BatchItem] = {}
    batch_module._run_pool(
        plan.jobs, settings, 2, lambda job, item: items.__setitem__(job.src.name, item), work=die_on_b
    )
    assert sorted(items) == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    assert items["b.png"].status == "failed" and "worker process died" in items["b.png"].error
    assert all(items[k].status == "ok" for k in items if k != "b.png"), items
    assert tree(tmp_path / "out") == {f"{k}.lcf": tiny_codec.encode(src / f"{k}.png", 4.0) for k in "acde"}


# -- safety ------------------------------------------------------------------------------------------------------


def test_stale_temporary_files_are_cleaned_and_never_inputs(tmp_path, tiny_weights):
    """Only the temporary file of a planned output whose writer is gone (unlocked) is deleted: see test_user_files.py
    for the files that look like temporary files and are not."""
    import fcntl

    src = build_tree(
        tmp_path / "src",
        {
            "a.png": to_bytes(make_rgb(8, 8), "PNG"),
            "sub/b.png": to_bytes(make_rgb(9, 9), "PNG"),
            "c.png": to_bytes(make_rgb(7, 7), "PNG"),
            ".d.png.lcf-tmp": b"half a file",
        },
    )
    out = tmp_path / "out"
    build_tree(
        out,
        {
            ".a.lcf.lcf-tmp": b"partial",
            "sub/.b.lcf.lcf-tmp": b"partial",
            ".c.lcf.lcf-tmp": b"someone else's, still writing",
        },
    )
    with open(out / ".c.lcf.lcf-tmp", "rb") as held:  # a live writer holds its lock
        fcntl.flock(held, fcntl.LOCK_EX)
        report = api.batch(src, out, weights=tiny_weights)
        assert [(i.src.name, i.status) for i in report.items] == [
            ("a.png", "ok"),
            ("c.png", "skipped"),
            ("b.png", "ok"),
        ]
        assert report.cleaned == 2 and set(tree(out)) == {"a.lcf", "sub/b.lcf", ".c.lcf.lcf-tmp"}
        assert clean_stale_temps([out / "c.lcf"]) == 0 and (out / ".c.lcf.lcf-tmp").exists()
    assert clean_stale_temps([out / "c.lcf"]) == 1 and set(tree(out)) == {"a.lcf", "sub/b.lcf"}
    assert is_temp_name(".a.lcf.lcf-tmp") and not is_temp_name("x.lcf") and not is_temp_name("x.lcf-tmp")


def test_a_failed_write_leaves_nothing(tmp_path, tiny_weights, monkeypatch):
    src = build_tree(
        tmp_path / "src", {"a.png": to_bytes(make_rgb(8, 8), "PNG"), "b.png": to_bytes(make_rgb(9, 9), "PNG")}
    )

    def disk_full(real):
        def move(a, b, **kwargs):
            if str(b).endswith("a.lcf"):
                raise OSError(28, "No space left on device")
            real(a, b, **kwargs)

        return move

    # outputs are moved into place by a hard link (never over an existing file), or renamed with --overwrite
    monkeypatch.setattr(os, "replace", disk_full(os.replace))
    monkeypatch.setattr(os, "link", disk_full(os.link))
    report = api.batch(src, tmp_path / "out", weights=tiny_weights)
    assert [(i.src.name, i.status, i.exit_code) for i in report.items] == [("a.png", "failed", 8), ("b.png", "ok", 0)]
    assert "No space left on device" in report.failed[0].error
    assert set(tree(tmp_path / "out")) == {"b.lcf"}


def test_ctrl_c_stops_cleanly(tmp_path, tiny_weights, monkeypatch):
    from lcf import batchwork

    src = build_tree(tmp_path / "src", {f"{k}.png": to_bytes(make_rgb(8, 8, seed=k), "PNG") for k in range(3)})
    real = batchwork._write_bytes

    def interrupted(held, data):
        if held.path.name == "1.lcf":
            held.file.write(data[:5])
            raise KeyboardInterrupt
        real(held, data)

    monkeypatch.setattr(batchwork, "_write_bytes", interrupted)
    result = lcf_cli("batch", src, tmp_path / "out", "--weights", tiny_weights)
    assert result.exit_code == 130 and "run the same command again to resume" in result.stderr
    assert set(tree(tmp_path / "out")) == {"0.lcf"}
    monkeypatch.setattr(batchwork, "_write_bytes", real)
    resumed = api.batch(src, tmp_path / "out", weights=tiny_weights)
    assert [i.status for i in resumed.items] == ["skipped", "ok", "ok"]


def test_colliding_outputs_and_dst_inside_src(tmp_path, tiny_weights):
    src = build_tree(
        tmp_path / "src", {"a.png": to_bytes(make_rgb(8, 8), "PNG"), "a.ppm": to_bytes(make_rgb(8, 8, seed=1), "PPM")}
    )
    with pytest.raises(UsageError, match="more than one file") as refused:  # before any work: nothing written
        api.batch(src, src / "out", weights=tiny_weights)
    assert "a.png, a.ppm" in str(refused.value) and not (src / "out").exists()
    report = api.batch(src, src / "out", exclude=["a.ppm"], weights=tiny_weights)
    assert [(i.src.name, i.status) for i in report.items] == [("a.png", "ok")]
    again = api.batch(src, src / "out", exclude=["a.ppm"], weights=tiny_weights)  # out/ (inside src/) is not read
    assert [(i.src.name, i.status) for i in again.items] == [("a.png", "skipped")]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"to": "PNG!"}, "--to must be"),
        ({"to": "xyz"}, "not an image format"),
        ({"workers": 0}, "workers"),
        ({"quality": 8}, "quality"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_usage_errors_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(UsageError, match=message):
        api.batch(tmp_path, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_setup_errors_once_not_per_file(photos, tmp_path, tiny_weights):
    bad_decoder = lcf_cli("batch", photos, tmp_path / "o1", "--decoder", "nope", "--weights", tiny_weights)
    assert bad_decoder.exit_code == 2 and "no decoder named 'nope'" in bad_decoder.stderr
    no_weights = lcf_cli("batch", photos, tmp_path / "o2", "--weights", tmp_path / "none")
    assert no_weights.exit_code == 8 and "manifest.json missing" in no_weights.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    assert lcf_cli("batch", tmp_path / "nope", tmp_path / "o3").exit_code == 8


def test_decode_to_other_formats(encoded, tmp_path, tiny_weights):
    out, _ = encoded
    report = api.batch(out, tmp_path / "ppm", to="ppm", include=["sizes/*"], weights=tiny_weights)
    assert [i.status for i in report.items] == ["ok"] * 4
    assert sorted(tree(tmp_path / "ppm")) == [
        "sizes/1x1.ppm",
        "sizes/1x300.ppm",
        "sizes/65x3.ppm",
        "sizes/odd 17x13.ppm",
    ]
    with Image.open(tmp_path / "ppm" / "sizes" / "1x300.ppm") as im:
        assert im.format == "PPM" and im.size == (1, 300)
