"""Regenerate lcf's conformance vectors (spec/lcf.md, "Conformance vectors"). Deterministic on one machine and build.

    python spec/vectors/make_vectors.py                  # weights, .lcf files, PNGs and vectors.json
    python spec/vectors/make_vectors.py --keep-weights   # everything but the weights folder

What it writes here, beside itself::

    weights/                    a tiny seeded random model (N=8, M=20, Mz=12), exported as lcf ships weights
    <name>.lcf                  the vector: a complete .lcf file
    <name>.source.png           the image it was encoded from (lossless; RGB, L or RGBA)
    <name>.decoded.png          what the reference decoder outputs (pixels are float-dependent: compare within ±1)
    vectors.json                per vector: file digest, header, chunk table, symbol digests, pixel digests

The source images are built here with integer arithmetic only (no fonts, no colour management, no float), so they
are the same everywhere. tests/test_vectors.py imports this module to rebuild them and to regenerate everything when
``LCF_REGENERATE_VECTORS=1``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "weights"
INDEX = HERE / "vectors.json"
SEED = 1234
CONFIG = {"N": 8, "M": 20, "Mz": 12}  # M = 20: CMAP has 4 unused bits


# ---------------------------------------------------------------------------------------------- source images


def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.indices((height, width), dtype=np.int64)
    return x, y


def gradient(width: int, height: int) -> np.ndarray:
    """R ramps left to right, G top to bottom, B along the anti-diagonal."""
    x, y = _grid(width, height)
    r = x * 255 // (width - 1)
    g = y * 255 // (height - 1)
    b = (r + (height - 1 - y) * 255 // (height - 1)) // 2
    return np.dstack([r, g, b]).astype(np.uint8)


# 3 x 5 glyphs, one string per row ("#" = ink)
_GLYPHS = {
    "L": ("#..", "#..", "#..", "#..", "###"),
    "C": (".##", "#..", "#..", "#..", ".##"),
    "F": ("###", "#..", "##.", "#..", "#.."),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
}


def text(width: int, height: int) -> np.ndarray:
    """Dark "LCF1" in 3x5 glyphs scaled x2 on a warm white page, with a blue rule below: sharp edges, odd size."""
    page = np.empty((height, width, 3), dtype=np.uint8)
    page[:] = (250, 246, 236)
    x0, y0 = 2, 3
    for ch in "LCF1":
        glyph = np.array([[c == "#" for c in row] for row in _GLYPHS[ch]])
        ink = np.kron(glyph, np.ones((2, 2), dtype=bool))
        region = page[y0 : y0 + ink.shape[0], x0 : x0 + ink.shape[1]]
        region[ink[: region.shape[0], : region.shape[1]]] = (20, 24, 40)
        x0 += ink.shape[1] + 2
    page[y0 + 13 : y0 + 15, 1 : width - 1] = (30, 90, 200)
    return page


def gray(width: int, height: int) -> np.ndarray:
    """(H, W) 8-bit gray: a smooth ramp plus a coarse texture, integer only."""
    x, y = _grid(width, height)
    v = (x * 2 + y * 3 + ((x * y) >> 4) + 40 * (((x >> 3) + (y >> 3)) & 1)) & 255
    return v.astype(np.uint8)


def rgba(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour bands and a plane whose alpha is opaque inside a disc and a horizontal ramp outside it."""
    x, y = _grid(width, height)
    rgb = np.dstack([(x * 6) & 255, (y * 8) & 255, ((x + y) * 4) & 255]).astype(np.uint8)
    inside = (2 * x - width + 1) ** 2 + (2 * y - height + 1) ** 2 < (height - 4) ** 2
    alpha = np.where(inside, 255, x * 255 // (width - 1)).astype(np.uint8)
    return rgb, alpha


def icc_profile() -> bytes:
    """A fixed, well-formed ICC v2 header and one 'cprt' tag. lcf carries it unchanged; nothing interprets it."""
    text_tag = b"text" + b"\0" * 4 + b"lcf conformance vector, not a usable profile\0"
    header_size, table_size = 128, 4 + 12
    size = header_size + table_size + len(text_tag)
    header = struct.pack(
        ">I4sI4s4s4s6H4s4sI4s4sQI3i4s44s",
        size,
        b"\0\0\0\0",
        0x02100000,
        b"mntr",
        b"RGB ",
        b"XYZ ",
        2024,
        1,
        1,
        0,
        0,
        0,
        b"acsp",
        b"\0\0\0\0",
        0,
        b"\0\0\0\0",
        b"\0\0\0\0",
        0,
        0,
        0x0000F6D6,
        0x00010000,
        0x0000D32D,
        b"\0\0\0\0",
        b"\0" * 44,
    )
    table = struct.pack(">I4sII", 1, b"cprt", header_size + table_size, len(text_tag))
    return header + table + text_tag


def exif_block() -> bytes:
    """EXIF as Pillow hands it over ("Exif\\0\\0" + big-endian TIFF): Make "lcf" and Orientation 1."""
    entries = [(0x010F, 2, 4, b"lcf\0"), (0x0112, 3, 1, struct.pack(">HH", 1, 0))]
    ifd = struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHI", t, k, n) + v for t, k, n, v in entries)
    return b"Exif\0\0" + b"MM\0*" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)


