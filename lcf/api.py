"""File-level API of lcf: what the ``lcf`` command and the Pillow plugin call.

Every function raises only :class:`lcf.errors.LcfError` subclasses for problems a user can cause (file-system errors
become :class:`LcfIOError`). Outputs are written atomically: to a temporary file in the destination's folder, renamed
into place only when complete (:mod:`lcf.fileio`); an output is never the input (:func:`check_output`).

A :class:`lcf.codec.Codec` is loaded once per (weights folder, device) and reused by every call
(:mod:`lcf.codec_cache`). Encoding uses the packaged (newest) model unless ``weights`` (or ``$LCF_WEIGHTS``)
names a folder; decoding, without them, uses the installed folder whose model id is the file's (:mod:`lcf.models`:
the packaged model, released older models, ``$LCF_WEIGHTS_PATH``), so files of every released model decode.
"""

from __future__ import annotations

import io
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from lcf.codec_cache import codec_for_data, codec_for_model, get_codec
from lcf.container import (
    ChunkInfo,
    Container,
    Limits,
    read_container,
    read_header_only,
    snap_quality,
    walk_chunks,
)
from lcf.container.limits import DEFAULT_MAX_PIXELS
from lcf.errors import DecoderFallbackWarning, LcfError, LcfIOError, UsageError
from lcf.fileio import atomic_write, io_error, read_bytes
from lcf.options import check_device, check_effort, check_quality
from lcf.ratecontrol import Target, encode_to_target
from lcf.reports import BatchItem, BatchReport, DecodeReport, EncodeReport, FileInfo, psnr

PathLike = str | os.PathLike[str]

_FORMAT_NAME = re.compile(r"[a-z0-9]+")
_COMMON_FORMATS = ("png", "ppm", "tiff", "webp", "bmp", "jpeg")
_BYTES = (bytes, bytearray, memoryview)


# -- codec-dependent -----------------------------------------------------------------------------------------------


def encode_file(
    src: PathLike,
    dst: PathLike,
    *,
    quality: float = 4.0,
    device: str = "cpu",
    decoder: str | None = None,
    weights: PathLike | None = None,
    measure: bool = False,
    effort: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    target: Target | None = None,
    keep_nearest: bool = False,
) -> EncodeReport:
    """Encode the image ``src`` into the .lcf file ``dst`` (written atomically; overwritten if it exists, but never
    when it is ``src`` itself: see :func:`check_output`).

    ``quality`` in [1, 7] (continuous; higher = better and larger; stored to 1/256), ``device`` "cpu" or "cuda[:N]"
    for the analysis and synthesis transforms, ``decoder`` the decoder recorded as recommended in the header
    (default: the weights' default), ``weights`` a folder with a ``manifest.json`` (default: the bundled weights).
    ``measure`` also decodes the result to report its PSNR against the input. ``effort`` 0..3 spends more encode
    time on a better latent: a smaller file at equal PSNR; at the same ``quality`` both size and PSNR change (0:
    fastest; see :mod:`lcf.effort`); decoding is unaffected;
    ``progress(done, total)`` is called after each refinement step. ``max_pixels`` refuses (LimitError) a larger
    image before its pixels are decoded (None: no limit; the memory cap, ``LCF_MAX_MEMORY``, still applies).
    ``target`` (:class:`lcf.ratecontrol.Target`: a size, bpp or PSNR) chooses the quality instead of ``quality``:
    the best quality within a size, the smallest file reaching a PSNR (``measure`` then costs no extra decode for a
    PSNR target); a target no quality meets raises UnreachableTargetError unless ``keep_nearest``, which writes the
    nearest file (``report.target.met`` False).
    Raises UsageError, UnsupportedImageError, LcfIOError, LimitError, UnreachableTargetError.
    """
    check_quality(quality)
    check_effort(effort)
    check_device(device)
    _require_file(src)
    check_output(src, dst)
    require_parent(dst)
    data, report = _encode(
        src,
        Path(src),
        quality=quality,
        device=device,
        decoder=decoder,
        weights=weights,
        measure=measure,
        effort=effort,
        progress=progress,
        max_pixels=max_pixels,
        target=target,
        keep_nearest=keep_nearest,
    )
    atomic_write(dst, data)
    return replace(report, dst=Path(dst))


