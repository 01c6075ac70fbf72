"""Rate control (lcf.ratecontrol): size parsing, targets, the grid search, and targets met on a codec with the
chosen file byte for byte a plain encode at the chosen quality."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from images import exif_bytes, make_gray, make_rgb, make_rgba, srgb_icc, xmp_packet
from PIL import Image

from lcf import api
from lcf.errors import UnreachableTargetError, UsageError
from lcf.ratecontrol import K_MAX, K_MIN, Target, encode_to_target, parse_size, search

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEP = 1 / 256


# -- sizes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, size",
    [
        ("12000", 12000),
        (12000, 12000),
        ("10KB", 10_000),
        ("10kb", 10_000),
        ("10 kB", 10_000),
        ("10k", 10_000),
        ("1.5MB", 1_500_000),
        ("1.5M", 1_500_000),
        ("2MiB", 2 * 1024 * 1024),
        ("1KiB", 1024),
        ("0.5GiB", 1 << 29),
        ("3GB", 3_000_000_000),
        ("4.35KB", 4350),
        ("1.0005kB", 1000),
        (" 7B ", 7),
        (".5kB", 500),
        ("2.", 2),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "KB", "10XB", "-5", "0", "0.4", "0kB", "1e3", "1..5MB", "10 K B", "ten", True, "10kbit"]
)
def test_parse_size_refuses(text):
    with pytest.raises(UsageError) as info:
        parse_size(text)
    assert info.value.exit_code == 2


def test_target_checks_its_value():
    assert Target.size("1.5kB") == Target("size", 1500)
    assert Target("size", 1500.0).value == 1500
    for kind, value in [
        ("size", 0),
        ("size", 10.5),
        ("bpp", -1),
        ("psnr", math.inf),
        ("psnr", math.nan),
        ("bpp", True),
        ("quality", 3),
        ("psnr", "30"),
    ]:
        with pytest.raises(UsageError):
            Target(kind, value)


def test_bpp_target_is_a_byte_limit_rounded_down():
    assert Target("bpp", 0.5).max_bytes(1000) == 62  # 62.5 bytes: 62 fit, 63 would be 0.504 bpp
    assert Target("bpp", 0.5).max_bytes(1008) == 63
    assert Target("size", 999).max_bytes(5) == 999


# -- the search alone ----------------------------------------------------------------------------------------------


def straddles(seen: dict[int, float]) -> tuple[int, int]:
    """The adjacent pair (k low, k + 1 high) the search must end on."""
    pairs = [(k, k + 1) for k in seen if seen[k] < 0 and k + 1 in seen and not seen[k + 1] < 0]
    assert pairs, sorted(seen.items())
    return pairs[0]


@pytest.mark.parametrize("crossing", [256.5, 300.2, 700.9, 1024.5, 1500.1, 1791.5])
@pytest.mark.parametrize("curve", ["log-size", "psnr"])
def test_search_ends_on_the_crossing_in_few_probes(crossing, curve):
    if curve == "log-size":  # a convex rise, like log(bytes) against quality
        f = lambda k: 0.002 * (k - 256) + 2e-7 * (k - 256) ** 2  # noqa: E731
        slope = 0.18 / 256
    else:  # a flattening rise, like PSNR against quality
        f = lambda k: 3.0 * math.log1p((k - 256) / 200)  # noqa: E731
        slope = 0.35 / 256
    calls: list[int] = []

    def residual(k: int) -> float:
        calls.append(k)
        return f(k) - f(crossing)

    seen = search(residual, slope=slope)
    assert straddles(seen) == (math.floor(crossing), math.floor(crossing) + 1)
    assert len(calls) == len(set(calls)) == len(seen)  # no grid point is probed twice
    assert len(seen) <= 9


def test_search_stops_at_the_ends_of_the_grid():
    seen = search(lambda k: k + 1.0, slope=0.01)  # everything high: down to quality 1
    assert min(seen) == K_MIN and all(r >= 0 for r in seen.values())
    seen = search(lambda k: -1.0 - k, slope=0.01)  # everything low: up to quality 7
    assert max(seen) == K_MAX and all(r < 0 for r in seen.values())
    assert len(search(lambda k: math.inf, slope=0.01)) == 2  # an infinite PSNR: straight to quality 1


def test_search_survives_a_curve_that_is_not_monotone():
    def residual(k: int) -> float:  # a rise with wiggles that cross zero several times near 1000
        return (k - 1000) * 1e-3 + 0.02 * math.sin(k / 3.0)

    seen = search(residual, slope=1e-3)
    low, high = straddles(seen)
    assert 960 <= low <= 1040 and len(seen) < 40


def test_search_respects_max_probes():
    seen = search(lambda k: (k - 1000.5) * 1e-6, slope=1.0, max_probes=3)  # a prior slope far too steep
    assert len(seen) == 3


# -- targets on a codec --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgb():
    return np.asarray(make_rgb(72, 56, "mixed", seed=3))


def plain(codec, image, quality, effort=0, decoder=None) -> bytes:
    return codec.encode(image, quality, decoder, effort)


def probe_at(result, quality):
    return [p for p in result.probes if p.quality == quality and p.effort == result.effort]


def test_size_target_is_the_best_quality_that_fits(tiny_codec, rgb):
    low, high = len(plain(tiny_codec, rgb, 2.0)), len(plain(tiny_codec, rgb, 6.0))
    limit = (low + high) // 2
    result = encode_to_target(tiny_codec, rgb, Target("size", limit))
    assert result.met and result.bytes <= limit and 2.0 < result.quality < 6.0
    assert result.data == plain(tiny_codec, rgb, result.quality)  # byte for byte a plain encode
    above = probe_at(result, result.quality + STEP)  # the next grid point was tried and does not fit
    assert above and above[0].bytes > limit
    assert above[0].bytes == len(plain(tiny_codec, rgb, result.quality + STEP))  # probes are exact sizes
    assert result.psnr is None and result.bpp == result.bytes * 8 / (72 * 56)
    assert len(result.probes) <= 10


def test_bpp_target(tiny_codec, rgb):
    bpp = len(plain(tiny_codec, rgb, 3.3)) * 8 / (72 * 56)
    result = encode_to_target(tiny_codec, rgb, Target("bpp", bpp), measure=True)
    assert result.met and result.bpp <= bpp and result.quality >= 3.3
    assert result.data == plain(tiny_codec, rgb, result.quality)
    assert result.psnr == api.psnr(rgb, tiny_codec.decode(result.data).rgb)  # measure: the decoded PSNR


def test_psnr_target_is_the_smallest_quality_that_reaches_it(tiny_codec, rgb):
    goal = api.psnr(rgb, tiny_codec.decode(plain(tiny_codec, rgb, 4.5)).rgb)
    result = encode_to_target(tiny_codec, rgb, Target("psnr", goal))
    assert result.met and result.psnr >= goal
    assert result.data == plain(tiny_codec, rgb, result.quality)
    assert result.psnr == api.psnr(rgb, tiny_codec.decode(result.data).rgb)  # exactly what a decoder produces
    if result.quality > 1:
        below = probe_at(result, result.quality - STEP)
        assert below and below[0].psnr < goal
        assert below[0].psnr == api.psnr(rgb, tiny_codec.decode(plain(tiny_codec, rgb, result.quality - STEP)).rgb)


def test_targets_at_the_ends_are_met(tiny_codec, rgb):
    big = encode_to_target(tiny_codec, rgb, Target.size("1GB"))
    assert big.met and big.quality == 7.0 and len(big.probes) == 2
    easy = encode_to_target(tiny_codec, rgb, Target("psnr", 1.0))
    assert easy.met and easy.quality == 1.0 and easy.data == plain(tiny_codec, rgb, 1.0)


def test_a_size_too_small_is_refused_with_the_smallest_file(tiny_codec, rgb):
    smallest = len(plain(tiny_codec, rgb, 1.0))
    with pytest.raises(UnreachableTargetError) as info:
        encode_to_target(tiny_codec, rgb, Target("size", 100), name="in.png")
    assert info.value.exit_code == 9
    assert f"in.png: no quality fits in 100 bytes: the smallest file is {smallest:,} bytes" in str(info.value)
    assert "--keep-nearest" in str(info.value)
    kept = encode_to_target(tiny_codec, rgb, Target("size", 100), keep_nearest=True)
    assert not kept.met and kept.quality == 1.0 and kept.data == plain(tiny_codec, rgb, 1.0)
    assert "smallest file" in kept.message


def test_a_psnr_too_high_is_refused_with_the_best_psnr(tiny_codec, rgb):
    with pytest.raises(UnreachableTargetError) as info:
        encode_to_target(tiny_codec, rgb, Target("psnr", 99.0))
    assert "no quality reaches 99 dB PSNR: the best is" in str(info.value)
    kept = encode_to_target(tiny_codec, rgb, Target("psnr", 99.0), keep_nearest=True)
    assert not kept.met and kept.psnr == max(p.psnr for p in kept.probes)
    assert f"the best is {kept.psnr:.2f} dB" in kept.message
    assert kept.data == plain(tiny_codec, rgb, kept.quality)


@pytest.mark.parametrize(
    "image",
    [
        make_rgba(40, 30, "gradient", alpha="noise"),
        make_gray(33, 20, "edges"),
    ],
    ids=["rgba", "gray"],
)
def test_alpha_gray_and_metadata_files_are_plain_encodes(tiny_codec, image):
    image.info["icc_profile"] = srgb_icc()
    image.info["exif"] = exif_bytes(orientation=1)
    image.info["xmp"] = xmp_packet()
    from lcf.image import load_image

    prepared = load_image(image)
    limit = len(plain(tiny_codec, prepared, 4.0))
    result = encode_to_target(tiny_codec, prepared, Target("size", limit))
    assert result.met and result.quality >= 4.0
    assert result.data == plain(tiny_codec, prepared, result.quality)


def test_effort_searches_again_with_refined_probes(tiny_codec, rgb):
    rgb = rgb[:32, :40]
    limit = len(plain(tiny_codec, rgb, 4.0))
    steps: list[tuple[int, int]] = []
    result = encode_to_target(
        tiny_codec, rgb, Target("size", limit), effort=1, progress=lambda done, total: steps.append((done, total))
    )
    assert result.met and result.effort == 1 and result.bytes <= limit
    assert result.data == plain(tiny_codec, rgb, result.quality, effort=1)  # a plain encode at effort 1
    refined = [p for p in result.probes if p.effort == 1]
    assert refined and len(steps) == 8 * len(refined)
    assert result.probes[0].effort == 0  # the search at effort 0 comes first


def test_the_recommended_decoder_measures_psnr(rgb):
    from lcf.codec import Codec

    shipped = Codec()  # the bundled weights: several decoders, and a PSNR that rises with quality
    name = [n for n in shipped.decoder_names if n != shipped.weights.default_decoder][-1]
    small = rgb[:40, :48]
    goal = api.psnr(small, shipped.decode(shipped.encode(small, 3.0, name)).rgb)
    result = encode_to_target(shipped, small, Target("psnr", goal), decoder=name)
    assert result.met and result.decoder == name and result.quality <= 3.0
    assert result.data == plain(shipped, small, result.quality, decoder=name)
    decoded = shipped.decode(result.data)
    assert decoded.decoder == name and result.psnr == api.psnr(small, decoded.rgb)


def test_bad_arguments(tiny_codec, rgb):
    with pytest.raises(UsageError):
        encode_to_target(tiny_codec, rgb, ("size", 1000))
    with pytest.raises(UsageError):
        encode_to_target(tiny_codec, rgb, Target("size", 1000), effort=7)
    analysis = tiny_codec.analysis(rgb, effort=0)
    with pytest.raises(UsageError, match="effort 0"):
        tiny_codec.symbols_at(analysis, 4.0, effort=1)


# -- the command line ----------------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in.png"
    make_rgb(72, 56, "mixed", seed=3).save(path)
    return path


def lcf_cli(*args):
    from typer.testing import CliRunner

    from lcf_cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_cli_target_size_writes_a_plain_encode_at_the_quality_it_reports(tmp_path, source, tiny_weights):
    limit = len(api.encode_image(source, quality=3.0, weights=tiny_weights))
    out = tmp_path / "t.lcf"
    result = lcf_cli(
        "encode", source, "-o", out, "--target-size", f"{limit}B", "--weights", tiny_weights, "--json", "-v"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"] == {
        "kind": "size",
        "value": limit,
        "met": True,
        "probes": report["target"]["probes"],
        "message": None,
        "nearest": None,
    }
    assert out.stat().st_size == report["bytes"] <= limit and report["quality"] >= 3.0
    assert report["psnr"] == api.psnr(np.asarray(Image.open(source)), lcf_decode(out, tiny_weights))  # -v measures
    assert f"target {limit:,} bytes met: quality {report['quality']!r}" in result.stderr
    plain = tmp_path / "plain.lcf"
    again = lcf_cli("encode", source, "-o", plain, "-q", repr(report["quality"]), "--weights", tiny_weights)
    assert again.exit_code == 0
    assert plain.read_bytes() == out.read_bytes()


def lcf_decode(path, weights):
    from lcf.codec import Codec

    return Codec(weights).decode(path.read_bytes()).rgb


def test_cli_target_psnr_and_bpp(tmp_path, source, tiny_weights):
    rgb = np.asarray(Image.open(source))
    goal = api.psnr(
        rgb, api.decode_array(api.encode_image(source, quality=5.0, weights=tiny_weights), weights=tiny_weights)
    )
    result = lcf_cli(
        "encode", source, "-o", tmp_path / "p.lcf", "--target-psnr", f"{goal!r}", "--weights", tiny_weights, "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"]["kind"] == "psnr" and report["target"]["met"] and report["psnr"] >= goal
    assert report["psnr"] == api.psnr(rgb, lcf_decode(tmp_path / "p.lcf", tiny_weights))  # known without -v
    result = lcf_cli(
        "encode", source, "-o", tmp_path / "b.lcf", "--target-bpp", "2.5", "--weights", tiny_weights, "--json"
    )
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["bpp"] <= 2.5 and report["target"]["kind"] == "bpp"


def test_cli_default_is_quality_4_as_before(tmp_path, source, tiny_weights):
    result = lcf_cli("encode", source, "-o", tmp_path / "d.lcf", "--weights", tiny_weights, "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["quality"] == 4.0 and report["target"] is None
    assert (tmp_path / "d.lcf").read_bytes() == api.encode_image(source, quality=4.0, weights=tiny_weights)


def test_cli_unreachable_target_exits_9_and_writes_nothing(tmp_path, source, tiny_weights):
    smallest = len(api.encode_image(source, quality=1.0, weights=tiny_weights))
    out = tmp_path / "u.lcf"
    result = lcf_cli("encode", source, "-o", out, "--target-size", "50", "--weights", tiny_weights)
    assert result.exit_code == 9 and not out.exists() and list(tmp_path.iterdir()) == [source]
    assert f"no quality fits in 50 bytes: the smallest file is {smallest:,} bytes" in result.stderr
    assert "--keep-nearest" in result.stderr and str(source) in result.stderr
    result = lcf_cli("encode", source, "-o", out, "--target-psnr", "99", "--weights", tiny_weights)
    assert result.exit_code == 9 and "no quality reaches 99 dB PSNR: the best is" in result.stderr
    result = lcf_cli(
        "encode", source, "-o", out, "--target-size", "50", "--keep-nearest", "--weights", tiny_weights, "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"]["met"] is False and report["quality"] == 1.0 and out.stat().st_size == smallest
    assert "warning:" in result.stderr and "wrote the nearest file" in result.stderr


def test_cli_unreachable_target_json_is_the_failed_files_record(tmp_path, source, tiny_weights):
    """One SRC with --json: a target no quality meets prints the file's record on stdout ("status" "failed", the
    "error" with its message and exit code, and "target" as lcf batch --json gives it: "met" false, "nearest"); the
    message stays on stderr, the exit code 9, nothing is written. Another failure prints its record too."""
    smallest = len(api.encode_image(source, quality=1.0, weights=tiny_weights))
    out = tmp_path / "u.lcf"
    result = lcf_cli("encode", source, "-o", out, "--target-size", "50", "--weights", tiny_weights, "--json")
    assert result.exit_code == 9 and not out.exists()
    assert f"no quality fits in 50 bytes: the smallest file is {smallest:,} bytes" in result.stderr
    record = json.loads(result.stdout)
    assert (record["src"], record["dst"], record["status"]) == (str(source), str(out), "failed")
    assert record["error"]["type"] == "UnreachableTargetError" and record["error"]["exit_code"] == 9
    assert f"the smallest file is {smallest:,} bytes" in record["error"]["message"]
    target = record["target"]
    assert (target["kind"], target["value"], target["met"], target["nearest"]) == ("size", 50, False, smallest)
    assert target["message"] in record["error"]["message"] and target["probes"] >= 1
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / source.name).write_bytes(source.read_bytes())
    batch = lcf_cli(
        "batch", tmp_path / "dir", tmp_path / "b", "--target-size", "50", "--weights", tiny_weights, "--json"
    )
    assert batch.exit_code == 9, batch.output
    theirs = json.loads(batch.stdout)["files"][0]["target"]  # the same object as lcf batch's (its SRC's path)
    assert {**theirs, "message": theirs["message"].replace(str(tmp_path / "dir"), str(tmp_path))} == target

    result = lcf_cli("encode", source, "-o", out, "--target-psnr", "99", "--weights", tiny_weights, "--json")
    assert result.exit_code == 9 and "no quality reaches 99 dB PSNR" in result.stderr
    target = json.loads(result.stdout)["target"]
    assert target["kind"] == "psnr" and target["met"] is False and target["nearest"] < 99

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"hello")
    result = lcf_cli("encode", bad, "-o", out, "--target-size", "50", "--weights", tiny_weights, "--json")
    assert result.exit_code == 7 and "error:" in result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "failed" and record["error"]["exit_code"] == 7 and "target" not in record


def test_cli_several_files_with_unmet_targets_report_target_and_nearest(tmp_path, tiny_weights):
    """Several SRCs with --json: a file failed for its target carries "target" ("met" false, "nearest") in its
    record as lcf batch's does, next to its "error"; a file met and another failure keep their records."""
    src, sizes = _two_images(tmp_path, tiny_weights)
    (a, small), (b, large) = sorted(sizes.items(), key=lambda pair: pair[1])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"hello")
    limit = large - 1  # b cannot fit, a can (at quality 1 at least)
    assert small <= limit
    result = lcf_cli(
        "encode", a, b, bad, "-d", tmp_path / "out", "--target-size", str(limit), "--weights", tiny_weights,
        "--json",
    )  # fmt: skip
    assert result.exit_code == 9 and "2 failed" in result.stderr and "the smallest file is" in result.stderr
    files = {Path(f["src"]).name: f for f in json.loads(result.stdout)["files"]}
    assert files[a.name]["status"] == "ok" and files[a.name]["target"]["met"] is True
    failed = files[b.name]
    assert failed["status"] == "failed" and failed["error"]["exit_code"] == 9
    assert failed["target"]["met"] is False and failed["target"]["nearest"] == large
    assert failed["target"]["kind"] == "size" and failed["target"]["value"] == limit
    assert f"the smallest file is {large:,} bytes" in failed["error"]["message"]
    assert files[bad.name]["error"]["exit_code"] == 7 and "target" not in files[bad.name]
    batch = lcf_cli("batch", src, tmp_path / "b", "--target-size", str(limit), "--weights", tiny_weights, "--json")
    by_name = {Path(f["src"]).name: f for f in json.loads(batch.stdout)["files"]}
    assert by_name[b.name]["target"] == failed["target"]  # the same object as lcf batch's


