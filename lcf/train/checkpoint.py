"""Training checkpoints as safetensors plus JSON: never pickle, so a checkpoint handed to lcf cannot run code.

A run folder's checkpoint is two files, written in this order, each atomically::

    checkpoint.safetensors   every tensor of the checkpoint (weights, Adam's moments, RNG states), by path:
                             "model.g_a.0.weight", "optimiser.state.3.exp_avg", "torch_rng", ...
    checkpoint.json          everything else (steps, configs, the data sampler's state, optimiser settings), with
                             {"__tensor__": path} where a tensor was and the SHA-256 of the tensor file

The JSON file is written last: a checkpoint is complete when it exists and the tensor file has its hash. Each file
is written with lcf.fileio's atomic write (a claimed temporary file, renamed into place). Nested
values are dicts (string or integer keys), lists, strings, numbers, booleans, None and tensors; tuples come back as
lists. Loading reads the tensors with safetensors and the rest with a strict JSON parser. A ``checkpoint.pt`` of an
older lcf (a pickle) is refused with the way out, never unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors_bytes
from safetensors.torch import save as save_tensors_bytes
from torch import Tensor

from lcf.errors import TrainError
from lcf.fileio import atomic_write

TENSORS = "checkpoint.safetensors"
DESCRIPTION = "checkpoint.json"
LEGACY = "checkpoint.pt"
FORMAT = "lcf-checkpoint"
MAX_JSON_BYTES = 64 << 20


def _flatten(value: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, Tensor):
        tensors[path] = value.detach().to("cpu").clone()  # no two entries may share memory in safetensors
        return {"__tensor__": path}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            if "__tensor__" in value or "__intkeys__" in value:
                raise ValueError(f"{path}: a key named __tensor__ or __intkeys__ cannot be stored")
            return {k: _flatten(v, f"{path}.{k}" if path else k, tensors) for k, v in value.items()}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in value):
            return {"__intkeys__": {str(k): _flatten(v, f"{path}.{k}", tensors) for k, v in value.items()}}
        raise ValueError(f"{path}: dict keys must be all strings or all integers")
    if isinstance(value, (list, tuple)):
        return [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value} cannot be stored in JSON")
        return value
    raise ValueError(f"{path}: a {type(value).__name__} cannot be stored in a checkpoint")


def _unflatten(value: Any, tensors: dict[str, Tensor], where: Path) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            key = value["__tensor__"]
            if not isinstance(key, str) or key not in tensors:
                raise TrainError(f"{where} names a tensor {str(key)[:80]!r} that {TENSORS} does not hold")
            return tensors[key]
        if set(value) == {"__intkeys__"} and isinstance(value["__intkeys__"], dict):
            try:
                return {int(k): _unflatten(v, tensors, where) for k, v in value["__intkeys__"].items()}
            except ValueError:
                raise TrainError(f"{where} holds a non-integer key where integers belong") from None
        return {k: _unflatten(v, tensors, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors, where) for v in value]
    return value


def encode(checkpoint: dict) -> tuple[bytes, bytes]:
    """The two files' bytes (tensors, JSON) of ``checkpoint``."""
    tensors: dict[str, Tensor] = {}
    try:
        body = _flatten(checkpoint, "", tensors)
    except ValueError as exc:
        raise TrainError(f"cannot store the checkpoint: {exc}") from None
    data = save_tensors_bytes(tensors) if tensors else save_tensors_bytes({"__empty__": torch.zeros(0)})
    text = (
        json.dumps(
            {"format": FORMAT, "version": 1, "tensors_sha256": hashlib.sha256(data).hexdigest(), "body": body}, indent=1
        )
        + "\n"
    )
    return data, text.encode()


def save_checkpoint(run: str | os.PathLike, checkpoint: dict) -> Path:
    """Write ``checkpoint`` into folder ``run`` (created if needed); returns the JSON file's path."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    data, text = encode(checkpoint)
    atomic_write(run / TENSORS, data)
    atomic_write(run / DESCRIPTION, text)
    return run / DESCRIPTION


def exists(run: str | os.PathLike) -> bool:
    """Whether folder ``run`` holds a checkpoint to resume. TrainError when it holds only an older lcf's
    ``checkpoint.pt``: a run must not start over silently beside it."""
    run = Path(run)
    if (run / DESCRIPTION).is_file():
        return True
    if (run / LEGACY).exists():
        raise TrainError(_legacy(run))
    return False


def _legacy(run: Path) -> str:
    return (
        f"{run / LEGACY} is a pickle checkpoint of an older lcf; this lcf does not unpickle files (a pickle can "
        f"run code). Start a new run (another --run folder) from exported weights (--init-weights), or read it "
        f"with the lcf that wrote it"
    )


def _strict(text: bytes, where: Path) -> Any:
    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text.decode("utf-8"), parse_constant=no_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise TrainError(f"{where} is not valid JSON: {str(exc)[:200]}") from None


def decode(data: bytes, text: bytes, where: Path, device: torch.device | str = "cpu") -> dict:
    """The checkpoint of the two files' bytes; TrainError for anything that is not one of lcf's."""
    doc = _strict(text, where)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1:
        raise TrainError(f"{where} is not an lcf checkpoint (format {FORMAT!r} version 1)")
    if doc.get("tensors_sha256") != hashlib.sha256(data).hexdigest():
        raise TrainError(
            f"{where.parent / TENSORS} does not belong to {where} (its SHA-256 differs): a checkpoint "
            f"written half, or files mixed up"
        )
    try:
        tensors = load_tensors_bytes(data)
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own error types for damaged data)
        raise TrainError(f"{where.parent / TENSORS} is damaged: {str(exc)[:200]}") from None
    tensors = {k: v.to(device) for k, v in tensors.items()}
    body = _unflatten(doc.get("body"), tensors, where)
    if not isinstance(body, dict):
        raise TrainError(f"{where} holds no checkpoint")
    return body


def load_checkpoint(run: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """The checkpoint in folder ``run``; TrainError when there is none, it is damaged, or it is an older lcf's
    pickle (``checkpoint.pt``, refused unread)."""
    run = Path(run)
    if not exists(run):
        raise TrainError(f"no checkpoint in {run} ({DESCRIPTION} missing)")
    where = run / DESCRIPTION
    try:
        text = where.read_bytes() if where.stat().st_size <= MAX_JSON_BYTES else None
        data = (run / TENSORS).read_bytes()
    except OSError as exc:
        raise TrainError(f"cannot read the checkpoint in {run}: {exc}") from None
    if text is None:
        raise TrainError(f"{where} is larger than any checkpoint description ({MAX_JSON_BYTES:,} bytes)")
    return decode(data, text, where, device)