def encode_to_bytes(
    src: PathLike | bytes,
    *,
    name: str = "-",
    quality: float = 4.0,
    device: str = "cpu",
    decoder: str | None = None,
    weights: PathLike | None = None,
    measure: bool = False,
    effort: int = 0,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    target: Target | None = None,
    keep_nearest: bool = False,
) -> tuple[bytes, EncodeReport]:
    """:func:`encode_file` without the output file: the image ``src`` (a path, or the bytes of an image file, as read
    from a pipe) -> the bytes of the .lcf file and the report (``src`` = ``name`` for bytes; ``dst`` = ``-``).
    Nothing is written. ``lcf encode`` uses it to write to standard output only once the whole encode succeeded."""
    check_quality(quality)
    check_effort(effort)
    check_device(device)
    if isinstance(src, _BYTES):
        src, label = bytes(src), Path(name)
    else:
        label = _require_file(src)
    return _encode(
        src,
        label,
        quality=quality,
        device=device,
        decoder=decoder,
        weights=weights,
        measure=measure,
        effort=effort,
        progress=progress,
        max_pixels=max_pixels,
        target=target,
        keep_nearest=keep_nearest,
    )


def _encode(
    source: PathLike | bytes,
    src: Path,
    *,
    quality: float,
    device: str,
    decoder: str | None,
    weights: PathLike | None,
    measure: bool,
    effort: int,
    progress: Callable[[int, int], None] | None,
    max_pixels: int | None,
    target: Target | None = None,
    keep_nearest: bool = False,
) -> tuple[bytes, EncodeReport]:
    from lcf.image import load_image

    start = time.perf_counter()
    if keep_nearest and target is None:
        raise UsageError("keep_nearest applies to a target (a size, bpp or PSNR to reach)")
    codec = get_codec(weights, device)
    prepared = load_image(source, max_pixels=max_pixels)
    h, w = prepared.rgb.shape[:2]
    if target is not None:
        rate = encode_to_target(
            codec,
            prepared,
            target,
            decoder=decoder,
            effort=effort,
            keep_nearest=keep_nearest,
            measure=measure,
            name=str(src),
            progress=progress,
        )
        data, value, quality, outcome = rate.data, rate.psnr, rate.quality, rate.outcome
    else:
        data = codec.encode(prepared, quality, decoder, effort, progress)
        value = psnr(prepared.rgb, codec.decode(data).rgb) if measure else None
        quality, outcome = snap_quality(quality), None
    return data, EncodeReport(
        src,
        Path("-"),
        w,
        h,
        len(data),
        len(data) * 8 / (w * h),
        value,
        time.perf_counter() - start,
        prepared.notes,
        quality,
        outcome,
    )


def decode_file(
    src: PathLike,
    dst: PathLike,
    *,
    decoder: str | None = None,
    device: str = "cpu",
    weights: PathLike | None = None,
    limits: Limits | None = None,
    reencode: bool = False,
    format: str | None = None,
) -> DecodeReport:
    """Decode the .lcf file ``src`` into the image ``dst``; ``format`` ("png", "tiff", ...) or else the suffix of
    ``dst`` (.png, .ppm, ...) picks the image format (:func:`output_format`, checked before any work).

    ``decoder`` overrides the header's recommended decoder; ``limits`` guards memory (default :class:`Limits`).
    ``dst`` is never ``src`` itself (see :func:`check_output`), and an .lcf ``dst`` (the pixels encoded again, a
    second lossy step, through the Pillow plugin) is refused unless ``reencode``. Raises UsageError, FormatError,
    CorruptDataError, LimitError, ModelMismatchError, LcfIOError.
    """
    from lcf.image import save_image

    start = time.perf_counter()
    check_device(device)
    check_image_output(src, dst, reencode)
    fmt = output_format(dst, format, reencode=reencode)
    limits = limits or Limits()
    data = read_bytes(src, limits)
    container = read_container(data, limits)
    require_parent(dst)
    decoded = codec_for_model(container.header.model_id, weights, device).decode(data, decoder, limits, symbols=False)
    save_image(decoded.to_pil(), dst, format=fmt)
    h, w = decoded.rgb.shape[:2]
    return DecodeReport(Path(src), Path(dst), w, h, decoded.decoder, time.perf_counter() - start, decoded.notes)


