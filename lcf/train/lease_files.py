"""What a lease reads and writes: model-only weights as safetensors with a JSON description, and where it starts.

A lease's output folder (``python -m lcf.train lease --out DIR``) holds at most :data:`MAX_FILES` files, each under
:data:`FILE_LIMIT` bytes (the device returns at most 8 files of 16 MiB)::

    raw.safetensors        the teacher as Adam left it: every network of LcfModel, the z density included
    ema.safetensors        the exponential moving average of the same weights
    students.safetensors   the student decoders distilled from the shipped teacher (``<name>.<key>``)
    lease.log              what the run printed
    summary.json           steps, crops/s, losses per level, shards used, graph or eager, precision, which of raw and
                           EMA ships (``shipped``), the history of earlier leases

Each safetensors file carries its description (model config, step, storage dtype, decoder archs) as JSON in the
``lcf`` entry of its metadata: no pickle anywhere, so a crafted file cannot run code. A later lease starts from such a
folder (the shipped teacher and its students) or from a weights folder (``manifest.json``: the float32 model of the
folder; its z density from ``z_density.safetensors`` when the folder ships it, else fitted to the folder's integer
z tables), never from optimiser state: each call starts Adam afresh.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors_bytes
from torch import Tensor, nn

from lcf.errors import LcfError, TrainError
from lcf.fileio import atomic_write
from lcf.loader import load_model
from lcf.manifest import DecoderArch
from lcf.nn import LcfModel, ModelConfig
from lcf.nn.hyper import FactorizedDensity
from lcf.nn.students import build_decoder
from lcf.weights import load_weights

RAW, EMA, STUDENTS, LOG, SUMMARY = (
    "raw.safetensors",
    "ema.safetensors",
    "students.safetensors",
    "lease.log",
    "summary.json",
)
OUTPUTS = (RAW, EMA, STUDENTS, LOG, SUMMARY)
MAX_FILES = 6
FILE_LIMIT = 16_000_000  # bytes; the device returns files of at most 16 MiB (16,777,216)
Z_DENSITY_FILE = "z_density.safetensors"  # beside a weights folder's files: the float z density, for training
FORMAT = "lcf-lease"
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
MAX_READ_BYTES = 1 << 30


def _strict_json(text: str, what: str) -> Any:
    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        raise TrainError(f"{what} does not hold valid JSON: {exc}") from None


def write_json(path: Path, value: Any) -> None:
    """JSON (NaN written as null) to ``path``, atomically (lcf.fileio.atomic_write)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    atomic_write(path, (json.dumps(clean(value), indent=1) + "\n").encode())


def round_to_storage(model: nn.Module, dtype: str) -> None:
    """Round every floating-point tensor of ``model`` in place to what ``dtype`` can store (a no-op for float32), so
    that what is computed from the model afterwards (tables, students) matches what a reader loads. TrainError for
    values that overflow the storage type."""
    if dtype not in STORE_DTYPES:
        raise TrainError(f"the storage dtype (--dtype) must be one of {', '.join(STORE_DTYPES)}, got {dtype!r}")
    if dtype == "float32":
        return
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            rounded = value.to(STORE_DTYPES[dtype])
            if not bool(torch.isfinite(rounded).all()):
                raise TrainError(
                    f"{key} does not fit in {dtype} (largest |value| {float(value.abs().max()):.4g}); store as float32"
                )
            value.copy_(rounded.to(value.dtype))


def stored_bytes(tensors: dict[str, Tensor], dtype: str) -> int:
    """About what a safetensors file of ``tensors`` takes with floats stored as ``dtype`` (data plus header)."""
    size = STORE_DTYPES[dtype].itemsize
    data = sum(t.numel() * (size if t.is_floating_point() else t.element_size()) for t in tensors.values())
    return data + 128 * len(tensors) + 4096


