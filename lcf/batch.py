"""Convert a whole folder tree: images -> .lcf, or .lcf -> images (``lcf batch``, :func:`lcf.api.batch`).

    SRC/                        DST/
      a.png       --encode-->     a.lcf          (--to lcf, the default: every image, by its file extension)
      sub/b.jpg                   sub/b.lcf      (--to png|ppm|jpg|...: every .lcf file, decoded to that format)

1. **Clean up.** Temporary files that an interrupted run left in DST (``.NAME.lcf-tmp-PID-HEX``, see below) are
   deleted when the process PID that wrote them is gone; those of a live process (another batch) are left alone.
2. **Plan** (this process, no PyTorch): walk SRC in sorted order (symlinked folders are not followed; DST is left out
   when it lies inside SRC; temporary files are never inputs), apply the include/exclude globs, map each file to
   its output, and decide what is already done: an output that exists is *skipped* unless ``overwrite`` (outputs only
   ever appear complete, so existing means finished: a rerun resumes where the last run stopped). Two inputs that
   would write the same output (``a.png`` and ``a.jpg`` -> ``a.lcf``) fail, the first in sorted order excepted.
3. **Run** one file per task, here (``workers=1``) or in a pool of ``workers`` processes (forkserver, else spawn).
   Each worker uses ``cores // workers`` PyTorch threads and loads its :class:`lcf.codec.Codec` once. A file that
   fails is reported with its error and the batch goes on; a worker process that dies (a crash, the OOM killer) is
   replaced and the files it held are retried one at a time, so only the file that kills a worker is reported failed.

Safety: an output is written to ``.NAME.lcf-tmp-PID-HEX`` beside it, flushed to disk, and renamed into place only
when complete; on an error or Ctrl-C the temporary file is deleted, and after a SIGKILL or a crash it is deleted by
the next run (step 1). Workers exit when the main process dies. Sources are only ever read.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import re
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from lcf import api
from lcf.container import Limits
from lcf.errors import LcfError, LcfIOError, LimitError, UsageError

LCF_SUFFIX = ".lcf"
TEMP_MARK = ".lcf-tmp-"
_TEMP_NAME = re.compile(r"\.lcf-tmp-(\d+)-[0-9a-f]+")
_FORMAT = re.compile(r"[a-z0-9]+")


# -- results -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchItem(api.BatchItem):
    """One file of a batch (see :class:`lcf.api.BatchItem`) with sizes: ``bytes_in`` of the source, ``bytes_out`` of
    the output; ``pixels`` = width * height and ``bpp`` = bits of the .lcf file per pixel, for converted files."""

    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    bpp: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"src": str(self.src), "dst": str(self.dst), "status": self.status, "error": self.error,
                "exit_code": self.exit_code, "seconds": self.seconds, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "pixels": self.pixels, "bpp": self.bpp}


@dataclass(frozen=True)
class BatchReport(api.BatchReport):
    """Every file of a batch in sorted order of its source path, and totals. ``to`` is "lcf" when encoding, else the
    image format decoded to; ``ignored`` counts files left out for their type; ``cleaned`` stale temporary files."""

    to: str = "lcf"
    ignored: int = 0
    cleaned: int = 0

    @property
    def done(self) -> tuple[api.BatchItem, ...]:
        return tuple(item for item in self.items if item.status == "ok")

    @property
    def skipped(self) -> tuple[api.BatchItem, ...]:
        return tuple(item for item in self.items if item.status == "skipped")

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, else the exit code of the first failure (in sorted order)."""
        failed = self.failed
        return failed[0].exit_code if failed else 0

    @property
    def bytes_in(self) -> int:
        """Bytes read from the sources of the converted files."""
        return sum(getattr(item, "bytes_in", 0) for item in self.done)

    @property
    def bytes_out(self) -> int:
        """Bytes written to the outputs of the converted files."""
        return sum(getattr(item, "bytes_out", 0) for item in self.done)

    @property
    def mean_bpp(self) -> float | None:
        """Bits of .lcf per pixel over all converted files (total bits / total pixels), or None."""
        pixels = sum(getattr(item, "pixels", 0) for item in self.done)
        if not pixels:
            return None
        lcf_bytes = self.bytes_out if self.to == "lcf" else self.bytes_in
        return lcf_bytes * 8 / pixels

    def summary(self) -> dict[str, Any]:
        return {"files": len(self.items), "done": len(self.done), "skipped": len(self.skipped),
                "failed": len(self.failed), "ignored": self.ignored, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "mean_bpp": self.mean_bpp, "seconds": self.seconds,
                "cleaned_temp_files": self.cleaned}