def decode_to_bytes(
    src: PathLike | bytes,
    format: str,
    *,
    name: str = "-",
    decoder: str | None = None,
    device: str = "cpu",
    weights: PathLike | None = None,
    limits: Limits | None = None,
    reencode: bool = False,
) -> tuple[bytes, DecodeReport]:
    """:func:`decode_file` without the output file: the .lcf file ``src`` (a path, or its bytes, as read from a pipe)
    -> the bytes of the image file in ``format`` ("png", "ppm", ...; "lcf" only with ``reencode``) and the report
    (``src`` = ``name`` for bytes; ``dst`` = ``-``). Nothing is written."""
    from lcf.image import write_image

    start = time.perf_counter()
    check_device(device)
    fmt = output_format(None, format, reencode=reencode)
    limits = limits or Limits()
    data = bytes(src) if isinstance(src, _BYTES) else read_bytes(src, limits)
    limits.check_file_size(len(data))
    container = read_container(data, limits)
    decoded = codec_for_model(container.header.model_id, weights, device).decode(data, decoder, limits, symbols=False)
    out = io.BytesIO()
    write_image(decoded.to_pil(), out, fmt, name="standard output")
    h, w = decoded.rgb.shape[:2]
    report = DecodeReport(
        Path(name if isinstance(src, _BYTES) else src),
        Path("-"),
        w,
        h,
        decoded.decoder,
        time.perf_counter() - start,
        decoded.notes,
    )
    return out.getvalue(), report


def output_format(dst: PathLike | None, format: str | None, *, reencode: bool = False, option: str = "format=") -> str:
    """The Pillow format name an image output is written in: ``format`` ("png", "jpg", "tiff", ...; "lcf" only with
    ``reencode``), else the suffix of ``dst``. UsageError when there is neither, or when they disagree (``x.png``
    with format "jpeg"); ``option`` is how messages name ``format`` (the command line's ``--to``)."""
    from lcf.batchplan import writable_formats

    def given(value: object) -> str:
        return f"{option}{value}" if option.endswith("=") else f"{option} {value}"

    known = {**writable_formats(), **({".lcf": _lcf_format()} if reencode else {})}
    suffix = Path(dst).suffix.lower() if dst is not None else ""
    from_suffix = known.get(suffix)
    if format is None:
        if from_suffix is not None:
            return from_suffix
        what = (
            "there is no file name to take it from"
            if dst is None
            else f"{dst} has no suffix"
            if not suffix
            else f"{suffix} (of {dst}) is not an image format lcf can write"
        )
        raise UsageError(
            f"cannot tell which image format to write: {what}; name one with {given('FORMAT')} "
            f"({', '.join(_COMMON_FORMATS)}, ...)"
        )
    name = format.lower().removeprefix(".") if isinstance(format, str) else ""
    if name == "lcf" and not reencode:
        raise UsageError(
            f"{given(format)}: decoding to lcf encodes the pixels again, a second lossy step; write an "
            f"image ({given('png')}) or ask for it explicitly (--reencode)"
        )
    fmt = known.get(f".{name}") if _FORMAT_NAME.fullmatch(name) else None
    if fmt is None and isinstance(format, str) and format.upper() in known.values():  # a Pillow name ("JPEG2000")
        fmt = format.upper()
    if fmt is None:
        listed = ", ".join(sorted(ext[1:] for ext in known))
        raise UsageError(f"{given(format)}: not an image format lcf can write; use one of: {listed}")
    if from_suffix is not None and from_suffix != fmt:
        raise UsageError(
            f"{dst} ends in {suffix} ({from_suffix}) but {given(format)} asks for {fmt}: make them "
            "agree (or leave one out)"
        )
    return fmt


def _lcf_format() -> str:
    from lcf.pillow import FORMAT

    return FORMAT


def encode_image(
    image,
    *,
    quality: float = 4.0,
    decoder: str | None = None,
    device: str = "cpu",
    weights: PathLike | None = None,
    effort: int = 0,
) -> bytes:
    """A PIL image, numpy array, path or bytes -> the bytes of a .lcf file (``effort`` as in :func:`encode_file`)."""
    check_quality(quality)
    check_effort(effort)
    return get_codec(weights, device).encode(image, quality, decoder, effort)


