"""Convert a whole folder tree: images -> .lcf, or .lcf -> images (``lcf batch``, :func:`lcf.api.batch`).

    SRC/                        DST/
      a.png       --encode-->     a.lcf          (--to lcf, the default: every image, by its file extension)
      sub/b.jpg                   sub/b.lcf      (--to png|ppm|jpg|...: every .lcf file, decoded to that format)

1. **Plan** (this process, no PyTorch; :mod:`lcf.batchplan`): walk SRC in sorted order, apply the include/exclude
   globs, map each file to its output. Refused before any work: DST that is SRC or holds it, two inputs with one
   output (``x.png`` and ``x.PNG``), an output on an input, and a SRC without inputs. Symlinks that leave SRC, broken
   ones, symlinked folders and special files are not read, and each is reported (``report.left_out``). An output
   that exists is *skipped* unless ``overwrite`` (outputs only ever appear complete, so existing means finished: a
   rerun resumes where the last run stopped).
2. **Clean up**: the temporary file of a planned output (``.NAME.lcf-tmp``, :mod:`lcf.fileio`) whose writer is
   gone (a killed run) is deleted. Nothing else in DST is ever deleted.
3. **Run** one file per task, by an :class:`~lcf.batchwork.Executor` (chosen in one place, :func:`executor_for`):
   here (``workers=1``), in a pool of ``workers`` processes (forkserver, else spawn), or on a Dask cluster
   (``scheduler``/``cluster``: :mod:`lcf.batch_dask`, imported only then). Every executor runs
   :func:`lcf.batchwork.convert` on each file; the plan, the claims and the report are the same. Decoding, a file
   whose model is not installed here fails before that, whatever the executor (:func:`lcf.batchwork.decode_models`:
   never sent to a worker). Each pool worker uses ``cores // workers`` PyTorch threads and loads its
   :class:`lcf.codec.Codec` once. Each file first *claims* its output (:func:`lcf.fileio.claim`): a file that
   another lcf process is converting right now is skipped, and one whose output appeared meanwhile too, so two
   batches on one DST share the work and never write an output twice. A file that fails is reported with its error
   and the batch goes on; a worker process that dies (a crash, the OOM killer) is replaced and the files it held are
   retried one at a time, so only the file that kills a worker is reported failed.

Safety: an output is written to its temporary file, flushed to disk, and moved into place only when complete (by a
hard link when not ``overwrite``, so an existing file is never replaced); on an error or Ctrl-C the temporary file
is deleted, and after a SIGKILL or a crash it is deleted by the next run (step 2). Workers exit when the main
process dies. Sources are only ever read.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcf import codec_cache, fileio, reports
from lcf.batchplan import Job, LeftOut, Plan, Settings, check_folders, make_plan, settings_for
from lcf.batchwork import (
    BUSY,
    EXISTS,
    BatchItem,
    Done,
    Executor,
    abandon_claim,
    check_decoder,
    convert,
    cores,
    decode_models,
    file_size,
    worker_died,
)
from lcf.container import Limits
from lcf.errors import LcfError, UsageError
from lcf.fileio import is_temp_name
from lcf.ratecontrol import Target

# -- results -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchReport(reports.BatchReport):
    """Every file of a batch in sorted order of its source path, and totals. ``to`` is "lcf" when encoding, else the
    image format decoded to; ``ignored`` counts files left out for their type; ``left_out`` lists the entries of SRC
    not read for safety (symlinks leaving SRC, broken ones, special files); ``cleaned`` counts the temporary files
    of killed runs deleted."""

    to: str = "lcf"
    ignored: int = 0
    cleaned: int = 0
    left_out: tuple[LeftOut, ...] = ()
    target: Target | None = None  # the batch's rate-control target, if any

    @property
    def done(self) -> tuple[reports.BatchItem, ...]:
        return tuple(item for item in self.items if item.status == "ok")

    @property
    def skipped(self) -> tuple[reports.BatchItem, ...]:
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
        busy = sum(getattr(item, "note", None) == BUSY for item in self.skipped)
        return {
            "files": len(self.items),
            "done": len(self.done),
            "skipped": len(self.skipped),
            "skipped_busy": busy,
            "failed": len(self.failed),
            "ignored": self.ignored,
            "left_out": len(self.left_out),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "mean_bpp": self.mean_bpp,
            "seconds": self.seconds,
            "cleaned_temp_files": self.cleaned,
            **(self._target_summary() if self.target is not None else {}),
        }

    def _target_summary(self) -> dict[str, int]:
        """With a target: the files whose target no quality meets (each item's ``target.nearest`` says how near
        they come), and of those, the ones written at their nearest value (keep_nearest)."""
        outcomes = [(item, getattr(item, "target", None)) for item in self.items]
        unmet = [item for item, outcome in outcomes if outcome is not None and not outcome.met]
        return {"target_not_met": len(unmet), "nearest_kept": sum(item.status == "ok" for item in unmet)}


Progress = Callable[[reports.BatchItem], None]
"""Called once per file, in the order files finish. If the callable also has a ``start(todo: int)`` method, that is
called once with the number of files to convert, after the files decided without converting them (skipped, or
failed before conversion) have been reported and before the first conversion starts."""


# -- stale temporary files -----------------------------------------------------------------------------------------


def clean_stale_temps(outputs: Sequence[Path]) -> int:
    """Delete the temporary files of ``outputs`` whose writer is gone (:func:`lcf.fileio.remove_stale_temp`); returns
    how many were deleted. Only those exact names: no other file is ever deleted."""
    removed = 0
    for out in outputs:
        try:
            removed += fileio.remove_stale_temp(out)
        except LcfError:
            pass  # not a temporary file of lcf (a folder or symlink of that name): the claim reports it
    return removed


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
    abandon_claim()
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


class _Pool:
    """A process pool (see :func:`_context`) that can be replaced when a worker dies."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings, self.workers = settings, workers
        self.threads = max(1, cores() // workers)
        self.executor = self._new()

    def _new(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            self.workers, mp_context=_context(), initializer=_init_worker, initargs=(self.settings, self.threads)
        )

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


def _run_pool(
    jobs: Sequence[Job],
    settings: Settings,
    workers: int,
    done: Callable[[Job, BatchItem], None],
    work: Callable[[Path, Path], BatchItem] = _work,
) -> None:
    """Run ``jobs`` on ``workers`` processes; a job whose worker died is retried alone once, then reported failed.

    ``work`` (a module-level function, run in the workers) converts one file; tests pass one that crashes.
    """
    pool = _Pool(settings, workers)
    pending, suspects = deque(jobs), deque[Job]()
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
                        done(job, worker_died(job))
                    else:
                        suspects.append(job)
                pool.renew()
    except BaseException:
        pool.stop()
        raise
    pool.executor.shutdown(wait=True)


# -- executors: where the files are converted --------------------------------------------------------------------


class LocalExecutor(Executor):
    """This process (one worker, or one file to convert) or a pool of ``workers`` processes (:func:`_run_pool`)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.processes = workers

    def check(self, settings: Settings, jobs: Sequence[Job]) -> Sequence[tuple[Job, BatchItem]]:
        self.processes = min(self.workers, len(jobs))
        if not settings.encode:  # the models the files need, by the model ids in their headers
            models = decode_models(settings, jobs)
            self.processes = min(self.workers, len(jobs) - len(models.refused))
            if settings.device != "cpu":
                from lcf.resources import torch_device

                torch_device(settings.device)  # this machine has the device
            return models.refused
        if self.processes <= 1:
            names = codec_cache.get_codec(settings.weights, settings.device).decoder_names
        else:
            from lcf.weights import load_weights

            names = load_weights(settings.weights).decoder_names
            if settings.device != "cpu":
                from lcf.resources import torch_device

                torch_device(settings.device)  # this machine has the device
        check_decoder(settings, names)
        return ()

    def run(self, settings: Settings, jobs: Sequence[Job], done: Done) -> None:
        if self.processes <= 1:
            for job in jobs:
                done(job, convert(settings, job.src, job.dst))
        else:
            _run_pool(jobs, settings, self.processes, done)


def executor_for(workers: int = 1, scheduler: str | None = None, cluster: str | None = None) -> Executor:
    """The one place where a batch's executor is chosen: a Dask cluster with ``scheduler`` (the address of a running
    scheduler) or ``cluster`` ("local" or "local:N"), else this process or a pool of ``workers`` processes. Options
    are checked here (UsageError), before anything is read; Dask is imported only when it is used."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers!r}")
    if scheduler is None and cluster is None:
        return LocalExecutor(workers)
    if workers != 1:
        raise UsageError(
            "--workers counts processes on this machine; with --scheduler or --cluster the cluster's "
            "workers convert the files (start `dask worker` with --nworkers N, or use --cluster local:N)"
        )
    from lcf.batch_dask import DaskExecutor

    return DaskExecutor(scheduler=scheduler, cluster=cluster)


