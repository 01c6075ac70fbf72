"""Checkpoints in pieces: a run's checkpoint cut into parts under a size limit, and joined back.

A lent GPU machine returns files of at most 16 MiB (``/work/.library/device``), and a training checkpoint with its
optimiser state is ~60 MB, so ``pack`` cuts the run's ``checkpoint.safetensors`` (lcf.train.checkpoint) into
``checkpoint.part00``, ``.part01``, ... beside a copy of its ``checkpoint.json`` and ``checkpoint.parts.json`` (part
names and sizes, SHA-256 of the whole); ``unpack`` rebuilds the run's checkpoint, refusing a missing, short or altered
part. (The lease, ``python -m lcf.train lease``, needs none of this: it returns model-only weights.)

    python -m lcf.train pack --run runs/gpu --out $OUT/teacher [--model-only]
    python -m lcf.train unpack --parts /work/.device/.../teacher --run runs/gpu
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lcf.errors import TrainError
from lcf.fileio import atomic_write
from lcf.train import checkpoint

PART_BYTES = 16_000_000  # the device returns files of at most 16 MiB (16,777,216 bytes)
INDEX = "checkpoint.parts.json"


def pack(
    run: str | os.PathLike, out: str | os.PathLike, part_bytes: int = PART_BYTES, model_only: bool = False
) -> list[Path]:
    """Write the checkpoint of folder ``run`` as parts of at most ``part_bytes`` into folder ``out``; returns the files
    written. ``model_only`` drops the optimiser and data-sampler state (a third of the size; resuming restarts Adam)."""
    run = Path(run)
    if not checkpoint.exists(run):
        raise TrainError(f"no checkpoint in {run} to pack")
    data = (run / checkpoint.TENSORS).read_bytes()
    text = (run / checkpoint.DESCRIPTION).read_bytes()
    if model_only:
        ckpt = checkpoint.decode(data, text, run / checkpoint.DESCRIPTION)
        for key in ("optimiser", "sampler"):
            ckpt.pop(key, None)
        data, text = checkpoint.encode(ckpt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i, start in enumerate(range(0, max(len(data), 1), part_bytes)):
        name = f"checkpoint.part{i:02d}"
        atomic_write(out / name, data[start : start + part_bytes])
        names.append(name)
    atomic_write(out / checkpoint.DESCRIPTION, text)
    index = {"parts": names, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write(out / INDEX, (json.dumps(index, indent=1) + "\n").encode())
    return [out / n for n in names] + [out / checkpoint.DESCRIPTION, out / INDEX]


def unpack(parts: str | os.PathLike, run: str | os.PathLike) -> Path:
    """Join the parts in folder ``parts`` into the checkpoint of folder ``run`` after checking size and hash (and
    that the result is a checkpoint); returns the folder."""
    parts, run = Path(parts), Path(run)
    try:
        index = json.loads((parts / INDEX).read_text())
        data = b"".join(
            (parts / str(name)).read_bytes()
            for name in index["parts"]
            if "/" not in str(name) and "\\" not in str(name)
        )
        text = (parts / checkpoint.DESCRIPTION).read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainError(f"cannot read the checkpoint parts in {parts}: {exc}") from None
    if len(data) != index.get("bytes") or hashlib.sha256(data).hexdigest() != index.get("sha256"):
        raise TrainError(f"the checkpoint parts in {parts} do not join to the packed file (size or SHA-256 differ)")
    checkpoint.decode(data, text, parts / checkpoint.DESCRIPTION)  # refuse what is not a checkpoint before writing
    run.mkdir(parents=True, exist_ok=True)
    for name, content in ((checkpoint.TENSORS, data), (checkpoint.DESCRIPTION, text)):
        atomic_write(run / name, content)
    return run
