"""lcf batch on Dask against today's process pool, on one machine: files/s, and the per-file scheduling overhead.

    python benchmarks/batch_dask.py --images ../shared/data/kodak --max-images 8 --rounds 3

**Throughput**: the same ``lcf.api.batch`` of ``--max-images`` images (encoding, ``--quality``) into a fresh folder
under each configuration, ``report.seconds`` (planning, checks, pool or probe start, every file) per run:

* ``pool(1)``: ``workers=1``, today's default (this process; its codec stays loaded between runs);
* ``pool(2)``: ``workers=2``, today's process pool (started per batch: each worker imports PyTorch and loads the
  weights in every run, as a user's run does);
* ``dask(1)``, ``dask(2)``: ``scheduler=`` a ``LocalCluster`` of 1 or 2 worker processes of one thread each, as
  ``--cluster local:N`` starts them (:func:`lcf.batch_dask.local_cluster`), started once before the rounds (a
  running cluster keeps its workers' weights loaded between batches);
* ``dask(1) trim``: ``dask(1)`` with Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` in its worker's environment,
  what ``dask worker`` gives unless told otherwise (README, "Batch on a cluster").

Round 0 warms up (not counted); the configurations are then rotated each round, so a machine shared with other work
slows them alike. Files/s = images / seconds; the ratio is to ``pool(1)`` of the same rounds.

**Overhead**: a task that converts nothing (returns an "ok" item at once) through the same executors, for
``--overhead-files`` N1 and N2 jobs; (t(N2) - t(N1)) / (N2 - N1) is the cost each file adds to a batch on the 2-worker
pool and on the 2-worker Dask cluster (submission, scheduling, the round trip of the result), whatever the start-up.

**A real cluster**: ``--scheduler ADDRESS --work DIR`` measures the running cluster at ADDRESS (``dask(cluster)``, its
overhead too) against this machine's pool, with the images copied to and the outputs written in DIR, a folder on the
file system that its workers share::

    dask scheduler                                              # on the head node
    dask worker tcp://HEAD:8786 --nworkers 4 --nthreads 1       # on each machine
    python benchmarks/batch_dask.py --images /shared/kodak --max-images 24 --scheduler tcp://HEAD:8786 \
        --work /shared/tmp --weights /shared/lcf-weights
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from lcf import api
from lcf.batch import BatchItem, _run_pool
from lcf.batch_dask import local_cluster
from lcf.batchplan import Job, settings_for
from lcf.bench.scripts import command_line, write_fragment


def _noop_pool(src: Path, dst: Path) -> BatchItem:
    return BatchItem(src, dst, "ok")


def _noop_dask(settings: Any, identity: Any, host_threads: Any, src: str, dst: str) -> BatchItem:
    return BatchItem(Path(src), Path(dst), "ok")


def throughput(
    images: Path, work: Path, quality: float, weights: str | None, rounds: int, configs: dict[str, dict[str, Any]]
) -> dict[str, list[float]]:
    """files/s of each configuration (name -> options of api.batch) per counted round."""
    count = len([p for p in images.iterdir() if p.is_file()])
    names = list(configs)
    rates: dict[str, list[float]] = {c: [] for c in names}
    for r in range(rounds + 1):
        order = names[r % len(names) :] + names[: r % len(names)]
        for config in order:
            out = work / f"out-{r}-{names.index(config)}"
            report = api.batch(images, out, quality=quality, weights=weights, **configs[config])
            assert len(report.done) == count and not report.failed, report.failed
            shutil.rmtree(out)
            label = "warm-up" if r == 0 else f"round {r}"
            print(f"{label:8} {config:10} {count / report.seconds:6.3f} files/s ({report.seconds:.1f} s)", flush=True)
            if r:
                rates[config].append(count / report.seconds)
    return rates


def overhead(settings: Any, address: str, counts: tuple[int, int], work: Path) -> dict[str, float]:
    """Seconds each no-op file adds on the 2-process pool and on the Dask cluster at ``address`` (the slope)."""
    from lcf.batch_dask import DaskExecutor

    sample = work / "sample"
    sample.mkdir(exist_ok=True)
    (sample / "in.png").write_bytes(b"")

    def jobs(n: int) -> list[Job]:
        return [Job(k, work / f"in-{k}.png", work / f"out-{k}.lcf") for k in range(n)]

    def pool_seconds(n: int) -> float:  # the pool's start is in both counts: the slope leaves it out
        seen: list[BatchItem] = []
        start = time.perf_counter()
        _run_pool(jobs(n), settings, 2, lambda job, item: seen.append(item), work=_noop_pool)
        assert len(seen) == n
        return time.perf_counter() - start

    def dask_seconds(n: int) -> float:
        executor = DaskExecutor(scheduler=address, task=_noop_dask)
        executor.check(settings, jobs(n))
        executor.start(settings, sample, work, [Job(0, sample / "in.png", work / "x.lcf")])
        seen: list[BatchItem] = []
        try:
            start = time.perf_counter()
            executor.run(settings, jobs(n), lambda job, item: seen.append(item))
            seconds = time.perf_counter() - start
        finally:
            executor.close()
        assert len(seen) == n
        return seconds

    small, large = counts
    return {
        name: (measure(large) - measure(small)) / (large - small)
        for name, measure in (("pool(2)", pool_seconds), ("dask", dask_seconds))
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=Path, required=True, help="folder of images (e.g. the Kodak PNGs)")
    p.add_argument("--max-images", type=int, default=8, help="use the first N images (sorted by name)")
    p.add_argument("--quality", type=float, default=4.0)
    p.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--rounds", type=int, default=3, help="counted rounds, after one warm-up round")
    p.add_argument("--overhead-files", default="50,450", help="N1,N2 no-op files for the overhead slope")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="measure this running cluster (dask(cluster)) instead of two LocalClusters; --work must then "
        "be on a file system its workers share",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the copied images and the outputs (default: a temporary folder)",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/batch_dask.md"))
    args = p.parse_args(argv)
    from distributed import LocalCluster

    with tempfile.TemporaryDirectory(prefix="lcf-batch-dask-", dir=args.work) as tmp:
        work = Path(tmp)
        images = work / "images"
        images.mkdir()
        files = sorted(f for f in args.images.iterdir() if f.suffix.lower() in (".png", ".jpg", ".ppm"))
        for f in files[: args.max_images]:
            shutil.copy(f, images / f.name)
        count = len(list(images.iterdir()))
        environ = dict(os.environ)  # Dask's nannies set their variables in this process too: pool(2) must not get them
        clusters = (
            {}
            if args.scheduler
            else {
                "dask(1)": local_cluster(1),
                "dask(2)": local_cluster(2),
                "dask(1) trim": LocalCluster(
                    n_workers=1,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                ),
            }
        )
        os.environ.clear()
        os.environ.update(environ)
        try:
            configs: dict[str, dict[str, Any]] = {"pool(1)": {}, "pool(2)": {"workers": 2}}
            configs.update({name: {"scheduler": c.scheduler_address} for name, c in clusters.items()})
            if args.scheduler:
                configs["dask(cluster)"] = {"scheduler": args.scheduler}
            started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            load = os.getloadavg()[0]
            rates = throughput(images, work, args.quality, args.weights, args.rounds, configs)
            n1, n2 = (int(x) for x in args.overhead_files.split(","))
            settings = settings_for("lcf", args.quality, None, "cpu", args.weights, None)
            measured = "dask(cluster)" if args.scheduler else "dask(2)"
            slope = overhead(settings, configs[measured]["scheduler"], (n1, n2), work)
            load_after = os.getloadavg()[0]
        finally:
            for c in clusters.values():
                c.close()
    base = statistics.mean(rates["pool(1)"])
    lines = [
        f"Command: `{command_line('batch_dask', argv)}`",
        "",
        f"{started}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
        f"{load:.1f} before and {load_after:.1f} after (a machine shared with other work); {count} images, "
        f"quality {args.quality:g}, {args.rounds} rounds after a warm-up, configurations rotated each round.",
        "",
        "| configuration | files/s (mean) | per round | ratio to pool(1) |",
        "|---|---:|---|---:|",
    ]
    for config in configs:
        mean = statistics.mean(rates[config])
        lines.append(f"| {config} | {mean:.3f} | {', '.join(f'{r:.3f}' for r in rates[config])} | {mean / base:.2f} |")
    lines += [
        "",
        f"Per-file scheduling overhead (no-op task, slope between {n1} and {n2} files; the pool of 2 "
        f"processes, {measured}):",
        "",
        "| executor | ms per file |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {seconds * 1000:.2f} |" for name, seconds in slope.items()]
    write_fragment(args.out, lines)


if __name__ == "__main__":
    main()
