"""Export a trained model to a shipped weights folder (``lcf/weights.py`` describes the layout), or only a
fine-tuned encoder into a copy of one (:func:`export_encoder`: the model id and the decoders stay).

Besides the float network tensors (g_a, h_a, the gains, the decoders) this computes, once, what the entropy side
needs as integers: the integer layers of h_s, ctx, PEN1 and PEN2 (``lcf.nn.integer.integer_arrays``), the per-family
PMF tables ``tables.family.*`` (``lcf.entropy.build_family_tables``) and ``tables.z.*`` (the factorized density of z,
integrated over each integer in [-Z_BOUND, Z_BOUND], with the tail mass as escape). This is the only place where
those floats are evaluated; encoders and decoders only read the stored integers.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save as save_tensors_bytes

from lcf.entropy import build_family_tables, build_z_tables
from lcf.errors import LcfError, TrainError
from lcf.fileio import atomic_output, atomic_write, io_error
from lcf.nn import LcfModel, ModelConfig
from lcf.nn.integer import integer_arrays
from lcf.train.checkpoint import load_checkpoint
from lcf.train.distill import attach_students, is_distill_checkpoint
from lcf.train.lease_files import round_to_storage
from lcf.train.loop import model_from_folder
from lcf.weights import (
    ENCODER_FILE,
    ENCODER_PREFIXES,
    MANIFEST,
    Weights,
    load_weights,
    save_weights,
)

Z_BOUND = 32
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}


def z_tables(model: LcfModel) -> dict[str, np.ndarray]:
    pmf = model.z_density.pmf(Z_BOUND).to(torch.float64).cpu().numpy()
    tail = np.clip(1.0 - pmf.sum(axis=1), 0.0, 1.0)
    return build_z_tables(pmf, tail)


def export_model(
    model: LcfModel,
    out: str | os.PathLike,
    *,
    info: dict | None = None,
    tables: dict[str, np.ndarray] | None = None,
    dtype: str = "float32",
) -> Weights:
    """Write ``model`` as a weights folder at ``out``; returns it loaded back. The integer entropy networks are
    quantized from the model as it is; ``dtype`` (float32 or float16) is how the float tensors are stored (the model
    is rounded to it, in place, before the z tables are computed from it). ``tables``: the ``tables.*`` arrays to
    ship instead of computing them (an existing folder's, when re-exporting)."""
    integer = integer_arrays(model)
    round_to_storage(model, dtype)
    store = STORAGE_DTYPES[dtype]
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous().numpy().astype(store, copy=False)
        for k, v in model.state_dict().items()
    }
    encoder = {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIXES)}
    entropy = {k: v for k, v in state.items() if k.startswith("gain.")}
    entropy.update(integer)
    entropy.update(tables if tables is not None else {**build_family_tables(), **z_tables(model)})
    decoders = {}
    for name in model.decoders:
        prefix = f"decoders.{name}."
        tensors = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        decoders[name] = (model.decoder_archs[name], tensors)
    return save_weights(
        out,
        model_config=model.config,
        encoder=encoder,
        entropy=entropy,
        decoders=decoders,
        default_decoder="teacher",
        info={**(info or {}), "storage_dtype": dtype},
    )


