"""Codec: image -> .lcf bytes and back. The only module where the network, the entropy layer and the container meet.

Encode (paper Fig. 3 and Fig. 7)::

    image ─ pad to 64 ─ g_a·gain(q) ─ y ─ round ─ ŷ ─────────────────────────────┐
                                      └─ h_a ─ z ─ round ─ ẑ ── HYPR (z tables)   │
    ẑ ─ h_s ─ T1 ─ PEN1 ─ θ1 ─ int_params ─ anchors of coded channels ── ANCH    │
            └──── PEN2 ◄─ ctx(ŷ anchors) ─ θ2 ─ int_params ─ non-anchors ─ NANC   │
    channel bitmap (channels with any ŷ != 0) ─────────────────────────── CMAP ◄─┘

Decode runs the same path in reverse: z from HYPR, θ1, anchors from ANCH, θ2 from the decoded anchors, non-anchors
from NANC, then the chosen synthesis transform g_s. The path ẑ -> θ1, θ2 -> integer parameters is integer arithmetic
(:class:`lcf.nn.IntegerEntropyNet`, then :func:`lcf.entropy.int_params`), the same on every machine, so encoder and
decoder derive the same tables; g_a and g_s are float and may run on any device (their floats never reach the coder).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lcf.container import (
    Chunk,
    ColorFormat,
    Header,
    Limits,
    read_container,
    write_container,
)
from lcf.container.chunks import compress_alpha
from lcf.container.header import snap_quality
from lcf.effort import EFFORT_ITERATIONS, check_effort
from lcf.entropy import (
    FamilyTables,
    IntParams,
    ZTables,
    decode_mixture_stream,
    decode_z_stream,
    encode_mixture_stream,
    encode_z_stream,
    estimate_bits,
    estimate_z_bits,
    int_params,
    pack_bitmap,
    unpack_bitmap,
)
from lcf.errors import (
    CorruptDataError,
    LcfError,
    LimitError,
    ModelMismatchError,
    UsageError,
)
from lcf.image import PreparedImage, load_image
from lcf.nn import IntegerEntropyNet, LcfModel
from lcf.nn.integer import INTEGER_PREFIXES, check_integer_arrays, float_state
from lcf.nn.refine import EntropyOnDevice, refine_latents
from lcf.weights import ENCODER_PREFIXES, ENTROPY_PREFIXES, Weights, float_layout, load_weights

PAD = 64  # g_a and h_a downsample by 64 in all
DEFAULT_MAX_MEMORY = 8 << 30  # bytes; LCF_MAX_MEMORY (GiB) or Codec(max_memory=...) changes it
PARAM_BLOCK = 1 << 18  # elements per block of integer parameters (Codec._stream_params); any value gives the same result


DEEP_TILES_PIXELS = 16 << 20  # padded pixels beyond which decoding starts g_s's tiles at H/8 (synthesis_upsamplings)


def synthesis_upsamplings(padded_width: int, padded_height: int) -> int:
    """Where g_s's tiled tail starts, in up-sampling modules from its end (lcf.nn.tiling.tile_plan): 2 (H/4) for
    images up to DEEP_TILES_PIXELS, 3 (H/8) beyond. From H/8, g_s's whole-image tensors are 4x smaller (a
    12-megapixel decode's g_s peak 1,539 -> 995 MiB) for about 12 % more of its time (the tail's halo doubles),
    which is worth it where memory, not time, decides whether an image decodes at all."""
    return 3 if padded_width * padded_height > DEEP_TILES_PIXELS else 2


def memory_needed(padded_width: int, padded_height: int, N: int, M: int, decoding: bool = False) -> int:
    """Peak bytes the codec needs for one image of this padded size: 25 % above what ``benchmarks/large_images.py``
    measured with N=64, M=96 for a 12-megapixel image (PyTorch and the weights, ~350 MiB, not counted): ~76 B per
    padded pixel to encode and ~106 to decode, scaled with M + N. The high-resolution layers of g_a and g_s run in
    tiles (lcf.nn.tiling) and the entropy parameters are built a block at a time, so what grows with the image is
    the entropy parameters' stream-order arrays (with M) and the transforms' whole-image tensors at low resolution
    (with N): g_s's at H/4 set decoding's peak, until beyond DEEP_TILES_PIXELS its tiles start at H/8 and decoding
    needs less than encoding (at 39 megapixels ~48 B per pixel against ~54; budgeted as encoding)."""
    deep = synthesis_upsamplings(padded_width, padded_height) > 2
    per_pixel = (0.66 if decoding and not deep else 0.48) * (M + N)
    return int(padded_width * padded_height * per_pixel * 1.25)


def refine_memory_needed(padded_width: int, padded_height: int, N: int) -> int:
    """Extra peak bytes of latent refinement (effort > 0): g_s and the entropy networks kept for a backward pass
    (measured: ~1.9 kB per padded pixel with N=64 on a Kodak image)."""
    return int(padded_width * padded_height * 32 * N * 1.25)


def _default_max_memory() -> int:
    value = os.environ.get("LCF_MAX_MEMORY")
    if not value:
        return DEFAULT_MAX_MEMORY
    try:
        return int(float(value) * (1 << 30))
    except ValueError as exc:
        raise UsageError(f"LCF_MAX_MEMORY must be a number of GiB, got {value!r}") from exc
EXIF_PREFIX = b"Exif\x00\x00"


@dataclass(frozen=True)
class Symbols:
    """Everything the entropy coder sees for one image (also what the conformance vectors pin)."""

    z_hat: np.ndarray       # (Mz, Hp/64, Wp/64) int32
    y_hat: np.ndarray       # (M, Hp/16, Wp/16) int32; skipped channels are all zero
    coded: np.ndarray       # (M,) bool: the channel bitmap


@dataclass(frozen=True)
class Decoded:
    """A decoded image: pixels plus what the container carried beside them."""

    rgb: np.ndarray                 # (H, W, 3) uint8
    header: Header
    alpha: np.ndarray | None
    icc: bytes | None
    exif: bytes | None              # with the "Exif\\0\\0" prefix, as Pillow wants it
    xmp: bytes | None
    decoder: str
    symbols: Symbols
    notes: tuple[str, ...] = ()     # what a user should know: the recommended decoder missing (DecoderFallbackWarning)

    @property
    def color(self) -> str:
        return "L" if self.header.color == ColorFormat.GRAY8 else "RGB"

    def to_pil(self):
        from lcf.image import to_pil

        return to_pil(self.rgb, color=self.color, alpha=self.alpha, icc=self.icc, exif=self.exif, xmp=self.xmp)


@dataclass(frozen=True)
class Analysis:
    """What an encode computes before the quality enters (:meth:`Codec.analysis`): each quality's latents are
    ``round(features · gain(q))`` (then refined, for effort > 0), so g_a runs once for any number of qualities."""

    prepared: PreparedImage
    features: torch.Tensor              # g_a(x) before the gain, (1, M, Hp/16, Wp/16) float on the codec's device
    x: torch.Tensor | None              # the padded input (1, 3, Hp, Wp) in [0, 1], kept for refinement (effort > 0)
    effort: int                         # the highest effort its latents may be asked for
    side_chunks: tuple[Chunk, ...]      # ALPH, iCCP, eXIf, xMPd: the same at every quality


def _side_chunks(prepared: PreparedImage) -> Iterator[Chunk]:
    h, w = prepared.rgb.shape[:2]
    if prepared.alpha is not None:
        yield Chunk("ALPH", compress_alpha(np.ascontiguousarray(prepared.alpha).tobytes(), w, h))
    if prepared.icc:
        yield Chunk("iCCP", prepared.icc)
    if prepared.exif:
        yield Chunk("eXIf", prepared.exif.removeprefix(EXIF_PREFIX))
    if prepared.xmp:
        yield Chunk("xMPd", prepared.xmp)


def check_device(device: str) -> torch.device:
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} was asked for, but this torch build sees no CUDA GPU; use --device cpu")
        return torch.device(device)
    raise UsageError(f"unknown device {device!r}; use 'cpu' or 'cuda'")


def analysis_memory_format(device: torch.device) -> torch.memory_format:
    """Layout of the analysis transform g_a: channels_last on the CPU, where oneDNN runs its convolutions faster
    (measured on the 2-core AMD EPYC, interleaved: g_a 0.78 -> 0.61 s per Kodak image, a whole encode about 10 %
    faster); the default layout elsewhere (not measured there). It can change which valid file is written, never how
    a file decodes."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def synthesis_memory_format(device: torch.device) -> torch.memory_format:
    """Layout of the synthesis transforms g_s: channels_last on the CPU too (``benchmarks/large_images.py`` on the
    2-core AMD EPYC, this layout alone: 12-megapixel decode 58.9 -> 51.1 s, 3 megapixels 12.5 -> 11.6 s; with huge
    pages, lcf.hugepages, 32.2 s and 9.5 s; both at Kodak size, medians of 8: 1.15 -> 1.00 s). It changes pixels by
    float rounding only (the spec's ±1), never ŷ."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def analysis_tile(device: torch.device) -> int:
    """Tile side of g_a's tiled head (``lcf.nn.tiling.analyse_tiled``), in its output pixels (H/8). CPU: 128 (1024x1024
    input pixels a tile; images up to that size run whole): ``benchmarks/large_images.py`` measured it at the whole
    pass's time at 3 and 12 megapixels, where smaller tiles cost 13–17 % (their halo). CUDA: 256, fewer and larger
    kernel launches (not measured)."""
    return 128 if device.type == "cpu" else 256


def synthesis_tile(device: torch.device) -> int:
    """Tile side of g_s's tiled modules (``lcf.nn.tiling``), in their input pixels (H/4 for the shipped decoders).
    CPU: 64 (256x256 output pixels a tile): ``benchmarks/large_images.py`` measured it at the whole-image pass's
    time or better, at half its peak memory and less. CUDA: 256, fewer and larger kernel launches (not measured)."""
    return 64 if device.type == "cpu" else 256


def _tensors(arrays: dict[str, np.ndarray], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefixes)}


class Codec:
    """Loads weights once; encodes and decodes any number of images.

    >>> codec = Codec()                      # the shipped weights, on the CPU
    >>> data = codec.encode("photo.png", quality=4)
    >>> codec.decode(data).to_pil().save("back.png")

    ``skip_zero_channels``: the first layer of g_s reads only the coded channels of ŷ (same pixels up to float
    rounding; set False to time or check the full synthesis). ``synthesis_tile``: g_s's last, highest-resolution
    modules run in tiles of this many of their input pixels (at H/4 for the shipped decoders; at H/8 for images
    beyond DEEP_TILES_PIXELS, :func:`synthesis_upsamplings`), so a large image's decoding peaks at one tile of
    them (same pixels up to float rounding, ``lcf.nn.tiling``); None runs the whole image at once. Default:
    :func:`synthesis_tile` of the device.
    ``analysis_tile``: the same for g_a's modules from full resolution to H/8, in their output pixels (H/8); the
    latents equal the whole pass's up to float rounding (see ``lcf.nn.tiling.analyse_tiled``).
    """

    skip_zero_channels = True

    def __init__(self, weights: str | os.PathLike | Weights | None = None, device: str = "cpu",
                 max_memory: int | None = None) -> None:
        self.max_memory = max_memory if max_memory is not None else _default_max_memory()
        self.weights = weights if isinstance(weights, Weights) else load_weights(weights)
        self.device = check_device(device)
        self.analysis_tile: int | None = analysis_tile(self.device)
        self.synthesis_tile: int | None = synthesis_tile(self.device)
        self.config = self.weights.manifest.model_config  # load_weights checked entropy.safetensors against it
        self.model = LcfModel(self.config).eval()
        self._load_entropy(self.weights.entropy)
        tables = {k: v for k, v in self.weights.entropy.items() if k.startswith("tables.")}
        try:
            self.family_tables = FamilyTables.from_arrays({k: v for k, v in tables.items() if ".family." in k})
            self.z_tables = ZTables.from_arrays({k: v for k, v in tables.items() if k.startswith("tables.z.")})
        except ValueError as exc:
            raise ModelMismatchError(f"{self.weights.root / self.weights.manifest.entropy_file}: {exc}") from None
        if self.z_tables.channels != self.config.Mz:
            raise ModelMismatchError(f"z tables have {self.z_tables.channels} channels, the model {self.config.Mz}")
        self._encoder_loaded = False
        self._decoders_loaded: set[str] = set()
        self._refine_entropy: EntropyOnDevice | None = None
        self._lock = threading.Lock()
        self.model.gain.to(self.device)

    # -- weights -------------------------------------------------------------------------------------------------

    def _load(self, tensors: dict[str, torch.Tensor], what: str, prefixes: tuple[str, ...]) -> None:
        expected = {k for k in self.model.state_dict() if k.startswith(prefixes)}
        missing, unexpected = expected - set(tensors), set(tensors) - expected
        if missing or unexpected:
            raise ModelMismatchError(
                f"the {what} weights do not fit the model {self.config}: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
        self.model.load_state_dict(tensors, strict=False)

    def _load_entropy(self, arrays: dict[str, np.ndarray]) -> None:
        """The integer entropy networks (checked, then kept as :attr:`entropy_net`), their float equivalent in the
        model (for encoder refinement and training) and the gains."""
        state = self.model.state_dict()
        shapes = {k[: -len(".weight")]: tuple(v.shape) for k, v in state.items()
                  if k.startswith(INTEGER_PREFIXES) and k.endswith(".weight")}
        old = arrays.get("h_s.0.weight")
        if old is not None and old.dtype.kind == "f" and "h_s.0.shift" not in arrays:
            raise ModelMismatchError(
                "these weights store the entropy networks as floats, the layout of lcf before integer entropy "
                "networks (model ids up to aaa070525e9b...); convert them with `python -m lcf.train reexport "
                "--weights DIR --out NEWDIR` (a new model id: files written with the old weights decode only with "
                "the lcf version that wrote them)")
        try:
            check_integer_arrays(arrays, shapes)
        except ValueError as exc:
            raise ModelMismatchError(f"the entropy weights do not fit the model {self.config}: {exc}") from None
        self.entropy_net = IntegerEntropyNet(arrays)
        tensors = _tensors(arrays, ("gain.",))
        tensors.update(float_state(arrays))
        self._load(tensors, "entropy", ENTROPY_PREFIXES[:-1])

    def _ensure_encoder(self) -> None:
        with self._lock:
            if not self._encoder_loaded:
                shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()
                          if k.startswith(ENCODER_PREFIXES)}
                arrays = self.weights.encoder(float_layout(shapes))  # checked before its data is read
                self._load(_tensors(arrays, ENCODER_PREFIXES), "encoder", ENCODER_PREFIXES)
                self.model.g_a.to(self.device, memory_format=analysis_memory_format(self.device))
                self.model.h_a.to(self.device)
                self._encoder_loaded = True

    def _ensure_decoder(self, name: str) -> None:
        with self._lock:
            if name not in self._decoders_loaded:
                arch = self.weights.decoder_arch(name)
                arrays = self.weights.decoder(name)  # its tensors checked against the arch before being read
                if name not in self.model.decoders or not arch.same_network(self.model.decoder_archs[name]):
                    # a student (or another teacher shape): build its g_s from the manifest's arch
                    self.model.add_decoder(name, arch)
                prefix = f"decoders.{name}."
                self._load({prefix + k: torch.from_numpy(np.array(v)) for k, v in arrays.items()},
                           f"decoder {name!r}", (prefix,))
                self.model.decoders[name].to(self.device, memory_format=synthesis_memory_format(self.device))
                self._decoders_loaded.add(name)

    @property
    def decoder_names(self) -> list[str]:
        return self.weights.decoder_names

    def resolve_decoder(self, name: str | None, recommended: str | None = None) -> str:
        """The decoder to use: the one asked for, else the file's recommendation if we have it, else the default."""
        if name is not None:
            if name not in self.weights.decoder_names:
                raise UsageError(
                    f"no decoder named {name!r} in these weights; available: {', '.join(self.weights.decoder_names)}"
                )
            return name
        if recommended in self.weights.decoder_names:
            return recommended
        return self.weights.default_decoder

    def check_memory(self, padded_width: int, padded_height: int, *, decoding: bool = False,
                     chunk: str | None = None, effort: int = 0) -> None:
        """LimitError before allocating anything when one image would need more than ``max_memory``."""
        need = memory_needed(padded_width, padded_height, self.config.N, self.config.M, decoding)
        at_effort, or_lower = "", ""
        if effort:
            need += refine_memory_needed(padded_width, padded_height, self.config.N)
            at_effort, or_lower = f" at effort {effort}", " (or encode it with a lower --effort)"
        if need > self.max_memory:
            raise LimitError(
                f"{'decoding' if decoding else 'encoding'} a {padded_width}x{padded_height} (padded) image needs "
                f"about {need / (1 << 30):.1f} GiB of "
                f"memory{at_effort}, more than the {self.max_memory / (1 << 30):.1f} GiB allowed; raise it with "
                f"LCF_MAX_MEMORY=<GiB> (or Codec(max_memory=...)) if this machine has the memory{or_lower}",
                chunk=chunk,
            )

    # -- the exact path --------------------------------------------------------------------------------------------

    def _hyper(self, z_hat: np.ndarray) -> torch.Tensor:
        return self.entropy_net.hyper(z_hat[None])

    def _stream_params(self, pen: Callable[..., torch.Tensor], features: tuple[torch.Tensor, ...],
                       coded: np.ndarray, positions: np.ndarray) -> IntParams:
        """Integer parameters of one stream's elements, in stream order (coded channel, then position), from the
        feature maps (1, C, h, w) that ``pen`` (PEN1 or PEN2, pointwise) maps to raw slots (1, P·M, ·, ·). The PEN
        runs at ``positions`` (flat indices) only, PARAM_BLOCK // M of them at a time (an element's parameters
        depend on its own position's features only), so that a large image's float64 slots and int64 temporaries
        stay at about PARAM_BLOCK elements."""
        m = coded.size
        channels = np.flatnonzero(coded)
        step = max(1, PARAM_BLOCK // m)
        flat = [f.flatten(2) for f in features]  # (1, C, h·w)
        out: list[np.ndarray] = []
        families: tuple[str, ...] = ()
        for i in range(0, max(1, positions.size), step):
            block = positions[i:i + step]
            index = torch.from_numpy(block)
            raw = pen(*(f[:, :, index, None] for f in flat))  # (1, P·M, n, 1), float64 holding integers
            slots = raw.shape[1] // m
            a = raw[0, :, :, 0].numpy().reshape(m, slots, block.size)[channels].astype(np.int64)  # (mc, P, n)
            p = int_params(a.transpose(0, 2, 1).reshape(-1, slots))
            if not out:
                families = p.families
                out = [np.empty((channels.size, positions.size, p.k), np.int32) for _ in range(3)]
            for whole, part in zip(out, (p.weights, p.means, p.scale_idx)):
                whole[:, i:i + block.size] = part.reshape(channels.size, block.size, p.k)
        return IntParams(*(a.reshape(-1, len(families)) for a in out), families)

    def _anchor_params(self, t1: torch.Tensor, coded: np.ndarray, anchors: np.ndarray) -> IntParams:
        return self._stream_params(self.entropy_net.anchor, (t1,), coded, anchors)

    def _nonanchor_params(self, t1: torch.Tensor, y_anchor: np.ndarray, coded: np.ndarray,
                          nonanchors: np.ndarray) -> IntParams:
        ctx = self.entropy_net.context(y_anchor[None], nonanchors)
        return self._stream_params(self.entropy_net.pen2, (t1, ctx), coded, nonanchors)

    @staticmethod
    def _positions(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        i, j = np.indices((h, w))
        anchor = ((i + j) % 2 == 0).reshape(-1)
        return np.flatnonzero(anchor), np.flatnonzero(~anchor)

    # -- encode --------------------------------------------------------------------------------------------------

    def analyse(self, image, quality: float, effort: int = 0, decoder: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[PreparedImage, float, Symbols]:
        """Image -> quantized latents (no entropy coding). ``effort`` > 0 refines g_a's latents for the decoder
        ``decoder`` (default: the weights' default) in ``EFFORT_ITERATIONS[effort]`` steps (lcf.nn.refine), calling
        ``progress(done, total)`` after each."""
        quality = check_quality(quality)
        analysis = self.analysis(image, effort)
        return analysis.prepared, quality, self.symbols_at(analysis, quality, effort, decoder, progress)

    def analysis(self, image, effort: int = 0) -> Analysis:
        """Image -> :class:`Analysis`: what an encode does before the quality enters (load, pad, g_a), done once for
        any number of qualities (:meth:`symbols_at`, :meth:`write`; lcf.ratecontrol searches the quality so).
        ``effort``: the highest effort the latents will be asked for (its memory is checked here, and effort > 0
        keeps the padded input for refinement)."""
        prepared = image if isinstance(image, PreparedImage) else load_image(image)
        effort = check_effort(effort)
        self._ensure_encoder()
        h, w = prepared.rgb.shape[:2]
        x = torch.from_numpy(np.array(prepared.rgb)).permute(2, 0, 1)[None].contiguous()
        x = x.to(self.device, torch.float32).div_(255.0)
        hp, wp = -(-h // PAD) * PAD, -(-w // PAD) * PAD
        self.check_memory(wp, hp, effort=effort)
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
        with torch.no_grad():
            x = x.contiguous(memory_format=analysis_memory_format(self.device))
            features = self.model.analyse_ungained(x, tile=self.analysis_tile)
        return Analysis(prepared, features, x if effort else None, effort, tuple(_side_chunks(prepared)))

    def symbols_at(self, analysis: Analysis, quality: float, effort: int | None = None, decoder: str | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Symbols:
        """The quantized latents of ``analysis`` at ``quality``, exactly those of a plain encode at that quality and
        ``effort`` (default: the analysis's; at most it). ``decoder``, ``progress``: as for :meth:`analyse`."""
        quality = check_quality(quality)
        effort = analysis.effort if effort is None else check_effort(effort)
        if effort > analysis.effort:
            raise UsageError(f"this analysis was made for effort {analysis.effort} and cannot refine at effort {effort}")
        iterations = EFFORT_ITERATIONS[effort]
        q = torch.tensor([quality], dtype=torch.float32, device=self.device)
        with torch.no_grad():
            y = self.model.apply_gain(analysis.features, q).contiguous()
        if iterations:  # the layout of y is back to the default one for h_a, g_s and the symbols
            name = self.resolve_decoder(decoder)
            self._ensure_decoder(name)
            h, w = analysis.prepared.rgb.shape[:2]
            y = refine_latents(self.model, self._entropy_on_device(), self.model.decoders[name], analysis.x, y,
                               quality, iterations, height=h, width=w, progress=progress).y
        with torch.inference_mode():
            z = self.model.hyper_analyse(y)
            y_hat = torch.round(y)[0].to("cpu", torch.int32).numpy()
            z_hat = torch.round(z)[0].to("cpu", torch.int32).numpy()
        coded = (y_hat != 0).reshape(y_hat.shape[0], -1).any(axis=1)
        return Symbols(z_hat=z_hat, y_hat=y_hat, coded=coded)

    def _entropy_on_device(self) -> EntropyOnDevice:
        with self._lock:
            if self._refine_entropy is None:
                self._refine_entropy = EntropyOnDevice(self.model, self.device)
            return self._refine_entropy

    def code_symbols(self, s: Symbols, estimate: bool = True) -> tuple[bytes, bytes, bytes, dict[str, float] | None]:
        """Symbols -> (hyper, anchor, non-anchor) streams, and the bits the integer tables predict for each (None
        unless ``estimate``: it costs about a tenth of an encode)."""
        m, lh, lw = s.y_hat.shape
        anchors, nonanchors = self._positions(lh, lw)
        flat = s.y_hat.reshape(m, -1)[s.coded]
        t1 = self._hyper(s.z_hat)
        p1 = self._anchor_params(t1, s.coded, anchors)
        y_anchor = s.y_hat.reshape(m, -1).copy()
        y_anchor[:, nonanchors] = 0
        p2 = self._nonanchor_params(t1, y_anchor.reshape(m, lh, lw), s.coded, nonanchors)
        sym1 = flat[:, anchors].reshape(-1)
        sym2 = flat[:, nonanchors].reshape(-1)
        streams = (
            encode_z_stream(s.z_hat, self.z_tables),
            encode_mixture_stream(sym1, p1, self.family_tables),
            encode_mixture_stream(sym2, p2, self.family_tables),
        )
        if not estimate:
            return (*streams, None)
        bits = {
            "hyper": estimate_z_bits(s.z_hat, self.z_tables),
            "anchor": estimate_bits(sym1, p1, self.family_tables),
            "nonanchor": estimate_bits(sym2, p2, self.family_tables),
        }
        return (*streams, bits)

    def encode(self, image, quality: float = 4.0, decoder: str | None = None, effort: int = 0,
               progress: Callable[[int, int], None] | None = None) -> bytes:
        """Any image lcf.image.load_image accepts -> the bytes of a .lcf file. ``effort`` 0..3: more encode time
        for a better latent, smaller at equal PSNR (at the same quality both size and PSNR change; latent
        refinement, lcf.nn.refine; ``progress(done, total)`` after each of its steps); decoding is the same."""
        return self._encode(image, quality, decoder, effort, progress, estimate=False)[0]

    def encode_with_stats(self, image, quality: float = 4.0, decoder: str | None = None, effort: int = 0,
                          progress: Callable[[int, int], None] | None = None) -> tuple[bytes, dict]:
        """:meth:`encode`, and what went into the file: the bits the integer tables predict per stream
        (``bits_estimated``), the stream sizes, the coded channels and the image loader's notes."""
        return self._encode(image, quality, decoder, effort, progress, estimate=True)

    def _encode(self, image, quality: float, decoder: str | None, effort: int,
                progress: Callable[[int, int], None] | None, estimate: bool) -> tuple[bytes, dict]:
        decoder = self.resolve_decoder(decoder)
        quality = check_quality(quality)
        analysis = self.analysis(image, effort)
        symbols = self.symbols_at(analysis, quality, effort, decoder, progress)
        return self.write(analysis, quality, decoder, symbols, estimate)

    def header_for(self, prepared: PreparedImage, quality: float, decoder: str) -> Header:
        """The HEAD of this image's file at ``quality`` recommending ``decoder``."""
        h, w = prepared.rgb.shape[:2]
        return Header(
            width=w,
            height=h,
            color=ColorFormat.GRAY8 if prepared.color == "L" else ColorFormat.RGB8,
            model_id=self.weights.model_id,
            quality=quality,
            decoder=decoder,
            latent_channels=self.config.M,
            hyper_channels=self.config.Mz,
        )

    def write(self, analysis: Analysis, quality: float, decoder: str, symbols: Symbols,
              estimate: bool = False) -> tuple[bytes, dict]:
        """The .lcf file of ``symbols`` (from :meth:`symbols_at` at ``quality``), and its stats as
        :meth:`encode_with_stats` reports them (the bits estimate only when ``estimate``)."""
        hyper, anchor, nonanchor, bits = self.code_symbols(symbols, estimate)
        chunks = [
            Chunk("CMAP", pack_bitmap(symbols.coded)),
            Chunk("HYPR", hyper),
            Chunk("ANCH", anchor),
            Chunk("NANC", nonanchor),
            *analysis.side_chunks,
        ]
        data = write_container(self.header_for(analysis.prepared, quality, decoder), chunks)
        stats = {
            "bits_estimated": bits,
            "stream_bytes": {"hyper": len(hyper), "anchor": len(anchor), "nonanchor": len(nonanchor)},
            "coded_channels": int(symbols.coded.sum()),
            "channels": int(symbols.coded.size),
            "notes": analysis.prepared.notes,
        }
        return data, stats

    # -- decode --------------------------------------------------------------------------------------------------

    def decode_symbols(self, container) -> Symbols:
        """The streams of a parsed container -> the exact symbols the encoder coded."""
        with _damaged_data_is_corrupt():
            return self._decode_symbols(container)

    def _decode_symbols(self, container) -> Symbols:
        h = container.header
        if h.model_id != self.weights.model_id:
            raise ModelMismatchError(
                f"this file was encoded with model {h.model_id.hex()}, but the loaded weights are model "
                f"{self.weights.model_id.hex()}; decode it with the weights it was made with (--weights DIR)",
                chunk="HEAD",
            )
        if (h.latent_channels, h.hyper_channels) != (self.config.M, self.config.Mz):
            raise ModelMismatchError(
                f"the file declares {h.latent_channels}/{h.hyper_channels} latent/hyper channels, the model has "
                f"{self.config.M}/{self.config.Mz}",
                chunk="HEAD",
            )
        self.check_memory(h.padded_width, h.padded_height, decoding=True, chunk="HEAD")
        m = self.config.M
        lh, lw = h.padded_height // 16, h.padded_width // 16
        coded = unpack_bitmap(container.bitmap, m)
        z_hat = decode_z_stream(container.hyper, (self.config.Mz, lh // 4, lw // 4), self.z_tables)
        anchors, nonanchors = self._positions(lh, lw)
        mc = int(coded.sum())
        t1 = self._hyper(z_hat)
        p1 = self._anchor_params(t1, coded, anchors)
        y = np.zeros((m, lh * lw), dtype=np.int32)
        y_coded = np.zeros((mc, lh * lw), dtype=np.int32)
        y_coded[:, anchors] = decode_mixture_stream(container.anchor, p1, self.family_tables, "anchor stream"
                                                    ).reshape(mc, anchors.size)
        y[coded] = y_coded
        p2 = self._nonanchor_params(t1, y.reshape(m, lh, lw), coded, nonanchors)
        y_coded[:, nonanchors] = decode_mixture_stream(container.nonanchor, p2, self.family_tables,
                                                       "non-anchor stream").reshape(mc, nonanchors.size)
        y[coded] = y_coded
        return Symbols(z_hat=z_hat, y_hat=y.reshape(m, lh, lw), coded=coded)

    def synthesise(self, symbols: Symbols, header: Header, decoder: str) -> np.ndarray:
        """Symbols -> (H, W, 3) uint8 pixels through the named synthesis transform."""
        self._ensure_decoder(decoder)
        q = torch.tensor([header.quality], dtype=torch.float32, device=self.device)
        y_hat = torch.from_numpy(symbols.y_hat.astype(np.float32))[None].to(self.device)
        y_hat = y_hat.contiguous(memory_format=synthesis_memory_format(self.device))
        coded = torch.from_numpy(symbols.coded) if self.skip_zero_channels else None
        with torch.inference_mode():
            x_hat = self.model.synthesise(y_hat, q, decoder, coded=coded, tile=self.synthesis_tile,
                                          upsamplings=synthesis_upsamplings(header.padded_width, header.padded_height))
            x = x_hat[0, :, : header.height, : header.width].mul_(255.0).round_().to("cpu", torch.uint8)
        return np.ascontiguousarray(x.permute(1, 2, 0).numpy())

    def decode(self, data: bytes, decoder: str | None = None, limits: Limits | None = None) -> Decoded:
        """The bytes of a .lcf file -> a :class:`Decoded` image (``.to_pil()`` for a PIL image)."""
        with _damaged_data_is_corrupt():
            return self._decode(data, decoder, limits)

    def _decode(self, data: bytes, decoder: str | None, limits: Limits | None) -> Decoded:
        container = read_container(data, limits or Limits())
        header = container.header
        name = self.resolve_decoder(decoder, header.decoder)
        notes = () if name in (decoder, header.decoder) else (fallback_note(header.decoder, name, self.decoder_names),)
        symbols = self.decode_symbols(container)
        rgb = self.synthesise(symbols, header, name)
        alpha = container.alpha
        exif = container.exif
        return Decoded(
            rgb=rgb,
            header=header,
            alpha=None if alpha is None else np.frombuffer(alpha, np.uint8).reshape(header.height, header.width),
            icc=container.icc,
            exif=None if exif is None else EXIF_PREFIX + exif,
            xmp=container.xmp,
            decoder=name,
            symbols=symbols,
            notes=notes,
        )


def fallback_note(recommended: str, used: str, available: list[str]) -> str:
    """What :class:`lcf.errors.DecoderFallbackWarning` says: the file's recommended decoder is missing from the
    weights (spec/lcf.md, "decoder": fall back to the default and say so)."""
    return (f"the file recommends the decoder {recommended!r}, which these weights do not have (they have "
            f"{', '.join(available)}); decoded with their default, {used!r} (--decoder NAME picks one)")


UNEXPECTED = "unexpected failure while decoding"
_TORCH_OOM = getattr(torch, "OutOfMemoryError", MemoryError)  # CPU and CUDA allocators (torch >= 2.5)


@contextlib.contextmanager
def _damaged_data_is_corrupt() -> Iterator[None]:
    """Last line of defence: a torch/numpy/constriction exception on data that passed the container's checks is a
    CorruptDataError (the original exception chained, its message kept), never a crash. Root causes are fixed where
    fuzzing finds them (fuzz/fuzz_decode.py treats this wrapper firing as a finding)."""
    try:
        yield
    except LcfError:
        raise
    except (MemoryError, _TORCH_OOM) as exc:
        raise LimitError("not enough memory to decode this file; it claims more than this machine can hold") from exc
    except Exception as exc:
        raise CorruptDataError(f"{UNEXPECTED} ({type(exc).__name__}: {exc}); the file is damaged") from exc


def check_quality(quality: float) -> float:
    """Quality on the header's 1/256 grid, so encoder and decoder use the very same gains."""
    try:
        q = float(quality)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"quality must be a number from 1 to 7, got {quality!r}") from exc
    if not 1.0 <= q <= 7.0:
        raise UsageError(f"quality must be from 1 (smallest files) to 7 (best quality), got {q:g}")
    return snap_quality(q)
