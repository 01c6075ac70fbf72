"""Installed models: which weights folder decodes a file, found by the model id in its header.

Every .lcf file names its entropy model by its model id (``lcf.weights``). A new model (every retraining) is added
beside the released ones, never replacing them, so every file lcf ever wrote stays decodable::

    encode                          the packaged model (the newest), or --weights DIR / $LCF_WEIGHTS
    decode, validate --deep, info   --weights DIR / $LCF_WEIGHTS when given (a file of another model:
                                    ModelMismatchError naming the model it needs and where it is installed);
                                    else the first folder on the search path whose manifest names the file's model:

        1. packaged    the newest model: the package ``lcf_weights`` (``weights/`` of the project)
        2. released    older models that lcf shipped: ``weights/released/<model id>/``, decode-only copies
                       (manifest + entropy model + one decoder, :func:`release_copy`)
        3. LCF_WEIGHTS_PATH   os.pathsep-separated; each a weights folder or a folder of weights folders

Only manifests are read to choose (``lcf.weights.read_manifest``, bounded and validated: a folder on the path is
untrusted input); the chosen folder is then loaded as always, which checks its entropy model's hash against the model
id. A folder on the path that cannot be read is skipped and named in the error of a model that is not found.

:data:`RELEASES` lists the model ids lcf has shipped and where each is found; a test keeps every released model
installed (``tests/test_models.py``), so a retraining cannot drop the previous model by accident.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lcf import weights as _weights
from lcf.errors import LcfError, LcfIOError, ModelMismatchError, UsageError
from lcf.manifest import MANIFEST, Manifest

PATH_VARIABLE = "LCF_WEIGHTS_PATH"
FORCE_VARIABLE = "LCF_WEIGHTS"
RELEASED = "released"
MAX_FOLDERS = 256  # weights folders read from one folder of LCF_WEIGHTS_PATH (the rest are skipped, and said so)


@dataclass(frozen=True)
class Release:
    """A model id lcf has shipped, and where a user finds its weights (``where``: the lcf that shipped it).
    ``installed``: this lcf keeps it installed (packaged or under ``weights/released/``; a test checks it).
    ``decodable``: this lcf can decode its files given its weights folder (False for the float layout before integer
    entropy networks: only the lcf of ``where`` decodes those files)."""

    model_id: str
    where: str
    installed: bool
    decodable: bool = True


RELEASES: tuple[Release, ...] = (
    Release("8bb582f2f55495588fe164e99761907a", "lcf 0.1.0 (weights/ since commit 3d939c5)", True),
    # Development models before integer entropy networks: in git history only; this lcf refuses their float layout.
    Release(
        "aaa070525e9b08026209009be56f8feb",
        "lcf commits bed2875..e193d8d (float entropy networks: decode these files with that lcf and its weights/)",
        False,
        False,
    ),
    Release(
        "68e12dc387a4922626fd758a4d640876",
        "lcf commits b0442fd..de9a058 (float entropy networks: decode these files with that lcf and its weights/)",
        False,
        False,
    ),
    Release(
        "d9ddf023df273b1642c4d574015820c4",
        "lcf commits ff3131f..49f629a (float entropy networks: decode these files with that lcf and its weights/)",
        False,
        False,
    ),
)
"""Newest first. To release a new model: make the decode-only copy of the packaged one first (``python -m lcf.models
release weights``: weights/released/<its model id>/), then export the new model into weights/ and add it here. To
retire one (weights/ over WEIGHTS_BUDGET): delete its folder under weights/released/ and set ``installed`` False with
``where`` naming the last lcf version that shipped it (README.md, "Models and old files")."""

WEIGHTS_BUDGET = 40 << 20
"""Bytes of weights/ (packaged + released) in the tracked tree: of the 64 MiB a GPU lease call carries, this leaves
~24 MiB for the code (~6 MB) and the training data. Today's packaged model is 18.7 MB, a released copy with the
teacher decoder 11.2 MB (benchmarks/package_size.py): the packaged model and two released ones fit."""


@dataclass(frozen=True)
class InstalledModel:
    """A weights folder on the search path: its model id, where it came from (``source``: "packaged", "released",
    "LCF_WEIGHTS_PATH"), its decoders and whether it can encode (holds its encoder file)."""

    model_id: bytes
    root: Path
    source: str
    decoders: tuple[str, ...]
    encodes: bool

    def to_json(self) -> dict:
        return {
            "model_id": self.model_id.hex(),
            "weights": str(self.root),
            "source": self.source,
            "decoders": list(self.decoders),
            "encodes": self.encodes,
        }


@dataclass(frozen=True)
class Skipped:
    """A folder on the search path that holds no usable manifest, and why."""

    root: Path
    source: str
    reason: str


@dataclass(frozen=True)
class Registry:
    """The models on the search path, in search order, and the folders skipped."""

    models: tuple[InstalledModel, ...]
    skipped: tuple[Skipped, ...]

    def describe(self, limit: int = 6) -> str:
        """What was searched, for messages: each folder with its model id, then the skipped ones."""
        parts = [f"{m.root} ({m.source}, model {m.model_id.hex()})" for m in self.models[:limit]]
        if len(self.models) > limit:
            parts.append(f"{len(self.models) - limit} more")
        text = "searched " + ("; ".join(parts) if parts else "no weights folder")
        if self.skipped:
            text += "; skipped " + "; ".join(f"{s.root} ({s.source}: {s.reason})" for s in self.skipped[:limit])
        if not os.environ.get(PATH_VARIABLE):
            text += f"; {PATH_VARIABLE} is not set"
        return text


def packaged_root() -> Path:
    """The packaged (newest) model's folder, ``lcf.weights.DEFAULT_WEIGHTS``."""
    return Path(_weights.DEFAULT_WEIGHTS)