Progress = Callable[[api.BatchItem], None]
"""Called once per file, in the order files finish. If the callable also has a ``start(todo: int)`` method, that is
called once with the number of files to convert, after the files decided without converting them (skipped, or
failed before conversion) have been reported and before the first conversion starts."""


# -- settings and plan ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What every conversion of one batch shares (sent to each worker process once)."""

    encode: bool
    format: str | None  # Pillow format name of the outputs when decoding
    suffix: str         # of the outputs: ".lcf", ".png", ...
    quality: float
    decoder: str | None
    device: str
    effort: int
    weights: str | None
    limits: Limits


@dataclass(frozen=True)
class Job:
    index: int  # position in the sorted plan
    src: Path
    dst: Path


@dataclass(frozen=True)
class Plan:
    jobs: tuple[Job, ...]
    decided: tuple[tuple[int, BatchItem], ...]  # (position, item): skipped, or failed before conversion
    ignored: int


def settings_for(
    to: str, quality: float, decoder: str | None, device: str, weights: api.PathLike | None, limits: Limits | None,
    effort: int = 0,
) -> Settings:
    """Check the options (UsageError) and fix what each conversion needs."""
    api.check_quality(quality)
    api.check_effort(effort)
    api.check_device(device)
    if not isinstance(to, str) or _FORMAT.fullmatch(to.lower()) is None:
        raise UsageError(f"--to must be 'lcf' or an image format such as 'png', got {to!r}")
    to = to.lower()
    if to == "lcf":
        encode, fmt, suffix = True, None, LCF_SUFFIX
    else:
        encode, suffix = False, "." + to
        fmt = _writable_formats().get(suffix)
        if fmt is None:
            known = ", ".join(sorted(ext[1:] for ext in _writable_formats()))
            raise UsageError(f"--to {to}: not an image format lcf can write; use lcf or one of: {known}")
    return Settings(encode=encode, format=fmt, suffix=suffix, quality=float(quality), decoder=decoder, device=device,
                    effort=effort, weights=None if weights is None else str(Path(weights).resolve()), limits=limits or Limits())


def make_plan(src: Path, dst: Path, settings: Settings, include: Sequence[str], exclude: Sequence[str],
              overwrite: bool) -> Plan:
    """The files to convert, in sorted order of their path relative to ``src``, and those decided already."""
    include, exclude = _patterns(include), _patterns(exclude)
    prune = dst.resolve() if _is_inside(dst.resolve(), src.resolve()) and dst.resolve() != src.resolve() else None
    image_suffixes = _readable_suffixes()
    jobs: list[Job] = []
    decided: list[tuple[int, BatchItem]] = []
    owner: dict[Path, Path] = {}
    ignored = 0
    unreadable: list[OSError] = []
    for rel, path in sorted((rel, path) for path, rel in _walk(src, prune, exclude, unreadable)):
        suffix = path.suffix.lower()
        if _matches(rel, exclude) or (include and not _matches(rel, include)):
            continue
        wanted = suffix != LCF_SUFFIX and (bool(include) or suffix in image_suffixes) if settings.encode \
            else suffix == LCF_SUFFIX
        if not wanted:
            ignored += 1
            continue
        out = dst / Path(rel).parent / (path.stem + settings.suffix)
        index = len(jobs) + len(decided)
        item = _decide(path, out, owner, overwrite)
        owner.setdefault(out, path)
        if item is None:
            jobs.append(Job(index, path, out))
        else:
            decided.append((index, item))
    for error in unreadable:
        failure = api.io_error(error)
        decided.append((len(jobs) + len(decided),
                        BatchItem(Path(error.filename or src), dst, "failed", str(failure), failure.exit_code)))
    return Plan(tuple(jobs), tuple(decided), ignored)