def export_run(
    run: str | os.PathLike,
    out: str | os.PathLike,
    notes: str = "",
    students: Sequence[str | os.PathLike] = (),
    dtype: str = "float32",
) -> Weights:
    """Export the checkpoint of a training run (lcf.train.checkpoint) with the student decoders of the
    distillation runs ``students``. A distillation run as ``run`` exports its pinned teacher and its student."""
    ckpt = load_checkpoint(run)
    if is_distill_checkpoint(ckpt):
        students = [run, *students]
        meta = ckpt["teacher_meta"]
        ckpt = {
            "model": ckpt["teacher_model"],
            "model_config": ckpt["model_config"],
            "step": meta["step"],
            "train_config": meta["train_config"],
        }
    model = LcfModel(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    student_info = attach_students(model, [Path(s) for s in students])
    model.eval()
    info = {"steps": ckpt["step"], "train_config": ckpt["train_config"], "notes": notes}
    if student_info:
        info["students"] = student_info
    weights = export_model(model, out, info=info, dtype=dtype)
    print(f"exported step {ckpt['step']} to {out} ({dtype}): model id {weights.model_id.hex()}")
    return weights


def reexport(root: str | os.PathLike, out: str | os.PathLike, dtype: str = "float32") -> Weights:
    """Write the weights folder ``root`` again at ``out`` in this lcf's layout (integer entropy networks), keeping its
    tables, decoders and info. The model id changes with the entropy networks: files of the old folder do not decode
    with the new one."""
    model, old = model_from_folder(Path(root))
    info = {k: v for k, v in old.manifest.info.items() if k != "storage_dtype"}
    info["reexported_from"] = old.model_id.hex()
    tables = {k: v for k, v in old.entropy.items() if k.startswith("tables.")}
    weights = export_model(model, out, info=info, tables=tables, dtype=dtype)
    print(f"re-exported {root} (model {old.model_id.hex()}) to {out} ({dtype}): model id {weights.model_id.hex()}")
    return weights


def export_encoder(run: str | os.PathLike, root: str | os.PathLike, out: str | os.PathLike, notes: str = "") -> Weights:
    """A copy of the weights folder ``root`` at ``out`` whose encoder (g_a, h_a) comes from the checkpoint of
    ``run``, an encoder-only fine-tuning run (``fit --train-only g_a,h_a``) started from those weights: every other
    file is copied byte for byte, so the model id and the decoders stay the same and every file made with ``root``
    still decodes. Refuses a run whose other networks (gains, teacher decoder) are not ``root``'s, as stored."""
    root, out = Path(root), Path(out)
    try:
        weights = load_weights(root)
    except LcfError as exc:
        raise TrainError(f"--weights {root}: {exc}") from None
    if out.exists() and (out.resolve() == root.resolve() or any(out.iterdir())):
        raise TrainError(f"--out {out} must be a new or empty folder (not the weights folder itself)")
    ckpt = load_checkpoint(run)
    if ckpt.get("model_config") != weights.manifest.model_config.to_dict():
        raise TrainError(
            f"{run} trains a {ckpt.get('model_config')} model, {root} holds {weights.manifest.model_config.to_dict()}"
        )
    dtype = weights.manifest.info.get("storage_dtype", "float32")
    store = STORAGE_DTYPES[dtype]
    state = {k: v.detach().to(torch.float32).numpy() for k, v in ckpt["model"].items()}
    shipped = {
        **{k: v for k, v in weights.entropy.items() if k.startswith("gain.")},
        **{f"decoders.teacher.{k}": v for k, v in weights.decoder("teacher").items()},
    }
    for key, value in shipped.items():
        if key not in state or not np.array_equal(state[key].astype(store), value):
            raise TrainError(
                f"{run} was not started from {root}: its {key} differs from the shipped one (an "
                f"encoder-only run keeps every network but g_a and h_a as it found them)"
            )
    encoder = {k: state[k].astype(store) for k in weights.encoder()}
    out.mkdir(parents=True, exist_ok=True)
    for path in root.iterdir():
        if path.is_file() and path.name not in (ENCODER_FILE, MANIFEST):
            _copy(path, out / path.name)
    atomic_write(out / ENCODER_FILE, save_tensors_bytes(encoder))
    encoder_info = {
        "run": str(run),
        "steps": int(ckpt["step"]),
        "train_only": ckpt["train_config"].get("train_only", ""),
        "notes": notes,
    }
    manifest = dataclasses.replace(weights.manifest, info={**weights.manifest.info, "encoder": encoder_info})
    atomic_write(out / MANIFEST, manifest.dumps().encode())  # last: the folder is complete when it has one
    result = load_weights(out)
    print(
        f"encoder of {run} (step {ckpt['step']}) with the rest of {root} in {out}: model id "
        f"{result.model_id.hex()} (unchanged)"
    )
    return result


def _copy(src: Path, dst: Path) -> None:
    """``src`` to ``dst`` byte for byte (with its times, as shutil.copy2), through lcf.fileio's atomic write."""
    try:
        f = open(src, "rb")  # noqa: SIM115  (closed below; only its errors are about src)
    except OSError as exc:
        raise io_error(exc, src) from None
    with f, atomic_output(dst) as g:
        shutil.copyfileobj(f, g)
    try:
        shutil.copystat(src, dst)
    except OSError as exc:
        raise io_error(exc, dst) from None