@pytest.mark.parametrize(
    "args, message",
    [
        (["-q", "5", "--target-size", "1KB"], "--quality and --target-size cannot be combined"),
        (["--target-size", "1KB", "--target-psnr", "30"], "--target-size and --target-psnr cannot be combined"),
        (["--target-bpp", "0.5", "--target-psnr", "30"], "--target-bpp and --target-psnr cannot be combined"),
        (["--keep-nearest"], "--keep-nearest needs a target"),
        (["--target-size", "10XB"], "--target-size: '10XB' is not a size"),
        (["--target-size", "0"], "--target-size: a target size must be at least 1 byte"),
        (["--target-bpp", "-1"], "--target-bpp: a bpp target must be a positive number"),
        (["--target-psnr", "inf"], "--target-psnr: a psnr target must be a positive number"),
    ],
)
def test_cli_refuses_conflicting_or_bad_targets(tmp_path, source, tiny_weights, args, message):
    out = tmp_path / "x.lcf"
    result = lcf_cli("encode", source, "-o", out, *args, "--weights", tiny_weights)
    assert result.exit_code == 2 and message in result.stderr and not out.exists()
    result = lcf_cli("batch", tmp_path, tmp_path / "out", *args, "--weights", tiny_weights)
    assert result.exit_code == 2 and message in result.stderr and not (tmp_path / "out").exists()


