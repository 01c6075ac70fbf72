"""lcf batch: encode or decode a whole folder tree (lcf.batch does the work; this is progress and reporting)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from lcf import api
from lcf_cli.common import (
    EXIT_INTERRUPTED,
    Device,
    Effort,
    Json,
    MaxPixels,
    Weights,
    err_console,
    limits,
    print_json,
    refuse_stdio,
    report_errors,
)
from lcf_cli.targets import KeepNearest, Quality, TargetBpp, TargetPsnr, TargetSize
from lcf_cli.targets import choose as choose_target
from lcf_cli.targets import describe as describe_target


@report_errors
def batch(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="Folder to read.", show_default=False)],
    dst: Annotated[
        Path,
        typer.Argument(
            metavar="DST", show_default=False, help="Folder to write (created if needed); sub-folders are mirrored."
        ),
    ],
    quality: Quality = None,
    target_size: TargetSize = None,
    target_bpp: TargetBpp = None,
    target_psnr: TargetPsnr = None,
    keep_nearest: KeepNearest = False,
    effort: Effort = 0,
    to: Annotated[
        str,
        typer.Option(
            "--to", metavar="FORMAT", help="lcf = encode images; png, ppm, bmp, ... = decode .lcf files to that."
        ),
    ] = "lcf",
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            metavar="GLOB",
            help="Only paths (relative to SRC) matching; repeatable. When encoding, matching files are tried whatever "
            "their extension.",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", metavar="GLOB", help="Skip paths (files or folders) matching; repeatable."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-j", min=1, help="Files processed at once, each in its own process.")
    ] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="Convert on a running Dask cluster: its scheduler's address (tcp://HOST:8786). SRC, DST and --weights "
            "must be paths every worker sees. Needs pip install 'lcf[dask]'.",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="local[:N]",
            help="Start a Dask LocalCluster of N worker processes on this machine (local: one per core), to try "
            "--scheduler on one machine. Needs pip install 'lcf[dask]'.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (default: skip).")] = False,
    follow_symlinks: Annotated[
        bool,
        typer.Option(
            "--follow-symlinks", help="Also read symlinks to files outside SRC (default: list them as left out)."
        ),
    ] = False,
    device: Device = "cpu",
    decoder: Annotated[
        str | None,
        typer.Option(
            "--decoder",
            metavar="NAME",
            help="Encoding: the decoder to recommend in the files; decoding: the decoder to use instead.",
        ),
    ] = None,
    weights: Weights = None,
    json: Json = False,
    max_pixels: MaxPixels = api.DEFAULT_MAX_PIXELS,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Print each file's size, rate (bpp) and time as it is done; encoding: also its quality and PSNR "
            "(one more decode per file) and what its target came to.",
        ),
    ] = False,
) -> None:
    """Encode every image of a folder tree into .lcf files, or decode every .lcf file (--to png).

    Images are found by their file extension (anything Pillow reads); "*" in a GLOB also matches "/", and a
    GLOB without "/" also matches bare file names. Outputs are written to a temporary file and renamed into place
    when complete: an interrupted batch (Ctrl-C, kill, crash) leaves no partial file, and running the same command
    again resumes it, since existing outputs are skipped unless --overwrite. Sources are never modified, and lcf
    deletes nothing in DST but its own temporary files (.NAME.lcf-tmp) of killed runs. Two batches on one DST share
    the work: a file another run is converting is skipped.

    Refused before any work (exit code 2): DST that is SRC or holds it (DST inside SRC is fine: it is never read),
    two files with one output (x.png and x.PNG: rename one or --exclude it), an output that would land on an input,
    and a SRC with no input (the message lists the suffixes looked for). Symlinks to files outside SRC (unless
    --follow-symlinks), broken symlinks, symlinked folders (never followed) and special files are not read; each is
    listed ("SKIP", and "left_out" in --json).

    A file that fails does not stop the batch; failures are listed at the end and the exit code is that of the
    first one (in sorted order). Progress and the summary go to stderr, --json to stdout. What lcf changes in an
    image to encode it (16 -> 8 bits, CMYK or palette -> RGB, ...) is a "note:" line on stderr and "notes" in the
    file's --json record, as for lcf encode.

    On a Dask cluster (--scheduler, or --cluster local:N on this machine) every worker converts files with the same
    code and guarantees; the client plans, shows progress and prints the same summary. Before the first file each
    worker loads the weights (once per worker process), checks that their model id is the client's (exit code 6
    otherwise, naming the worker), that it can read SRC and write DST (exit code 8: SRC, DST and --weights must be
    on a file system shared at the same paths); a worker killed mid-file loses nothing: its file is retried on
    another worker and written once. Without --scheduler/--cluster, Dask is not used.

    --target-size, --target-bpp or --target-psnr (encoding; instead of --quality) chooses each file's quality as lcf
    encode does; a file whose target no quality meets fails with exit code 9 (the others go on) unless
    --keep-nearest, which writes its nearest file and lists it (NEAREST); either way the message names the nearest
    reachable value and the summary counts those files. --json gives each file's "quality", "bytes_out", "bpp",
    "psnr" (a PSNR target's; any file's with -v) and "target" ("met"; "nearest": the nearest reachable value in the
    target's unit when not met, also for a file that failed for it), and "target_not_met" and "nearest_kept" in
    the summary. -v prints each file's size, bpp, PSNR, quality and target as lcf encode -v does.

    [bold]Examples[/]
      lcf batch photos/ encoded/ --quality 5
      lcf batch encoded/ decoded/ --to png --workers 2
      lcf batch photos/ encoded/ --include '*.png' --exclude 'raw/*' --json
      lcf batch /shared/photos /shared/encoded --scheduler tcp://head:8786 --weights /shared/weights
      lcf batch photos/ encoded/ --cluster local:2
      lcf batch photos/ small/ --target-size 50KB --keep-nearest
      lcf batch photos/ encoded/ --target-psnr 32 --json
      lcf batch photos/ small/ --target-bpp 0.5 -v  (each file's quality, size, bpp and PSNR)
    """
    quality, target = choose_target(quality, target_size, target_bpp, target_psnr, keep_nearest)
    refuse_stdio(src, dst)
    bar = _ProgressBar(decoding=to.lower() != "lcf", verbose=verbose, effort=effort)
    try:
        with bar:
            report = api.batch(
                src,
                dst,
                quality=quality,
                effort=effort,
                to=to,
                include=tuple(include or ()),
                exclude=tuple(exclude or ()),
                workers=workers,
                overwrite=overwrite,
                device=device,
                decoder=decoder,
                weights=weights,
                limits=limits(max_pixels),
                progress=bar,
                follow_symlinks=follow_symlinks,
                scheduler=scheduler,
                cluster=cluster,
                target=target,
                keep_nearest=keep_nearest,
                measure=verbose,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted after {bar.finished} file(s); every output written is complete: run the same "
            "command again to resume"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if json:
        print_json(
            {
                "summary": _summary(report),
                "seconds": report.seconds,
                "files": [_item_dict(item) for item in report.items],
                "left_out": [entry.as_dict() for entry in getattr(report, "left_out", ())],
            }
        )
    else:
        for entry in getattr(report, "left_out", ()):
            err_console.print(f"SKIP  {entry.path}: {entry.reason}", markup=False)
        for item in report.failed:
            err_console.print(f"FAIL  {item.src}: {item.error}", markup=False)
        for item in report.items:
            outcome = getattr(item, "target", None)
            if outcome is not None and not outcome.met:
                err_console.print(f"NEAREST  {item.src}: {outcome.message}", markup=False)
        _print_summary(report)
    if report.failed:
        raise typer.Exit(report.failed[0].exit_code)


def _file_rate() -> Any:
    """A progress column of the throughput: files per second (or seconds per file), and MB per second of input
    (rich.progress is imported only by lcf batch, not by every lcf command: issue 21)."""
    from rich.progress import ProgressColumn, Task

    class FileRate(ProgressColumn):
        def render(self, task: Task) -> Text:
            elapsed = task.finished_time if task.finished else task.elapsed
            if not elapsed or not task.completed:
                return Text("-- files/s", style="progress.data.speed")
            rate, megabytes = task.completed / elapsed, task.fields.get("bytes_in", 0) / 1e6
            files = f"{rate:.1f} files/s" if rate >= 1 else f"{1 / rate:.1f} s/file"
            return Text(f"{files} {megabytes / elapsed:.2f} MB/s", style="progress.data.speed")

    return FileRate()


class _ProgressBar:
    """The ``progress`` hook of api.batch: a rich progress bar on stderr over the files to convert."""

    def __init__(self, decoding: bool, verbose: bool = False, effort: int = 0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.verb = "decoding" if decoding else "encoding"
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _file_rate(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
        )
        self.verbose, self.effort = verbose, effort
        self.task: Any = None
        self.finished = 0
        self.decided = {"skipped": 0, "failed": 0}

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, todo: int) -> None:
        """Called by lcf.batch once the files that need no conversion have been reported."""
        skipped = f", {self.decided['skipped']} skipped" if self.decided["skipped"] else ""
        self.task = self.progress.add_task(f"{self.verb}{skipped}", total=todo, bytes_in=0)
        self.progress.start()

    def __call__(self, item: api.BatchItem) -> None:
        self.finished += 1
        if self.task is None:
            if item.status in self.decided:
                self.decided[item.status] += 1
            return
        task = self.progress.tasks[self.task]
        self.progress.update(self.task, advance=1, bytes_in=task.fields["bytes_in"] + getattr(item, "bytes_in", 0))
        if item.status == "failed" and self.progress.console.is_terminal:  # live; the full list comes at the end
            self.progress.console.print(f"FAIL  {item.src}: {item.error}", markup=False, highlight=False)
        for note in getattr(item, "notes", ()):  # what lcf changed in an image to encode it, as lcf encode says it
            self.progress.console.print(f"note: {item.src}: {note}", markup=False, highlight=False)
        if self.verbose and item.status == "ok":
            for line in _verbose_lines(item, self.effort, self.verb == "decoding"):
                self.progress.console.print(line, markup=False, highlight=False)


def _verbose_lines(item: api.BatchItem, effort: int, decoding: bool) -> list[str]:
    """-v: a converted file's size, rate, PSNR, quality and time, and what its target came to (as lcf encode -v);
    decoding, the size and rate of the .lcf file read."""
    bpp = getattr(item, "bpp", None)
    rate = f", {bpp:.4f} bpp" if bpp is not None else ""
    if decoding:
        return [f"{item.dst}: from {getattr(item, 'bytes_in', 0)} bytes{rate}, {item.seconds:.2f} s"]
    psnr, quality = getattr(item, "psnr", None), getattr(item, "quality", None)
    measured = f", PSNR {psnr:.2f} dB" if psnr is not None else ""
    chosen = f", quality {quality!r}" if quality is not None else ""
    level = f", effort {effort}" if effort and quality is not None else ""
    lines = [f"{item.dst}: {getattr(item, 'bytes_out', 0)} bytes{rate}{measured}{chosen}{level}, {item.seconds:.2f} s"]
    outcome = getattr(item, "target", None)
    if outcome is not None:
        lines.append(f"{item.dst}: {describe_target(outcome, quality, effort)}")
    return lines


def _summary(report: api.BatchReport) -> dict[str, Any]:
    summary = getattr(report, "summary", None)
    if callable(summary):
        return summary()
    done = sum(item.status == "ok" for item in report.items)
    skipped = sum(item.status == "skipped" for item in report.items)
    return {
        "files": len(report.items),
        "done": done,
        "skipped": skipped,
        "failed": len(report.failed),
        "seconds": report.seconds,
    }


def _item_dict(item: api.BatchItem) -> dict[str, Any]:
    as_dict = getattr(item, "as_dict", None)
    if callable(as_dict):
        return as_dict()
    return {
        "src": str(item.src),
        "dst": str(item.dst),
        "status": item.status,
        "error": item.error,
        "exit_code": item.exit_code,
        "seconds": item.seconds,
    }


def _print_summary(report: api.BatchReport) -> None:
    s = _summary(report)
    table = Table(title="lcf batch", box=None, pad_edge=False, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("files done", str(s["done"]))
    busy = s.get("skipped_busy", 0)
    table.add_row("skipped (output exists)", str(s["skipped"] - busy))
    if busy:
        table.add_row("skipped (another lcf run converts it)", str(busy))
    table.add_row("failed", f"[red]{s['failed']}[/]" if s["failed"] else "0")
    if s.get("nearest_kept"):
        table.add_row("target not met, nearest kept", str(s["nearest_kept"]))
    if s.get("target_not_met", 0) - s.get("nearest_kept", 0):
        table.add_row("target not met, nothing written", str(s["target_not_met"] - s["nearest_kept"]))
    if s.get("ignored"):
        table.add_row("ignored (not an input type)", str(s["ignored"]))
    if s.get("left_out"):
        table.add_row("left out (links, special files: SKIP)", str(s["left_out"]))
    if "bytes_in" in s:
        table.add_row("bytes in", _bytes(s["bytes_in"]))
        table.add_row("bytes out", _bytes(s["bytes_out"]))
        table.add_row("mean bpp", "-" if s["mean_bpp"] is None else f"{s['mean_bpp']:.4f}")
    if s.get("cleaned_temp_files"):
        table.add_row("stale temp files removed", str(s["cleaned_temp_files"]))
    table.add_row("time", _duration(s["seconds"]))
    err_console.print(table)
    err_console.print(f"{s['done']} done, {s['skipped']} skipped, {s['failed']} failed in {s['seconds']:.1f} s")


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n:,} ({n / size:.1f} {unit})"
    return f"{n:,}"


def _duration(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds >= 60 else f"{seconds:.1f} s"
