"""Checkpoints in pieces: a ``checkpoint.pt`` cut into parts under a size limit, and joined back.

The lent GPU machine returns files of at most 16 MiB (``/work/.library/device``), and a training checkpoint with its
optimiser state is ~60 MB, so every GPU call packs its run's checkpoint into ``checkpoint.part00``, ``.part01``, ...
plus ``checkpoint.parts.json`` (part names and sizes, SHA-256 of the whole), and ``unpack`` rebuilds the file,
refusing a missing, short or altered part.

    python -m lcf.train pack --run runs/gpu --out $OUT/teacher
    python -m lcf.train unpack --parts /work/.device/.../teacher --run runs/gpu
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

PART_BYTES = 16_000_000  # the device returns files of at most 16 MiB (16,777,216 bytes)
INDEX = "checkpoint.parts.json"


def pack(checkpoint: str | os.PathLike, out: str | os.PathLike, part_bytes: int = PART_BYTES,
         model_only: bool = False) -> list[Path]:
    """Write ``checkpoint`` as parts of at most ``part_bytes`` into folder ``out``; returns the files written.
    ``model_only`` drops the optimiser and data-sampler state (a third of the size; resuming restarts Adam)."""
    data = Path(checkpoint).read_bytes()
    if model_only:
        import io

        import torch

        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        for key in ("optimiser", "sampler"):
            ckpt.pop(key, None)
        buffer = io.BytesIO()
        torch.save(ckpt, buffer)
        data = buffer.getvalue()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i, start in enumerate(range(0, max(len(data), 1), part_bytes)):
        name = f"checkpoint.part{i:02d}"
        (out / name).write_bytes(data[start : start + part_bytes])
        names.append(name)
    index = {"parts": names, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (out / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return [out / n for n in names] + [out / INDEX]


def unpack(parts: str | os.PathLike, checkpoint: str | os.PathLike) -> Path:
    """Join the parts in folder ``parts`` into ``checkpoint`` (written atomically) after checking size and hash."""
    parts = Path(parts)
    try:
        index = json.loads((parts / INDEX).read_text())
        data = b"".join((parts / name).read_bytes() for name in index["parts"])
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"cannot read the checkpoint parts in {parts}: {exc}") from None
    if len(data) != index["bytes"] or hashlib.sha256(data).hexdigest() != index["sha256"]:
        raise SystemExit(f"the checkpoint parts in {parts} do not join to the packed file (size or SHA-256 differ)")
    checkpoint = Path(checkpoint)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint.with_suffix(checkpoint.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, checkpoint)
    return checkpoint
