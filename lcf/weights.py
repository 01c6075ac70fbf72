"""Shipped weights: safetensors files + ``manifest.json``, the model identifier, and the named decoders.

A weights folder holds::

    manifest.json                  what is here: model config, files, model identifier, decoders (lcf.manifest)
    encoder.safetensors            g_a, h_a                      (needed to encode only)
    entropy.safetensors            gain, h_s, ctx, pen_anchor, pen_nonanchor, and the integer tables
                                   ``tables.family.*`` / ``tables.z.*`` of the entropy layer
    decoder-<name>.safetensors     one synthesis transform g_s each ("teacher", students ...)

The **model identifier** is the first 16 bytes of SHA-256 over every tensor of ``entropy.safetensors`` in sorted key
order (key as UTF-8, dtype name, shape, raw little-endian bytes, each length-prefixed). It is written into every file
header, so a file never decodes silently with other weights. Decoders are not part of it: any decoder decodes any file
of the same model.

**A weights folder is untrusted input.** Reading one::

    manifest.json ─ lcf.manifest.parse_manifest (schema, bounds, plain file names)
    each file     ─ open(O_NOFOLLOW | O_NONBLOCK) ─ fstat: a regular file of at most MAX_TENSOR_FILE_BYTES
                  ─ safetensors header (8-byte little-endian length <= MAX_HEADER_BYTES, then JSON), parsed here:
                    dtypes lcf writes only, offsets that tile the data exactly
                  ─ every tensor's dtype and shape checked against the architecture the manifest declares:
                    entropy.safetensors against model_config (:func:`entropy_layout`), each decoder against its arch
                    (:func:`decoder_layout`), both from the spec's tables and torch-free, so that a wrong N fails
                    here and ``lcf info`` checks them too; the encoder against the model lcf.codec built from the
                    checked model_config ─ only then the data is read, once, into the arrays

File names are plain names inside the folder (no directory part). Files are opened with ``O_NOFOLLOW``: a weights
folder holds regular files, not links (a symbolic link, even one into the folder, is refused: copy or hard-link a
shared file instead), so no name in a manifest reaches outside its folder. ``O_NONBLOCK`` makes opening a FIFO or a
device return at once, to be refused by fstat. The safetensors library never sees these files: the header is
parsed and checked here and the arrays are views of the one buffer read. Errors: ``LcfIOError`` (missing,
unreadable, not a regular file, a link), ``FormatError`` (a bad manifest or safetensors file, too large),
``ModelMismatchError`` (tensors that do not fit the declared architecture, a model id that does not match).
"""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import stat
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as save_tensors_bytes

from lcf.errors import FormatError, LcfIOError, ModelMismatchError
from lcf.fileio import atomic_write
from lcf.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    DecoderArch,
    DecoderEntry,
    Manifest,
    ModelConfig,
    parse_manifest,
    strict_json,
)

ENCODER_FILE = "encoder.safetensors"
ENTROPY_FILE = "entropy.safetensors"
ENCODER_PREFIXES = ("g_a.", "h_a.")
ENTROPY_PREFIXES = ("gain.", "h_s.", "ctx.", "pen_anchor.", "pen_nonanchor.", "tables.")


def packaged_weights() -> Path:
    """The folder of the packaged (newest) model: the package ``lcf_weights``, which is the project's ``weights/``
    (pyproject.toml maps it, so a wheel carries it and an installed lcf finds its own copy from any folder), found
    with importlib.resources; in a checkout installed before that mapping, the ``weights/`` folder beside ``lcf/``.
    Older released models and $LCF_WEIGHTS_PATH: :mod:`lcf.models`."""
    try:
        root = resources.files("lcf_weights")
    except ModuleNotFoundError:
        root = None
    if isinstance(root, Path):  # a package on the file system (not a namespace package or a zip file)
        return root
    return Path(__file__).resolve().parent.parent / "weights"


DEFAULT_WEIGHTS = packaged_weights()

MAX_TENSOR_FILE_BYTES = 256 << 20  # the shipped files are < 16 MiB; the bounds of lcf.manifest need < 160 MiB
MAX_HEADER_BYTES = 1 << 20  # the shipped headers are < 12 KiB
MAX_TENSORS = 4096
MAX_DIMS = 8
DTYPES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}  # what spec/lcf.md allows in a weights folder
FLOATS = frozenset({"F16", "F32"})
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
)


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