def decode_bytes(
    data: bytes,
    *,
    decoder: str | None = None,
    device: str = "cpu",
    weights: PathLike | None = None,
    limits: Limits | None = None,
):
    """The bytes of a .lcf file -> a PIL image (mode RGB, RGBA, L or LA as the file says). Warns
    (:class:`DecoderFallbackWarning`) when the file's recommended decoder is missing from the weights."""
    data = bytes(data)
    codec = codec_for_data(data, weights, device, limits)
    return _warn_notes(codec.decode(data, decoder, limits, symbols=False)).to_pil()


def decode_array(
    data: bytes,
    *,
    decoder: str | None = None,
    device: str = "cpu",
    weights: PathLike | None = None,
    limits: Limits | None = None,
):
    """The bytes of a .lcf file -> an (H, W, 3) uint8 numpy array (alpha and metadata dropped). Warns as
    :func:`decode_bytes` does."""
    data = bytes(data)
    codec = codec_for_data(data, weights, device, limits)
    return _warn_notes(codec.decode(data, decoder, limits, symbols=False)).rgb


def _warn_notes(decoded):
    """``decoded``, after a :class:`DecoderFallbackWarning` for each of its notes (for callers that get pixels only)."""
    for note in decoded.notes:
        warnings.warn(f"lcf: {note}", DecoderFallbackWarning, stacklevel=3)
    return decoded


def validate_deep(data: bytes, weights: PathLike | None = None, *, limits: Limits | None = None) -> None:
    """Check ``data`` like :func:`lcf.container.read_container`, then decode every stream and check that each is
    consumed exactly and the model identifier matches ``weights``. Raises an LcfError subclass on any problem.

    The checks, in order: structure, CRCs, header fields and ``limits`` (the container reader, before anything is
    allocated); the model identifier and the latent/hyper channel counts against ``weights``, or else the installed
    weights of the file's model (ModelMismatchError when there are none, :mod:`lcf.models`); then the hyper, anchor
    and non-anchor streams are decoded with the integer tables and each must end exactly where its chunk ends
    (CorruptDataError otherwise). The synthesis transform is not run.
    """
    container = read_container(data, limits or Limits())
    codec_for_model(container.header.model_id, weights).decode_symbols(container)


def batch(
    src: PathLike,
    dst: PathLike,
    *,
    quality: float = 4.0,
    to: str = "lcf",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    workers: int = 1,
    overwrite: bool = False,
    device: str = "cpu",
    decoder: str | None = None,
    weights: PathLike | None = None,
    limits: Limits | None = None,
    progress: Callable[[BatchItem], None] | None = None,
    effort: int = 0,
    follow_symlinks: bool = False,
    scheduler: str | None = None,
    cluster: str | None = None,
    target: Target | None = None,
    keep_nearest: bool = False,
    measure: bool = False,
) -> BatchReport:
    """Convert every file under the folder ``src`` into the folder ``dst``, keeping relative paths.

    ``to="lcf"`` encodes images (files with an image extension Pillow reads; with ``include``, any matching file)
    into .lcf files; any other ``to`` (an image format such as "png") decodes .lcf files into that format;
    ``effort`` as in :func:`encode_file` (encoding only). ``include``/``exclude`` are glob patterns on paths
    relative to ``src`` ("*" also matches "/"; a pattern without "/" also matches the bare file name); existing
    outputs are skipped unless ``overwrite``; ``workers`` files run at once, in that many processes; ``progress`` is
    called after each file. A failing file does not stop the batch: it is reported in the result
    (``report.failed``; the exit code of the first is ``report.exit_code``).

    Outputs appear only complete (temporary file + rename), so an interrupted batch leaves no partial file and a
    rerun resumes it; two batches on one ``dst`` share the work. No output lands on an input or inside ``src``
    (``dst`` may lie inside ``src``: it is never read); symlinks that leave ``src`` are read only with
    ``follow_symlinks``, and every entry not read is listed in ``report.left_out``. UsageError, before any work,
    when two inputs share an output or no input is found. Returns a :class:`lcf.batch.BatchReport` (a BatchReport
    with sizes and totals); details in :mod:`lcf.batch` and :mod:`lcf.batchplan`.

    ``scheduler`` (the address of a running Dask scheduler, "tcp://HOST:8786") or ``cluster`` ("local" or "local:N",
    a Dask LocalCluster of N processes) converts the files on a Dask cluster instead of ``workers`` local processes,
    with the same outputs and report; ``src``, ``dst`` and ``weights`` must then be paths every worker sees. Needs
    ``pip install "lcf[dask]"``; see :mod:`lcf.batch_dask`.

    ``target`` (encoding only) and ``keep_nearest``: as for :func:`encode_file`, per file; a file whose target no
    quality meets fails with UnreachableTargetError's exit code (9) unless ``keep_nearest``. Each file's item says
    what its target came to (``item.target``: met, and the nearest reachable value when not) and the report's
    summary counts the files whose target was not met. ``measure`` (encoding): every file's PSNR, as for
    :func:`encode_file`.
    """
    from lcf.batch import run

    return run(
        src,
        dst,
        quality=quality,
        to=to,
        include=include,
        exclude=exclude,
        workers=workers,
        overwrite=overwrite,
        device=device,
        decoder=decoder,
        weights=weights,
        limits=limits,
        progress=progress,
        effort=effort,
        follow_symlinks=follow_symlinks,
        scheduler=scheduler,
        cluster=cluster,
        target=target,
        keep_nearest=keep_nearest,
        measure=measure,
    )


