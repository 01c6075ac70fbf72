"""One file of a batch, as every executor converts it: :func:`convert` (claim the output, encode or decode, publish;
every failure an item), the :class:`BatchItem` it returns, and the :class:`Executor` interface that
:mod:`lcf.batch` (this process, a process pool) and :mod:`lcf.batch_dask` (a Dask cluster) implement. Both import
this module; neither imports the other at start-up (lcf.batch imports lcf.batch_dask only when a batch asks for a
Dask cluster), so the executors share the per-file work without an import cycle.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcf import codec_cache, fileio, reports
from lcf.batchplan import Job, Settings
from lcf.container import Limits, read_header_only, snap_quality
from lcf.errors import LcfError, LimitError, ModelMismatchError, UnreachableTargetError, UsageError
from lcf.ratecontrol import Outcome, encode_to_target

EXISTS = "output exists"
BUSY = "another lcf process is writing its output"


# -- results -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchItem(reports.BatchItem):
    """One file of a batch (see :class:`lcf.api.BatchItem`) with sizes: ``bytes_in`` of the source, ``bytes_out`` of
    the output; ``pixels`` = width * height and ``bpp`` = bits of the .lcf file per pixel, for converted files;
    ``note`` says why a file was skipped (:data:`EXISTS`, :data:`BUSY`); ``notes`` what was changed in an encoded
    image to code it (16 -> 8 bits, palette or CMYK -> RGB, ...; :mod:`lcf.image`)."""

    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    bpp: float | None = None
    note: str | None = None
    notes: tuple[str, ...] = ()
    quality: float | None = None  # of an encoded file (a target's choice, with a target)
    psnr: float | None = None  # of an encoded file, where known (a PSNR target, or measured: lcf batch -v)
    target: Outcome | None = None  # what a target came to (lcf.ratecontrol; also of a file failed for it), or None

    def as_dict(self) -> dict[str, Any]:
        return {
            "src": str(self.src),
            "dst": str(self.dst),
            "status": self.status,
            "error": self.error,
            "exit_code": self.exit_code,
            "seconds": self.seconds,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "pixels": self.pixels,
            "bpp": self.bpp,
            "note": self.note,
            "notes": list(self.notes),
            "quality": self.quality,
            "psnr": self.psnr,
            "target": None if self.target is None else self.target.as_dict(),
        }


# -- one file ------------------------------------------------------------------------------------------------------

_current_claim: fileio.Claim | None = None  # the output this process is writing, for the exit paths of workers


def convert(settings: Settings, src: Path, dst: Path) -> BatchItem:
    """Convert one file; every failure becomes a "failed" item (never an exception, except KeyboardInterrupt)."""
    global _current_claim
    start = time.perf_counter()
    try:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fileio.write_error(exc, dst.parent) from None
        held = fileio.claim(dst)
        if held is None:
            return BatchItem(src, dst, "skipped", note=BUSY, bytes_in=file_size(src))
        _current_claim = held
        with held:
            if not settings.overwrite and os.path.lexists(dst):  # another run has just finished it
                return BatchItem(src, dst, "skipped", note=EXISTS, bytes_in=file_size(src), bytes_out=file_size(dst))
            item = _encode_one(settings, src, held) if settings.encode else _decode_one(settings, src, held)
            if not held.publish(replace=settings.overwrite):
                return BatchItem(src, dst, "skipped", note=EXISTS, bytes_in=file_size(src), bytes_out=file_size(dst))
    except Exception as exc:  # noqa: BLE001  (every failure is one file's, not the batch's)
        return _failed(src, dst, exc, start)
    finally:
        _current_claim = None
    return BatchItem(
        src,
        dst,
        "ok",
        seconds=time.perf_counter() - start,
        bytes_in=item[0],
        bytes_out=item[1],
        pixels=item[2],
        bpp=item[3],
        notes=item[4],
        **item[5],
    )


def _failed(src: Path, dst: Path, exc: Exception, start: float) -> BatchItem:
    """The "failed" item of a file whose conversion (from ``start``, a perf_counter time) raised ``exc``."""
    seconds, size = time.perf_counter() - start, file_size(src)
    if isinstance(exc, LcfError):
        outcome = exc.outcome if isinstance(exc, UnreachableTargetError) else None
        return BatchItem(src, dst, "failed", str(exc), exc.exit_code, seconds, size, target=outcome)
    if isinstance(exc, OSError):
        error = fileio.io_error(exc, src)
        return BatchItem(src, dst, "failed", str(error), error.exit_code, seconds, size)
    if isinstance(exc, MemoryError):
        oom = LimitError(f"{src}: not enough memory to convert this file")
        return BatchItem(src, dst, "failed", str(oom), oom.exit_code, seconds, size)
    message = f"internal error ({type(exc).__name__}: {exc}); please report it"  # a bug in lcf: still one file
    return BatchItem(src, dst, "failed", message, 1, seconds, size)


def abandon_claim() -> None:
    """Delete the temporary file this process is writing, if any (the exit paths of a worker process)."""
    held = _current_claim
    if held is not None:
        held.abandon()


def _encode_one(
    settings: Settings, src: Path, held: fileio.Claim
) -> tuple[int, int, int, float, tuple[str, ...], dict[str, Any]]:
    from lcf.image import load_image

    size_in = src.stat().st_size
    prepared = load_image(src, max_pixels=settings.limits.max_pixels)
    codec = codec_cache.get_codec(settings.weights, settings.device)
    if settings.target is None:
        data = codec.encode(prepared, settings.quality, settings.decoder, settings.effort)
        extra: dict[str, Any] = {"quality": snap_quality(settings.quality)}
        if settings.measure:  # as lcf encode -v measures it (lcf.api.encode_file)
            extra["psnr"] = reports.psnr(prepared.rgb, codec.decode(data).rgb)
    else:
        rate = encode_to_target(
            codec,
            prepared,
            settings.target,
            decoder=settings.decoder,
            effort=settings.effort,
            keep_nearest=settings.keep_nearest,
            measure=settings.measure,
            name=str(src),
        )
        data = rate.data
        extra = {"quality": rate.quality, "psnr": rate.psnr, "target": rate.outcome}
    _write_bytes(held, data)
    pixels = prepared.width * prepared.height
    return size_in, len(data), pixels, len(data) * 8 / pixels, prepared.notes, extra


def _decode_one(
    settings: Settings, src: Path, held: fileio.Claim
) -> tuple[int, int, int, float, tuple[str, ...], dict[str, Any]]:
    from lcf.image import write_image

    data = fileio.read_bytes(src, settings.limits)
    codec = codec_cache.codec_for_data(
        data, settings.weights, settings.device, settings.limits
    )  # by the file's model id
    image = codec.decode(data, settings.decoder, settings.limits, symbols=False).to_pil()
    write_image(image, held.file, settings.format or "", name=str(held.path))
    pixels = image.width * image.height
    return len(data), held.file.tell(), pixels, len(data) * 8 / pixels, (), {}


def _write_bytes(held: fileio.Claim, data: bytes) -> None:
    try:
        held.file.write(data)
    except OSError as exc:  # the disk is full: an output error (exit code 8), whatever the input
        raise fileio.write_error(exc, held.path) from None


def file_size(path: Path) -> int:
    """The size of ``path`` in bytes, 0 when it cannot be read (for the report)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_died(job: Job) -> BatchItem:
    """The item of a file whose worker process died while converting it."""
    error = LcfError("the worker process died while converting this file (a crash, or out of memory)")
    return BatchItem(job.src, job.dst, "failed", str(error), error.exit_code)


