"""The weights manifest (``manifest.json``) as typed values, parsed and bounded in one place (standard library only).

A weights folder is untrusted input: every field is checked here, with the file and the field named in the error,
before anything is opened or allocated from it::

    manifest.json bytes ─ strict JSON ─ schema + bounds ─ Manifest
                                                           ├─ model_config: ModelConfig   (N, M, Mz, levels)
                                                           ├─ files: plain names inside the folder
                                                           └─ decoders: name -> DecoderEntry (file, DecoderArch)

The network (``lcf.nn``) receives :class:`ModelConfig` and :class:`DecoderArch`, never a dict. ``lcf.weights`` reads
the folder's files (regular files only, bounded, without blocking) and checks their tensors' shapes, read from the
safetensors headers, against the architecture declared here before anything is loaded. :meth:`Manifest.to_json`
writes back exactly the JSON that ``lcf.weights.save_weights`` has always written (spec/lcf.md, "Weights").

Bounds (what is sane for this codec: the shipped model is N=64, M=96, Mz=64; the paper's largest 192/320/192):
N, Mz <= MAX_WIDTH, M <= MAX_LATENT, 1..MAX_LEVELS quality levels, MAX_DECODERS decoders, a manifest of at most
MAX_MANIFEST_BYTES. With the widths bounded and every tensor's shape checked against them, no folder makes lcf
build a network larger than these bounds allow.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lcf.errors import FormatError, UsageError

MANIFEST = "manifest.json"
FORMAT = "lcf-weights"
VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20
MAX_WIDTH = 256  # N (g_a, g_s, h_a, h_s) and Mz (hyper latent z)
MAX_LATENT = 512  # M (latent y)
MAX_LEVELS = 16  # quality levels (lcf's models have 7, the header's quality range)
MAX_DECODERS = 64
MAX_KIND = 64  # characters of a decoder arch's kind label
MAX_COUNT = 1 << 53  # a decoder's informative parameter and byte counts
MAX_FILE_NAME = 255
MSE_LAMBDAS = (0.0016, 0.0032, 0.0075, 0.015, 0.03, 0.045, 0.06)
DECODER_NAME = re.compile(r"[A-Za-z0-9_-]{1,16}")  # as the header stores it (a subset of its rule)
ARCH_KEYS = ("kind", "N", "M", "attention", "residual")
_MODEL_KEYS = ("N", "M", "Mz", "levels")
_TOP_KEYS = ("format", "version", "model_config", "model_id", "files", "decoders", "default_decoder", "info")
_DECODER_KEYS = ("file", "arch", "parameters", "bytes")
_MODEL_ID = re.compile(r"[0-9a-f]{32}")


class _Invalid(Exception):
    """One field that breaks the schema; turned into UsageError (code) or FormatError (a manifest) by the caller."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _width(value: Any, name: str, hi: int) -> int:
    if not _is_int(value) or not 2 <= value <= hi or value % 2:
        raise _Invalid(name, f"must be an even integer from 2 to {hi}, got {_short(value)}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(name, f"must be true or false, got {_short(value)}")
    return value


def _count(value: Any, name: str) -> int:
    if not _is_int(value) or not 0 <= value <= MAX_COUNT:
        raise _Invalid(name, f"must be an integer from 0 to 2^53, got {_short(value)}")
    return value


def _object(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise _Invalid(name, f"must be a JSON object, got {_kind(value)}")
    return value


def _known(value: dict, name: str, keys: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise _Invalid(
            name, f"has unknown fields {unknown} (known: {', '.join(keys)}; a newer lcf may have written it)"
        )


def _required(value: dict, key: str, name: str) -> Any:
    if key not in value:
        raise _Invalid(f"{name}.{key}" if name else key, "is missing")
    return value[key]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def plain_file_name(value: Any, name: str = "file") -> str:
    """A file name inside the weights folder: no directory part, not '.' or '..', no NUL or control character, no
    ':' (a Windows drive), at most MAX_FILE_NAME characters. FormatError otherwise."""
    try:
        return _plain_file_name(value, name)
    except _Invalid as exc:
        raise FormatError(f"{exc.field} {exc.problem}") from None


def _plain_file_name(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(name, f"must be a file name (a string), got {_kind(value)}")
    if (
        not value
        or len(value) > MAX_FILE_NAME
        or value in (".", "..")
        or any(c in "/\\:" or ord(c) < 32 for c in value)
    ):
        raise _Invalid(
            name,
            f"must be a plain file name inside the weights folder (no '/', '\\', ':', '..' or "
            f"control characters, 1 to {MAX_FILE_NAME} characters), got {_short(value)}",
        )
    return value


# -- the architecture ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Channel widths: N (g_a/g_s/h_a/h_s), M (latent y), Mz (hyper latent z); one λ per quality level."""

    N: int = 128
    M: int = 192
    Mz: int = 128
    levels: tuple = field(default=MSE_LAMBDAS)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "levels", _levels(self.levels, "levels"))
            _width(self.N, "N", MAX_WIDTH)
            _width(self.M, "M", MAX_LATENT)
            _width(self.Mz, "Mz", MAX_WIDTH)
        except _Invalid as exc:
            raise UsageError(f"ModelConfig.{exc.field} {exc.problem}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """From its JSON form (``model_config`` of a manifest or a checkpoint); UsageError on anything else."""
        try:
            return _model_config(d, "")
        except _Invalid as exc:
            raise UsageError(f"ModelConfig{'.' + exc.field if exc.field else ''} {exc.problem}") from None


def _levels(value: Any, name: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_LEVELS:
        raise _Invalid(name, f"must be a list of 1 to {MAX_LEVELS} positive λ, got {_short(value)}")
    out = []
    for v in value:
        try:
            number = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
        except OverflowError:  # an integer beyond float (found by fuzz/fuzz_manifest.py)
            number = math.inf
        if not math.isfinite(number) or not number > 0:
            raise _Invalid(name, f"must hold positive finite numbers, got {_short(v)}")
        out.append(number)
    return tuple(out)


def _model_config(value: Any, name: str) -> ModelConfig:
    d = _object(value, name or "model_config")
    _known(d, name, _MODEL_KEYS)
    prefix = f"{name}." if name else ""
    levels = _levels(_required(d, "levels", name), f"{prefix}levels")
    widths = {"N": MAX_WIDTH, "M": MAX_LATENT, "Mz": MAX_WIDTH}
    sizes = {k: _width(_required(d, k, name), f"{prefix}{k}", hi) for k, hi in widths.items()}
    return ModelConfig(levels=levels, **sizes)


@dataclass(frozen=True)
class DecoderArch:
    """One synthesis transform g_s (``decoders.<name>.arch`` of the manifest; ``lcf.nn.students`` builds it).

    ``kind`` is only a label (the recipe that made it); N (width), M (latent channels), ``attention`` and
    ``residual`` (whether those modules are kept) fix the network."""

    kind: str
    N: int
    M: int
    attention: bool = True
    residual: bool = True

    def __post_init__(self) -> None:
        try:
            _arch_fields(self.kind, self.N, self.M, self.attention, self.residual, "")
        except _Invalid as exc:
            raise UsageError(f"decoder arch {exc.field} {exc.problem}") from None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ARCH_KEYS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DecoderArch:
        """From its JSON form; attention and residual default to true (manifests written before them). UsageError
        on unknown keys or bad values."""
        try:
            return _arch(d, "decoder arch")
        except _Invalid as exc:
            raise UsageError(f"{exc.field} {exc.problem}") from None

    def same_network(self, other: DecoderArch) -> bool:
        """True when both build the same network (``kind`` is only a label)."""
        return all(getattr(self, k) == getattr(other, k) for k in ARCH_KEYS[1:])


def _arch_fields(kind: Any, N: Any, M: Any, attention: Any, residual: Any, name: str) -> None:
    prefix = f"{name}." if name else ""
    if not isinstance(kind, str) or not 1 <= len(kind) <= MAX_KIND:
        raise _Invalid(f"{prefix}kind", f"must be a string of 1 to {MAX_KIND} characters, got {_short(kind)}")
    _width(N, f"{prefix}N", MAX_WIDTH)
    _width(M, f"{prefix}M", MAX_LATENT)
    _flag(attention, f"{prefix}attention")
    _flag(residual, f"{prefix}residual")


def _arch(value: Any, name: str) -> DecoderArch:
    d = _object(value, name)
    _known(d, name, ARCH_KEYS)
    # Any until _arch_fields has checked them (a JSON value of any type)
    kind: Any = d.get("kind", "teacher")
    N: Any = d.get("N")
    M: Any = d.get("M")
    attention: Any = d.get("attention", True)
    residual: Any = d.get("residual", True)
    _arch_fields(kind, N, M, attention, residual, name)
    return DecoderArch(kind, N, M, attention, residual)


# -- the manifest ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderEntry:
    """A decoder of the folder. ``arch`` is None when this lcf cannot build it (``unsupported`` says why: an arch
    with fields a newer lcf added, or none at all); the folder's other decoders still work."""

    name: str
    file: str
    arch: DecoderArch | None
    parameters: int | None = None
    bytes: int | None = None
    unsupported: str = ""
    raw_arch: Mapping[str, Any] | None = field(default=None, repr=False)  # as written, when unsupported

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file}
        if self.arch is not None:
            out["arch"] = self.arch.to_dict()
        elif self.raw_arch is not None:
            out["arch"] = dict(self.raw_arch)
        if self.parameters is not None:
            out["parameters"] = self.parameters
        if self.bytes is not None:
            out["bytes"] = self.bytes
        return out


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of a weights folder (spec/lcf.md, "Weights"), every field validated and bounded."""

    model_config: ModelConfig
    model_id: bytes  # 16 bytes; the folder's entropy.safetensors must hash to it
    encoder_file: str
    entropy_file: str
    decoders: Mapping[str, DecoderEntry]
    default_decoder: str = "teacher"
    info: Mapping[str, Any] = field(default_factory=dict)  # free-form, informative

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in the order lcf writes them."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_config": self.model_config.to_dict(),
            "model_id": self.model_id.hex(),
            "files": {"encoder": self.encoder_file, "entropy": self.entropy_file},
            "decoders": {name: entry.to_json() for name, entry in self.decoders.items()},
            "default_decoder": self.default_decoder,
            "info": dict(self.info),
        }

    def dumps(self) -> str:
        """The text of ``manifest.json`` as lcf writes it."""
        return json.dumps(self.to_json(), indent=2) + "\n"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {_short(key)} appears twice in one object")
        out[key] = value
    return out


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON cannot write it back (found by fuzz/fuzz_manifest.py)
        raise ValueError(f"the number {text[:40]} is beyond the range of a float")
    return value


def strict_json(data: bytes) -> Any:
    """Strict JSON of untrusted bytes: UTF-8, no NaN/Infinity (neither as names nor as numbers out of range), no
    repeated keys. ValueError otherwise (deep nesting, which makes Python's parser recurse, included)."""
    try:
        return json.loads(
            data.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite, object_pairs_hook=_no_duplicates
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_manifest(data: bytes, source: str = MANIFEST) -> Manifest:
    """The :class:`Manifest` of the bytes of a ``manifest.json`` (``source`` names it in errors). FormatError, naming
    the file and the field, on anything that is not a valid version-1 manifest within the bounds above."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise FormatError(
            f"{source} is {len(data):,} bytes, more than a weights manifest may be ({MAX_MANIFEST_BYTES:,})"
        )
    try:
        doc = strict_json(data)
    except ValueError as exc:
        raise FormatError(f"{source} is not valid JSON: {exc}") from None
    try:
        return _manifest(doc)
    except _Invalid as exc:
        raise FormatError(f"{source}: {exc.field or 'the manifest'} {exc.problem}") from None


def _manifest(doc: Any) -> Manifest:
    if not isinstance(doc, dict):
        raise _Invalid("the top level", f"must be a JSON object, got {_kind(doc)}")
    if doc.get("format") != FORMAT or not _is_int(doc.get("version")) or doc.get("version") != VERSION:
        raise _Invalid(
            "format/version",
            f"must be {FORMAT!r} version {VERSION} (an lcf weights manifest), got "
            f"{_short(doc.get('format'))} version {_short(doc.get('version'))}",
        )
    _known(doc, "", _TOP_KEYS)
    config = _model_config(_required(doc, "model_config", ""), "model_config")
    model_id = _required(doc, "model_id", "")
    if not isinstance(model_id, str) or _MODEL_ID.fullmatch(model_id) is None:
        raise _Invalid("model_id", f"must be 32 lower-case hex digits, got {_short(model_id)}")
    files = _object(_required(doc, "files", ""), "files")
    _known(files, "files", ("encoder", "entropy"))
    encoder = _plain_file_name(_required(files, "encoder", "files"), "files.encoder")
    entropy = _plain_file_name(_required(files, "entropy", "files"), "files.entropy")
    decoders = _decoders(_required(doc, "decoders", ""), config)
    default = doc.get("default_decoder", "teacher")
    if not isinstance(default, str) or default not in decoders:
        raise _Invalid("default_decoder", f"must name one of the decoders {sorted(decoders)}, got {_short(default)}")
    info = _object(doc.get("info", {}), "info")
    return Manifest(config, bytes.fromhex(model_id), encoder, entropy, decoders, default, info)


def _decoders(value: Any, config: ModelConfig) -> dict[str, DecoderEntry]:
    d = _object(value, "decoders")
    if not 1 <= len(d) <= MAX_DECODERS:
        raise _Invalid("decoders", f"must list 1 to {MAX_DECODERS} decoders, got {len(d)}")
    out = {}
    for name, entry in d.items():
        if DECODER_NAME.fullmatch(name) is None:
            raise _Invalid(
                "decoders", f"has the name {_short(name)}; a decoder name is 1 to 16 ASCII letters, digits, '-' or '_'"
            )
        out[name] = _decoder(name, entry, config)
    return out


def _decoder(name: str, value: Any, config: ModelConfig) -> DecoderEntry:
    where = f"decoders.{name}"
    d = _object(value, where)
    _known(d, where, _DECODER_KEYS)
    file = _plain_file_name(_required(d, "file", where), f"{where}.file")
    # informative counts; None when absent
    parameters, nbytes = (_count(d[k], f"{where}.{k}") if k in d else None for k in ("parameters", "bytes"))
    raw = d.get("arch")
    if raw is None and name == "teacher":  # manifests written before arch: the teacher of model_config
        return DecoderEntry(name, file, DecoderArch("teacher", config.N, config.M), parameters=parameters, bytes=nbytes)
    if raw is None:
        return DecoderEntry(name, file, None, unsupported=f"{where} has no arch", parameters=parameters, bytes=nbytes)
    raw = _object(raw, f"{where}.arch")
    unknown = sorted(set(raw) - set(ARCH_KEYS))
    if unknown:  # a newer lcf's decoder: refused when asked for, the others still work
        return DecoderEntry(
            name,
            file,
            None,
            unsupported=f"{where}.arch has fields this lcf does not know "
            f"{unknown} (a newer lcf made it?); known: {', '.join(ARCH_KEYS)}",
            raw_arch=raw,
            parameters=parameters,
            bytes=nbytes,
        )
    arch = _arch(raw, f"{where}.arch")
    if arch.M != config.M:
        raise _Invalid(
            f"{where}.arch.M", f"is {arch.M}, but model_config.M is {config.M} (a decoder reads the model's latent)"
        )
    return DecoderEntry(name, file, arch, parameters=parameters, bytes=nbytes)


__all__ = [
    "DecoderArch",
    "DecoderEntry",
    "Manifest",
    "ModelConfig",
    "parse_manifest",
    "plain_file_name",
    "strict_json",
]