def xmp_packet() -> bytes:
    return (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>lcf conformance '
        b'vector</dc:title></rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>'
    )


@dataclass(frozen=True)
class Vector:
    name: str
    quality: float  # as requested; the header stores it on the 1/256 grid
    description: str

    def source(self):
        """The PreparedImage this vector is encoded from (lcf.image.PreparedImage; no Pillow involved)."""
        from lcf.image import PreparedImage

        if self.name.startswith("gradient"):
            return PreparedImage(gradient(64, 48))
        if self.name.startswith("text"):
            return PreparedImage(text(37, 23))
        if self.name.startswith("gray"):
            g = gray(100, 70)
            return PreparedImage(np.repeat(g[..., None], 3, axis=2), color="L")
        if self.name.startswith("rgba"):
            rgb, alpha = rgba(40, 30)
            return PreparedImage(rgb, alpha, icc=icc_profile(), exif=exif_block(), xmp=xmp_packet())
        raise ValueError(self.name)


VECTORS = (
    Vector("gradient-64x48-q1", 1.0, "RGB gradient 64x48, lowest quality (many skipped channels)"),
    Vector("gradient-64x48-q4", 4.0, "RGB gradient 64x48, middle quality"),
    Vector("gradient-64x48-q7", 7.0, "RGB gradient 64x48, highest quality"),
    Vector("text-37x23-q2.5", 2.5, "RGB text, odd size 37x23 (padded to 64x64), fractional quality"),
    Vector("gray-100x70-q3.3", 3.3, "GRAY8 100x70 (y 8x8, z 2x2); quality 3.3 is stored as 845/256"),
    Vector("rgba-40x30-q6", 6.0, "RGB + ALPH, with iCCP, eXIf (stored without the Exif\\0\\0 prefix) and xMPd"),
)


# ---------------------------------------------------------------------------------------------- digests


def sha256(data: bytes | np.ndarray) -> str:
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes()
    return hashlib.sha256(data).hexdigest()


def int32_le(a: np.ndarray) -> bytes:
    """The array as int32 little-endian, C order: what the symbol digests are taken over."""
    return np.ascontiguousarray(a, dtype="<i4").tobytes()


def symbol_digests(symbols) -> dict:
    """Digests of lcf.codec.Symbols: z_hat and y_hat as int32 LE in (C, H, W) order, the bitmap as CMAP bytes."""
    from lcf.container import encode_channel_bitmap

    cmap = encode_channel_bitmap(np.asarray(symbols.coded, dtype=bool).tolist())
    return {
        "z_hat_shape": list(symbols.z_hat.shape),
        "z_hat_sha256": sha256(int32_le(symbols.z_hat)),
        "y_hat_shape": list(symbols.y_hat.shape),
        "y_hat_sha256": sha256(int32_le(symbols.y_hat)),
        "cmap_hex": cmap.hex(),
        "cmap_sha256": sha256(cmap),
        "coded_channels": [int(c) for c in np.flatnonzero(symbols.coded)],
        "y_hat_nonzero": int(np.count_nonzero(symbols.y_hat)),
        "y_hat_abs_max": int(np.abs(symbols.y_hat).max(initial=0)),
        "z_hat_abs_max": int(np.abs(symbols.z_hat).max(initial=0)),
    }


def output_samples(decoded) -> np.ndarray:
    """The decoder's output samples without alpha: (H, W, 3) for RGB8, (H, W, 1) for GRAY8."""
    img = decoded.to_pil()
    base = img.convert("L") if decoded.color == "L" else img.convert("RGB")
    a = np.asarray(base)
    return a[..., None] if a.ndim == 2 else a


def output_image(decoded):
    """The decoded image as a plain PIL image (mode RGB, L, RGBA or LA) without metadata, for the reference PNG."""
    from PIL import Image

    return Image.fromarray(np.asarray(decoded.to_pil()))


# ---------------------------------------------------------------------------------------------- generation