def forced_root(weights: str | os.PathLike | None = None) -> tuple[Path, str] | None:
    """The one folder to use when the caller forces it: ``weights`` (``--weights DIR``), else ``$LCF_WEIGHTS``;
    with what forced it ("--weights" or "LCF_WEIGHTS"), for messages. None: choose by model id."""
    if weights is not None:
        return Path(weights), "--weights"
    env = os.environ.get(FORCE_VARIABLE)
    if env:
        return Path(env), FORCE_VARIABLE
    return None


def encoding_root(weights: str | os.PathLike | None = None) -> Path:
    """The folder that encodes: ``weights``, else ``$LCF_WEIGHTS``, else the packaged (newest) model."""
    forced = forced_root(weights)
    return forced[0] if forced is not None else packaged_root()


def search_path() -> list[tuple[Path, str]]:
    """The folders to look in, in order, with their source (see the module docstring). Folders of
    ``$LCF_WEIGHTS_PATH`` that do not exist are kept, to be reported as skipped."""
    root = packaged_root()
    out = [(root, "packaged")]
    out += [(p, RELEASED) for p in _subfolders(root / RELEASED)]
    for entry in os.environ.get(PATH_VARIABLE, "").split(os.pathsep):
        if not entry:
            continue
        path = Path(entry).expanduser()
        if (path / MANIFEST).exists() or not path.is_dir():
            out.append((path, PATH_VARIABLE))
        else:
            out += [(p, PATH_VARIABLE) for p in _subfolders(path)] or [(path, PATH_VARIABLE)]
    return out