# -- the tensors a file must hold -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One entry of a safetensors header: dtype name, shape, and byte range within the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class TensorSpec:
    """What a tensor must be: one of ``dtypes``, and ``shape`` (None: any length in that dimension)."""

    dtypes: frozenset[str]
    shape: tuple[int | None, ...]

    def fits(self, info: TensorInfo) -> bool:
        return (
            info.dtype in self.dtypes
            and len(info.shape) == len(self.shape)
            and all(want is None or want == got for want, got in zip(self.shape, info.shape, strict=True))
        )

    def describe(self) -> str:
        dims = ", ".join("*" if d is None else str(d) for d in self.shape)
        return f"{'/'.join(sorted(self.dtypes))} [{dims}]"


Layout = Mapping[str, TensorSpec]


def float_layout(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, TensorSpec]:
    """The layout of float network tensors of these shapes (encoder, decoders, the gains): float16 or float32."""
    return {key: TensorSpec(FLOATS, tuple(shape)) for key, shape in shapes.items()}


def entropy_layout(config: ModelConfig, float_networks: bool = False) -> dict[str, TensorSpec]:
    """The tensors of ``entropy.safetensors`` for ``config`` (spec/lcf.md, "Weights": the table of
    entropy.safetensors; tests/test_weights_hostile.py checks it against lcf.nn's state dict). ``float_networks``:
    the layout before integer entropy networks (float weight and bias, no shift), which the codec refuses with the
    way out (``python -m lcf.train reexport``) and which lcf.train reads."""
    N, M, Mz, L = config.N, config.M, config.Mz, len(config.levels)
    N2 = 3 * N // 2
    layers = {
        "h_s.0": (N, Mz, 3, 3),
        "h_s.2.0": (4 * N, N, 3, 3),
        "h_s.4": (N2, N, 3, 3),
        "h_s.6.0": (4 * N2, N2, 3, 3),
        "h_s.8": (2 * M, N2, 3, 3),
        "ctx.conv": (2 * M, M, 5, 5),
        "pen_anchor.net.0": (3 * M, 2 * M, 1, 1),
        "pen_anchor.net.2": (3 * M, 3 * M, 1, 1),
        "pen_anchor.net.4": (30 * M, 3 * M, 1, 1),
        "pen_nonanchor.net.0": (3 * M, 4 * M, 1, 1),
        "pen_nonanchor.net.2": (3 * M, 3 * M, 1, 1),
        "pen_nonanchor.net.4": (9 * M, 3 * M, 1, 1),
    }
    i32 = frozenset({"I32"})
    out = {"gain.log_gain": TensorSpec(FLOATS, (L, M)), "gain.log_inv_gain": TensorSpec(FLOATS, (L, M))}
    for key, shape in layers.items():
        if float_networks:
            out[f"{key}.weight"] = TensorSpec(FLOATS, shape)
            out[f"{key}.bias"] = TensorSpec(FLOATS, shape[:1])
        else:
            out[f"{key}.weight"] = TensorSpec(frozenset({"I16"}), shape)
            out[f"{key}.bias"] = TensorSpec(frozenset({"I64"}), shape[:1])
            out[f"{key}.shift"] = TensorSpec(i32, (1,))
    out["tables.family.format"] = TensorSpec(i32, (4,))
    out["tables.family.half_width"] = TensorSpec(i32, (3, None))
    out["tables.family.pmf"] = TensorSpec(i32, (None,))
    out["tables.z.pmf"] = TensorSpec(i32, (Mz, None))
    return out


def _conv(out: dict[str, tuple[int, ...]], key: str, cout: int, cin: int, k: int) -> None:
    out[f"{key}.weight"], out[f"{key}.bias"] = (cout, cin, k, k), (cout,)