# -- executors: where the files are converted --------------------------------------------------------------------

Done = Callable[[Job, BatchItem], None]
"""Called by an executor once per job with its result, in the order files finish."""


class Executor:
    """Where a batch converts its files. Every executor runs :func:`convert` on each job (the same code everywhere)
    and reports each result through ``done``; planning, cleaning up and the report stay in :func:`lcf.batch.run`.

    :func:`lcf.batch.run` calls :meth:`check` (before DST is created: fail on what would fail every file, and
    decide the files that no worker is to convert), :meth:`start` (DST exists: start or reach the workers, and check
    them), :meth:`run` with the files left, and :meth:`close` (always, also after an error or Ctrl-C), each only
    when there are files to convert, except :meth:`close`.
    """

    def check(self, settings: Settings, jobs: Sequence[Job]) -> Sequence[tuple[Job, BatchItem]]:
        """Raise LcfError (before any file) on what would fail every file: weights, decoder name, device. Return the
        files of ``jobs`` that fail here without a worker, each with its "failed" item (decoding: the files of a
        model not installed here, :func:`decode_models`)."""
        return ()

    def start(self, settings: Settings, src: Path, dst: Path, jobs: Sequence[Job]) -> None:
        """Get the workers ready; raise LcfError when they cannot convert (before any file)."""

    def run(self, settings: Settings, jobs: Sequence[Job], done: Done) -> None:
        """Convert every job and report it through ``done``; per-file problems are items, never exceptions."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers."""


