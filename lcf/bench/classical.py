"""Classical codecs through Pillow, each as an ``EncodeDecode`` hook with a dense setting sweep.

| id         | Pillow call (beyond ``format``)                                                        | swept      |
|------------|----------------------------------------------------------------------------------------|------------|
| `jpeg420`  | JPEG (libjpeg-turbo), ``subsampling=2`` (4:2:0), ``optimize=True`` (optimal Huffman),  | quality    |
|            | baseline                                                                               |            |
| `jpeg444`  | as ``jpeg420`` with ``subsampling=0`` (4:4:4)                                          | quality    |
| `webp`     | WEBP (libwebp, lossy, always 4:2:0), ``method=6`` (slowest, best)                      | quality    |
| `jpeg2000` | JPEG2000 (OpenJPEG) raw codestream ``no_jp2=True``, 9/7 wavelet ``irreversible=True``, | target bpp |
|            | colour transform ``mct=1``, one layer ``quality_mode="rates"``,                        |            |
|            | ``quality_layers=[24 / target_bpp]``                                                   |            |
| `avif`     | AVIF (libavif + aom), ``subsampling="4:4:4"``, ``speed=AVIF_SPEED``, ``codec="aom"``,  | quality    |
|            | ``advanced={"tune": "psnr"}`` (aom's PSNR tuning, passed through libavif's             |            |
|            | codec-specific options)                                                                |            |

All encoders run single-threaded (AVIF: ``max_threads=1``; the others are single-threaded in Pillow) so that times
are comparable on a shared machine. ``n_bytes`` is the whole file as written (headers and container included; the
JPEG 2000 codestream carries no JP2 boxes). Encode time covers ``Image.save`` into memory; decode time covers
``Image.open`` + ``load`` + conversion to an RGB array.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, features

AVIF_SPEED = 2  # aom cpu-used; on 4 Kodak images, 2 saved ~3 % BD-rate over 4 at ~3.5x the encode time


@dataclass(frozen=True)
class ClassicalCodec:
    """A Pillow codec: ``save_options(param)`` gives the ``Image.save`` keywords for one point of the sweep."""

    id: str
    pillow_format: str
    param_name: str
    sweep: tuple[float, ...]
    quick_sweep: tuple[float, ...]
    save_options: Callable[[float], dict[str, Any]] = field(repr=False)
    feature: str | None = None  # PIL.features name that must be available

    def available(self) -> bool:
        return self.feature is None or bool(features.check(self.feature))

    def encode(self, image: Image.Image, param: float) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format=self.pillow_format, **self.save_options(param))
        return buf.getvalue()

    @staticmethod
    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))

    def encode_decode(self, rgb: np.ndarray, param: float) -> tuple[int, np.ndarray, float, float]:
        """The ``EncodeDecode`` hook: bytes, reconstruction, encode and decode seconds."""
        image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
        t0 = time.perf_counter()
        data = self.encode(image, param)
        t1 = time.perf_counter()
        recon = self.decode(data)
        t2 = time.perf_counter()
        return len(data), recon, t1 - t0, t2 - t1


def _jpeg(subsampling: int) -> Callable[[float], dict[str, Any]]:
    return lambda q: {"quality": int(q), "subsampling": subsampling, "optimize": True}


def _webp(q: float) -> dict[str, Any]:
    return {"quality": int(q), "method": 6, "lossless": False}


def _jpeg2000(target_bpp: float) -> dict[str, Any]:
    return {
        "no_jp2": True,
        "irreversible": True,
        "mct": 1,
        "quality_mode": "rates",
        "quality_layers": [24.0 / target_bpp],
    }


def _avif(q: float) -> dict[str, Any]:
    return {
        "quality": int(q),
        "subsampling": "4:4:4",
        "speed": AVIF_SPEED,
        "codec": "aom",
        "range": "full",
        "max_threads": 1,
        "advanced": {"tune": "psnr"},
    }


_JPEG_SWEEP = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)

CODECS: dict[str, ClassicalCodec] = {
    c.id: c
    for c in (
        ClassicalCodec("jpeg420", "JPEG", "quality", _JPEG_SWEEP, (10.0, 50.0, 90.0), _jpeg(2), "jpg"),
        ClassicalCodec("jpeg444", "JPEG", "quality", _JPEG_SWEEP, (10.0, 50.0, 90.0), _jpeg(0), "jpg"),
        ClassicalCodec(
            "webp",
            "WEBP",
            "quality",
            (0.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 75.0, 82.0, 88.0, 93.0),
            (10.0, 60.0, 92.0),
            _webp,
            "webp",
        ),
        ClassicalCodec(
            "jpeg2000",
            "JPEG2000",
            "target bpp",
            (0.1, 0.15, 0.2, 0.3, 0.4, 0.55, 0.75, 1.0, 1.3, 1.65, 2.0),
            (0.15, 0.5, 1.5),
            _jpeg2000,
            "jpg_2000",
        ),
        ClassicalCodec(
            "avif",
            "AVIF",
            "quality",
            (0.0, 8.0, 16.0, 24.0, 32.0, 40.0, 48.0, 56.0, 64.0, 72.0),
            (8.0, 32.0, 64.0),
            _avif,
            "avif",
        ),
    )
}


def codec_versions() -> dict[str, str | None]:
    """Library versions behind the codecs, from ``PIL.features`` (and libavif's codec list where available)."""
    import PIL

    versions: dict[str, str | None] = {"Pillow": PIL.__version__}
    for name, feature in (
        ("libjpeg-turbo", "libjpeg_turbo"),
        ("libwebp", "webp"),
        ("OpenJPEG", "jpg_2000"),
        ("libavif", "avif"),
    ):
        versions[name] = features.version(feature)
    try:
        from PIL import _avif

        versions["libavif codecs"] = _avif.codec_versions()
    except (ImportError, AttributeError):
        versions["libavif codecs"] = None
    return versions