def _decide(src: Path, dst: Path, owner: dict[Path, Path], overwrite: bool) -> BatchItem | None:
    """The item for a file that needs no conversion (skipped, or failed already), else None."""
    first = owner.get(dst)
    if first is not None:
        error = UsageError(f"its output {dst} is also the output of {first}; rename one of them or --exclude it")
        return BatchItem(src, dst, "failed", str(error), error.exit_code)
    if dst.is_dir():
        error = LcfIOError(f"cannot write {dst}: a folder of that name exists")
        return BatchItem(src, dst, "failed", str(error), error.exit_code)
    if os.path.lexists(dst) and not overwrite:
        return BatchItem(src, dst, "skipped", bytes_in=_size(src), bytes_out=_size(dst))
    return None


def _walk(root: Path, prune: Path | None, exclude: tuple[str, ...], errors: list[OSError]) -> Iterator[tuple[Path, str]]:
    """(path, path relative to ``root`` with "/") of every file below ``root``; temporary files left out."""
    for folder, dirs, files in os.walk(root, onerror=errors.append):
        base = Path(folder)
        rel_base = base.relative_to(root).as_posix()
        prefix = "" if rel_base == "." else rel_base + "/"
        dirs[:] = sorted(d for d in dirs if not (base / d).is_symlink()
                         and not (prune is not None and (base / d).resolve() == prune)
                         and not _matches(prefix + d, exclude))
        for name in sorted(files):
            path = base / name
            if not is_temp_name(name) and path.is_file():
                yield path, prefix + name


def _patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(patterns, str):
        patterns = (patterns,)
    return tuple(p.removeprefix("./") for p in patterns if p)


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    """fnmatch on the relative path ("*" also matches "/"); a pattern without "/" also matches the bare name."""
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatchcase(rel, p) or ("/" not in p and fnmatchcase(name, p)) for p in patterns)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file of lcf (never an input, never an output)."""
    return TEMP_MARK in name or (name.startswith(".") and name.endswith(".tmp"))


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _readable_suffixes() -> frozenset[str]:
    from PIL import Image

    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN) - {LCF_SUFFIX}


def _writable_formats() -> dict[str, str]:
    from PIL import Image

    return {ext: fmt for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.SAVE and ext != LCF_SUFFIX and _FORMAT.fullmatch(ext[1:])}


# -- stale temporary files -----------------------------------------------------------------------------------------


def clean_stale_temps(root: Path) -> int:
    """Delete lcf temporary files below ``root`` whose writing process is gone; returns how many were deleted."""
    removed = 0
    if not root.is_dir():
        return 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            match = _TEMP_NAME.search(name)
            if match is None or _alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
                removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # another user's process (or a pid we cannot ask about): leave its files alone
    return True


# -- one file ------------------------------------------------------------------------------------------------------

_current_temp: str | None = None  # the temporary file this process is writing, for the exit paths of workers


def convert(settings: Settings, src: Path, dst: Path) -> BatchItem:
    """Convert one file; every failure becomes a "failed" item (never an exception, except KeyboardInterrupt)."""
    start = time.perf_counter()
    try:
        item = _encode_one(settings, src, dst) if settings.encode else _decode_one(settings, src, dst)
    except LcfError as exc:
        return BatchItem(src, dst, "failed", str(exc), exc.exit_code, time.perf_counter() - start, _size(src))
    except OSError as exc:
        error = api.io_error(exc, src)
        return BatchItem(src, dst, "failed", str(error), error.exit_code, time.perf_counter() - start, _size(src))
    except MemoryError:
        error = LimitError(f"{src}: not enough memory to convert this file")
        return BatchItem(src, dst, "failed", str(error), error.exit_code, time.perf_counter() - start, _size(src))
    except Exception as exc:  # noqa: BLE001  (a bug in lcf: still one file, not the batch)
        message = f"internal error ({type(exc).__name__}: {exc}); please report it"
        return BatchItem(src, dst, "failed", message, 1, time.perf_counter() - start, _size(src))
    return BatchItem(src, dst, "ok", seconds=time.perf_counter() - start, bytes_in=item[0], bytes_out=item[1],
                     pixels=item[2], bpp=item[3])


def _encode_one(settings: Settings, src: Path, dst: Path) -> tuple[int, int, int, float]:
    from lcf.image import load_image

    size_in = src.stat().st_size
    prepared = load_image(src, max_pixels=settings.limits.max_pixels)
    data = api.get_codec(settings.weights, settings.device).encode(prepared, settings.quality, settings.decoder,
                                                                      settings.effort)
    _publish(dst, lambda temp: _write_bytes(temp, data))
    pixels = prepared.width * prepared.height
    return size_in, len(data), pixels, len(data) * 8 / pixels


def _decode_one(settings: Settings, src: Path, dst: Path) -> tuple[int, int, int, float]:
    from lcf.image import save_image

    data = api.read_bytes(src, settings.limits)
    decoded = api.get_codec(settings.weights, settings.device).decode(data, settings.decoder, settings.limits)
    image = decoded.to_pil()
    _publish(dst, lambda temp: save_image(image, temp, format=settings.format))
    pixels = image.width * image.height
    return len(data), _size(dst), pixels, len(data) * 8 / pixels


def _publish(dst: Path, write: Callable[[str], None]) -> None:
    """``write`` a temporary file beside ``dst``, then rename it to ``dst``; on any failure delete it."""
    global _current_temp
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise api.io_error(exc, dst.parent) from None
    temp = os.path.join(dst.parent, f".{dst.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    _current_temp = temp
    try:
        write(temp)
        os.replace(temp, dst)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise api.io_error(exc, dst) from None
        raise
    finally:
        _current_temp = None


def _write_bytes(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# -- worker processes ----------------------------------------------------------------------------------------------

_worker_settings: Settings | None = None


def _init_worker(settings: Settings, threads: int) -> None:
    global _worker_settings
    _worker_settings = settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the main process decides
    signal.signal(signal.SIGTERM, lambda *_: _abandon())
    parent = multiprocessing.parent_process()
    if parent is not None:  # exit when the main process dies (SIGKILL, crash), rather than linger
        threading.Thread(target=_watch, args=(parent.sentinel,), daemon=True, name="lcf-parent-watch").start()
    import torch

    torch.set_num_threads(threads)


def _watch(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    _abandon()


def _abandon() -> None:
    """Leave now, deleting the temporary file being written, if any."""
    temp = _current_temp
    if temp is not None:
        with contextlib.suppress(OSError):
            os.unlink(temp)
    os._exit(1)


def _work(src: Path, dst: Path) -> BatchItem:
    assert _worker_settings is not None, "worker not initialised"
    return convert(_worker_settings, src, dst)


def _context() -> multiprocessing.context.BaseContext:
    """The forkserver context where there is one (a clean server process imports PyTorch once and each worker is a
    fork of it), else spawn. Never plain fork: the caller may hold threads and locks that must not be copied."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["lcf.codec"])  # only applies when the server starts
        return context
    return multiprocessing.get_context("spawn")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _worker_died(job: Job) -> BatchItem:
    error = LcfError("the worker process died while converting this file (a crash, or out of memory)")
    return BatchItem(job.src, job.dst, "failed", str(error), error.exit_code)