def check_decoder(settings: Settings, names: Sequence[str]) -> None:
    """UsageError when ``settings.decoder`` is not one of the weights' decoders ``names``."""
    if settings.decoder is not None and settings.decoder not in names:
        raise UsageError(f"no decoder named {settings.decoder!r} in these weights; available: {', '.join(names)}")


def models_of(jobs: Sequence[Job], limits: Limits) -> dict[bytes, list[Job]]:
    """The model ids in the headers of the .lcf files of ``jobs`` (HEAD only is read), each with its files, in
    order. A file whose header cannot be read is left out: its conversion reports the problem."""
    found: dict[bytes, list[Job]] = {}
    for job in jobs:
        try:
            with open(job.src, "rb") as f:
                model_id = read_header_only(f, limits).model_id
        except (LcfError, OSError):
            continue
        found.setdefault(model_id, []).append(job)
    return found


@dataclass(frozen=True)
class DecodeModels:
    """What the files of a decode batch need (:func:`decode_models`): ``roots``, each model installed here with the
    weights folder that decodes its files; ``refused``, the files of the models not installed here, each with its
    "failed" item, in plan order."""

    roots: dict[bytes, Path]
    refused: tuple[tuple[Job, BatchItem], ...] = ()


def decode_models(settings: Settings, jobs: Sequence[Job]) -> DecodeModels:
    """Before a decode batch, whatever runs it (a process pool, a Dask cluster): the models its files need
    (:func:`models_of`) and the weights folder of each that is installed here (:func:`lcf.models.decoding_root`:
    ``settings.weights`` or ``$LCF_WEIGHTS`` when given, else found by model id; manifests only, no PyTorch). With a
    decoder asked for, UsageError unless each of them offers it. The files of a model not installed here are
    refused one by one, here, never given to a worker (whose installed models may differ): each fails as its
    conversion would, naming the model and where to get it (ModelMismatchError, exit code 6), or the damage of a
    damaged file (:func:`_refuse`)."""
    from lcf.models import decoding_root
    from lcf.weights import read_manifest

    roots: dict[bytes, Path] = {}
    refused: list[tuple[Job, BatchItem]] = []
    for model_id, files in models_of(jobs, settings.limits).items():
        try:
            root = decoding_root(model_id, settings.weights)
        except ModelMismatchError:
            refused += [(job, item) for job in files if (item := _refuse(settings, job)) is not None]
            continue
        if settings.decoder is not None:
            names = list(read_manifest(root).decoders)
            if settings.decoder not in names:
                raise UsageError(
                    f"no decoder named {settings.decoder!r} in the weights {root} of model {model_id.hex()}, which "
                    f"{files[0].src} and the other files of that model need; available there: {', '.join(names)}"
                )
        roots[model_id] = root
    return DecodeModels(roots, tuple(sorted(refused, key=lambda pair: pair[0].index)))


def _refuse(settings: Settings, job: Job) -> BatchItem | None:
    """The "failed" item of a file whose model is not installed: what :func:`convert` reports for it (the file read
    whole by :func:`lcf.codec_cache.codec_for_data`, so that damage is reported as damage), without claiming its
    output. None if its model can be loaded after all (installed meanwhile): it is converted as any file."""
    start = time.perf_counter()
    try:
        data = fileio.read_bytes(job.src, settings.limits)
        codec_cache.codec_for_data(data, settings.weights, settings.device, settings.limits)
    except Exception as exc:  # noqa: BLE001  (as convert: every failure is the file's)
        return _failed(job.src, job.dst, exc, start)
    return None


__all__ = [
    "BUSY",
    "EXISTS",
    "BatchItem",
    "Done",
    "DecodeModels",
    "Executor",
    "abandon_claim",
    "check_decoder",
    "convert",
    "cores",
    "decode_models",
    "file_size",
    "models_of",
    "worker_died",
]
