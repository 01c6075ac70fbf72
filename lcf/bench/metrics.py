"""Image quality metrics for R-D benchmarks: PSNR and MS-SSIM over RGB.

Both take two uint8 RGB arrays of shape (H, W, 3) (any integer or float array with values on the 0..255 scale
works) and follow the conventions of CompressAI's Kodak results, so that numbers are comparable with the published
curves in ``../shared/reference/kodak_published.csv``:

* PSNR: one value per image, ``10 log10(255^2 / MSE)`` with the MSE over all pixels and all three channels.
* MS-SSIM: Wang, Simoncelli & Bovik, "Multi-scale structural similarity for image quality assessment" (2003),
  as implemented by pytorch-msssim (which CompressAI calls): per channel, 5 scales, 11x11 Gaussian window with
  sigma 1.5 applied as two 1-D "valid" correlations (no padding), K1 = 0.01, K2 = 0.03, data range 255,
  scale weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); 2x2 average pooling between scales (zero padding of one
  row/column where a side is odd, counted in the mean, as torch's ``avg_pool2d(padding=s % 2)``); contrast-structure
  terms at scales 1-4 and the full SSIM at scale 5, each clamped at 0 (ReLU) before the weighted product; the
  per-channel values are averaged over R, G, B.

The image must have a shorter side > (11 - 1) * 2^4 = 160 pixels, as pytorch-msssim requires.
"""

from __future__ import annotations

import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0


def _as_rgb_float(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name}: expected an RGB array of shape (H, W, 3), got shape {a.shape}")
    return a.astype(np.float64)


def _check_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xf, yf = _as_rgb_float(x, "original"), _as_rgb_float(y, "reconstruction")
    if xf.shape != yf.shape:
        raise ValueError(f"original has shape {xf.shape} but reconstruction has shape {yf.shape}; they must match")
    return xf, yf


def mse(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error over all pixels and channels (0..255 scale)."""
    xf, yf = _check_pair(x, y)
    return float(np.mean((xf - yf) ** 2))


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    """PSNR in dB over RGB, peak 255; ``inf`` for identical images."""
    err = mse(x, y)
    if err == 0.0:
        return float("inf")
    return float(10.0 * np.log10(DATA_RANGE**2 / err))


def gaussian_window(size: int = WIN_SIZE, sigma: float = WIN_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps, centred (pytorch-msssim's ``_fspecial_gauss_1d``)."""
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(planes: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (..., H, W) planes with ``taps`` along H and then W."""
    k = taps.shape[0]
    rows = np.lib.stride_tricks.sliding_window_view(planes, k, axis=-2) @ taps
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=-1) @ taps


def _ssim_and_cs(x: np.ndarray, y: np.ndarray, taps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean SSIM and mean contrast-structure term for (C, H, W) planes."""
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2
    mu_x, mu_y, xx, yy, xy = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), taps)
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    cs_map = (2.0 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2.0 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.mean(axis=(-2, -1)), cs_map.mean(axis=(-2, -1))


def _avg_pool2(planes: np.ndarray) -> np.ndarray:
    """2x2 average pooling, stride 2, zero padding of 1 on both ends of an odd side (torch ``avg_pool2d``)."""
    pad_h, pad_w = planes.shape[-2] % 2, planes.shape[-1] % 2
    if pad_h or pad_w:
        planes = np.pad(planes, ((0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    h, w = planes.shape[-2] // 2 * 2, planes.shape[-1] // 2 * 2
    p = planes[:, :h, :w]
    return 0.25 * (p[:, 0::2, 0::2] + p[:, 1::2, 0::2] + p[:, 0::2, 1::2] + p[:, 1::2, 1::2])


def ms_ssim_per_channel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MS-SSIM of each of the three channels (array of 3 values in [0, 1])."""
    xf, yf = _check_pair(x, y)
    levels = len(MS_SSIM_WEIGHTS)
    min_side = (WIN_SIZE - 1) * 2 ** (levels - 1)
    if min(xf.shape[:2]) <= min_side:
        raise ValueError(
            f"MS-SSIM needs both image sides > {min_side} pixels ({levels} scales, {WIN_SIZE}x{WIN_SIZE} window); "
            f"got {xf.shape[1]}x{xf.shape[0]}"
        )
    taps = gaussian_window()
    xc, yc = xf.transpose(2, 0, 1), yf.transpose(2, 0, 1)
    terms = []
    for level in range(levels):
        ssim_c, cs_c = _ssim_and_cs(xc, yc, taps)
        if level < levels - 1:
            terms.append(np.maximum(cs_c, 0.0))
            xc, yc = _avg_pool2(xc), _avg_pool2(yc)
        else:
            terms.append(np.maximum(ssim_c, 0.0))
    weights = np.asarray(MS_SSIM_WEIGHTS)[:, None]
    return np.prod(np.stack(terms) ** weights, axis=0)


def ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """MS-SSIM over RGB: the mean of the three per-channel values (1.0 for identical images)."""
    return float(ms_ssim_per_channel(x, y).mean())
