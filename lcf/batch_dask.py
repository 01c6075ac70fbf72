"""``lcf batch`` on a Dask cluster: ``--scheduler ADDRESS`` (a running ``dask.distributed`` scheduler: started by
``dask scheduler``/``dask worker``, Kubernetes, SLURM through dask-jobqueue, ...) or ``--cluster local[:N]`` (a
``LocalCluster`` of N worker processes on this machine, for a try). Imported by :func:`lcf.batch.executor_for` only
then; Dask is the optional extra ``lcf[dask]``.

    this process (the client)             each worker process of the cluster
    -------------------------------       -----------------------------------------------------------------------
    plan SRC -> DST (lcf.batchplan)
    decoding: the files' models
      (lcf.batchwork.decode_models);
      a file of a model not
      installed here fails here
    probe every worker            ---->   :func:`probe`: the same lcf version; the weights loaded (once per
                                          process): encoding, with the client's model id and encoder id;
                                          decoding, each model the files need that the client has; SRC
                                          readable and the client's; DST the client's, with locks shared (a file
                                          the client holds locked, ``.lcf-lock-probe-*.lcf-tmp``, is there and
                                          locked) and writable (a probe file ``.lcf-probe-*.lcf-tmp`` that it
                                          creates and deletes)
    one task per file             ---->   :func:`convert_task` -> :func:`lcf.batchwork.convert`: the same claim,
    as_completed -> progress,     <----   conversion and publication as the process pool; a BatchItem back
      report (lcf.batch.run)

Paths: the workers read SRC and the weights and write DST at the paths the client names (made absolute), so those
must be the same paths on every machine: a shared file system (NFS, CephFS, Lustre, ...) mounted at one place. The
weights reach a worker as files: the lcf package installed there (its shipped weights, or ``$LCF_WEIGHTS`` on that
machine), or ``--weights DIR`` on the shared file system. Before the first file, every worker present is checked
(above); one joining later is checked by its first task, and a mismatch there stops the batch.

Faults: a worker killed mid-file (``kill -9``, the OOM killer, a lost machine) dies holding its claim; the kernel
drops its lock, Dask runs the task again on another worker, whose claim deletes the dead worker's temporary file and
writes the output once. A file that kills ``distributed.scheduler.allowed-failures`` + 1 workers (3 + 1 by default)
is reported failed, as the pool reports a file that kills its worker twice. Where a crashed machine's locks outlive
it (NFS, until its lease expires), the retried file is reported "skipped" (another lcf process is writing its
output) and the next run converts it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcf import codec_cache, errors, fileio
from lcf.batchplan import Job, Settings
from lcf.batchwork import (
    BatchItem,
    DecodeModels,
    Done,
    Executor,
    check_decoder,
    convert,
    cores,
    decode_models,
    file_size,
    worker_died,
)
from lcf.errors import LcfError, LcfIOError, ModelMismatchError, UsageError

CONNECT_TIMEOUT = 20.0  # seconds to reach the scheduler
WORKER_TIMEOUT = 60.0  # seconds to wait for a first worker to join it
PROBE_TIMEOUT = 600.0  # seconds for every worker to load the weights and answer its probe
LOST = (OSError, TimeoutError, concurrent.futures.CancelledError, asyncio.CancelledError)
"""What talking to a scheduler that is gone raises (distributed's CommClosedError is an OSError)."""
INSTALL = "pip install 'lcf[dask]' (Dask's distributed scheduler)"
SHARED = (
    "SRC, DST and --weights must be paths that every worker sees, at the same place on every machine (a "
    "shared file system)"
)


# -- what every worker must share with the client ----------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """What a worker must have in common with the client: lcf's version; when encoding, the weights' model id and
    encoder id (two folders of one model id may hold different encoders, which write different valid files); when
    decoding, ``models``: the model ids of the files that the client has installed (each file is decoded by the
    folder of its own model, found by model id on each machine)."""

    version: str
    model_id: str | None
    encoder_id: str | None
    models: tuple[str, ...] = ()


def identity_of(settings: Settings, jobs: Sequence[Job] = ()) -> Identity:
    """The client's :class:`Identity`, from its own view of the weights (no PyTorch); when decoding, of the models
    the files of ``jobs`` need (:func:`lcf.batchwork.decode_models`, which also checks the decoder asked for)."""
    from lcf import __version__
    from lcf.weights import load_weights

    if not settings.encode:
        return _decoding_identity(decode_models(settings, jobs))
    weights = load_weights(settings.weights)
    check_decoder(settings, weights.decoder_names)
    return Identity(__version__, weights.model_id.hex(), weights.encoder_id().hex())


def _decoding_identity(models: DecodeModels) -> Identity:
    from lcf import __version__

    return Identity(__version__, None, None, tuple(sorted(m.hex() for m in models.roots)))


@dataclass(frozen=True)
class WorkerProblem:
    """A check that failed on a worker, returned (not raised: lcf's errors need not pickle) and raised on the client
    as ``error``, the name of a class of :mod:`lcf.errors`."""

    error: str
    message: str

    def exception(self) -> LcfError:
        cls = getattr(errors, self.error, LcfError)
        return cls(self.message) if isinstance(cls, type) and issubclass(cls, LcfError) else LcfError(self.message)


# -- on the workers ----------------------------------------------------------------------------------------------

_ready_lock = threading.Lock()
_ready: dict[tuple[Any, ...], WorkerProblem | None] = {}  # per worker process: loaded and checked, or the problem


def worker_name() -> str:
    """ "worker tcp://10.0.0.7:40123 (node7)": the worker running this task, for messages."""
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        address = f"pid {os.getpid()}"
    return f"worker {address} ({socket.gethostname()})"


def ready(settings: Settings, identity: Identity) -> WorkerProblem | None:
    """Load the weights once per worker process (:func:`lcf.codec_cache.get_codec` keeps the codec) and check them
    against the client's ``identity``; the answer is kept, so later tasks pay nothing."""
    key = (settings.weights, settings.device, settings.encode, settings.decoder, identity)
    with _ready_lock:  # one thread loads; the others of this process wait for it
        if key not in _ready:
            _ready[key] = _check_worker(settings, identity)
        return _ready[key]


def _check_worker(settings: Settings, identity: Identity) -> WorkerProblem | None:
    from lcf import __version__

    where = worker_name()
    if __version__ != identity.version:
        return WorkerProblem(
            "LcfError",
            f"{where} runs lcf {__version__}, this client lcf {identity.version}: install the same lcf on every worker",
        )
    if not settings.encode:
        return _check_decoding_worker(settings, identity, where)
    try:
        codec = codec_cache.get_codec(settings.weights, settings.device)
        model_id = codec.weights.model_id.hex()
        encoder_id = codec.weights.encoder_id().hex()
        names = codec.decoder_names
    except LcfError as exc:
        return WorkerProblem(type(exc).__name__, f"{where}: {exc}")
    except (OSError, MemoryError) as exc:
        return WorkerProblem("LcfIOError", f"{where}: cannot load the weights: {exc}")
    root = codec.weights.root
    advice = "give every worker the same weights: the same installed lcf package, or --weights DIR on a shared path"
    if model_id != identity.model_id:
        return WorkerProblem(
            "ModelMismatchError",
            f"{where} loads the weights {root} of model id {model_id[:16]}..., "
            f"this client's have model id {(identity.model_id or '')[:16]}...: {advice}",
        )
    if encoder_id != identity.encoder_id:
        return WorkerProblem(
            "ModelMismatchError",
            f"{where} loads the weights {root} with another encoder (encoder id "
            f"{encoder_id[:16]}..., this client's "
            f"{(identity.encoder_id or '')[:16]}...): its files would differ; {advice}",
        )
    if settings.decoder is not None and settings.decoder not in names:
        return WorkerProblem(
            "UsageError",
            f"{where}: no decoder named {settings.decoder!r} in the weights {root}; "
            f"available there: {', '.join(names)}",
        )
    return None


def _check_decoding_worker(settings: Settings, identity: Identity, where: str) -> WorkerProblem | None:
    """A decode batch: the worker loads, by model id, the weights of each model of ``identity.models`` (the same
    search as the client's: ``settings.weights`` or ``$LCF_WEIGHTS`` when given, else the installed models), and
    each offers the decoder asked for."""
    for model in identity.models:
        try:
            codec = codec_cache.codec_for_model(bytes.fromhex(model), settings.weights, settings.device)
        except ModelMismatchError as exc:
            return WorkerProblem(
                "ModelMismatchError",
                f"{where} cannot decode the files of model {model} in this batch: {exc}; give every worker the "
                "models the client has (the same installed lcf, the same LCF_WEIGHTS_PATH folders on a shared path)",
            )
        except LcfError as exc:
            return WorkerProblem(type(exc).__name__, f"{where}: {exc}")
        except (OSError, MemoryError) as exc:
            return WorkerProblem("LcfIOError", f"{where}: cannot load the weights of model {model}: {exc}")
        if settings.decoder is not None and settings.decoder not in codec.decoder_names:
            return WorkerProblem(
                "UsageError",
                f"{where}: no decoder named {settings.decoder!r} in the weights {codec.weights.root} of model "
                f"{model}; available there: {', '.join(codec.decoder_names)}",
            )
    return None


def _use_threads(host_threads: dict[str, int]) -> None:
    """PyTorch threads of this task: the cores of this machine shared by the worker threads on it (from the client's
    view of the cluster; a worker it did not see counts its own threads)."""
    import torch

    try:
        from distributed import get_worker
        from distributed.comm import get_address_host

        worker = get_worker()
        sharing = host_threads.get(get_address_host(worker.address), worker.state.nthreads)
    except (ImportError, ValueError, AttributeError):
        sharing = 1
    threads = max(1, cores() // max(1, sharing))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Paths:
    """What the client shows each worker's :func:`probe`: SRC, one input and its size, DST, and a file in DST that the
    client holds locked (its own temporary file; "" for none)."""

    src: str
    sample: str
    sample_size: int
    dst: str
    locked: str


def probe(settings: Settings, identity: Identity, paths: Paths) -> WorkerProblem | str:
    """Run first on every worker, before any file: the weights (:func:`ready`); SRC readable and the client's (listed,
    and one input opened, of the size the client sees); DST the client's (its locked file is there) with locks that
    both see (without them a retried file could be written twice); DST writable (a probe file created and deleted by
    this task). Returns the worker's name."""
    problem = ready(settings, identity)
    if problem is not None:
        return problem
    where = worker_name()
    try:
        os.listdir(paths.src)
        with open(paths.sample, "rb") as f:
            f.read(1)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        return WorkerProblem(
            "LcfIOError",
            f"{where} cannot read SRC {paths.src} ({exc.filename or paths.src}: {exc.strerror or exc}); {SHARED}",
        )
    if size != paths.sample_size:
        return WorkerProblem(
            "LcfIOError",
            f"{where} sees another SRC {paths.src}: {paths.sample} has {size} bytes "
            f"there, {paths.sample_size} on this client; {SHARED}",
        )
    shared = _sees_lock(paths.locked) if paths.locked else None
    if shared is not True and shared is not None:
        what = (
            "is not there: DST is another folder on that machine"
            if shared == "missing"
            else "is there but not locked: the file system does not share locks between machines (an NFS mount with "
            "local_lock=flock?), so lcf could not tell a live writer from a dead one"
        )
        return WorkerProblem(
            "LcfIOError", f"{where}: the file {paths.locked} that this client holds locked in DST {what}; {SHARED}"
        )
    try:
        held = fileio.claim(Path(paths.dst) / f"lcf-probe-{uuid.uuid4().hex[:12]}")  # .lcf-probe-*.lcf-tmp
        if held is not None:
            with held:  # leaving the block deletes it: the only file deleted is the one made here
                held.file.write(b"lcf probe\n")
                held.file.flush()
    except (LcfError, OSError) as exc:
        return WorkerProblem("LcfIOError", f"{where} cannot write DST {paths.dst} ({exc}); {SHARED}")
    return where


def _sees_lock(path: str) -> bool | str | None:
    """True when another process holds ``path`` locked, "unlocked" when not, "missing" when there is no such file,
    None where there are no locks (Windows, or a file system without them: lcf then deletes nothing, see
    :mod:`lcf.fileio`)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return "missing"
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None  # ENOLCK and the like: no locks here
    finally:
        os.close(fd)  # also releases the lock, if this process took it
    return "unlocked"


def convert_task(
    settings: Settings, identity: Identity, host_threads: dict[str, int], src: str, dst: str
) -> BatchItem | WorkerProblem:
    """One file on a worker: :func:`lcf.batchwork.convert`, after the worker's weights are checked (once)."""
    problem = ready(settings, identity)
    if problem is not None:
        return problem
    _use_threads(host_threads)
    return convert(settings, Path(src), Path(dst))


# -- on the client -----------------------------------------------------------------------------------------------


def parse_cluster(spec: str) -> int:
    """The worker processes of ``--cluster local`` (one per core) or ``local:N``; UsageError otherwise."""
    name, _, count = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if name == "local" and not count:
        return cores()
    if name == "local" and count.isdigit() and int(count) >= 1:
        return int(count)
    raise UsageError(
        f"--cluster takes 'local' (one worker process per core) or 'local:N' (N processes), got {spec!r}; "
        "for a cluster of machines, start `dask scheduler` and `dask worker` and pass --scheduler ADDRESS"
    )


def local_cluster(workers: int) -> Any:
    """The LocalCluster of ``--cluster local:N``: N worker processes of one thread each, started without Dask's
    ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``): that setting turns off glibc's
    dynamic mmap threshold, so every large tensor is mapped and faulted in afresh: a worker with it encoded Kodak
    images at 0.57 times the rate of one without (docs/BENCHMARKS.md, "lcf batch on Dask")."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        )


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError(f"--scheduler and --cluster need Dask, which is not installed: {INSTALL}") from None
    return distributed


Task = Callable[..., Any]


def _quiet_logs() -> dict[str, int]:
    """Only critical messages from distributed's loggers (each may have its own level); the levels to restore."""
    names = ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return levels


class DaskExecutor(Executor):
    """Converts the files of a batch on a Dask cluster (see the module docstring). ``task`` runs one file on a worker
    (:func:`convert_task`; benchmarks pass one that does nothing, to time the round trip)."""

    def __init__(
        self,
        scheduler: str | None = None,
        cluster: str | None = None,
        *,
        task: Task = convert_task,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        if (scheduler is None) == (cluster is None):
            raise UsageError("give either --scheduler ADDRESS or --cluster local[:N], not both")
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise UsageError(f"--scheduler takes the address of a Dask scheduler (tcp://HOST:8786), got {scheduler!r}")
        self.scheduler = scheduler.strip() if scheduler is not None else None
        self.local_workers = parse_cluster(cluster) if cluster is not None else None
        self.task, self.connect_timeout = task, connect_timeout
        self.client: Any = None
        self.cluster: Any = None
        self.identity: Identity | None = None
        self.host_threads: dict[str, int] = {}
        self.threads = 1
        self.token = uuid.uuid4().hex[:12]
        self.log_levels: dict[str, int] = {}
        self.environ: dict[str, str] | None = None

    @property
    def where(self) -> str:
        return f"the Dask scheduler at {self.scheduler}" if self.scheduler else "the local Dask cluster"

    def check(self, settings: Settings, jobs: Sequence[Job]) -> Sequence[tuple[Job, BatchItem]]:
        """The client's identity (the workers check their device: the client may have no GPU); decoding, the files
        of a model not installed here fail here, as in a local batch (lcf.batchwork.decode_models), unshipped."""
        _distributed()
        if settings.encode:
            self.identity = identity_of(settings, jobs)
            return ()
        models = decode_models(settings, jobs)
        self.identity = _decoding_identity(models)
        return models.refused

    def start(self, settings: Settings, src: Path, dst: Path, jobs: Sequence[Job]) -> None:
        distributed = _distributed()
        self.log_levels = _quiet_logs()  # distributed's own tracebacks (a lost scheduler): lcf says what happened
        self._connect(distributed)
        try:
            self.client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
        except TimeoutError:
            raise LcfError(
                f"no worker joined {self.where} within {WORKER_TIMEOUT:.0f} s: start workers with "
                f"`dask worker {self.scheduler or 'ADDRESS'}`"
            ) from None
        except LOST as exc:
            raise self._lost(exc, "while waiting for a worker") from None
        locked = fileio.claim(Path(dst) / f"lcf-lock-probe-{self.token}")  # held by this process while workers look
        try:
            sample = os.path.abspath(jobs[0].src)
            paths = Paths(
                os.path.abspath(src),
                sample,
                file_size(Path(sample)),
                os.path.abspath(dst),
                os.path.abspath(locked.temp) if locked is not None else "",
            )
            self._probe(settings, paths)
        except LcfError:  # what the checks found (some of lcf's errors are OSErrors too)
            raise
        except LOST as exc:
            raise self._lost(exc, "while checking its workers") from None
        finally:
            if locked is not None:
                locked.abandon()  # deletes its temporary file, which only this process made

    def _lost(self, exc: BaseException, when: str) -> LcfError:
        return LcfError(
            f"lost {self.where} {when} ({type(exc).__name__}: {exc}); every output written is complete: "
            "run the same command again to resume"
        )

    def _connect(self, distributed: Any) -> None:
        try:
            if self.scheduler is None:
                self.environ = dict(os.environ)  # Dask's nannies set their variables here too: restored by close()
                self.cluster = local_cluster(self.local_workers or 1)
                self.client = distributed.Client(self.cluster, set_as_default=False)
            else:
                self.client = distributed.Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise LcfError(
                f"cannot reach {self.where} ({type(exc).__name__}: {exc}); start one with `dask scheduler` "
                "(it prints its address, tcp://HOST:8786) and workers with `dask worker ADDRESS`"
            ) from None

    def _workers(self) -> dict[str, Any]:
        """Address -> information of every worker of the cluster now."""
        try:
            info = self.client.scheduler_info(n_workers=-1)  # all of them (distributed >= 2025.1 lists 5 by default)
        except TypeError:
            info = self.client.scheduler_info()
        return info["workers"]

    def _probe(self, settings: Settings, paths: Paths) -> None:
        """Run :func:`probe` on every worker present, pinned to it; raise the first problem (before any file)."""
        from distributed.comm import get_address_host

        workers = self._workers()
        self.host_threads = {}
        for address, info in workers.items():
            host = get_address_host(address)
            self.host_threads[host] = self.host_threads.get(host, 0) + int(info.get("nthreads", 1))
        self.threads = sum(self.host_threads.values())
        pending = {
            self.client.submit(
                probe,
                settings,
                self.identity,
                paths,
                workers=[address],
                allow_other_workers=False,
                pure=False,
                key=f"lcf-probe-{self.token}-{k}",
            ): address
            for k, address in enumerate(workers)
        }
        deadline = time.monotonic() + PROBE_TIMEOUT
        try:
            while pending:
                for future in [f for f in pending if f.done()]:
                    self._answer(future, pending.pop(future))
                alive = set(self._workers())
                for future in [f for f, address in pending.items() if address not in alive]:
                    del pending[future]  # the worker left; one that replaces it is checked by its first task
                    future.cancel()
                if pending and time.monotonic() > deadline:
                    raise LcfError(
                        f"{len(pending)} worker(s) of {self.where} did not load the weights within "
                        f"{PROBE_TIMEOUT:.0f} s: {', '.join(sorted(pending.values()))}"
                    )
                time.sleep(0.05 if pending else 0)
        finally:
            for future in pending:
                future.cancel()

    def _answer(self, future: Any, address: str) -> None:
        """Raise what the probe of the worker at ``address`` found wrong."""
        if future.status == "cancelled":
            raise LcfError(f"{self.where} dropped the check of worker {address} (the scheduler was restarted?)")
        answer = future.result() if future.status == "finished" else future.exception()
        if isinstance(answer, WorkerProblem):
            raise answer.exception()
        if isinstance(answer, BaseException):
            raise LcfError(
                f"worker {address} could not run lcf's check ({type(answer).__name__}: {answer}): install "
                "the same lcf on every worker"
            )

    def run(self, settings: Settings, jobs: Sequence[Job], done: Done) -> None:
        """One task per file, at most a window of them submitted at once (the scheduler and this process hold only
        those), results taken as they complete."""
        from distributed import as_completed

        window = max(32, 4 * self.threads)
        todo = iter(jobs)
        futures: dict[Any, Job] = {}

        def submit(job: Job) -> Any:
            future = self.client.submit(
                self.task,
                settings,
                self.identity,
                self.host_threads,
                os.path.abspath(job.src),
                os.path.abspath(job.dst),
                pure=False,
                key=f"lcf-{self.token}-{job.index}",
            )
            futures[future] = job
            return future

        try:
            try:
                completed = as_completed([submit(job) for job in itertools.islice(todo, window)], loop=self.client.loop)
            except LOST as exc:
                raise self._lost(exc, "while submitting files") from None
            for future in completed:
                job = futures.pop(future)
                item = self._item(future, job)
                try:
                    future.release()
                    following = next(todo, None)
                    if following is not None:
                        completed.add(submit(following))
                except LOST as exc:
                    raise self._lost(exc, "while submitting files") from None
                done(job, item)
        finally:
            if futures:  # an error or Ctrl-C: what has not started is dropped; a running file finishes (complete)
                with contextlib.suppress(Exception):
                    self.client.cancel(list(futures))

    def _item(self, future: Any, job: Job) -> BatchItem:
        """The result of ``job``'s task; LcfError when the cluster lost it (the scheduler closed or restarted)."""
        from distributed import KilledWorker

        try:
            status = future.status
            answer = future.result() if status == "finished" else future.exception() if status == "error" else None
        except (Exception, asyncio.CancelledError):  # noqa: BLE001  (the connection's errors, whatever their type)
            answer, status = None, "lost"
        if isinstance(answer, WorkerProblem):  # a worker that joined after the start, with other weights
            raise answer.exception()
        if isinstance(answer, BatchItem):
            return dataclasses.replace(answer, src=job.src, dst=job.dst)
        if isinstance(answer, KilledWorker):
            return worker_died(job)
        if isinstance(answer, BaseException):
            return BatchItem(job.src, job.dst, "failed", f"internal error: {answer!r}", 1)
        raise LcfError(
            f"{self.where} dropped the task of {job.src} ({status}: the scheduler was closed or restarted, "
            "or lost this client); every output written is complete: run the same command again to resume"
        )

    def close(self) -> None:
        for part in (self.client, self.cluster):  # the local cluster's workers stop here, before lcf cleans up
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        self.client = self.cluster = None
        if self.environ is not None:
            os.environ.clear()
            os.environ.update(self.environ)
            self.environ = None
        for name, level in self.log_levels.items():
            logging.getLogger(name).setLevel(level)
        self.log_levels = {}


__all__ = [
    "DaskExecutor",
    "Identity",
    "Paths",
    "WorkerProblem",
    "convert_task",
    "identity_of",
    "local_cluster",
    "parse_cluster",
    "probe",
    "ready",
]
