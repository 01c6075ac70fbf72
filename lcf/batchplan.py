"""The plan of ``lcf batch`` (:mod:`lcf.batch`): which files of SRC are inputs, where each output goes, and the rules
that keep a batch off the user's files. No PyTorch here; nothing is written.

    SRC/a.png        -> DST/a.lcf        (encoding: every image, by its file extension)
    SRC/sub/b.lcf    -> DST/sub/b.png    (decoding, --to png: every .lcf file)

Refused before any work (UsageError, nothing written):

* DST is SRC (also through a link or another spelling), or SRC lies inside DST: outputs would land among the inputs.
  DST inside SRC is fine: that folder is never read (outputs never become inputs).
* Two inputs with one output (``x.png`` and ``x.PNG``, or ``a.png`` and ``a.jpg`` -> ``a.lcf``): every group is
  listed, with how to resolve it (rename one, or ``--exclude`` it).
* An output that would land on an input, or inside SRC (through a symlinked folder in DST).
* No input at all: the message says which suffixes were looked for.

Entries of SRC that are not read, each reported (:class:`LeftOut`), never silently dropped: a symlink to a file
outside SRC (unless ``follow_symlinks``), a broken symlink, a symlink into DST, a symlinked folder (folders are
never followed: no cycles, no leaving SRC), and anything that is not a regular file (fifo, socket, device). A
symlink to a file inside SRC is read like the file. lcf's own temporary files are never inputs.

:func:`plan_files` applies the same rules to files named one by one, ``lcf encode a.png b.jpg -d OUT``.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from lcf.container import Limits
from lcf.errors import LcfIOError, UsageError
from lcf.fileio import PathLike, is_temp_name
from lcf.options import check_device, check_effort, check_quality
from lcf.ratecontrol import Target

LCF_SUFFIX = ".lcf"
_FORMAT = re.compile(r"[a-z0-9]+")
_LISTED = 20  # problems listed in one message; the rest are counted


@dataclass(frozen=True)
class Settings:
    """What every conversion of one batch shares (sent to each worker process once)."""

    encode: bool
    format: str | None  # Pillow format name of the outputs when decoding
    suffix: str  # of the outputs: ".lcf", ".png", ...
    quality: float
    decoder: str | None
    device: str
    effort: int
    weights: str | None
    limits: Limits
    overwrite: bool = False
    target: Target | None = None  # rate control (lcf.ratecontrol): the quality chosen per file instead of ``quality``
    keep_nearest: bool = False  # a target no quality meets: write the nearest file instead of failing it
    measure: bool = False  # encoding: the PSNR of every file written (one more synthesis or decode per file)


@dataclass(frozen=True)
class Job:
    index: int  # position in the sorted plan
    src: Path
    dst: Path


@dataclass(frozen=True)
class LeftOut:
    """An entry of SRC that was not read, and why (a symlink leaving SRC, a broken symlink, a fifo, ...)."""

    path: Path
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    jobs: tuple[Job, ...]  # to convert
    exists: tuple[Job, ...]  # output there already: skipped (not with overwrite)
    blocked: tuple[tuple[Job, LcfIOError], ...]  # output cannot be written (a folder of that name)
    unreadable: tuple[OSError, ...]  # folders of SRC that could not be listed
    left_out: tuple[LeftOut, ...]
    ignored: int  # files of another type

    @property
    def size(self) -> int:
        return len(self.jobs) + len(self.exists) + len(self.blocked)


def settings_for(
    to: str,
    quality: float,
    decoder: str | None,
    device: str,
    weights: PathLike | None,
    limits: Limits | None,
    effort: int = 0,
    overwrite: bool = False,
    target: Target | None = None,
    keep_nearest: bool = False,
    measure: bool = False,
) -> Settings:
    """Check the options (UsageError) and fix what each conversion needs."""
    check_quality(quality)
    check_effort(effort)
    check_device(device)
    if target is not None and not isinstance(target, Target):
        raise UsageError(f"target must be an lcf.ratecontrol.Target, got {type(target).__name__}")
    if keep_nearest and target is None:
        raise UsageError("--keep-nearest needs a target: --target-size, --target-bpp or --target-psnr")
    if not isinstance(to, str) or _FORMAT.fullmatch(to.lower()) is None:
        raise UsageError(f"--to must be 'lcf' or an image format such as 'png', got {to!r}")
    to = to.lower()
    if to == "lcf":
        encode, fmt, suffix = True, None, LCF_SUFFIX
    else:
        encode, suffix = False, "." + to
        fmt = writable_formats().get(suffix)
        if target is not None:
            raise UsageError(
                f"a target (--target-size, --target-bpp, --target-psnr) applies to encoding, not to --to {to}"
            )
        if fmt is None:
            known = ", ".join(sorted(ext[1:] for ext in writable_formats()))
            raise UsageError(f"--to {to}: not an image format lcf can write; use lcf or one of: {known}")
    return Settings(
        encode=encode,
        format=fmt,
        suffix=suffix,
        quality=float(quality),
        decoder=decoder,
        device=device,
        effort=effort,
        weights=None if weights is None else str(Path(weights).resolve()),
        limits=limits or Limits(),
        overwrite=bool(overwrite),
        target=target,
        keep_nearest=bool(keep_nearest),
        measure=bool(measure),
    )


def check_folders(src: Path, dst: Path) -> None:
    """SRC must be a folder, DST a folder or nothing yet, and neither may hold the other, except DST inside SRC."""
    if not src.is_dir():
        raise LcfIOError(f"{src}: not a folder" if src.exists() else f"{src}: not a folder (no such folder)")
    if dst.exists() and not dst.is_dir():
        raise LcfIOError(f"{dst}: not a folder")
    src_real, dst_real = Path(os.path.realpath(src)), Path(os.path.realpath(dst))
    if src_real == dst_real:
        raise UsageError(
            f"DST {dst} is SRC {src}: the outputs would be written among the inputs; choose another "
            "folder (a new one beside SRC, or one inside SRC, which is never read)"
        )
    if _is_inside(src_real, dst_real):
        raise UsageError(
            f"SRC {src} lies inside DST {dst}: outputs could land among the inputs; choose a DST "
            "outside SRC (or a folder inside SRC, which is never read)"
        )


def make_plan(
    src: Path,
    dst: Path,
    settings: Settings,
    include: Sequence[str],
    exclude: Sequence[str],
    overwrite: bool | None = None,
    follow_symlinks: bool = False,
) -> Plan:
    """The files to convert in sorted order of their path relative to ``src``; raises UsageError (see the module
    docstring) before anything is converted."""
    overwrite = settings.overwrite if overwrite is None else overwrite
    include, exclude = _patterns(include), _patterns(exclude)
    src_real, dst_real = Path(os.path.realpath(src)), Path(os.path.realpath(dst))
    prune = dst_real if _is_inside(dst_real, src_real) else None
    image_suffixes = _readable_suffixes()
    inputs: list[tuple[str, Path]] = []
    left_out: list[LeftOut] = []
    unreadable: list[OSError] = []
    ignored = 0
    for rel, path, is_folder in sorted(_walk(src, prune, exclude, unreadable)):
        if is_folder:
            left_out.append(LeftOut(path, "a symlink to a folder: folders are never followed"))
            continue
        if _matches(rel, exclude) or (include and not _matches(rel, include)):
            continue
        suffix = path.suffix.lower()
        wanted = (
            suffix != LCF_SUFFIX and (bool(include) or suffix in image_suffixes)
            if settings.encode
            else suffix == LCF_SUFFIX
        )
        if not wanted:
            ignored += 1
            continue
        reason = _why_not_read(path, src_real, dst_real, follow_symlinks)
        if reason is not None:
            left_out.append(LeftOut(path, reason))
            continue
        inputs.append((rel, path))
    if not inputs and not unreadable:
        raise UsageError(_nothing_found(src, settings, include, exclude, ignored, left_out, image_suffixes))
    outputs = [dst / Path(rel).parent / (path.stem + settings.suffix) for rel, path in inputs]
    _check_collisions(inputs, outputs, src)
    _check_outputs(inputs, outputs, src_real, dst_real)
    jobs: list[Job] = []
    exists: list[Job] = []
    blocked: list[tuple[Job, LcfIOError]] = []
    for index, ((_, path), out) in enumerate(zip(inputs, outputs, strict=True)):
        job = Job(index, path, out)
        if out.is_dir():
            blocked.append((job, LcfIOError(f"cannot write {out}: a folder of that name exists")))
        elif os.path.lexists(out) and not overwrite:
            exists.append(job)
        else:
            jobs.append(job)
    return Plan(tuple(jobs), tuple(exists), tuple(blocked), tuple(unreadable), tuple(left_out), ignored)


def _why_not_read(path: Path, src_real: Path, dst_real: Path, follow_symlinks: bool) -> str | None:
    """Why the file entry ``path`` is not an input (see the module docstring), or None when it is one."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISLNK(mode):
        return None if stat.S_ISREG(mode) else "not a regular file (a fifo, socket or device)"
    target = Path(os.path.realpath(path))
    if not os.path.exists(target):
        return "a broken symlink (its target does not exist)"
    if _is_inside(target, dst_real):
        return f"a symlink into DST ({target}): outputs are never inputs"
    if not _is_inside(target, src_real) and not follow_symlinks:
        return f"a symlink to a file outside SRC ({target}); --follow-symlinks reads it"
    if not target.is_file():
        return f"a symlink to something that is not a regular file ({target})"
    return None


