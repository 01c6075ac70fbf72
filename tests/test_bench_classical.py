"""lcf.bench.classical round trips and the runner with a stand-in lcf hook, on small images built in code."""

import time

import numpy as np
import pytest
from PIL import Image

from lcf.bench import report
from lcf.bench.classical import CODECS
from lcf.bench.metrics import psnr
from lcf.bench.runner import run_benchmark


def gradient_noise(h: int = 176, w: int = 208, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 13.0)], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("codec_id", sorted(CODECS))
def test_round_trip(codec_id):
    codec = CODECS[codec_id]
    if not codec.available():
        pytest.skip(f"Pillow lacks {codec.feature}")
    rgb = gradient_noise()
    low, high = codec.quick_sweep[0], codec.quick_sweep[-1]
    n_low, rec_low, enc_s, dec_s = codec.encode_decode(rgb, low)
    n_high, rec_high, _, _ = codec.encode_decode(rgb, high)
    assert rec_low.shape == rgb.shape and rec_low.dtype == np.uint8
    assert enc_s > 0 and dec_s > 0
    assert 0 < n_low < n_high
    assert 20 < psnr(rgb, rec_low) < psnr(rgb, rec_high)


def test_jpeg2000_hits_its_target_rate():
    rgb = gradient_noise()
    n, _, _, _ = CODECS["jpeg2000"].encode_decode(rgb, 1.0)
    assert n * 8 / (rgb.shape[0] * rgb.shape[1]) == pytest.approx(1.0, rel=0.15)


def _fake_lcf(rgb: np.ndarray, quality: float):
    """Stand-in for lcf's hook: uniform quantisation, 'bytes' from the number of levels."""
    t0 = time.perf_counter()
    step = 2 ** (8 - quality)
    recon = (np.floor(rgb / step) * step + step / 2).clip(0, 255).astype(np.uint8)
    n_bytes = int(rgb.size * quality / 8 * 0.3) + 100
    t1 = time.perf_counter()
    return n_bytes, recon, t1 - t0, 1e-4


