"""lcf.bench.metrics: PSNR and MS-SSIM against known values and an independent torch reference."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lcf.bench.metrics import MS_SSIM_WEIGHTS, gaussian_window, ms_ssim, ms_ssim_per_channel, psnr


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w) + 60], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _ms_ssim_torch_reference(x: np.ndarray, y: np.ndarray) -> float:
    """pytorch-msssim's algorithm written out with a 2-D 11x11 window (conv2d, no padding) and torch pooling."""
    X = torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None]
    Y = torch.from_numpy(y.astype(np.float64)).permute(2, 0, 1)[None]
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mcs = []

    def blur(t):
        return F.conv2d(t, win, groups=3)

    for level in range(5):
        mu1, mu2 = blur(X), blur(Y)
        s1 = blur(X * X) - mu1**2
        s2 = blur(Y * Y) - mu2**2
        s12 = blur(X * Y) - mu1 * mu2
        cs_map = (2 * s12 + c2) / (s1 + s2 + c2)
        ssim_map = (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1) * cs_map
        ssim_c, cs_c = ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)
        if level < 4:
            mcs.append(torch.relu(cs_c))
            pad = [s % 2 for s in X.shape[2:]]
            X = F.avg_pool2d(X, kernel_size=2, padding=pad)
            Y = F.avg_pool2d(Y, kernel_size=2, padding=pad)
    stack = torch.stack(mcs + [torch.relu(ssim_c)], dim=0)
    w = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64).view(-1, 1, 1)
    return float(torch.prod(stack**w, dim=0).mean())


def test_psnr_known_values():
    x = _image(40, 50)
    y = x.astype(np.int16) + 5
    y = np.clip(y, 0, 255)
    assert psnr(x, x) == math.inf
    a = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(a, a + 5) == pytest.approx(20 * math.log10(255 / 5))
    b = a.copy()
    b[0, 0, 0] = 116  # one error of 16 among 192 values: MSE = 256/192
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 192 / 256))


def test_ms_ssim_identical_is_one():
    x = _image(176, 200)
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(ms_ssim_per_channel(x, x), 1.0)


@pytest.mark.parametrize("shape", [(176, 200), (171, 199)])  # even and odd sides (pooling pads odd sides)
def test_ms_ssim_matches_torch_reference(shape):
    x = _image(*shape, seed=1)
    rng = np.random.default_rng(2)
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)
    ours = ms_ssim(x, y)
    assert 0.5 < ours < 1.0
    assert ours == pytest.approx(_ms_ssim_torch_reference(x, y), abs=1e-10)


def test_ms_ssim_decreases_with_noise_and_is_symmetric():
    x = _image(180, 180, seed=3)
    rng = np.random.default_rng(4)
    values = []
    for sigma in (2, 8, 32):
        y = np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)
        values.append(ms_ssim(x, y))
        assert ms_ssim(y, x) == pytest.approx(values[-1], abs=1e-12)
    assert values[0] > values[1] > values[2]


def test_gaussian_window():
    g = gaussian_window()
    assert g.shape == (11,) and g.sum() == pytest.approx(1.0) and g.argmax() == 5
    assert np.allclose(g, g[::-1])


def test_metric_input_errors():
    x = _image(100, 100)
    with pytest.raises(ValueError, match="> 160"):
        ms_ssim(x, x)
    with pytest.raises(ValueError, match="must match"):
        psnr(x, x[:50])
    with pytest.raises(ValueError, match="RGB"):
        psnr(x[..., 0], x[..., 0])


def test_ms_ssim_of_flat_images_has_a_closed_form():
    # no variance anywhere: every contrast-structure term is 1, so MS-SSIM = luminance term ** weight of scale 5
    a, b = 100.0, 120.0
    x = np.full((192, 192, 3), a, np.uint8)
    y = np.full((192, 192, 3), b, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = ((2 * a * b + c1) / (a * a + b * b + c1)) ** MS_SSIM_WEIGHTS[-1]
    assert ms_ssim(x, y) == pytest.approx(expected, abs=1e-12)