def plan_files(srcs: Sequence[Path], folder: Path, suffix: str) -> tuple[Job, ...]:
    """``lcf encode``/``lcf decode SRC... -d FOLDER``: FOLDER/<stem><suffix> for each input, in the order given.

    Refused before any work (UsageError, nothing written), by the rules of a batch's plan: two inputs with one output
    (``a.png`` and ``a.jpg``, or one file given twice), every group listed; an output that is one of the inputs
    (also through a symlink or a hard link)."""
    srcs = [Path(src) for src in srcs]
    outputs = [folder / (src.stem + suffix) for src in srcs]
    shared = _shared(list(map(str, srcs)), outputs)
    if shared:
        raise UsageError(
            f"{len(shared)} output(s) would each be written from more than one input, so only one of them could be "
            "kept; nothing was converted. Give each its own name (rename one, or convert it on its own with -o):\n"
            + _listing(shared)
        )
    inputs: dict[tuple[int, int], Path] = {}
    for src in srcs:
        with contextlib.suppress(OSError):
            inputs.setdefault(_identity(os.stat(src)), src)
    bad = []
    for src, out in zip(srcs, outputs, strict=True):
        try:
            hit = inputs.get(_identity(os.stat(out)))
        except OSError:
            continue
        if hit is not None:
            bad.append(f"  {out}  (from {src})  is the input {hit}")
    if bad:
        raise UsageError(
            f"{len(bad)} output(s) would be written onto an input, destroying it; nothing was converted; "
            "choose another folder:\n" + "\n".join(_capped(bad))
        )
    return tuple(Job(index, src, out) for index, (src, out) in enumerate(zip(srcs, outputs, strict=True)))


