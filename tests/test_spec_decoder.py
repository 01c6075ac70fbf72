"""A decoder written from spec/lcf.md alone decodes the conformance vectors.

Everything lcf.md specifies is re-implemented here from its text, with plain torch operations and the tensors read by
the keys the spec lists: the two-pass decoding procedure, h_s, ctx, PEN1, PEN2, the slot layout and
parameterization of the PEN outputs, the quality gains and g_s. It imports neither ``lcf.nn`` nor ``lcf.codec``. The
parts that live in entropy.md (integer grids, tables, coding) and the container come from ``lcf.entropy`` and
``lcf.container``, which implement those documents and have their own tests.

If this decoder and lcf disagree, either the spec or the code is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

from lcf.container import read_container
from lcf.entropy import (
    FamilyTables,
    MixtureParams,
    ZTables,
    decode_mixture_stream,
    decode_z_stream,
    quantize,
)

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"
INDEX = json.loads((VECTORS / "vectors.json").read_text())
NAMES = [v["name"] for v in INDEX["vectors"]]
ANCHOR_FAMILIES = ("G", "G", "G", "L", "L", "L", "S", "S", "S")  # lcf.md: PEN1 components, k = 3f + j
NONANCHOR_FAMILIES = ("G", "G", "G")


@contextlib.contextmanager
def float_path_settings():
    """lcf.md, "Arithmetic of the float path": CPU, one intra-op thread, deterministic algorithms, no oneDNN."""
    threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.mkldnn.enabled = mkldnn
        torch.set_num_threads(threads)


class SpecDecoder:
    """lcf.md, "Entropy coding of the streams" and "Reconstruction", for a weights folder ("Weights")."""

    def __init__(self, folder: Path) -> None:
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.entropy = load_file(str(folder / self.manifest["files"]["entropy"]))
        cfg = self.manifest["model_config"]
        self.M, self.Mz = cfg["M"], cfg["Mz"]
        self.f64 = {k: torch.from_numpy(v).to(torch.float64) for k, v in self.entropy.items() if v.dtype == np.float32}
        self.family_tables = FamilyTables.from_arrays(self.entropy)
        self.z_tables = ZTables.from_arrays(self.entropy)
        self.folder = folder

    # -- the entropy-model networks (float64) ----------------------------------------------------------------------

    def conv(self, x: torch.Tensor, key: str, weights: dict | None = None, mask: torch.Tensor | None = None):
        w = (weights or self.f64)[key + ".weight"]
        b = (weights or self.f64)[key + ".bias"]
        if mask is not None:
            w = w * mask
        return F.conv2d(x, w, b, padding=(w.shape[-1] - 1) // 2)

    @staticmethod
    def lrelu(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.01)

    def h_s(self, z: torch.Tensor) -> torch.Tensor:
        x = self.lrelu(self.conv(z, "h_s.0"))
        x = self.lrelu(F.pixel_shuffle(self.conv(x, "h_s.2.0"), 2))
        x = self.lrelu(self.conv(x, "h_s.4"))
        x = self.lrelu(F.pixel_shuffle(self.conv(x, "h_s.6.0"), 2))
        return self.conv(x, "h_s.8")

    def ctx(self, y_anchors: torch.Tensor) -> torch.Tensor:
        u, v = np.indices((5, 5))
        mask = torch.from_numpy(((u + v) % 2 == 1).astype(np.float64))  # taps with u + v even are zero
        return self.conv(y_anchors, "ctx.conv", mask=mask)

    def pen(self, x: torch.Tensor, name: str) -> torch.Tensor:
        x = self.lrelu(self.conv(x, f"{name}.net.0"))
        x = self.lrelu(self.conv(x, f"{name}.net.2"))
        return self.conv(x, f"{name}.net.4")

    @staticmethod
    def mixture(raw: torch.Tensor, slots: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """lcf.md, "From the PEN outputs to mixture parameters": (weights, means, scales), each (M, K, h, w)."""
        _, ch, h, w = raw.shape
        r = raw[0].view(ch // slots, slots, h, w)  # channel P·c + p -> [c, p]
        if slots == 30:
            logits, means, scales, family = r[:, 0:9], r[:, 9:18], r[:, 18:27], r[:, 27:30]
            within = torch.softmax(logits.view(-1, 3, 3, h, w), dim=2)  # [c, f, j]
            weights = (torch.softmax(family, dim=1).unsqueeze(2) * within).reshape(-1, 9, h, w)
        else:
            weights, means, scales = torch.softmax(r[:, 0:3], dim=1), r[:, 3:6], r[:, 6:9]
        return weights, torch.clamp(means, -1024.0, 1024.0), torch.clamp(F.softplus(scales), 0.11, 64.0)

    # -- decoding procedure ---------------------------------------------------------------------------------------

    def int_params(self, theta, families, coded: np.ndarray, positions: np.ndarray):
        """θ at the elements of a stream, in its element order: coded channels ascending, positions row-major."""
        arrays = []
        for t in theta:
            a = t.numpy().reshape(t.shape[0], t.shape[1], -1)[coded][:, :, positions]  # (n, K, positions)
            arrays.append(a.transpose(0, 2, 1).reshape(-1, t.shape[1]))
        return quantize(MixtureParams(arrays[0], arrays[1], arrays[2], families))

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
        with float_path_settings(), torch.no_grad():
            t1 = self.h_s(torch.from_numpy(z).to(torch.float64)[None])
            theta1 = self.mixture(self.pen(t1, "pen_anchor"), 30)
            p1 = self.int_params(theta1, ANCHOR_FAMILIES, coded, anchors)
            y = np.zeros((self.M, h * w), dtype=np.int32)
            y_coded = np.zeros((n, h * w), dtype=np.int32)
            y_coded[:, anchors] = decode_mixture_stream(container.anchor, p1, self.family_tables).reshape(n, anchors.size)
            y[coded] = y_coded  # non-anchors and skipped channels are zero
            c2 = self.ctx(torch.from_numpy(y.reshape(self.M, h, w)).to(torch.float64)[None])
            theta2 = self.mixture(self.pen(torch.cat([t1, c2], dim=1), "pen_nonanchor"), 9)
            p2 = self.int_params(theta2, NONANCHOR_FAMILIES, coded, nonanchors)
            y_coded[:, nonanchors] = decode_mixture_stream(container.nonanchor, p2, self.family_tables).reshape(
                n, nonanchors.size)
            y[coded] = y_coded
        return z, y.reshape(self.M, h, w), coded

    # -- reconstruction -------------------------------------------------------------------------------------------

    def inverse_gains(self, q: float) -> torch.Tensor:
        table = self.f64["gain.log_inv_gain"]
        levels = table.shape[0]
        i = min(int(np.floor(q)), levels - 1)
        t = q - i
        return torch.exp((1 - t) * table[i - 1] + t * table[i])

    def g_s(self, y: torch.Tensor, name: str) -> torch.Tensor:
        info = self.manifest["decoders"][name]
        arch = {"attention": True, "residual": True, **info["arch"]}
        p = {k: torch.from_numpy(v).to(torch.float64) for k, v in load_file(str(self.folder / info["file"])).items()}
        layout = [("attn", "attention"), ("rb", "residual"), ("up", None), ("rb", "residual"), ("up", None),
                  ("attn", "attention"), ("rb", "residual"), ("up", None), ("rb", "residual"), ("out", None)]
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
            x = self.g_s(torch.from_numpy(y).to(torch.float64)[None] * self.inverse_gains(head.quality).view(1, -1, 1, 1),
                         head.decoder)
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