def test_run_benchmark_with_lcf_hook(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(gradient_noise(seed=i)).save(images / f"img{i}.png")
    (images / "notes.txt").write_text("ignored")
    result = run_benchmark(
        images,
        codecs=["jpeg420", "webp"],
        lcf_encode_decode=_fake_lcf,
        out_dir=tmp_path / "out",
        quick=True,
        log=lambda _: None,
    )
    assert {c.id for c in result.curves} == {"lcf", "jpeg420", "webp"}
    assert len(result.measurements) == 2 * (3 + 3 + 3)
    lcf = next(c for c in result.curves if c.id == "lcf")
    assert [p.param for p in lcf.points] == ["1", "4", "7"] and all(p.n_images == 2 for p in lcf.points)
    assert {(r.test, r.reference) for r in result.bd_anchor} == {("lcf", "jpeg420"), ("lcf", "webp")}
    assert {(r.test, r.reference) for r in result.bd_references} == {("jpeg420", "webp")}
    for path in result.files.values():
        assert path.exists() and path.stat().st_size > 0
    rows = report.read_measurements_csv(result.files["per_image_csv"])
    assert sorted(rows, key=repr) == sorted(result.measurements, key=repr)

    # resume: nothing is measured again
    calls = []
    again = run_benchmark(
        images,
        codecs=["jpeg420", "webp"],
        lcf_encode_decode=lambda x, q: calls.append(q),
        out_dir=tmp_path / "out",
        quick=True,
        resume=True,
        log=lambda _: None,
    )
    assert calls == [] and len(again.measurements) == len(result.measurements)


def test_resume_measures_lcf_again_when_the_weights_changed(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(gradient_noise(seed=3)).save(images / "a.png")
    calls = []

    def run(identity):
        def hook(rgb, q):
            calls.append(q)
            return _fake_lcf(rgb, q)

        return run_benchmark(
            images,
            codecs=["jpeg420"],
            lcf_encode_decode=hook,
            out_dir=tmp_path / "out",
            quick=True,
            resume=True,
            log=lambda _: None,
            lcf_identity=identity,
        )

    run({"model_id": "aa", "decoder": "teacher"})
    assert len(calls) == 3
    run({"model_id": "aa", "decoder": "teacher"})  # same weights: every row reused
    assert len(calls) == 3
    result = run({"model_id": "bb", "decoder": "teacher"})  # new weights: lcf measured again, jpeg420 reused
    assert len(calls) == 6 and len(result.measurements) == 6
    rows = report.read_measurements_csv(tmp_path / "out" / "kodak_per_image.csv")
    assert sorted(m.codec for m in rows) == ["jpeg420"] * 3 + ["lcf"] * 3


def test_several_lcf_curves_in_one_run_each_with_its_own_identity(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(gradient_noise(seed=4)).save(images / "a.png")
    calls = []

    def hook(name, shift):
        def encode_decode(rgb, q):
            calls.append(name)
            n, rec, enc, dec = _fake_lcf(rgb, q)
            return n - shift, rec, enc, dec

        return encode_decode

    def run(identity_e2):
        return run_benchmark(
            images,
            codecs=["jpeg420"],
            out_dir=tmp_path / "out",
            quick=True,
            resume=True,
            lcf_encode_decode={"lcf": hook("lcf", 0), "lcf-e2": hook("lcf-e2", 50)},
            lcf_identity={"lcf": {"model_id": "aa"}, "lcf-e2": identity_e2},
            log=lambda _: None,
            references=("jpeg420",),
        )

    result = run({"model_id": "aa", "effort": 2})
    assert {c.id for c in result.curves} == {"lcf", "lcf-e2", "jpeg420"}
    assert {(r.test, r.reference) for r in result.bd_anchor} == {("lcf", "jpeg420"), ("lcf", "lcf-e2")}
    assert {(r.test, r.reference) for r in result.bd_references} == {("lcf-e2", "jpeg420")}
    (bd_e2,) = [r for r in result.bd_anchor if r.reference == "lcf-e2"]
    assert bd_e2.bd_rate > 0  # the stand-in "lcf-e2" writes fewer bytes for the same pixels
    assert calls.count("lcf") == 3 and calls.count("lcf-e2") == 3
    assert (tmp_path / "out" / "kodak_lcf-e2.json").exists()
    run({"model_id": "aa", "effort": 2})
    assert len(calls) == 6  # everything reused
    run({"model_id": "bb", "effort": 2})  # only the lcf-e2 rows are stale
    assert calls.count("lcf") == 3 and calls.count("lcf-e2") == 6


def test_run_benchmark_rejects_bad_hooks_and_names(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(gradient_noise()).save(images / "a.png")
    with pytest.raises(ValueError, match="unknown codec"):
        run_benchmark(images, codecs=["jpegxl"])
    with pytest.raises(ValueError, match="no lcf_encode_decode"):
        run_benchmark(images, codecs=["lcf"])
    with pytest.raises(ValueError, match="expected uint8"):
        run_benchmark(
            images, codecs=[], lcf_encode_decode=lambda x, q: (10, x[:8], 0.0, 0.0), quick=True, log=lambda _: None
        )


def test_without_matplotlib_the_run_warns_first_and_writes_everything_else(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(gradient_noise(seed=5)).save(images / "a.png")
    monkeypatch.setattr(report, "plotting_available", lambda: False)
    log = []

    def hook(rgb, q):
        log.append("measured")
        return _fake_lcf(rgb, q)

    result = run_benchmark(
        images, codecs=[], lcf_encode_decode=hook, out_dir=tmp_path / "out", quick=True, log=log.append, name="k"
    )
    assert "matplotlib is not installed" in log[0] and 'pip install "lcf[bench]"' in log[0]
    assert sum("matplotlib" in line for line in log) == 1
    assert "png" not in result.files and not (tmp_path / "out" / "k_rd.png").exists()
    assert set(result.files) == {"per_image_csv", "curves_csv", "bd_csv", "markdown"}
    assert all(path.stat().st_size > 0 for path in result.files.values())
    assert "k_rd.png" not in result.files["markdown"].read_text()
    with pytest.raises(ValueError, match="matplotlib"):  # asked for explicitly: refused before measuring
        run_benchmark(
            images, codecs=[], lcf_encode_decode=hook, out_dir=tmp_path / "out", quick=True, plot=True, log=log.append
        )
    assert log.count("measured") == 3


def test_a_plot_that_fails_to_import_keeps_the_other_outputs(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(gradient_noise(seed=6)).save(images / "a.png")

    def broken(*args, **kwargs):
        raise ImportError("libfreetype.so.6: cannot open shared object file")

    monkeypatch.setattr(report, "plot_rd", broken)
    log = []
    result = run_benchmark(
        images,
        codecs=[],
        lcf_encode_decode=_fake_lcf,
        out_dir=tmp_path / "out",
        quick=True,
        log=log.append,
        plot=True,
        name="k",
    )
    assert "png" not in result.files and result.files["curves_csv"].exists()
    assert any("no R-D plot: libfreetype" in line for line in log)