def save_tensors(path: Path, tensors: dict[str, Tensor], description: dict, dtype: str) -> int:
    """Write ``tensors`` (floats as ``dtype``) with ``description`` as JSON metadata, atomically (lcf.fileio); return
    the bytes. TrainError, writing nothing, when the file would reach :data:`FILE_LIMIT`."""
    store = STORE_DTYPES[dtype]
    data = {
        k: (v.detach().to("cpu", store) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in tensors.items()
    }
    content = save_tensors_bytes(data, metadata={"lcf": json.dumps({**description, "storage_dtype": dtype})})
    size = len(content)
    if size >= FILE_LIMIT:
        raise TrainError(
            f"{path.name} would take {size:,} bytes, more than a file the device returns "
            f"({FILE_LIMIT:,}); store the weights as float16 (--store-dtype float16)"
        )
    atomic_write(path, content)
    return size


def load_tensors(path: Path) -> tuple[dict[str, Tensor], dict]:
    """The float32 (floats) tensors of a file written by :func:`save_tensors`, and its description. TrainError for
    a missing, oversized or damaged file."""
    try:
        if path.stat().st_size > MAX_READ_BYTES:
            raise TrainError(f"{path} is larger than any lease file ({path.stat().st_size:,} bytes)")
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (a safe_open, not a dict)
    except FileNotFoundError:
        raise TrainError(f"{path} is missing") from None
    except TrainError:
        raise
    except Exception as exc:  # noqa: BLE001 (safetensors raises its own error types for damaged files)
        raise TrainError(f"{path} is not a readable safetensors file: {exc}") from None
    description = _strict_json(meta.get("lcf", "null"), f"the metadata of {path}")
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise TrainError(f"{path} is not a lease weights file (no '{FORMAT}' description)")
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, description


# -- teacher and students -----------------------------------------------------------------------------------------


def teacher_state(model: LcfModel) -> dict[str, Tensor]:
    """Every tensor of ``model`` but the decoders other than the teacher (those are the students')."""
    return {
        k: v
        for k, v in model.state_dict().items()
        if not k.startswith("decoders.") or k.startswith("decoders.teacher.")
    }


def save_teacher(path: Path, model: LcfModel, dtype: str, **description: Any) -> int:
    return save_tensors(
        path,
        teacher_state(model),
        {"format": FORMAT, "kind": "teacher", "model_config": model.config.to_dict(), **description},
        dtype,
    )


def load_teacher_file(path: Path) -> tuple[LcfModel, dict]:
    """The teacher of ``raw.safetensors`` or ``ema.safetensors`` (float32) and its description."""
    tensors, description = load_tensors(path)
    try:
        config = description.get("model_config")
        if not isinstance(config, dict):
            raise TrainError(f"{path} describes no model (no model_config)")
        model = LcfModel(ModelConfig.from_dict(config))
        model.load_state_dict(tensors)
    except (LcfError, RuntimeError, TypeError, AttributeError) as exc:
        raise TrainError(f"{path} does not hold the model it describes: {str(exc)[:300]}") from None
    return model, description


def save_students(
    path: Path, students: dict[str, tuple[DecoderArch, nn.Module]], dtype: str, **description: Any
) -> int:
    tensors = {f"{name}.{k}": v for name, (_, g_s) in students.items() for k, v in g_s.state_dict().items()}
    archs = {name: arch.to_dict() for name, (arch, _) in students.items()}
    return save_tensors(path, tensors, {"format": FORMAT, "kind": "students", "archs": archs, **description}, dtype)


def load_students(path: Path) -> tuple[dict[str, tuple[DecoderArch, nn.Sequential]], dict]:
    tensors, description = load_tensors(path)
    archs = description.get("archs")
    if not isinstance(archs, dict):
        raise TrainError(f"{path} names no student archs")
    out = {}
    for name, raw in archs.items():
        prefix = f"{name}."
        try:
            arch = DecoderArch.from_dict(raw)
            g_s = build_decoder(arch)
            g_s.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        except (LcfError, RuntimeError, TypeError) as exc:
            raise TrainError(f"{path}: student {name!r} does not match its arch: {str(exc)[:300]}") from None
        out[name] = (arch, g_s)
    return out, description


def save_z_density(folder: Path, model: LcfModel) -> None:
    """``z_density.safetensors`` beside a weights folder's files (float32): the next training starts from it."""
    tensors = {f"z_density.{k}": v.detach().cpu().float().contiguous() for k, v in model.z_density.state_dict().items()}
    meta = {"lcf": json.dumps({"format": FORMAT, "kind": "z_density"})}
    atomic_write(folder / Z_DENSITY_FILE, save_tensors_bytes(tensors, metadata=meta))


def load_z_density(folder: str | os.PathLike) -> dict[str, Tensor]:
    """The ``z_density.*`` tensors of a weights folder's ``z_density.safetensors`` (float32), {} when it has none."""
    path = Path(folder) / Z_DENSITY_FILE
    if not path.is_file():
        return {}
    tensors, _ = load_tensors(path)
    if not all(k.startswith("z_density.") for k in tensors):
        raise TrainError(f"{path} holds tensors other than the z density's")
    return tensors


def fit_z_density(density: FactorizedDensity, counts: np.ndarray, steps: int = 100, lr: float = 0.1) -> float:
    """Fit ``density`` (in place) to a weights folder's integer z tables ``counts`` (Mz, 2 Lz + 2: the values −Lz..Lz,
    then the escape): minimise the cross-entropy of the table's probabilities under the density. Returns the final
    excess over the table's own entropy, in bits per z element (0 = a perfect fit)."""
    device = next(density.parameters()).device
    p = torch.as_tensor(counts, dtype=torch.float64, device=device)
    p = (p / p.sum(dim=1, keepdim=True)).float()
    lz = (p.shape[1] - 2) // 2
    values = torch.arange(-lz, lz + 1, dtype=torch.float32, device=device).view(-1, 1, 1, 1)
    values = values.expand(-1, p.shape[0], 1, 1)
    entropy = -(p * torch.log2(p.clamp_min(1e-12))).sum(1).mean()

    def cross_entropy() -> Tensor:
        lik = density.likelihood(values).view(2 * lz + 1, -1).t()  # (Mz, 2 Lz + 1)
        tail = (1.0 - lik.sum(1, keepdim=True)).clamp_min(1e-9)
        return -(p * torch.log2(torch.cat([lik, tail], dim=1))).sum(1).mean()

    optimiser = torch.optim.Adam(density.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        cross_entropy().backward()
        optimiser.step()
    with torch.no_grad():
        return float(cross_entropy() - entropy)


@dataclass
class StartPoint:
    """Where a lease starts: the teacher (float32), the students it has, the steps trained before, and what it is."""

    model: LcfModel
    students: Mapping[str, tuple[DecoderArch, nn.Module]]
    steps: int
    source: str
    z_density: str
    history: list[dict] = field(default_factory=list)


def start_point(init: str, config: ModelConfig | None) -> StartPoint:
    """The start of a lease: ``init`` = a weights folder, an earlier lease's output folder, or "" (a new model of
    ``config``). TrainError for anything else."""
    if not init:
        if config is None:
            raise TrainError("a new model needs its widths (--N, --M, --Mz), or start from --init FOLDER")
        return StartPoint(LcfModel(config), {}, 0, "a new model", "new")
    root = Path(init)
    if (root / "manifest.json").is_file():
        return _from_weights(root, config)
    if (root / SUMMARY).is_file():
        return _from_lease(root, config)
    raise TrainError(f"--init {init}: neither a weights folder (manifest.json) nor a lease folder ({SUMMARY})")


def _check_config(model: LcfModel, config: ModelConfig | None, root: Path) -> None:
    if config is not None and model.config != config:
        c = model.config
        raise TrainError(
            f"--init {root} holds an N={c.N}, M={c.M}, Mz={c.Mz} model; leave out --N/--M/--Mz or pass those"
        )


def _from_weights(root: Path, config: ModelConfig | None) -> StartPoint:
    try:
        weights = load_weights(root)
        full = load_model(weights)  # every network of the folder (lcf.loader), the z density below
    except LcfError as exc:
        raise TrainError(f"--init {root}: {exc}") from None
    _check_config(full, config, root)
    model = LcfModel(full.config)
    model.load_state_dict(
        {
            k: v
            for k, v in full.state_dict().items()
            if not k.startswith("decoders.") or k.startswith("decoders.teacher.")
        }
    )
    if (root / Z_DENSITY_FILE).is_file():
        model.load_state_dict(load_z_density(root), strict=False)
        z_how = f"shipped ({Z_DENSITY_FILE})"
    else:
        excess = fit_z_density(model.z_density, weights.entropy["tables.z.pmf"])
        z_how = f"fitted to the folder's z tables ({excess:.4f} bit per element above their entropy)"
    students = {name: (full.decoder_archs[name], full.decoders[name]) for name in full.decoders if name != "teacher"}
    info = dict(weights.manifest.info)
    return StartPoint(
        model,
        students,
        int(info.get("steps", 0)),
        f"weights folder {root} (model {weights.model_id.hex()[:8]})",
        z_how,
        list(info.get("leases", [])),
    )


def _from_lease(root: Path, config: ModelConfig | None) -> StartPoint:
    summary = _strict_json((root / SUMMARY).read_text(), str(root / SUMMARY))
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise TrainError(f"{root / SUMMARY} is not a lease summary")
    shipped = summary.get("shipped")
    if shipped not in ("raw", "ema"):
        raise TrainError(f"{root / SUMMARY} names no shipped teacher (raw or ema): the lease did not finish")
    model, description = load_teacher_file(root / (RAW if shipped == "raw" else EMA))
    _check_config(model, config, root)
    students = load_students(root / STUDENTS)[0] if (root / STUDENTS).is_file() else {}
    history = list(summary.get("history", []))
    return StartPoint(
        model, students, int(description.get("total_steps", 0)), f"lease folder {root} ({shipped})", "lease", history
    )
