"""The benchmark scripts under benchmarks/ run end to end on tiny weights and tiny images."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from images import make_rgb_array
from PIL import Image

from lcf.nn import LcfModel, ModelConfig
from lcf.train.export import export_model

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _random_model(seed: int = 5) -> LcfModel:
    import torch

    torch.manual_seed(seed)
    return LcfModel(ModelConfig(N=16, M=24, Mz=16)).eval()


def test_decoders_benchmark_with_published_anchor_and_plot(tiny_weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(make_rgb_array(64, 48, kind="mixed", seed=i)).save(images / f"{i}.png")
    published = tmp_path / "published.csv"
    published.write_text(
        "codec,quality,bpp,psnr_rgb,ms_ssim,source_file\n"
        + "".join(f"vtm,{q},{b},{p},0.9,x\n" for q, b, p in ((1, 0.05, 2.0), (2, 4.0, 40.0)))
    )
    out, plot = tmp_path / "dec.md", tmp_path / "dec.png"
    bench = load_script("decoders")
    assert (
        bench.main(
            [
                "--weights",
                str(tiny_weights),
                "--images",
                str(images),
                "--qualities",
                "1,4,7",
                "--zero",
                "0",
                "--repeats",
                "1",
                "--published",
                str(published),
                "--plot",
                str(plot),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()
    assert "BD-rate vs vtm (published) (pchip)" in text and "| teacher (default) |" in text
    assert "Table II" in text
    assert plot.stat().st_size > 10_000 and Image.open(plot).format == "PNG"


def test_weights_precision_benchmark_compares_two_folders(tmp_path):
    bench = load_script("weights_precision")
    export_model(_random_model(), tmp_path / "w32")
    export_model(_random_model(), tmp_path / "w16", dtype="float16")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(make_rgb_array(48, 40, kind="mixed", seed=i)).save(images / f"{i}.png")
    out = tmp_path / "precision.md"
    assert (
        bench.main(
            [
                "--a",
                str(tmp_path / "w32"),
                "--b",
                str(tmp_path / "w16"),
                "--images",
                str(images),
                "--qualities",
                "1,4,7",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()
    assert "float32: bpp / PSNR | float16: bpp / PSNR" in text and "BD-PSNR" in text
    assert text.count("\n| ") == 4  # header + 3 quality rows


def test_rate_vs_estimate_reports_every_quality_and_the_total(tiny_weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(make_rgb_array(70, 50, kind="mixed", seed=2)).save(images / "a.png")
    out = tmp_path / "rate.md"
    assert (
        load_script("rate_vs_estimate").main(
            ["--weights", str(tiny_weights), "--images", str(images), "--qualities", "2,6", "--out", str(out)]
        )
        == 0
    )
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "quality" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["2", "6", "all"]
    for row in rows:  # the streams cost what the integer tables predict plus a few bytes (end markers, flushing)
        tables_y, tables_z, streams = (float(row.split("|")[i].strip().replace(",", "")) for i in (3, 4, 5))
        assert tables_y + tables_z - 1 <= streams <= tables_y + tables_z + 24, row


def test_exactness_script_passes_on_exact_weights_and_names_a_mismatch(tiny_weights, tmp_path, capsys, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(make_rgb_array(40, 30, kind="mixed", seed=5)).save(images / "a.png")
    script = load_script("exactness")
    assert script.main(["--weights", str(tiny_weights), "--images", str(images), "--qualities", "1,4.5,7"]) == 0
    assert "all 3 round trips bit-exact" in capsys.readouterr().out

    # a decoder that loses one symbol is caught
    real = script.Codec.decode_symbols

    def lossy(self, container):
        symbols = real(self, container)
        symbols.y_hat.flat[0] += 1
        return symbols

    monkeypatch.setattr(script.Codec, "decode_symbols", lossy)
    assert script.main(["--weights", str(tiny_weights), "--images", str(images), "--qualities", "4"]) == 1
    assert "NOT EXACT: a.png quality 4: y_hat differs" in capsys.readouterr().err


def test_device_decode_times_every_decoder_of_the_shipped_weights_on_cpu(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(make_rgb_array(64, 48, kind="mixed", seed=3)).save(images / "a.png")
    out = tmp_path / "device.md"
    weights = ROOT / "weights"
    assert (
        load_script("device_decode").main(
            [
                "--weights",
                str(weights),
                "--images",
                str(images),
                "--qualities",
                "4",
                "--device",
                "cpu",
                "--repeats",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "params" not in line]
    names = list(json.loads((weights / "manifest.json").read_text())["decoders"])
    assert [r.split("|")[1].strip().removesuffix(" (default)") for r in rows] == names
    assert "Device cpu: CPU" in out.read_text() and "1 images of images (64x48)" in out.read_text()
    assert "tiles: g_a 128, g_s 64" in out.read_text() and rows[0].endswith("| n/a |")
    assert (
        load_script("device_decode").main(
            [
                "--weights",
                str(weights),
                "--images",
                str(images),
                "--qualities",
                "4",
                "--device",
                "cpu",
                "--repeats",
                "1",
                "--tiles",
                "none",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "tiles: g_a whole, g_s whole" in out.read_text()


def test_device_decode_names_a_repeat_that_differs_and_a_missing_gpu(tiny_weights, tmp_path, capsys, monkeypatch):
    import pytest
    import torch

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(make_rgb_array(40, 30, kind="mixed", seed=4)).save(images / "a.png")
    script = load_script("device_decode")
    args = [
        "--weights",
        str(tiny_weights),
        "--images",
        str(images),
        "--qualities",
        "4",
        "--repeats",
        "2",
        "--out",
        str(tmp_path / "d.md"),
    ]
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="sees no CUDA GPU"):
            script.main([*args, "--device", "cuda"])
    real, calls = script.Codec.synthesise, []

    def flaky(self, symbols, header, decoder):  # the second decode of a file gives other pixels
        rgb = real(self, symbols, header, decoder)
        calls.append(1)
        if len(calls) == 2:
            rgb[0, 0, 0] ^= 1
        return rgb

    monkeypatch.setattr(script.Codec, "synthesise", flaky)
    assert script.main([*args, "--device", "cpu"]) == 1
    assert "NOT EXACT: decoder teacher, a.png quality 4: repeat 1 differs" in capsys.readouterr().err


def test_train_throughput_times_the_real_training_step_and_chooses(tiny_weights, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(make_rgb_array(64, 64, kind="mixed", seed=i)).save(data / f"{i}.png")
    out, choice = tmp_path / "tt.md", tmp_path / "choice"
    assert (
        load_script("train_throughput").main(
            [
                "--data",
                str(data),
                "--weights",
                str(tiny_weights),
                "--device",
                "cpu",
                "--crop",
                "64",
                "--batch",
                "4",
                "--warmup",
                "1",
                "--steps",
                "2",
                "--configs",
                "fp32@1,fp32",
                "--out",
                str(out),
                "--choose",
                str(choice),
            ]
        )
        == 0
    )
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:-1]
        for line in out.read_text().splitlines()
        if line.startswith("| fp32")
    }
    assert set(rows) == {"fp32", "fp32@1"}
    assert rows["fp32"][0].strip() == "4" and "+0.000 %" in rows["fp32"][3]  # the base: the first at --batch
    steps, images = float(rows["fp32"][1]), float(rows["fp32"][2])
    assert steps > 0 and abs(images - 4 * steps) <= 0.1 + 0.01 * images
    assert rows["fp32@1"][0].strip() == "1" and float(rows["fp32@1"][1]) > 0
    assert choice.read_text().strip() == "fp32"  # only configs at --batch are chosen (batch 1 usually steps faster)


def test_train_step_cost_counts_arithmetic_that_scales_with_the_batch_and_ops_that_do_not(tiny_weights, tmp_path):
    script = load_script("train_step_cost")
    from lcf.train.loop import model_from_weights

    model, _ = model_from_weights(tiny_weights)
    one, two = script.step_cost(model, 64, 1), script.step_cost(model, 64, 2)
    assert one["total_gflop"] > one["forward_gflop"] > 0
    assert two["total_gflop"] == pytest.approx(2 * one["total_gflop"], rel=1e-6)
    for key in ("forward_ops", "backward_ops"):  # launches do not grow with the batch (a few depend on its levels)
        assert one[key] > 100 and abs(two[key] - one[key]) <= 0.05 * one[key], key
    out = tmp_path / "cost.md"
    assert script.main(["--weights", str(tiny_weights), "--crop", "64", "--batch", "2", "--out", str(out)]) == 0
    text = out.read_text()
    assert f"| {two['forward_ops']} | {two['backward_ops']} | {two['forward_ops'] + two['backward_ops']} |" in text
    with pytest.raises(SystemExit, match="multiple of 64"):
        script.main(["--weights", str(tiny_weights), "--crop", "100"])


def test_large_images_measures_each_setting_in_its_own_process(tiny_weights, tmp_path):
    src = tmp_path / "photo.png"
    Image.fromarray(make_rgb_array(80, 60, kind="mixed", seed=4)).save(src)
    out = tmp_path / "large.md"
    script = load_script("large_images")
    assert (
        script.main(
            [
                "--image",
                str(src),
                "--weights",
                str(tiny_weights),
                "--sizes",
                "96x64",
                "--configs",
                "before,after",
                "--repeats",
                "1",
                "--threads",
                "1",
                "--split",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| 96x64 ")]
    assert [(r[0].strip(), r[2].strip()) for r in rows] == [("96x64", "before"), ("96x64", "after")]
    for r in rows:  # times, peak memory of a process that loaded PyTorch, the same file with either setting
        encode_s, encode_mib, decode_s, decode_mib, _, sym_s, sym_mib = (
            float(c.strip().replace(",", "")) for c in r[3:]
        )
        # seconds to 2 decimals: entropy decoding of a 96x64 image may print 0.00
        assert 0 < encode_s and 0 < decode_s and 0 <= sym_s and min(encode_mib, decode_mib, sym_mib) > 50
    assert rows[0][7] == rows[1][7]
    with pytest.raises(SystemExit, match="unknown configs"):
        script.main(["--image", str(src), "--configs", "fast", "--out", str(out)])


def test_analysis_halo_compares_tiles_with_the_whole_pass(tiny_weights, tmp_path):
    """No halo changes latents at the tile edges; a wide one leaves float rounding (the tiny model's offsets are 0)."""
    bench = load_script("analysis_halo")
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(make_rgb_array(128, 160, kind="mixed", seed=3)).save(images / "a.png")
    out = tmp_path / "halo.md"
    bench.main(
        ["--images", str(images), "--weights", str(tiny_weights), "--halos", "0,8", "--tile", "2", "--out", str(out)]
    )
    rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith("| a.png")]
    assert [r[3].strip() for r in rows] == ["0", "8"]
    no_halo, wide = (float(r[4]) for r in rows)
    assert no_halo > 1e-2 and wide < 1e-4


def test_cli_startup_compares_separate_calls_with_one_call(tiny_weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for k in range(3):
        Image.fromarray(make_rgb_array(32, 24, kind="mixed", seed=k)).save(images / f"im{k}.png")
    out = tmp_path / "startup.md"
    assert (
        load_script("cli_startup").main(
            [
                "--images",
                str(images),
                "--count",
                "2",
                "--rounds",
                "1",
                "--weights",
                str(tiny_weights),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()  # the outputs of both ways were compared byte for byte before this was written
    row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    separate, separate_cpu, _, one, one_cpu, _, ratio, cpu_ratio = (
        float(c.strip().rstrip("x")) for c in row.split("|")[2:10]
    )
    assert min(separate, separate_cpu, one, one_cpu) > 0
    assert ratio == pytest.approx(separate / one, rel=0.02) and cpu_ratio == pytest.approx(
        separate_cpu / one_cpu, rel=0.02
    )
    assert "2 images (im0.png .. im1.png)" in text and "median ratio" in text
    assert f"best of each (the least disturbed run): separate {separate:.2f} s, one call {one:.2f} s" in text