# -- the batch -----------------------------------------------------------------------------------------------------


def run(
    src: fileio.PathLike,
    dst: fileio.PathLike,
    *,
    quality: float = 4.0,
    to: str = "lcf",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    workers: int = 1,
    overwrite: bool = False,
    device: str = "cpu",
    decoder: str | None = None,
    weights: fileio.PathLike | None = None,
    limits: Limits | None = None,
    progress: Progress | None = None,
    effort: int = 0,
    follow_symlinks: bool = False,
    scheduler: str | None = None,
    cluster: str | None = None,
    target: Target | None = None,
    keep_nearest: bool = False,
    measure: bool = False,
) -> BatchReport:
    """Convert the folder tree ``src`` into ``dst`` (see the module docstring and :func:`lcf.api.batch`).

    ``scheduler`` (a Dask scheduler's address, "tcp://HOST:8786") or ``cluster`` ("local" or "local:N") converts the
    files on a Dask cluster instead of ``workers`` local processes (:mod:`lcf.batch_dask`). ``target`` (encoding
    only; :class:`lcf.ratecontrol.Target`) chooses each file's quality instead of ``quality``: a file whose target no
    quality meets fails (exit code 9) unless ``keep_nearest``, which writes its nearest file. ``measure`` (encoding)
    reports every file's PSNR (one more synthesis, or decode, per file).

    Raises (before converting anything) UsageError for bad options and for the plan's refusals (see
    :mod:`lcf.batchplan`), LcfIOError when ``src`` is not a folder or ``dst`` cannot be created (or a Dask worker
    cannot read ``src`` or write ``dst``), ModelMismatchError when a Dask worker has other weights, and whatever
    loading the weights raises; every per-file problem is in the report.
    """
    start = time.perf_counter()
    settings = settings_for(
        to, quality, decoder, device, weights, limits, effort, overwrite, target, keep_nearest, measure
    )
    executor = executor_for(workers, scheduler, cluster)
    src_path, dst_path = Path(src), Path(dst)
    check_folders(src_path, dst_path)
    plan = make_plan(src_path, dst_path, settings, include, exclude, follow_symlinks=follow_symlinks)
    outputs = [job.dst for job in (*plan.jobs, *plan.exists)]
    cleaned = clean_stale_temps(outputs) if dst_path.is_dir() else 0
    items: dict[int, reports.BatchItem] = {}
    jobs: Sequence[Job] = plan.jobs
    refused: Sequence[tuple[Job, BatchItem]] = ()  # failed before any worker (decoding: a model not installed)

    def report(index: int, item: reports.BatchItem) -> None:
        items[index] = item
        if progress is not None:
            progress(item)

    try:
        if plan.jobs:
            refused = executor.check(settings, plan.jobs)
            gone = {job.index for job, _ in refused}
            jobs = [job for job in plan.jobs if job.index not in gone]
            try:
                dst_path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise fileio.io_error(exc, dst_path) from None
            if jobs:
                executor.start(settings, src_path, dst_path, jobs)
        decided = _decided(plan, dst_path) + [(job.index, item) for job, item in refused]
        for index, item in sorted(decided, key=lambda pair: pair[0]):
            report(index, item)
        start_hook = getattr(progress, "start", None)
        if callable(start_hook):
            start_hook(len(jobs))
        if jobs:
            executor.run(settings, jobs, lambda job, item: report(job.index, item))
    finally:
        executor.close()
        clean_stale_temps(outputs)  # after an interruption: what stopped workers could not delete themselves
    ordered = tuple(items[i] for i in sorted(items))
    return BatchReport(
        items=ordered,
        seconds=time.perf_counter() - start,
        to="lcf" if settings.encode else settings.suffix[1:],
        ignored=plan.ignored,
        cleaned=cleaned,
        left_out=plan.left_out,
        target=settings.target,
    )


def _decided(plan: Plan, dst: Path) -> list[tuple[int, BatchItem]]:
    """(position, item) of the files decided without converting them: skipped, or failed before conversion."""
    decided = [
        (
            job.index,
            BatchItem(
                job.src, job.dst, "skipped", bytes_in=file_size(job.src), bytes_out=file_size(job.dst), note=EXISTS
            ),
        )
        for job in plan.exists
    ]
    decided += [
        (job.index, BatchItem(job.src, job.dst, "failed", str(error), error.exit_code)) for job, error in plan.blocked
    ]
    for k, error in enumerate(plan.unreadable):
        failure = fileio.io_error(error)
        decided.append(
            (plan.size + k, BatchItem(Path(error.filename or dst), dst, "failed", str(failure), failure.exit_code))
        )
    return sorted(decided, key=lambda pair: pair[0])


__all__ = [
    "BUSY",
    "EXISTS",
    "BatchItem",
    "BatchReport",
    "Done",
    "Executor",
    "LeftOut",
    "LocalExecutor",
    "Progress",
    "Settings",
    "check_decoder",
    "clean_stale_temps",
    "convert",
    "executor_for",
    "is_temp_name",
    "make_plan",
    "run",
    "settings_for",
]