def _check_collisions(inputs: list[tuple[str, Path]], outputs: list[Path], src: Path) -> None:
    """Two inputs with one output: refuse, naming every group and how to resolve it."""
    shared = _shared([rel for rel, _ in inputs], outputs)
    if not shared:
        return
    example = shared[0][1][-1]
    raise UsageError(
        f"{len(shared)} output(s) would each be written from more than one file of {src}, so only one of them could "
        f"be kept; nothing was converted. Rename all but one file of each group, or leave them out with --exclude "
        f"(e.g. --exclude '{example}'):\n" + _listing(shared)
    )


def _shared(names: list[str], outputs: list[Path]) -> list[tuple[Path, list[str]]]:
    """The outputs written from more than one input, each with the names of those inputs."""
    groups: dict[Path, list[str]] = {}
    for name, out in zip(names, outputs, strict=True):
        groups.setdefault(out, []).append(name)
    return [(out, group) for out, group in groups.items() if len(group) > 1]


def _listing(shared: list[tuple[Path, list[str]]]) -> str:
    return "\n".join(_capped([f"  {out}  <-  {', '.join(names)}" for out, names in shared]))


def _capped(lines: list[str]) -> list[str]:
    return lines[:_LISTED] + ([f"  ... and {len(lines) - _LISTED} more"] if len(lines) > _LISTED else [])


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _check_outputs(inputs: list[tuple[str, Path]], outputs: list[Path], src_real: Path, dst_real: Path) -> None:
    """No output may land on an input, or inside SRC (through a symlinked folder in DST): refuse, naming them."""
    read = {Path(os.path.realpath(path)) for _, path in inputs}
    bad = []
    for out in outputs:
        where = Path(os.path.realpath(out.parent)) / out.name
        if where in read or (_is_inside(where, src_real) and not _is_inside(where, dst_real)):
            bad.append(f"  {out}  ->  {where}")
    if bad:
        raise UsageError(
            f"{len(bad)} output(s) would be written inside SRC (through a symlinked folder of DST), "
            "onto or among the inputs; nothing was converted:\n" + "\n".join(_capped(bad))
        )


