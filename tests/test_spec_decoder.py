"""A decoder written from spec/lcf.md alone decodes the conformance vectors.

Everything lcf.md specifies is re-implemented here from its text and the tensors are read by the keys the spec
lists: the two-pass decoding procedure, the integer networks h_s, ctx, PEN1 and PEN2, the slot layout of the PEN
outputs, the quality gains and g_s. It imports neither ``lcf.nn`` nor ``lcf.codec``.

The entropy path (ẑ → T1 → R1, and (T1, ŷ_A) → R2) is exact integer arithmetic: it runs on the int64 numpy reference
of tests/intref.py (explicit taps, integer dot products, arithmetic shifts; no torch and no float anywhere), a
genuinely different implementation from lcf's, which carries the same integers through float64 torch convolutions.
The parts that live in entropy.md — the raw slots → integer parameters map (``int_params``: pinned exponential table,
largest remainder, raw scale thresholds), the tables and the coding — and the container come from ``lcf.entropy`` and
``lcf.container``, which implement those documents and have their own tests. g_s (not exact, lcf.md) runs in torch
float64 and is held to the reference PNGs within ±1.

If this decoder and lcf disagree, either the spec or the code is wrong.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from intref import IntRef
from safetensors.numpy import load_file

from lcf.container import read_container
from lcf.entropy import (
    FamilyTables,
    ZTables,
    decode_mixture_stream,
    decode_z_stream,
    int_params,
)

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"
INDEX = json.loads((VECTORS / "vectors.json").read_text())
NAMES = [v["name"] for v in INDEX["vectors"]]
ANCHOR_SLOTS, NONANCHOR_SLOTS = 30, 9  # lcf.md: channel P·c + p of a PEN's output is slot p of latent channel c


class SpecDecoder:
    """lcf.md, "Entropy coding of the streams" and "Reconstruction", for a weights folder ("Weights")."""

    def __init__(self, folder: Path) -> None:
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.entropy = load_file(str(folder / self.manifest["files"]["entropy"]))
        cfg = self.manifest["model_config"]
        self.M, self.Mz = cfg["M"], cfg["Mz"]
        self.nets = IntRef(self.entropy)  # the integer layers: <key>.weight int16, .bias int64, .shift int32
        self.gains = torch.from_numpy(self.entropy["gain.log_inv_gain"]).to(torch.float64)
        self.family_tables = FamilyTables.from_arrays(self.entropy)
        self.z_tables = ZTables.from_arrays(self.entropy)
        self.folder = folder

    # -- decoding procedure (integers only) -----------------------------------------------------------------------

    @staticmethod
    def stream_params(raw: np.ndarray, slots: int, coded: np.ndarray, positions: np.ndarray):
        """Integer parameters of a stream's elements, in its element order (coded channels ascending, positions
        row-major), from a PEN's raw output (1, P·M, h, w) int64."""
        assert raw.dtype == np.int64
        _, ch, h, w = raw.shape
        r = raw[0].reshape(ch // slots, slots, h * w)  # channel P·c + p -> [c, p]
        r = r[coded][:, :, positions]  # (n, P, positions)
        return int_params(r.transpose(0, 2, 1).reshape(-1, slots))

    def decode_symbols(self, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        container = read_container(data)
        head = container.header
        assert head.model_id.hex() == self.manifest["model_id"]
        assert (head.latent_channels, head.hyper_channels) == (self.M, self.Mz)
        h, w = head.padded_height // 16, head.padded_width // 16
        bits = np.unpackbits(np.frombuffer(container.bitmap, np.uint8), bitorder="big")
        coded = bits[: self.M].astype(bool)
        n = int(coded.sum())
        i, j = np.indices((h, w))
        anchors = np.flatnonzero((i + j) % 2 == 0)
        nonanchors = np.flatnonzero((i + j) % 2 == 1)
        z = decode_z_stream(container.hyper, (self.Mz, h // 4, w // 4), self.z_tables)
        t1 = self.nets.hyper(z[None])
        assert t1.dtype == np.int64 and t1.shape == (1, 2 * self.M, h, w)
        p1 = self.stream_params(self.nets.anchor(t1), ANCHOR_SLOTS, coded, anchors)
        y = np.zeros((self.M, h * w), dtype=np.int32)
        y_coded = np.zeros((n, h * w), dtype=np.int32)
        y_coded[:, anchors] = decode_mixture_stream(container.anchor, p1, self.family_tables).reshape(n, anchors.size)
        y[coded] = y_coded  # non-anchors and skipped channels are zero
        r2 = self.nets.nonanchor(t1, y.reshape(1, self.M, h, w))  # ŷ_A: zero at non-anchors, skipped channels
        p2 = self.stream_params(r2, NONANCHOR_SLOTS, coded, nonanchors)
        y_coded[:, nonanchors] = decode_mixture_stream(container.nonanchor, p2, self.family_tables).reshape(
            n, nonanchors.size
        )
        y[coded] = y_coded
        return z, y.reshape(self.M, h, w), coded

    # -- g_s layers (float64 torch; not part of the exact path) ----------------------------------------------------

    @staticmethod
    def conv(x: torch.Tensor, key: str, weights: dict) -> torch.Tensor:
        w, b = weights[key + ".weight"], weights[key + ".bias"]
        return F.conv2d(x, w, b, padding=(w.shape[-1] - 1) // 2)

    @staticmethod
    def lrelu(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.01)

    # -- reconstruction -------------------------------------------------------------------------------------------

    def inverse_gains(self, q: float) -> torch.Tensor:
        table = self.gains
        levels = table.shape[0]
        i = min(int(np.floor(q)), levels - 1)
        t = q - i
        return torch.exp((1 - t) * table[i - 1] + t * table[i])

    def g_s(self, y: torch.Tensor, name: str) -> torch.Tensor:
        info = self.manifest["decoders"][name]
        arch = {"attention": True, "residual": True, **info["arch"]}
        p = {k: torch.from_numpy(v).to(torch.float64) for k, v in load_file(str(self.folder / info["file"])).items()}
        layout = [
            ("attn", "attention"),
            ("rb", "residual"),
            ("up", None),
            ("rb", "residual"),
            ("up", None),
            ("attn", "attention"),
            ("rb", "residual"),
            ("up", None),
            ("rb", "residual"),
            ("out", None),
        ]
        modules = [kind for kind, flag in layout if flag is None or arch[flag]]
        x = y
        for n, kind in enumerate(modules):
            x = getattr(self, f"_{kind}")(x, p, f"{n}.")
        return x

    def _rb(self, x, p, pre):
        out = self.lrelu(self.conv(self.lrelu(self.conv(x, pre + "conv1", p)), pre + "conv2", p))
        return out + (self.conv(x, pre + "skip", p) if pre + "skip.weight" in p else x)

    def _up(self, x, p, pre):
        out = self.lrelu(F.pixel_shuffle(self.conv(x, pre + "subpel.0", p), 2))
        out = self.conv(out, pre + "conv", p)
        pedestal = 2.0**-36
        beta = torch.clamp(p[pre + "igdn.beta"], min=(1e-6 + pedestal) ** 0.5) ** 2 - pedestal
        gamma = torch.clamp(p[pre + "igdn.gamma"], min=2.0**-18) ** 2 - pedestal
        norm = beta.view(1, -1, 1, 1) + torch.einsum("cd,bdhw->bchw", gamma, out * out)
        return out * torch.sqrt(norm) + F.pixel_shuffle(self.conv(x, pre + "upsample.0", p), 2)

    def _unit(self, x, p, pre):
        out = F.relu(self.conv(x, pre + "conv.0", p))
        out = F.relu(self.conv(out, pre + "conv.2", p))
        return F.relu(self.conv(out, pre + "conv.4", p) + x)

    def _attn(self, x, p, pre):
        trunk, mask = x, x
        for u in range(3):
            trunk = self._unit(trunk, p, f"{pre}trunk.{u}.")
            mask = self._unit(mask, p, f"{pre}mask.{u}.")
        return x + trunk * torch.sigmoid(self.conv(mask, pre + "mask.3", p))

    def _out(self, x, p, pre):
        return F.pixel_shuffle(self.conv(x, pre + "0", p), 2)

    def decode_pixels(self, data: bytes) -> np.ndarray:
        head = read_container(data).header
        _, y, _ = self.decode_symbols(data)
        with torch.no_grad():
            inverse_gains = self.inverse_gains(head.quality).view(1, -1, 1, 1)
            x = self.g_s(torch.from_numpy(y).to(torch.float64)[None] * inverse_gains, head.decoder)
        x = torch.clamp(x, 0.0, 1.0)[0, :, : head.height, : head.width]
        rgb = torch.round(x * 255.0).to(torch.uint8).permute(1, 2, 0).numpy().astype(np.int64)
        if head.color.name == "GRAY8":
            return ((rgb.sum(axis=2) + 1) // 3)[..., None]
        return rgb


@pytest.fixture(scope="module")
def decoder() -> SpecDecoder:
    return SpecDecoder(VECTORS / INDEX["weights"]["folder"])


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<i4").tobytes()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_spec_decoder_gets_the_pinned_symbols(decoder, name) -> None:
    entry = next(v for v in INDEX["vectors"] if v["name"] == name)
    z, y, coded = decoder.decode_symbols((VECTORS / entry["file"]).read_bytes())
    pinned = entry["symbols"]
    assert _sha(z) == pinned["z_hat_sha256"]
    assert [int(c) for c in np.flatnonzero(coded)] == pinned["coded_channels"]
    assert _sha(y) == pinned["y_hat_sha256"]


@pytest.mark.parametrize("name", ["gradient-64x48-q7", "gray-100x70-q3.3", "text-37x23-q2.5"])
def test_spec_decoder_pixels_are_within_one_of_the_reference(decoder, name) -> None:
    from PIL import Image

    entry = next(v for v in INDEX["vectors"] if v["name"] == name)
    got = decoder.decode_pixels((VECTORS / entry["file"]).read_bytes())
    with Image.open(VECTORS / entry["decoded"]["png"]) as im:
        ref = np.asarray(im.convert("L" if entry["header"]["color"] == "GRAY8" else "RGB"), dtype=np.int64)
    ref = ref[..., None] if ref.ndim == 2 else ref
    assert got.shape == ref.shape
    assert int(np.abs(got - ref).max()) <= 1
