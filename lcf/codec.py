"""Codec: image -> .lcf bytes and back. The only module where the network, the entropy layer and the container meet.

Encode (paper Fig. 3 and Fig. 7)::

    image ─ pad to 64 ─ g_a·gain(q) ─ y ─ round ─ ŷ ─┬─ latent codec ─ HYPR, ANCH, NANC ─┐
                                      └─ h_a ─ z ─ round ─ ẑ ─┘                           ├─ container ─ .lcf
    channel bitmap (channels with any ŷ != 0) ─ CMAP ──────────────────────────────────────┘

Decode runs the same path in reverse: the container's chunks, the latent codec's symbols (ẑ, then the anchors, then
the non-anchors: :mod:`lcf.latent_codec`, integer arithmetic, the same on every machine), then the chosen synthesis
transform g_s. g_a and g_s are float and may run on any device (their floats never reach the coder). Where the
networks come from: :mod:`lcf.loader`; device, memory, tiles and layouts: :mod:`lcf.resources`.
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

from lcf import loader, resources
from lcf.constants import EXIF_PREFIX
from lcf.container import (
    Chunk,
    ColorFormat,
    Container,
    Header,
    Limits,
    decode_channel_bitmap,
    encode_channel_bitmap,
    read_container,
    snap_quality,
    write_container,
)
from lcf.container.chunks import compress_alpha
from lcf.container.header import LATENT_STRIDE, padded
from lcf.errors import CorruptDataError, LcfError, LimitError, ModelMismatchError, UsageError
from lcf.image import PreparedImage, load_image
from lcf.latent_codec import LatentCodec, Streams, Symbols, coded_channels
from lcf.nn import LcfModel
from lcf.nn.model import weights_to_load
from lcf.nn.refine import EntropyOnDevice, refine_latents
from lcf.options import EFFORT_ITERATIONS, check_effort, check_quality
from lcf.weights import Weights, load_weights


@dataclass(frozen=True)
class Decoded:
    """A decoded image: pixels plus what the container carried beside them."""

    rgb: np.ndarray  # (H, W, 3) uint8
    header: Header
    alpha: np.ndarray | None
    icc: bytes | None
    exif: bytes | None  # with the "Exif\\0\\0" prefix, as Pillow wants it
    xmp: bytes | None
    decoder: str
    symbols: Symbols | None  # None where the caller asked for none (Codec.decode's ``symbols``)
    notes: tuple[str, ...] = ()  # what a user should know: the recommended decoder missing (DecoderFallbackWarning)

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
    features: torch.Tensor  # g_a(x) before the gain, (1, M, Hp/16, Wp/16) float on the codec's device
    x: torch.Tensor | None  # the padded input (1, 3, Hp, Wp) in [0, 1], kept for refinement (effort > 0)
    effort: int  # the highest effort its latents may be asked for
    side_chunks: tuple[Chunk, ...]  # ALPH, iCCP, eXIf, xMPd: the same at every quality


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


def quality_of(quality: object) -> float:
    """A quality option (:func:`lcf.options.check_quality`) on the header's 1/256 grid, so that encoder and decoder
    use the very same gains."""
    return snap_quality(check_quality(quality))


class Codec:
    """Loads weights once; encodes and decodes any number of images.

    >>> codec = Codec()                      # the shipped weights, on the CPU
    >>> data = codec.encode("photo.png", quality=4)
    >>> codec.decode(data).to_pil().save("back.png")

    ``skip_zero_channels``: the first layer of g_s reads only the coded channels of ŷ (same pixels up to float
    rounding; set False to time or check the full synthesis). ``synthesis_tile``: g_s's last, highest-resolution
    modules run in tiles of this many of their input pixels (at H/4 for the shipped decoders; at H/8 for images
    beyond DEEP_TILES_PIXELS, :func:`lcf.resources.synthesis_upsamplings`), so a large image's decoding peaks at one
    tile of them (same pixels up to float rounding, ``lcf.nn.tiling``); None runs the whole image at once. Default:
    :func:`lcf.resources.synthesis_tile` of the device. ``synthesis_block``: the whole g_s runs on blocks of at most
    this many latent pixels a side, each with g_s's reach around it (``lcf.nn.tiling.synthesise_blocks``), and the
    pixels are written block by block into the uint8 output, so a decode's synthesis memory does not grow with the
    image (same pixels up to float rounding); None runs it whole. Default: :func:`lcf.resources.synthesis_block`.
    ``analysis_tile``: the same for g_a's modules from full resolution to H/8, in their output pixels (H/8); the
    latents equal the whole pass's up to float rounding (see ``lcf.nn.tiling.analyse_tiled``).
    """

    skip_zero_channels = True

    def __init__(
        self, weights: str | os.PathLike | Weights | None = None, device: str = "cpu", max_memory: int | None = None
    ) -> None:
        resources.use_huge_pages()  # before this codec's first CPU tensor
        self.max_memory = max_memory if max_memory is not None else resources.default_max_memory()
        self.weights = weights if isinstance(weights, Weights) else load_weights(weights)
        self.device = resources.torch_device(device)
        self.analysis_tile: int | None = resources.analysis_tile(self.device)
        self.synthesis_tile: int | None = resources.synthesis_tile(self.device)
        self.synthesis_block: int | None = resources.synthesis_block(self.device)
        self.config = self.weights.manifest.model_config  # load_weights checked entropy.safetensors against it
        with weights_to_load():  # each network is loaded before it runs (the encoder and decoders when first needed)
            self.model = LcfModel(self.config).eval()
        self.latent_codec: LatentCodec = loader.load_latent_codec(self.model, self.weights)
        self._encoder_loaded = False
        self._decoders_loaded: set[str] = set()
        self._refine_entropy: EntropyOnDevice | None = None
        self._lock = threading.Lock()
        self.model.gain.to(self.device)

    # -- weights -------------------------------------------------------------------------------------------------

    def _ensure_encoder(self) -> None:
        with self._lock:
            if not self._encoder_loaded:
                loader.load_encoder(self.model, self.weights)
                resources.place(self.model.g_a, self.device, resources.analysis_memory_format(self.device))
                self.model.h_a.to(self.device)
                self._encoder_loaded = True

    def _ensure_decoder(self, name: str) -> None:
        with self._lock:
            if name not in self._decoders_loaded:
                loader.load_decoder(self.model, self.weights, name)
                resources.place(self.model.decoders[name], self.device, resources.synthesis_memory_format(self.device))
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

    def check_memory(
        self,
        padded_width: int,
        padded_height: int,
        *,
        decoding: bool = False,
        chunk: str | None = None,
        effort: int = 0,
    ) -> None:
        """LimitError before allocating anything when one image would need more than ``max_memory``
        (:func:`lcf.resources.check_memory`)."""
        resources.check_memory(
            self.max_memory,
            padded_width,
            padded_height,
            self.config.N,
            self.config.M,
            decoding=decoding,
            chunk=chunk,
            effort=effort,
        )

    def code_symbols(self, s: Symbols, estimate: bool = True) -> tuple[bytes, bytes, bytes, dict[str, float] | None]:
        """Symbols -> (hyper, anchor, non-anchor) streams, and the bits the integer tables predict for each (None
        unless ``estimate``: it costs about a tenth of an encode). :meth:`lcf.latent_codec.LatentCodec.encode`."""
        streams, bits = self.latent_codec.encode(s, estimate)
        return streams.hyper, streams.anchor, streams.nonanchor, bits

    # -- encode --------------------------------------------------------------------------------------------------

    def analyse(
        self,
        image,
        quality: float,
        effort: int = 0,
        decoder: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[PreparedImage, float, Symbols]:
        """Image -> quantized latents (no entropy coding). ``effort`` > 0 refines g_a's latents for the decoder
        ``decoder`` (default: the weights' default) in ``EFFORT_ITERATIONS[effort]`` steps (lcf.nn.refine), calling
        ``progress(done, total)`` after each."""
        quality = quality_of(quality)
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
        hp, wp = padded(h), padded(w)
        self.check_memory(wp, hp, effort=effort)
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
        with torch.no_grad():
            x = x.contiguous(memory_format=resources.analysis_memory_format(self.device))
            features = self.model.analyse_ungained(x, tile=self.analysis_tile)
        return Analysis(prepared, features, x if effort else None, effort, tuple(_side_chunks(prepared)))

    def symbols_at(
        self,
        analysis: Analysis,
        quality: float,
        effort: int | None = None,
        decoder: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Symbols:
        """The quantized latents of ``analysis`` at ``quality``, exactly those of a plain encode at that quality and
        ``effort`` (default: the analysis's; at most it). ``decoder``, ``progress``: as for :meth:`analyse`."""
        quality = quality_of(quality)
        effort = analysis.effort if effort is None else check_effort(effort)
        if effort > analysis.effort:
            raise UsageError(
                f"this analysis was made for effort {analysis.effort} and cannot refine at effort {effort}"
            )
        iterations = EFFORT_ITERATIONS[effort]
        q = torch.tensor([quality], dtype=torch.float32, device=self.device)
        with torch.no_grad():
            y = self.model.apply_gain(analysis.features, q).contiguous()
        if iterations:  # the layout of y is back to the default one for h_a, g_s and the symbols
            name = self.resolve_decoder(decoder)
            self._ensure_decoder(name)
            h, w = analysis.prepared.rgb.shape[:2]
            assert analysis.x is not None  # kept by analysis() whenever its effort, and so this one, is above 0
            y = refine_latents(
                self.model,
                self._entropy_on_device(),
                self.model.decoders[name],
                analysis.x,
                y,
                quality,
                iterations,
                height=h,
                width=w,
                progress=progress,
            ).y
        with torch.inference_mode():
            z = self.model.hyper_analyse(y)
            y_hat = torch.round(y)[0].to("cpu", torch.int32).numpy()
            z_hat = torch.round(z)[0].to("cpu", torch.int32).numpy()
        return Symbols(z_hat=z_hat, y_hat=y_hat, coded=coded_channels(y_hat))

    def _entropy_on_device(self) -> EntropyOnDevice:
        with self._lock:
            if self._refine_entropy is None:
                self._refine_entropy = EntropyOnDevice(self.model, self.device)
            return self._refine_entropy

    def encode(
        self,
        image,
        quality: float = 4.0,
        decoder: str | None = None,
        effort: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> bytes:
        """Any image lcf.image.load_image accepts -> the bytes of a .lcf file. ``effort`` 0..3: more encode time
        for a better latent, smaller at equal PSNR (at the same quality both size and PSNR change; latent
        refinement, lcf.nn.refine; ``progress(done, total)`` after each of its steps); decoding is the same."""
        return self._encode(image, quality, decoder, effort, progress, estimate=False)[0]

    def encode_with_stats(
        self,
        image,
        quality: float = 4.0,
        decoder: str | None = None,
        effort: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[bytes, dict]:
        """:meth:`encode`, and what went into the file: the bits the integer tables predict per stream
        (``bits_estimated``), the stream sizes, the coded channels and the image loader's notes."""
        return self._encode(image, quality, decoder, effort, progress, estimate=True)

    def _encode(
        self,
        image,
        quality: float,
        decoder: str | None,
        effort: int,
        progress: Callable[[int, int], None] | None,
        estimate: bool,
    ) -> tuple[bytes, dict]:
        decoder = self.resolve_decoder(decoder)
        quality = quality_of(quality)
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

    def write(
        self, analysis: Analysis, quality: float, decoder: str, symbols: Symbols, estimate: bool = False
    ) -> tuple[bytes, dict]:
        """The .lcf file of ``symbols`` (from :meth:`symbols_at` at ``quality``), and its stats as
        :meth:`encode_with_stats` reports them (the bits estimate only when ``estimate``)."""
        hyper, anchor, nonanchor, bits = self.code_symbols(symbols, estimate)
        chunks = [
            Chunk("CMAP", encode_channel_bitmap(symbols.coded.tolist())),
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

    def decode_symbols(self, container: Container) -> Symbols:
        """The streams of a parsed container -> the exact symbols the encoder coded."""
        with _damaged_data_is_corrupt():
            return self._decode_symbols(container)

    def _decode_symbols(self, container: Container) -> Symbols:
        h = container.header
        if h.model_id != self.weights.model_id:
            from lcf.models import weights_mismatch  # names the model the file needs and where to get it

            raise weights_mismatch(h.model_id, self.weights.model_id, self.weights.root, "Codec(weights)")
        if (h.latent_channels, h.hyper_channels) != (self.config.M, self.config.Mz):
            raise ModelMismatchError(
                f"the file declares {h.latent_channels}/{h.hyper_channels} latent/hyper channels, the model has "
                f"{self.config.M}/{self.config.Mz}",
                chunk="HEAD",
            )
        self.check_memory(h.padded_width, h.padded_height, decoding=True, chunk="HEAD")
        if self.synthesis_block and max(h.padded_width, h.padded_height) > LATENT_STRIDE * self.synthesis_block:
            resources.bound_heap()  # a decode in blocks: what each phase and block frees goes back to the system
        coded = np.array(decode_channel_bitmap(container.bitmap, self.config.M), dtype=bool)
        streams = Streams(container.hyper, container.anchor, container.nonanchor)
        return self.latent_codec.decode(
            streams, coded, h.padded_height // LATENT_STRIDE, h.padded_width // LATENT_STRIDE
        )

    def synthesise(self, symbols: Symbols, header: Header, decoder: str) -> np.ndarray:
        """Symbols -> (H, W, 3) uint8 pixels through the named synthesis transform."""
        self._ensure_decoder(decoder)
        q = torch.tensor([header.quality], dtype=torch.float32, device=self.device)
        y_hat = torch.from_numpy(symbols.y_hat)[None].to(self.device)  # int32: made float a block at a time
        coded = torch.from_numpy(symbols.coded) if self.skip_zero_channels else None
        block = resources.image_synthesis_block(self.synthesis_block, header.padded_width * header.padded_height)
        side = LATENT_STRIDE * block if block else max(header.padded_width, header.padded_height)
        upsamplings = resources.synthesis_upsamplings(min(header.padded_width, side), min(header.padded_height, side))
        height, width = header.height, header.width
        out = np.empty((height, width, 3), np.uint8)  # written block by block: no whole-image float x̂
        with torch.inference_mode():
            parts = self.model.synthesise_blocks(
                y_hat,
                q,
                decoder,
                coded=coded,
                tile=self.synthesis_tile,
                upsamplings=upsamplings,
                block=block,
                layout=resources.synthesis_memory_format(self.device),
            )
            for top, left, part in parts:
                bottom, right = min(height, top + part.shape[-2]), min(width, left + part.shape[-1])
                if bottom > top and right > left:
                    x = part[0, :, : bottom - top, : right - left].mul_(255.0).round_().to("cpu", torch.uint8)
                    out[top:bottom, left:right] = x.permute(1, 2, 0).numpy()
                del part
        return out

    def decode(
        self, data: bytes, decoder: str | None = None, limits: Limits | None = None, symbols: bool = True
    ) -> Decoded:
        """The bytes of a .lcf file -> a :class:`Decoded` image (``.to_pil()`` for a PIL image). ``symbols=False``:
        without the decoded symbols (``Decoded.symbols`` None), so that ŷ (1.5 B a pixel) is freed before the caller
        converts the pixels (a PIL image is a copy of 4 B a pixel): lcf's own writers ask for none."""
        with _damaged_data_is_corrupt():
            return self._decode(data, decoder, limits, symbols)

    def _decode(self, data: bytes, decoder: str | None, limits: Limits | None, keep: bool = True) -> Decoded:
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
            symbols=symbols if keep else None,
            notes=notes,
        )


def fallback_note(recommended: str, used: str, available: list[str]) -> str:
    """What :class:`lcf.errors.DecoderFallbackWarning` says: the file's recommended decoder is missing from the
    weights (spec/lcf.md, "decoder": fall back to the default and say so)."""
    return (
        f"the file recommends the decoder {recommended!r}, which these weights do not have (they have "
        f"{', '.join(available)}); decoded with their default, {used!r} (--decoder NAME picks one)"
    )


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


__all__ = ["UNEXPECTED", "Analysis", "Codec", "Decoded", "Symbols", "fallback_note", "quality_of"]