def _nothing_found(
    src: Path,
    settings: Settings,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    ignored: int,
    left_out: list[LeftOut],
    image_suffixes: frozenset[str],
) -> str:
    if settings.encode:
        what = "no image found"
        looked = (
            "files ending in " + " ".join(sorted(image_suffixes))
            if not include
            else "files matching --include " + " ".join(include)
        )
    else:
        what, looked = "no .lcf file found", "files ending in .lcf"
    notes = [f"looked for {looked}"]
    if exclude:
        notes.append("--exclude " + " ".join(exclude))
    if ignored:
        notes.append(f"{ignored} file(s) of other types ignored")
    if left_out:
        notes.append(
            f"{len(left_out)} entr{'y' if len(left_out) == 1 else 'ies'} left out, e.g. "
            f"{left_out[0].path}: {left_out[0].reason}"
        )
    hint = "; --include GLOB selects files whatever their extension" if settings.encode and not include else ""
    return f"{what} in {src} ({'; '.join(notes)}){hint}"


def _walk(
    root: Path, prune: Path | None, exclude: tuple[str, ...], errors: list[OSError]
) -> Iterator[tuple[str, Path, bool]]:
    """(path relative to ``root`` with "/", path, is a symlinked folder) of every entry below ``root`` that is not a
    folder; symlinked folders are listed, never entered; ``prune`` (DST) and lcf's temporary files are left out."""
    for folder, dirs, files in os.walk(root, onerror=errors.append):
        base = Path(folder)
        rel_base = base.relative_to(root).as_posix()
        prefix = "" if rel_base == "." else rel_base + "/"
        kept = []
        for d in sorted(dirs):
            if _matches(prefix + d, exclude):
                continue
            if (base / d).is_symlink():
                yield prefix + d, base / d, True
            elif prune is None or Path(os.path.realpath(base / d)) != prune:
                kept.append(d)
        dirs[:] = kept
        for name in sorted(files):
            if not is_temp_name(name):
                yield prefix + name, base / name, False


def _patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(patterns, str):
        patterns = (patterns,)
    return tuple(p.removeprefix("./") for p in patterns if p)


def _matches(rel: str, patterns: tuple[str, ...]) -> bool:
    """fnmatch on the relative path ("*" also matches "/"); a pattern without "/" also matches the bare name."""
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatchcase(rel, p) or ("/" not in p and fnmatchcase(name, p)) for p in patterns)


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _readable_suffixes() -> frozenset[str]:
    from PIL import Image

    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN) - {LCF_SUFFIX}


def writable_formats() -> dict[str, str]:
    """Suffix (".png") -> Pillow format name ("PNG") of every image format lcf writes (never .lcf)."""
    from PIL import Image

    return {
        ext: fmt
        for ext, fmt in Image.registered_extensions().items()
        if fmt in Image.SAVE and ext != LCF_SUFFIX and _FORMAT.fullmatch(ext[1:])
    }


__all__ = [
    "LCF_SUFFIX",
    "Job",
    "LeftOut",
    "Plan",
    "Settings",
    "check_folders",
    "make_plan",
    "plan_files",
    "settings_for",
    "writable_formats",
]