def test_cli_several_files_each_get_their_own_quality(tmp_path, tiny_weights):
    srcs = []
    for kind in ("text", "noise"):
        srcs.append(tmp_path / f"{kind}.png")
        make_rgb(64, 48, kind).save(srcs[-1])
    result = lcf_cli(
        "encode",
        *srcs,
        "-d",
        tmp_path / "out",
        "--target-size",
        "700",
        "--keep-nearest",
        "--weights",
        tiny_weights,
        "--json",
    )
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert len(files) == 2 and all(f["target"]["kind"] == "size" for f in files)
    for f in files:
        assert Path(f["dst"]).stat().st_size == f["bytes"]
        assert f["bytes"] <= 700 or (not f["target"]["met"] and f["quality"] == 1.0)


def test_cli_batch_targets(tmp_path, tiny_weights):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    make_rgb(64, 48, "text").save(src / "a.png")
    make_rgb(80, 40, "edges").save(src / "sub" / "b.png")
    sizes = {p: len(api.encode_image(p, quality=1.0, weights=tiny_weights)) for p in sorted(src.rglob("*.png"))}
    limit = max(sizes.values()) + 100
    result = lcf_cli("batch", src, tmp_path / "out", "--target-size", str(limit), "--weights", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    files = json.loads(result.stdout)["files"]
    assert [f["status"] for f in files] == ["ok", "ok"]
    for f in files:
        assert f["bytes_out"] <= limit and f["target"]["met"] and f["target"]["value"] == limit
        assert Path(f["dst"]).read_bytes() == api.encode_image(f["src"], quality=f["quality"], weights=tiny_weights)
    small = min(sizes.values()) - 1  # no quality fits either file
    result = lcf_cli("batch", src, tmp_path / "out2", "--target-size", str(small), "--weights", tiny_weights)
    assert result.exit_code == 9 and result.stderr.count("FAIL") == 2 and "the smallest file is" in result.stderr
    result = lcf_cli(
        "batch", src, tmp_path / "out3", "--target-size", str(small), "--keep-nearest", "--weights", tiny_weights
    )
    assert result.exit_code == 0 and result.stderr.count("NEAREST") == 2
    assert sorted(p.stat().st_size for p in (tmp_path / "out3").rglob("*.lcf")) == sorted(sizes.values())
    result = lcf_cli("batch", tmp_path / "out", tmp_path / "dec", "--to", "png", "--target-psnr", "30")
    assert result.exit_code == 2 and "applies to encoding" in result.stderr


def _two_images(tmp_path: Path, weights: Path) -> tuple[Path, dict[Path, int]]:
    """SRC with a.png and sub/b.png, and each one's file size at quality 1 (the smallest file)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    make_rgb(64, 48, "text").save(src / "a.png")
    make_rgb(80, 40, "edges").save(src / "sub" / "b.png")
    return src, {p: len(api.encode_image(p, quality=1.0, weights=weights)) for p in sorted(src.rglob("*.png"))}


def test_cli_batch_verbose_reports_quality_size_bpp_and_psnr_as_encode_does(tmp_path, tiny_weights):
    """-v (as lcf encode's): each file's PSNR is measured whatever the target (size and bpp targets too), listed in
    --json with its quality, size and bpp, and printed on stderr with what its target came to."""
    src, sizes = _two_images(tmp_path, tiny_weights)
    limit = max(sizes.values()) + 100
    for option, value, described in (
        ("--target-size", str(limit), f"{limit:,} bytes"),
        ("--target-bpp", "3", "3 bpp"),
    ):
        out = tmp_path / option
        result = lcf_cli("batch", src, out, option, value, "--weights", tiny_weights, "--json", "-v")
        assert result.exit_code == 0, result.output
        files = json.loads(result.stdout)["files"]
        assert [f["status"] for f in files] == ["ok", "ok"]
        for f in files:
            dst = Path(f["dst"])
            assert f["bytes_out"] == dst.stat().st_size and f["bpp"] == f["bytes_out"] * 8 / f["pixels"]
            assert f["psnr"] == api.psnr(np.asarray(Image.open(f["src"])), lcf_decode(dst, tiny_weights)), option
            assert f["target"]["met"] and f["target"]["nearest"] is None
            line = (
                f"{dst}: {f['bytes_out']} bytes, {f['bpp']:.4f} bpp, PSNR {f['psnr']:.2f} dB, quality {f['quality']!r}"
            )
            assert line in result.stderr, line
            assert f"{dst}: target {described} met: quality {f['quality']!r}" in result.stderr
    result = lcf_cli("batch", src, tmp_path / "plain", "-q", "3", "--weights", tiny_weights, "--json", "-v")
    for f in json.loads(result.stdout)["files"]:  # -v measures without a target too, as lcf encode -v does
        assert f["psnr"] == api.psnr(np.asarray(Image.open(f["src"])), lcf_decode(Path(f["dst"]), tiny_weights))
        assert f"{f['dst']}: {f['bytes_out']} bytes, {f['bpp']:.4f} bpp, PSNR {f['psnr']:.2f} dB" in result.stderr


def test_cli_batch_reports_unmet_targets_with_their_nearest_value(tmp_path, tiny_weights):
    """A target no quality meets: the nearest reachable value per file ("target": "met" false, "nearest") in --json,
    for the files kept at it (--keep-nearest, NEAREST) and for those failed (exit code 9), and counted in the
    summary; lcf encode's --json says it the same way."""
    src, sizes = _two_images(tmp_path, tiny_weights)
    small = min(sizes.values()) - 1
    kept = lcf_cli(
        "batch", src, tmp_path / "kept", "--target-size", str(small), "--keep-nearest", "--weights", tiny_weights,
        "--json",
    )  # fmt: skip
    failed = lcf_cli(
        "batch", src, tmp_path / "failed", "--target-size", str(small), "--weights", tiny_weights, "--json"
    )
    assert (kept.exit_code, failed.exit_code) == (0, 9)
    for result, status in ((kept, "ok"), (failed, "failed")):
        doc = json.loads(result.stdout)
        assert doc["summary"]["target_not_met"] == 2
        assert doc["summary"]["nearest_kept"] == (2 if status == "ok" else 0)
        for f in doc["files"]:
            smallest = sizes[Path(f["src"])]
            assert f["status"] == status and f["target"]["met"] is False, f
            assert (
                f["target"]["nearest"] == smallest
                and f"the smallest file is {smallest:,} bytes" in f["target"]["message"]
            )
            assert f["bytes_out"] == (smallest if status == "ok" else 0)
    text = lcf_cli(
        "batch", src, tmp_path / "kept2", "--target-size", str(small), "--keep-nearest", "--weights", tiny_weights
    )
    assert text.exit_code == 0 and text.stderr.count("NEAREST") == 2  # one line per file, as before
    assert "target not met, nearest kept" in text.stderr
    text = lcf_cli("batch", src, tmp_path / "failed2", "--target-size", str(small), "--weights", tiny_weights)
    assert text.exit_code == 9 and "target not met, nothing written" in text.stderr and text.stderr.count("FAIL") == 2

    source = next(iter(sizes))
    result = lcf_cli(
        "encode", source, "-o", tmp_path / "e.lcf", "--target-psnr", "99", "--keep-nearest", "--weights", tiny_weights,
        "--json",
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["target"]["met"] is False and report["target"]["nearest"] == report["psnr"] < 99


def test_cli_batch_without_a_target_reports_as_before(tmp_path, tiny_weights):
    """No new keys, lines or measurements for a batch without a target and without -v."""
    src, _ = _two_images(tmp_path, tiny_weights)
    result = lcf_cli("batch", src, tmp_path / "out", "--weights", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["summary"]) == {
        "files", "done", "skipped", "skipped_busy", "failed", "ignored", "left_out", "bytes_in", "bytes_out",
        "mean_bpp", "seconds", "cleaned_temp_files",
    }  # fmt: skip
    for f in doc["files"]:
        assert list(f) == [
            "src", "dst", "status", "error", "exit_code", "seconds", "bytes_in", "bytes_out", "pixels", "bpp", "note",
            "notes", "quality", "psnr", "target",
        ]  # fmt: skip
        assert (f["quality"], f["psnr"], f["target"]) == (4.0, None, None)
    text = lcf_cli("batch", src, tmp_path / "out2", "--weights", tiny_weights)
    assert "PSNR" not in text.stderr and "target" not in text.stderr and "NEAREST" not in text.stderr


@pytest.mark.parametrize(
    "command, words",
    [
        (
            "encode",
            [
                "--target-size",
                "--target-bpp",
                "--target-psnr",
                "--keep-nearest",
                "exit code 9",
                "lcf encode photo.png -o photo.lcf --target-size 30KB -v",
            ],
        ),
        (
            "batch",
            [
                "--target-size",
                "--target-psnr",
                "--keep-nearest",
                "lcf batch photos/ small/ --target-size 50KB",
                "--verbose",
                '"nearest": the nearest reachable value',
                '"target_not_met"',
            ],
        ),
    ],
)
def test_cli_help_teaches_targets(command, words):
    result = lcf_cli(command, "--help")
    text = " ".join(result.stdout.split())
    for word in words:
        assert word in text, word


def test_exit_code_9_is_documented():
    from lcf_cli.main import EPILOG

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith(f"| {UnreachableTargetError.exit_code} "))
    assert "UnreachableTargetError" in row and "--keep-nearest" in row
    assert f"{UnreachableTargetError.exit_code} rate-control target unreachable" in EPILOG