class _Pool:
    """A process pool (see :func:`_context`) that can be replaced when a worker dies."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings, self.workers = settings, workers
        self.threads = max(1, _cores() // workers)
        self.executor = self._new()

    def _new(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers, mp_context=_context(), initializer=_init_worker,
                                      initargs=(self.settings, self.threads))

    def renew(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = self._new()

    def stop(self) -> None:
        """Stop now: cancel what has not started, terminate the workers (they delete their temporary files)."""
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(Exception):
                process.terminate()
        for process in processes:
            with contextlib.suppress(Exception):
                process.join(5)
        with contextlib.suppress(Exception):
            self.executor.shutdown(wait=True)


def _run_pool(jobs: Sequence[Job], settings: Settings, workers: int, done: Callable[[Job, BatchItem], None],
              work: Callable[[Path, Path], BatchItem] = _work) -> None:
    """Run ``jobs`` on ``workers`` processes; a job whose worker died is retried alone once, then reported failed.

    ``work`` (a module-level function, run in the workers) converts one file; tests pass one that crashes.
    """
    pool = _Pool(settings, workers)
    pending, suspects = deque(jobs), deque()
    running: dict[cf.Future, tuple[Job, bool]] = {}  # future -> (job, ran alone)
    try:
        while pending or suspects or running:
            broken: list[tuple[Job, bool]] = []
            try:
                if suspects:
                    if not running:
                        job = suspects.popleft()
                        running[pool.executor.submit(work, job.src, job.dst)] = (job, True)
                else:
                    while pending and len(running) < 2 * workers:
                        job = pending.popleft()
                        running[pool.executor.submit(work, job.src, job.dst)] = (job, False)
            except BrokenProcessPool:
                broken.append((job, False))
            if running:
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in finished):
                    finished, _ = cf.wait(running)  # the others fail with it (or have just finished)
                for future in finished:
                    job, alone = running.pop(future)
                    error = future.exception()
                    if isinstance(error, BrokenProcessPool):
                        broken.append((job, alone))
                    elif error is not None:
                        done(job, BatchItem(job.src, job.dst, "failed", f"internal error: {error!r}", 1))
                    else:
                        done(job, future.result())
            if broken:
                for job, alone in broken:
                    if alone:
                        done(job, _worker_died(job))
                    else:
                        suspects.append(job)
                pool.renew()
    except BaseException:
        pool.stop()
        raise
    pool.executor.shutdown(wait=True)


# -- the batch -----------------------------------------------------------------------------------------------------


def run(
    src: api.PathLike,
    dst: api.PathLike,
    *,
    quality: float = 4.0,
    to: str = "lcf",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    workers: int = 1,
    overwrite: bool = False,
    device: str = "cpu",
    decoder: str | None = None,
    weights: api.PathLike | None = None,
    limits: Limits | None = None,
    progress: Progress | None = None,
    effort: int = 0,
) -> BatchReport:
    """Convert the folder tree ``src`` into ``dst`` (see the module docstring and :func:`lcf.api.batch`).

    Raises (before converting anything) UsageError for bad options, LcfIOError when ``src`` is not a folder or
    ``dst`` cannot be created, and whatever loading the weights raises; every per-file problem is in the report.
    """
    start = time.perf_counter()
    settings = settings_for(to, quality, decoder, device, weights, limits, effort)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers!r}")
    src_path, dst_path = Path(src), Path(dst)
    if not src_path.is_dir():
        raise LcfIOError(f"{src}: not a folder" if src_path.exists() else f"{src}: not a folder (no such folder)")
    if dst_path.exists() and not dst_path.is_dir():
        raise LcfIOError(f"{dst}: not a folder")
    cleaned = clean_stale_temps(dst_path)
    plan = make_plan(src_path, dst_path, settings, include, exclude, overwrite)
    processes = min(workers, len(plan.jobs))
    if plan.jobs:
        _check_setup(settings, processes)
        try:
            dst_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise api.io_error(exc, dst_path) from None
    items: dict[int, api.BatchItem] = {}

    def report(index: int, item: api.BatchItem) -> None:
        items[index] = item
        if progress is not None:
            progress(item)

    for index, item in plan.decided:
        report(index, item)
    start_hook = getattr(progress, "start", None)
    if callable(start_hook):
        start_hook(len(plan.jobs))
    try:
        if processes <= 1:
            for job in plan.jobs:
                report(job.index, convert(settings, job.src, job.dst))
        else:
            _run_pool(plan.jobs, settings, processes, lambda job, item: report(job.index, item))
    finally:
        clean_stale_temps(dst_path)  # after an interruption: what stopped workers could not delete themselves
    ordered = tuple(items[i] for i in sorted(items))
    return BatchReport(items=ordered, seconds=time.perf_counter() - start, to="lcf" if settings.encode
                       else settings.suffix[1:], ignored=plan.ignored, cleaned=cleaned)


def _check_setup(settings: Settings, processes: int) -> None:
    """Fail once, before any file, on what would fail every file: weights, decoder name, device."""
    if processes <= 1:
        codec = api.get_codec(settings.weights, settings.device)
        names = codec.decoder_names
    else:
        from lcf.weights import load_weights

        names = load_weights(settings.weights).decoder_names
        if settings.device != "cpu":
            from lcf.codec import check_device

            check_device(settings.device)
    if settings.decoder is not None and settings.decoder not in names:
        raise UsageError(f"no decoder named {settings.decoder!r} in these weights; available: {', '.join(names)}")


__all__ = ["BatchItem", "BatchReport", "Progress", "Settings", "clean_stale_temps", "convert", "is_temp_name", "run"]