def _subfolders(folder: Path) -> list[Path]:
    """The folders directly in ``folder`` that hold a manifest, sorted by name (at most MAX_FOLDERS)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.is_dir() and (p / MANIFEST).exists()][:MAX_FOLDERS]


def _scan() -> Iterator[InstalledModel | Skipped]:
    """The folders of the search path, in order, each read (its manifest only) when the caller gets to it."""
    for root, source in search_path():
        if not root.is_dir():
            yield Skipped(root, source, "not a folder" if root.exists() else "does not exist")
            continue
        if not (root / MANIFEST).exists() and not (root / MANIFEST).is_symlink():
            yield Skipped(root, source, f"no {MANIFEST} in it, nor in a folder in it")
            continue
        try:
            manifest = _weights.read_manifest(root)
        except LcfError as exc:
            yield Skipped(root, source, str(exc))
            continue
        if source == RELEASED and root.name != manifest.model_id.hex():
            yield Skipped(
                root,
                source,
                f"holds model {manifest.model_id.hex()}; a released model's folder is named after its model id",
            )
            continue
        yield InstalledModel(
            manifest.model_id, root, source, tuple(manifest.decoders), (root / manifest.encoder_file).is_file()
        )


def installed_models() -> Registry:
    """Every weights folder on the search path, reading only their manifests."""
    found = list(_scan())
    return Registry(
        tuple(m for m in found if isinstance(m, InstalledModel)), tuple(s for s in found if isinstance(s, Skipped))
    )


def find_model(model_id: bytes) -> InstalledModel | None:
    """The first folder of ``model_id`` on the search path, reading manifests only up to it."""
    return next((m for m in _scan() if isinstance(m, InstalledModel) and m.model_id == model_id), None)


def where_to_get(model_id: bytes) -> str:
    """Where the weights of ``model_id`` are found, for messages."""
    release = next((r for r in RELEASES if r.model_id == model_id.hex()), None)
    if release is None:
        return (
            f"lcf does not know this model (a newer lcf's, or weights made elsewhere): install the lcf that wrote "
            f"the file, or put the weights folder it was written with on {PATH_VARIABLE} (or pass --weights DIR)"
        )
    if not release.decodable:
        return f"it shipped with {release.where}"
    return (
        f"it shipped with {release.where}: install that lcf, or put the weights folder of that lcf (its "
        f"weights/released/{release.model_id}/, or weights/ where it was the packaged model) on {PATH_VARIABLE}"
    )


def decoding_root(model_id: bytes, weights: str | os.PathLike | None = None) -> Path:
    """The folder that decodes files of ``model_id``: the forced one (``weights``, ``$LCF_WEIGHTS``), which must be
    of that model, or the first folder of that model on the search path. ModelMismatchError (naming the model, where
    it is installed or where to get it) otherwise."""
    forced = forced_root(weights)
    if forced is not None:
        root, how = forced
        have = _weights.read_manifest(root).model_id
        if have != model_id:
            raise weights_mismatch(model_id, have, root, how)
        return root
    found = find_model(model_id)
    if found is None:
        raise ModelMismatchError(
            f"this file was encoded with model {model_id.hex()}, which is not installed: "
            f"{where_to_get(model_id)} ({installed_models().describe()})",
            chunk="HEAD",
        )
    return found.root


def weights_mismatch(need: bytes, have: bytes, root: Path, how: str) -> ModelMismatchError:
    """The error for a file of model ``need`` given to the weights ``root`` of model ``have`` (chosen by ``how``:
    "--weights", "LCF_WEIGHTS", or "Codec(weights)" for a :class:`lcf.codec.Codec` used directly): it names the
    model the file needs and where it is installed, or where to get it."""
    found = find_model(need)
    if found is not None and how in ("--weights", FORCE_VARIABLE):
        hint = (
            f"model {need.hex()} is installed at {found.root} ({found.source}): leave out --weights and "
            f"{FORCE_VARIABLE}, and lcf picks it by the file's model id"
        )
    elif found is not None:
        hint = (
            f"model {need.hex()} is installed at {found.root} ({found.source}): decode it with Codec({found.root}), "
            "or with lcf.api.decode_bytes / lcf.codec_cache.codec_for_data, which pick the weights by the file's "
            "model id"
        )
    else:
        hint = f"model {need.hex()} is not installed: {where_to_get(need)}"
    return ModelMismatchError(
        f"this file was encoded with model {need.hex()}, but the weights {root} (given as {how}) "
        f"are model {have.hex()}; {hint}",
        chunk="HEAD",
    )


@dataclass(frozen=True)
class Lookup:
    """What ``lcf info FILE`` says about the model a file needs: the folder that would decode it (None: none), what
    chose it, and a message when it cannot be decoded."""

    model_id: bytes
    root: Path | None
    source: str | None
    problem: str | None

    def to_json(self) -> dict:
        return {
            "model_id": self.model_id.hex(),
            "installed": self.root is not None and self.problem is None,
            "weights": None if self.root is None else str(self.root),
            "source": self.source,
            "problem": self.problem,
        }


def lookup(model_id: bytes, weights: str | os.PathLike | None = None) -> Lookup:
    """Where files of ``model_id`` would be decoded from, without loading anything (for ``lcf info``)."""
    forced = forced_root(weights)
    if forced is not None:
        try:
            return Lookup(model_id, decoding_root(model_id, weights), forced[1], None)
        except LcfError as exc:
            return Lookup(model_id, None, forced[1], exc.message)
    found = find_model(model_id)
    if found is None:
        return Lookup(model_id, None, None, f"not installed: {where_to_get(model_id)}")
    return Lookup(model_id, found.root, found.source, None)


# -- decode-only copies -------------------------------------------------------------------------------------------


def release_copy(
    src: str | os.PathLike, dst: str | os.PathLike | None = None, decoder: str | None = None
) -> _weights.Weights:
    """Copy the weights folder ``src`` as a decode-only folder ``dst`` (default: ``src/released/<model id>``): its
    entropy model and one decoder (``decoder``, default the folder's default decoder), byte for byte, and a manifest
    that lists only them, so the model id stays the same and every file of the model decodes with the copy.

    ``src`` is checked as any weights folder is (entropy hash against the model id, the decoder against its arch);
    the copy is written into a temporary folder beside ``dst``, loaded and checked, then renamed into place: ``dst``
    appears complete or not at all. ``dst`` must not exist. Returns the copy, loaded."""
    source = _weights.load_weights(src)
    name = decoder or source.default_decoder
    source.decoder(name)  # ModelMismatchError for a decoder the folder lacks or that does not fit its arch
    out = Path(dst) if dst is not None else Path(src) / RELEASED / source.model_id.hex()
    if out.exists() or out.is_symlink():
        raise UsageError(f"{out} exists; a decode-only copy is written to a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.lcf-tmp{os.getpid()}")
    if tmp.exists():
        raise UsageError(f"{tmp} exists (left by an interrupted copy?): remove it first")
    tmp.mkdir()
    try:
        entry = source.manifest.decoders[name]
        for file, what in ((source.manifest.entropy_file, "the entropy model"), (entry.file, f"decoder {name!r}")):
            (tmp / file).write_bytes(_weights.read_plain_file(source.root / file, what))
        (tmp / MANIFEST).write_text(_decode_only(source.manifest, name).dumps())
        copy = _weights.load_weights(tmp)
        copy.decoder(name)
        if copy.model_id != source.model_id:  # the bytes changed under us
            raise ModelMismatchError(
                f"the copy of {src} has model id {copy.model_id.hex()}, not "
                f"{source.model_id.hex()}: {src} changed while it was copied"
            )
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # only the temporary folder made here
        raise
    return _weights.load_weights(out)


def _decode_only(manifest: Manifest, decoder: str) -> Manifest:
    dropped = [n for n in manifest.decoders if n != decoder]
    info = {
        **manifest.info,
        "decode_only": {
            "decoder": decoder,
            "dropped_decoders": dropped,
            "note": "a decode-only copy (python -m lcf.models release): it decodes every file of this model; the "
            "encoder and the other decoders are in the folder it was copied from",
        },
    }
    return dataclasses.replace(
        manifest, decoders={decoder: manifest.decoders[decoder]}, default_decoder=decoder, info=info
    )


def folder_bytes(root: Path) -> int:
    """Bytes of the regular files directly in ``root`` (what a folder costs in the wheel and the tracked tree)."""
    return sum(p.stat().st_size for p in root.iterdir() if p.is_file())


# -- python -m lcf.models -------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lcf.models",
        description="The models lcf finds, and decode-only "
        "copies of a weights folder (see README.md, 'Models and old files').",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the weights folders on the search path, in search order")
    release = sub.add_parser(
        "release", help="write a decode-only copy of a weights folder (entropy model + one decoder; same model id)"
    )
    release.add_argument("src", type=Path, help="the weights folder (e.g. weights)")
    release.add_argument("--out", type=Path, default=None, help="the new folder (default: SRC/released/<model id>)")
    release.add_argument("--decoder", default=None, help="the decoder to keep (default: the folder's default)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            registry = installed_models()
            for m in registry.models:
                print(
                    f"{m.model_id.hex()}  {m.source:<16} {m.root}  decoders {','.join(m.decoders)}"
                    f"{'' if m.encodes else '  (decode only)'}"
                )
            for s in registry.skipped:
                print(f"skipped {s.root} ({s.source}): {s.reason}", file=sys.stderr)
            return 0
        copy = release_copy(args.src, args.out, args.decoder)
    except LcfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: {LcfIOError(str(exc))}", file=sys.stderr)
        return LcfIOError.exit_code
    print(
        f"model {copy.model_id.hex()}: decode-only copy in {copy.root} with decoder {copy.default_decoder} "
        f"({folder_bytes(copy.root):,} bytes)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