def _attention(out: dict[str, tuple[int, ...]], p: str, n: int) -> None:
    for unit in (*(f"trunk.{i}" for i in range(3)), *(f"mask.{i}" for i in range(3))):
        _conv(out, f"{p}.{unit}.conv.0", n // 2, n, 1)
        _conv(out, f"{p}.{unit}.conv.2", n // 2, n // 2, 3)
        _conv(out, f"{p}.{unit}.conv.4", n, n // 2, 1)
    _conv(out, f"{p}.mask.3", n, n, 1)


def _residual(out: dict[str, tuple[int, ...]], p: str, a: int, b: int) -> None:
    _conv(out, f"{p}.conv1", b, a, 3)
    _conv(out, f"{p}.conv2", b, b, 3)
    if a != b:
        _conv(out, f"{p}.skip", b, a, 1)


def _upsampling(out: dict[str, tuple[int, ...]], p: str, a: int, b: int) -> None:
    _conv(out, f"{p}.subpel.0", 4 * b, a, 3)
    _conv(out, f"{p}.conv", b, b, 3)
    out[f"{p}.igdn.beta"], out[f"{p}.igdn.gamma"] = (b,), (b, b)
    _conv(out, f"{p}.upsample.0", 4 * b, a, 3)


def decoder_layout(arch: DecoderArch) -> dict[str, TensorSpec]:
    """The tensors of a decoder file for ``arch`` (spec/lcf.md, "Decoders (g_s)": the modules kept by its flags,
    numbered in order; tests/test_weights_hostile.py checks it against ``lcf.nn.students.build_decoder``)."""
    N, M, attn, res = arch.N, arch.M, arch.attention, arch.residual
    modules: list[tuple[bool, Callable[..., None], tuple[int, ...]]] = [
        (attn, _attention, (M,)),
        (res, _residual, (M, N)),
        (True, _upsampling, (N if res else M, N)),
        (res, _residual, (N, N)),
        (True, _upsampling, (N, N)),
        (attn, _attention, (N,)),
        (res, _residual, (N, N)),
        (True, _upsampling, (N, N)),
        (res, _residual, (N, N)),
    ]
    shapes: dict[str, tuple[int, ...]] = {}
    kept = [(build, sizes) for keep, build, sizes in modules if keep]
    for n, (build, sizes) in enumerate(kept):
        build(shapes, str(n), *sizes)
    _conv(shapes, f"{len(kept)}.0", 12, N, 3)  # out: conv 3x3 N -> 12, pixel shuffle x2
    return float_layout(shapes)


def check_layout(header: Mapping[str, TensorInfo], layout: Layout, source: str, declared: str) -> None:
    """ModelMismatchError unless the tensors of ``header`` (the file ``source``) are exactly those of ``layout``,
    with their dtypes and shapes; ``declared`` names what the manifest declares that ``layout`` comes from."""
    missing = sorted(set(layout) - set(header))
    unexpected = sorted(set(header) - set(layout))
    if missing or unexpected:
        raise ModelMismatchError(
            f"{source} does not hold the tensors of {declared}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, spec in layout.items():
        info = header[key]
        if not spec.fits(info):
            raise ModelMismatchError(
                f"{source}: tensor {key!r} is {info.dtype} {list(info.shape)}, but {declared} needs {spec.describe()}"
            )


def _declared_model(root: Path, config: ModelConfig) -> str:
    return f"{root / MANIFEST} model_config (N={config.N}, M={config.M}, Mz={config.Mz}, {len(config.levels)} levels)"


def _declared_decoder(root: Path, name: str, arch: DecoderArch) -> str:
    return (
        f"{root / MANIFEST} decoders.{name}.arch (N={arch.N}, M={arch.M}, attention={arch.attention}, "
        f"residual={arch.residual})"
    )


# -- reading the files --------------------------------------------------------------------------------------------


class _RegularFile:
    """An open regular file of the folder, refused before reading when it is a link, not a regular file, or larger
    than ``limit``."""

    def __init__(self, path: Path, what: str, limit: int) -> None:
        self.path = path
        if not getattr(os, "O_NOFOLLOW", 0) and path.is_symlink():  # pragma: no cover  (Windows)
            raise _link_error(path, what)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            raise LcfIOError(f"{path} ({what}) is missing") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW on a link (EMLINK on FreeBSD)
                raise _link_error(path, what) from None
            raise LcfIOError(f"cannot open {path} ({what}): {exc.strerror or exc}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            os.close(fd)
            if not stat.S_ISREG(st.st_mode):
                raise LcfIOError(
                    f"{path} ({what}) is not a regular file but {_file_kind(st.st_mode)}; a weights "
                    f"folder holds regular files only"
                )
            raise FormatError(f"{path} ({what}) is {st.st_size:,} bytes, more than lcf allows for it ({limit:,})")
        self.size = st.st_size
        self.file: io.FileIO = open(fd, "rb", buffering=0)  # noqa: SIM115  (closed by close())

    def read_exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        try:
            while got < n:
                k = self.file.readinto(view[got:])
                if not k:
                    raise FormatError(f"{self.path} ended after {got:,} of {n:,} bytes (it changed while read)")
                got += k
        except OSError as exc:
            if isinstance(exc, FormatError):
                raise
            raise LcfIOError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        return buf

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> _RegularFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _link_error(path: Path, what: str) -> LcfIOError:
    return LcfIOError(
        f"{path} ({what}) is a symbolic link; a weights folder holds regular files only (copy the file into the folder)"
    )


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def parse_safetensors_header(raw: bytes, data_length: int, source: str) -> dict[str, TensorInfo]:
    """The tensors of a safetensors header ``raw`` (the JSON after the 8-byte length) of a file whose data section
    is ``data_length`` bytes. FormatError unless every entry has a dtype lcf writes (``DTYPES``), a shape of at most
    MAX_DIMS non-negative dimensions whose byte size is its range's, and the ranges tile the data section exactly."""
    if not raw.startswith(b"{"):
        raise FormatError(f"{source} is not a safetensors file (its header does not start with '{{')")
    try:
        doc = strict_json(raw)
    except ValueError as exc:
        raise FormatError(f"{source}: the safetensors header is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{source}: the safetensors header is not a JSON object")
    metadata = doc.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(f"{source}: the safetensors __metadata__ must map strings to strings")
    if len(doc) > MAX_TENSORS:
        raise FormatError(f"{source} holds {len(doc):,} tensors, more than lcf allows ({MAX_TENSORS})")
    tensors = {key: _tensor_info(key, entry, source) for key, entry in doc.items()}
    end = 0
    for key, t in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if t.begin != end:
            raise FormatError(
                f"{source}: tensor {key!r} starts at data byte {t.begin:,}, expected {end:,} (tensors "
                f"must tile the data section without gaps or overlaps)"
            )
        end = t.end
    if end != data_length:
        raise FormatError(f"{source}: the tensors cover {end:,} bytes of data, the file holds {data_length:,}")
    return tensors


def _tensor_info(key: str, entry: object, source: str) -> TensorInfo:
    where = f"{source}: tensor {key[:80]!r}"
    if not key or len(key) > 256:
        raise FormatError(f"{where}: a tensor name must have 1 to 256 characters")
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"{where} must be an object with dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:  # a list here was found by fuzz/fuzz_manifest.py
        raise FormatError(f"{where} has dtype {str(dtype)[:20]!r}; lcf weights hold {', '.join(DTYPES)} only")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise FormatError(f"{where} has shape {str(shape)[:60]}; a shape is at most {MAX_DIMS} non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise FormatError(f"{where} has data_offsets {str(offsets)[:60]}; they must be [begin, end], 0 <= begin <= end")
    nbytes = math.prod(shape) * DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise FormatError(
            f"{where}: {dtype} {shape} is {nbytes:,} bytes, its data_offsets span {offsets[1] - offsets[0]:,}"
        )
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def read_tensor_file(
    path: Path, what: str, check: Callable[[dict[str, TensorInfo]], None] | None = None
) -> dict[str, np.ndarray]:
    """The tensors of the safetensors file ``path``: opened as a regular file (see the module docstring), its header
    parsed and handed to ``check`` (which raises when the tensors do not fit what the manifest declares) before
    the data is read, once, into one buffer whose views are the arrays."""
    with _RegularFile(path, what, MAX_TENSOR_FILE_BYTES) as f:
        if f.size < 8:
            raise FormatError(f"{path} is not a safetensors file ({f.size} bytes)")
        n = int.from_bytes(f.read_exact(8), "little")
        if n > MAX_HEADER_BYTES:
            raise FormatError(
                f"{path}: the safetensors header length {n:,} is more than lcf allows ({MAX_HEADER_BYTES:,} bytes)"
            )
        if n > f.size - 8:
            raise FormatError(
                f"{path}: the safetensors header length {n:,} is more than the file holds "
                f"({f.size - 8:,} bytes after it)"
            )
        header = parse_safetensors_header(bytes(f.read_exact(n)), f.size - 8 - n, str(path))
        if check is not None:
            check(header)
        data = f.read_exact(f.size - 8 - n)
    arrays = {}
    for key, t in header.items():
        dtype = DTYPES[t.dtype]
        count = math.prod(t.shape)
        arrays[key] = np.frombuffer(data, dtype, count, t.begin).reshape(t.shape) if count else np.zeros(t.shape, dtype)
    return arrays


def read_plain_file(path: Path, what: str) -> bytes:
    """The bytes of the file ``path`` of a weights folder, opened and bounded as :func:`read_tensor_file` opens it
    (a regular file, not a link, at most MAX_TENSOR_FILE_BYTES); to copy a file without parsing it."""
    with _RegularFile(path, what, MAX_TENSOR_FILE_BYTES) as f:
        return bytes(f.read_exact(f.size))


def read_manifest(root: Path) -> Manifest:
    """The parsed ``manifest.json`` of the folder ``root``."""
    path = root / MANIFEST
    try:
        f = _RegularFile(path, "the weights manifest", MAX_MANIFEST_BYTES)
    except LcfIOError as exc:
        if not path.exists() and not path.is_symlink():
            raise LcfIOError(
                f"no weights at {root} ({MANIFEST} missing); pass --weights DIR or set LCF_WEIGHTS"
            ) from None
        raise exc from None
    with f:
        data = f.read_exact(f.size)
    return parse_manifest(bytes(data), str(path))


# -- the folder -----------------------------------------------------------------------------------------------------


@dataclass
class Weights:
    """A loaded weights folder. Tensors are numpy arrays; ``lcf.codec`` turns them into torch modules."""

    root: Path
    manifest: Manifest
    entropy: dict[str, np.ndarray]
    model_id: bytes
    _encoder: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _decoders: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def decoder_names(self) -> list[str]:
        return list(self.manifest.decoders)

    @property
    def default_decoder(self) -> str:
        return self.manifest.default_decoder

    def decoder_info(self, name: str) -> DecoderEntry:
        self._check_decoder(name)
        return self.manifest.decoders[name]

    def decoder_arch(self, name: str) -> DecoderArch:
        """The architecture of decoder ``name``; ModelMismatchError when this lcf cannot build it."""
        entry = self.decoder_info(name)
        if entry.arch is None:
            raise ModelMismatchError(
                f"decoder {name!r} cannot be built by this lcf: {self.root / MANIFEST} {entry.unsupported}"
            )
        return entry.arch

    def encoder(self, layout: Layout | None = None) -> dict[str, np.ndarray]:
        """The tensors of ``encoder.safetensors``, checked against ``layout`` (its header, before reading its data)
        when given."""
        path = self.root / self.manifest.encoder_file
        check = None
        if layout is not None:
            check = self._checker(layout, path, _declared_model(self.root, self.manifest.model_config))
        if self._encoder is not None:
            if check is not None:
                check(header_of_arrays(self._encoder))
            return self._encoder
        try:
            self._encoder = read_tensor_file(path, "the encoder", check)
        except LcfIOError:
            if "decode_only" in self.manifest.info and not path.exists():
                raise LcfIOError(
                    f"{self.root} is a decode-only copy of model {self.model_id.hex()} (no "
                    f"{self.manifest.encoder_file}): it decodes files of that model but cannot encode; "
                    f"encode with the packaged model (leave out --weights and LCF_WEIGHTS)"
                ) from None
            raise
        return self._encoder

    def encoder_id(self) -> bytes:
        """The encoder's identifier, hashed like the model id over ``encoder.safetensors``: it tells apart two
        encoders of one model (an encoder fine-tuned alone keeps the model id), e.g. for benchmark rows."""
        return model_id_of(self.encoder())

    def decoder(self, name: str) -> dict[str, np.ndarray]:
        """The tensors of decoder ``name``, checked against its arch (:func:`decoder_layout`) before they are read;
        ModelMismatchError for a decoder this lcf cannot build."""
        arch = self.decoder_arch(name)
        if name not in self._decoders:
            path = self.root / self.manifest.decoders[name].file
            check = self._checker(decoder_layout(arch), path, _declared_decoder(self.root, name, arch))
            self._decoders[name] = read_tensor_file(path, f"decoder {name!r}", check)
        return self._decoders[name]

    @staticmethod
    def _checker(layout: Layout, source: Path, declared: str) -> Callable[[dict[str, TensorInfo]], None]:
        return lambda header: check_layout(header, layout, str(source), declared)

    def _check_decoder(self, name: str) -> None:
        if name not in self.manifest.decoders:
            raise ModelMismatchError(
                f"these weights have no decoder named {name!r}; available: {', '.join(self.decoder_names)}"
            )


def header_of_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, TensorInfo]:
    """Header entries describing already loaded arrays (offsets unused), to check them against a layout."""
    names = {dtype.str: name for name, dtype in DTYPES.items()}
    return {
        k: TensorInfo(names.get(a.dtype.newbyteorder("<").str, str(a.dtype)), a.shape, 0, a.nbytes)
        for k, a in arrays.items()
    }


def load_weights(root: str | os.PathLike | None = None) -> Weights:
    """Load ``manifest.json`` and the entropy model of a weights folder (default: ``$LCF_WEIGHTS``, else the shipped
    ``weights/``). The entropy model's tensors are checked against the manifest's model_config before they are read,
    which makes a model_config that its files do not have (N is not covered by the model id) fail cleanly."""
    root = Path(root) if root is not None else Path(os.environ.get("LCF_WEIGHTS") or DEFAULT_WEIGHTS)
    manifest = read_manifest(root)
    path = root / manifest.entropy_file
    declared = _declared_model(root, manifest.model_config)

    def check(header: dict[str, TensorInfo]) -> None:
        shift, weight = header.get("h_s.0.shift"), header.get("h_s.0.weight")
        old = shift is None and weight is not None and weight.dtype in FLOATS
        check_layout(header, entropy_layout(manifest.model_config, float_networks=old), str(path), declared)

    entropy = read_tensor_file(path, "the entropy model", check)
    model_id = model_id_of(entropy)
    if model_id != manifest.model_id:
        raise ModelMismatchError(
            f"{path} does not match its manifest (model id {model_id.hex()} != {manifest.model_id.hex()} in "
            f"{root / MANIFEST}): the weights folder is damaged or mixed up"
        )
    return Weights(root=root, manifest=manifest, entropy=entropy, model_id=model_id)


def save_weights(
    root: str | os.PathLike,
    *,
    model_config: ModelConfig,
    encoder: dict[str, np.ndarray],
    entropy: dict[str, np.ndarray],
    decoders: dict[str, tuple[DecoderArch, dict[str, np.ndarray]]],
    default_decoder: str = "teacher",
    info: dict | None = None,
) -> Weights:
    """Write a weights folder. ``decoders`` maps a name to (its architecture, its tensors).

    Each file is written through lcf.fileio's atomic write, the manifest last: an export that fails or is interrupted
    leaves each file complete (new or as it was) or absent, never half written. Raises LcfIOError (disk full, ...)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write(root / ENCODER_FILE, save_tensors_bytes(encoder))
    atomic_write(root / ENTROPY_FILE, save_tensors_bytes(entropy))
    entries = {}
    for name, (arch, tensors) in decoders.items():
        fname = f"decoder-{name}.safetensors"
        data = save_tensors_bytes(tensors)
        atomic_write(root / fname, data)
        entries[name] = DecoderEntry(
            name, fname, arch, parameters=int(sum(t.size for t in tensors.values())), bytes=len(data)
        )
    manifest = Manifest(
        model_config, model_id_of(entropy), ENCODER_FILE, ENTROPY_FILE, entries, default_decoder, info or {}
    )
    atomic_write(root / MANIFEST, manifest.dumps().encode())
    return load_weights(root)
