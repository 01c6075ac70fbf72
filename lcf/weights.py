"""Shipped weights: safetensors files + ``manifest.json``, the model identifier, and the named decoders.

A weights folder holds::

    manifest.json                  what is here: model config, files, model identifier, decoders
    encoder.safetensors            g_a, h_a                      (needed to encode only)
    entropy.safetensors            gain, h_s, ctx, pen_anchor, pen_nonanchor, and the integer tables
                                   ``tables.family.*`` / ``tables.z.*`` of the entropy layer
    decoder-<name>.safetensors     one synthesis transform g_s each ("teacher", students ...)

The **model identifier** is the first 16 bytes of SHA-256 over every tensor of ``entropy.safetensors`` in sorted key
order (key as UTF-8, dtype name, shape, raw little-endian bytes, each length-prefixed). It is written into every file
header, so a file never decodes silently with other weights. Decoders are not part of it: any decoder decodes any file
of the same model. Loading uses safetensors only (never pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from lcf.errors import FormatError, LcfIOError, ModelMismatchError

MANIFEST = "manifest.json"
ENCODER_FILE = "encoder.safetensors"
ENTROPY_FILE = "entropy.safetensors"
ENCODER_PREFIXES = ("g_a.", "h_a.")
ENTROPY_PREFIXES = ("gain.", "h_s.", "ctx.", "pen_anchor.", "pen_nonanchor.", "tables.")
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"


def model_id_of(tensors: dict[str, np.ndarray]) -> bytes:
    """First 16 bytes of SHA-256 over the entropy-model tensors (see module docstring)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        for part in (key.encode(), str(arr.dtype).encode(), struct.pack(f"<{arr.ndim}Q", *arr.shape), arr.tobytes()):
            h.update(struct.pack("<Q", len(part)))
            h.update(part)
    return h.digest()[:16]


@dataclass
class Weights:
    """A loaded weights folder. Tensors are numpy arrays; ``lcf.codec`` turns them into torch modules."""

    root: Path
    manifest: dict
    entropy: dict[str, np.ndarray]
    model_id: bytes
    _encoder: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _decoders: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def model_config(self) -> dict:
        return self.manifest["model_config"]

    @property
    def decoder_names(self) -> list[str]:
        return list(self.manifest["decoders"])

    @property
    def default_decoder(self) -> str:
        return self.manifest.get("default_decoder", "teacher")

    def decoder_info(self, name: str) -> dict:
        self._check_decoder(name)
        return self.manifest["decoders"][name]

    def encoder(self) -> dict[str, np.ndarray]:
        if self._encoder is None:
            self._encoder = _load(self.root / self.manifest["files"]["encoder"])
        return self._encoder

    def encoder_id(self) -> bytes:
        """The encoder's identifier, hashed like the model id over ``encoder.safetensors``: it tells apart two
        encoders of one model (an encoder fine-tuned alone keeps the model id), e.g. for benchmark rows."""
        return model_id_of(self.encoder())

    def decoder(self, name: str) -> dict[str, np.ndarray]:
        self._check_decoder(name)
        if name not in self._decoders:
            self._decoders[name] = _load(self.root / self.manifest["decoders"][name]["file"])
        return self._decoders[name]

    def _check_decoder(self, name: str) -> None:
        if name not in self.manifest["decoders"]:
            raise ModelMismatchError(
                f"these weights have no decoder named {name!r}; available: {', '.join(self.decoder_names)}"
            )


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        return load_file(str(path))
    except FileNotFoundError as exc:
        raise LcfIOError(f"weights file {path} is missing") from exc
    except OSError as exc:
        raise LcfIOError(f"cannot read weights file {path}: {exc}") from exc
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise FormatError(f"weights file {path} is damaged: {exc}") from exc


def load_weights(root: str | os.PathLike | None = None) -> Weights:
    """Load ``manifest.json`` and the entropy model of a weights folder (default: the shipped ``weights/``)."""
    root = Path(root) if root is not None else Path(os.environ.get("LCF_WEIGHTS", DEFAULT_WEIGHTS))
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as exc:
        raise LcfIOError(
            f"no weights at {root} ({MANIFEST} missing); pass --weights DIR or set LCF_WEIGHTS"
        ) from exc
    except (OSError, ValueError) as exc:
        raise FormatError(f"cannot read {manifest_path}: {exc}") from exc
    if manifest.get("format") != "lcf-weights" or manifest.get("version") != 1:
        raise FormatError(f"{manifest_path} is not an lcf weights manifest of version 1")
    entropy = _load(root / manifest["files"]["entropy"])
    model_id = model_id_of(entropy)
    if model_id.hex() != manifest["model_id"]:
        raise ModelMismatchError(
            f"{root / manifest['files']['entropy']} does not match its manifest (model id {model_id.hex()} != "
            f"{manifest['model_id']}): the weights folder is damaged or mixed up"
        )
    return Weights(root=root, manifest=manifest, entropy=entropy, model_id=model_id)


def save_weights(
    root: str | os.PathLike,
    *,
    model_config: dict,
    encoder: dict[str, np.ndarray],
    entropy: dict[str, np.ndarray],
    decoders: dict[str, tuple[dict, dict[str, np.ndarray]]],
    default_decoder: str = "teacher",
    info: dict | None = None,
) -> Weights:
    """Write a weights folder. ``decoders`` maps a name to (its architecture config, its tensors)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    save_file(encoder, str(root / ENCODER_FILE))
    save_file(entropy, str(root / ENTROPY_FILE))
    dec_manifest = {}
    for name, (arch, tensors) in decoders.items():
        fname = f"decoder-{name}.safetensors"
        save_file(tensors, str(root / fname))
        dec_manifest[name] = {
            "file": fname,
            "arch": arch,
            "parameters": int(sum(t.size for t in tensors.values())),
            "bytes": (root / fname).stat().st_size,
        }
    manifest = {
        "format": "lcf-weights",
        "version": 1,
        "model_config": model_config,
        "model_id": model_id_of(entropy).hex(),
        "files": {"encoder": ENCODER_FILE, "entropy": ENTROPY_FILE},
        "decoders": dec_manifest,
        "default_decoder": default_decoder,
        "info": info or {},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return load_weights(root)