# -- container-level (final) ---------------------------------------------------------------------------------------


def inspect_file(path: PathLike, limits: Limits | None = None) -> FileInfo:
    """Header and chunk table of ``path``. Raises when not even the header can be read; any later problem (a CRC
    mismatch, a bad chunk order, truncation) is returned in ``FileInfo.error`` with the chunks listed up to it."""
    limits = limits or Limits()
    data = read_bytes(path, limits)
    header = read_header_only(data, limits)
    chunks: list[ChunkInfo] = []
    error: LcfError | None = None
    try:
        for info in walk_chunks(data, limits):
            chunks.append(info)
        read_container(data, limits)
    except LcfError as exc:
        error = exc
    return FileInfo(Path(path), len(data), header, tuple(chunks), error)


def validate_file(
    path: PathLike, *, limits: Limits | None = None, deep: bool = False, weights: PathLike | None = None
) -> Container:
    """Check the signature, structure, CRCs and limits of ``path`` (and decode its streams when ``deep``)."""
    limits = limits or Limits()
    data = read_bytes(path, limits)
    container = read_container(data, limits)
    if deep:
        validate_deep(data, weights, limits=limits)
    return container


# -- helpers -------------------------------------------------------------------------------------------------------


def _require_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise LcfIOError(f"{p}: {'not a file' if p.exists() else 'no such file'}")
    return p


def require_parent(path: PathLike) -> Path:
    """The folder an output ``path`` goes into; LcfIOError when it does not exist (checked before any work)."""
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise LcfIOError(f"{path}: the folder {parent} does not exist")
    return parent


def check_output(src: PathLike, dst: PathLike) -> None:
    """Refuse (UsageError, before any work) an output that is the input: the same file, also through a symlink, a
    hard link or another spelling of the path. Writing it would destroy the input."""
    try:
        same = os.path.lexists(dst) and os.path.samefile(src, dst)
    except OSError:
        same = False
    if same:
        raise UsageError(
            f"the output {dst} is the input {src}: writing it would destroy the input; choose another output name"
        )


def check_image_output(src: PathLike, dst: PathLike, reencode: bool) -> None:
    """decode_file's output rules: never the input, and an .lcf output only when asked for (``reencode``)."""
    check_output(src, dst)
    if Path(dst).suffix.lower() == ".lcf" and not reencode:
        raise UsageError(
            f"the output {dst} is an .lcf file: decoding to .lcf encodes the pixels again, a second "
            f"lossy step; write an image (-o {Path(dst).with_suffix('.png')}) or ask for it "
            "explicitly (--reencode)"
        )


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "BatchItem",
    "BatchReport",
    "DecodeReport",
    "EncodeReport",
    "FileInfo",
    "Limits",
    "atomic_write",
    "batch",
    "check_device",
    "check_output",
    "check_effort",
    "check_image_output",
    "check_quality",
    "codec_for_data",
    "codec_for_model",
    "decode_file",
    "decode_to_bytes",
    "encode_file",
    "encode_to_bytes",
    "get_codec",
    "inspect_file",
    "io_error",
    "output_format",
    "psnr",
    "read_bytes",
    "require_parent",
    "validate_deep",
    "validate_file",
]