def make_weights(out: Path = WEIGHTS) -> None:
    """Export the tiny seeded random model, its gains spread as in tests/conftest.py and its z made larger.

    Untrained, so tuned for coverage only: the gains are spread (and raised a little) so that quality 1 codes no
    channel (empty ANCH and NANC), middle qualities some, quality 7 all; h_a's last layer is scaled up so that ẑ is
    non-zero almost everywhere and a few |ẑ| exceed the z tables' range (escapes in HYPR).
    """
    import torch

    from lcf.nn import LcfModel, ModelConfig
    from lcf.train.export import export_model

    torch.manual_seed(SEED)
    model = LcfModel(ModelConfig(**CONFIG)).eval()
    with torch.no_grad():
        spread = torch.linspace(-1.5, 3.5, model.config.M)
        model.gain.log_gain.mul_(3.0).add_(spread)
        model.gain.log_inv_gain.mul_(3.0).sub_(spread)
        model.h_a[-1].weight.mul_(150.0)
        model.h_a[-1].bias.mul_(150.0)
    if out.exists():
        shutil.rmtree(out)
    export_model(model, out, info={"notes": "conformance-vector model: random weights (seed 1234), not trained"})


def chunk_table(data: bytes) -> list[dict]:
    from lcf.container import walk_chunks

    return [
        {"type": c.type, "offset": c.offset, "length": c.length, "crc": f"{c.stored_crc:08x}"}
        for c in walk_chunks(data)
    ]


def make_vector(codec, v: Vector) -> dict:
    from PIL import Image

    from lcf.container import read_container

    src = v.source()
    data = codec.encode(src, v.quality)
    (HERE / f"{v.name}.lcf").write_bytes(data)
    source_png = np.asarray(src.rgb[..., 0] if src.color == "L" else src.rgb)
    if src.alpha is not None:
        source_png = np.dstack([source_png, src.alpha])
    Image.fromarray(source_png).save(HERE / f"{v.name}.source.png")
    decoded = codec.decode(data)
    output_image(decoded).save(HERE / f"{v.name}.decoded.png")
    header = read_container(data).header
    return {
        "name": v.name,
        "description": v.description,
        "file": f"{v.name}.lcf",
        "bytes": len(data),
        "sha256": sha256(data),
        "quality_requested": v.quality,
        "header": header.as_dict() | {"quality_u16": round(header.quality * 256)},
        "chunks": chunk_table(data),
        "source": {
            "png": f"{v.name}.source.png",
            "rgb_sha256": sha256(src.rgb),
            "alpha_sha256": None if src.alpha is None else sha256(src.alpha),
            "icc_sha256": None if src.icc is None else sha256(src.icc),
            "exif_sha256": None if src.exif is None else sha256(src.exif),
            "xmp_sha256": None if src.xmp is None else sha256(src.xmp),
        },
        "symbols": symbol_digests(decoded.symbols),
        "decoded": {
            "png": f"{v.name}.decoded.png",
            "decoder": decoded.decoder,
            "mode": output_image(decoded).mode,
            "pixels_sha256": sha256(output_samples(decoded)),
            "pixels_exact": False,
            "alpha_sha256": None if decoded.alpha is None else sha256(decoded.alpha),
        },
    }


def generate(*, keep_weights: bool = False) -> dict:
    """Write every file of the conformance vectors; returns the index written to vectors.json."""
    import torch

    import lcf
    from lcf.codec import Codec

    if not keep_weights or not (WEIGHTS / "manifest.json").exists():
        make_weights()
    for old in [*HERE.glob("*.lcf"), *HERE.glob("*.png")]:
        old.unlink()
    codec = Codec(WEIGHTS)
    index = {
        "about": "lcf conformance vectors; see spec/lcf.md, 'Conformance vectors'. Regenerate with "
        "`python spec/vectors/make_vectors.py` or `LCF_REGENERATE_VECTORS=1 python -m pytest "
        "tests/test_vectors.py`.",
        "format_version": 1,
        "digests": "sha256, hex. Symbols: z_hat (Mz, Hp/64, Wp/64) and y_hat (M, Hp/16, Wp/16) as int32 "
        "little-endian in C order; cmap: the CMAP payload. pixels: the decoder's output samples "
        "(H, W, 3 for RGB8, H, W, 1 for GRAY8), uint8, without alpha; alpha: the (H, W) plane.",
        "weights": {
            "folder": "weights",
            "model_id": codec.weights.model_id.hex(),
            "model_config": codec.weights.manifest.model_config.to_dict(),
        },
        "generated_with": {
            "lcf": lcf.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "machine": platform.machine(),
        },
        "vectors": [make_vector(codec, v) for v in VECTORS],
    }
    INDEX.write_text(json.dumps(index, indent=2) + "\n")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-weights", action="store_true", help="reuse the existing weights folder")
    args = parser.parse_args(argv)
    index = generate(keep_weights=args.keep_weights)
    for v in index["vectors"]:
        print(
            f"{v['file']:28s} {v['bytes']:6d} bytes  {v['sha256'][:16]}  coded channels "
            f"{len(v['symbols']['coded_channels'])}/{index['weights']['model_config']['M']}"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    sys.exit(main())
