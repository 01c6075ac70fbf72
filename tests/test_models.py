"""Every file lcf ever wrote stays decodable: the weights a file needs are found by the model id in its header
(lcf.models). Two tiny weights folders of different model ids (the conformance model of spec/vectors/weights and a
copy with one gain changed), files of each, on LCF_WEIGHTS_PATH, as a released decode-only copy, forced, missing."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lcf import api, models
from lcf import weights as lcf_weights
from lcf.container import read_container, write_container
from lcf.container.header import Header
from lcf.errors import CorruptDataError, LcfIOError, ModelMismatchError, UsageError
from lcf.manifest import MANIFEST
from lcf.weights import load_weights, save_weights
from lcf_cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC_WEIGHTS = Path(__file__).resolve().parent.parent / "spec" / "vectors" / "weights"
ENV = (models.PATH_VARIABLE, models.FORCE_VARIABLE)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two weights folders of one architecture and different model ids: A (the conformance model) and B (A with
    one gain changed), side by side in one folder."""
    root = tmp_path_factory.mktemp("models")
    a = root / "a"
    shutil.copytree(SPEC_WEIGHTS, a)
    w = load_weights(a)
    entropy = {k: np.array(v) for k, v in w.entropy.items()}
    entropy["gain.log_gain"] = entropy["gain.log_gain"] + np.asarray(0.25, entropy["gain.log_gain"].dtype)
    save_weights(
        root / "b",
        model_config=w.manifest.model_config,
        encoder={k: np.array(v) for k, v in w.encoder().items()},
        entropy=entropy,
        decoders={"teacher": (w.decoder_arch("teacher"), {k: np.array(v) for k, v in w.decoder("teacher").items()})},
        info={"notes": "tests/test_models.py: model B"},
    )
    return a, root / "b"


@pytest.fixture(scope="module")
def files(folders: tuple[Path, Path]) -> tuple[bytes, bytes]:
    """A file of each model (the same image)."""
    from images import make_rgb

    image = make_rgb(48, 40, "mixed")
    return tuple(api.encode_image(image, quality=5, weights=folder) for folder in folders)


@pytest.fixture(scope="module")
def legacy(folders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model B's weights with a second decoder, "legacy", that the packaged model does not have (as an older release
    may offer a decoder the newest lacks). The same entropy model: the model id of B."""
    w = load_weights(folders[1])
    teacher = (w.decoder_arch("teacher"), {k: np.array(v) for k, v in w.decoder("teacher").items()})
    out = tmp_path_factory.mktemp("legacy") / "b-legacy"
    save_weights(
        out,
        model_config=w.manifest.model_config,
        encoder={k: np.array(v) for k, v in w.encoder().items()},
        entropy={k: np.array(v) for k, v in w.entropy.items()},
        decoders={"teacher": teacher, "legacy": teacher},
        info={"notes": "tests/test_models.py: model B with a decoder named legacy"},
    )
    return out


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No LCF_WEIGHTS, no LCF_WEIGHTS_PATH: only what a test sets."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def model_id(folder: Path) -> bytes:
    return lcf_weights.read_manifest(folder).model_id


def cli(*args: str | Path):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def with_model_id(data: bytes, new_id: bytes) -> bytes:
    container = read_container(data)
    return write_container(Header(**{**vars(container.header), "model_id": new_id}), container.chunks)


def test_the_two_models_differ(folders: tuple[Path, Path], files: tuple[bytes, bytes]) -> None:
    a, b = folders
    assert model_id(a) != model_id(b)
    assert [read_container(f).header.model_id for f in files] == [model_id(a), model_id(b)]


@pytest.mark.parametrize("layout", ["folders", "parent"])
def test_files_of_each_model_decode_with_the_model_of_their_header(
    folders: tuple[Path, Path], files: tuple[bytes, bytes], clean_env: pytest.MonkeyPatch, layout: str
) -> None:
    path = os.pathsep.join(map(str, folders)) if layout == "folders" else str(folders[0].parent)  # or their parent
    clean_env.setenv(models.PATH_VARIABLE, path)
    for folder, data in zip(folders, files, strict=True):
        codec = api.codec_for_data(data)
        assert codec.weights.root == folder.resolve() and codec.weights.model_id == model_id(folder)
        assert np.array_equal(api.decode_array(data), api.decode_array(data, weights=folder))
    assert api.codec_for_data(files[0]) is api.codec_for_data(files[0])  # one codec per folder, kept
    assert api.codec_for_data(files[0]) is not api.codec_for_data(files[1])


def test_cli_decode_and_info_by_model_id(
    folders: tuple[Path, Path], files: tuple[bytes, bytes], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv(models.PATH_VARIABLE, str(folders[0].parent))
    for name, folder, data in zip("ab", folders, files, strict=True):
        src = tmp_path / f"{name}.lcf"
        src.write_bytes(data)
        result = cli("decode", src, "-o", tmp_path / f"{name}.png")
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"{name}.png").is_file()
        doc = json.loads(cli("info", src, "--json").stdout)
        assert doc["model"] == {
            "model_id": model_id(folder).hex(),
            "installed": True,
            "weights": str(folder),
            "source": "LCF_WEIGHTS_PATH",
            "problem": None,
        }
        text = cli("info", src).stdout
        assert f"needs     model {model_id(folder).hex()}, installed: {folder} (LCF_WEIGHTS_PATH)" in text
    listed = json.loads(cli("info", "--json").stdout)["models"]
    assert [m["model_id"] for m in listed if m["source"] == "LCF_WEIGHTS_PATH"] == [model_id(f).hex() for f in folders]
    assert listed[0]["source"] == "packaged" and listed[0]["encodes"] is True


def test_forcing_the_wrong_weights_names_the_model_needed(
    folders: tuple[Path, Path], files: tuple[bytes, bytes], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    a, b = folders
    clean_env.setenv(models.PATH_VARIABLE, str(b))
    with pytest.raises(ModelMismatchError) as caught:
        api.decode_array(files[1], weights=a)
    message = str(caught.value)
    assert f"encoded with model {model_id(b).hex()}" in message and f"are model {model_id(a).hex()}" in message
    assert f"installed at {b} (LCF_WEIGHTS_PATH)" in message and "leave out --weights" in message
    src = tmp_path / "b.lcf"
    src.write_bytes(files[1])
    result = cli("decode", src, "-o", tmp_path / "b.png", "--weights", a)
    assert result.exit_code == 6 and model_id(b).hex() in result.stderr and "given as --weights" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.lcf"]
    clean_env.setenv(models.FORCE_VARIABLE, str(a))  # LCF_WEIGHTS forces one folder too
    with pytest.raises(ModelMismatchError, match="given as LCF_WEIGHTS"):
        api.decode_array(files[1])
    doc = json.loads(cli("info", src, "--json").stdout)
    assert doc["model"]["installed"] is False and doc["model"]["source"] == "LCF_WEIGHTS"
    assert f"installed at {b}" in doc["model"]["problem"]
    assert np.array_equal(api.decode_array(files[0]), api.decode_array(files[0], weights=a))


def test_a_missing_model_says_which_and_where_to_get_it(
    folders: tuple[Path, Path], files: tuple[bytes, bytes], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    a, b = folders
    clean_env.setenv(models.PATH_VARIABLE, str(a))
    with pytest.raises(ModelMismatchError) as caught:
        api.decode_bytes(files[1])
    message = str(caught.value)
    assert f"encoded with model {model_id(b).hex()}, which is not installed" in message
    assert "lcf does not know this model" in message and models.PATH_VARIABLE in message
    assert f"{a} ({models.PATH_VARIABLE}, model {model_id(a).hex()})" in message  # what was searched
    src = tmp_path / "b.lcf"
    src.write_bytes(files[1])
    result = cli("decode", src, "-o", tmp_path / "b.png")
    assert result.exit_code == 6 and "not installed" in result.stderr and not (tmp_path / "b.png").exists()
    info = cli("info", src)
    assert info.exit_code == 0 and f"needs     model {model_id(b).hex()}: not installed" in info.stdout
    assert json.loads(cli("info", src, "--json").stdout)["model"]["installed"] is False
    assert cli("validate", src, "--deep").exit_code == 6


def test_a_codec_given_a_file_of_another_model_names_it_and_where_to_get_it(
    folders: tuple[Path, Path], files: tuple[bytes, bytes], clean_env: pytest.MonkeyPatch
) -> None:
    """lcf.codec.Codec used directly (not through lcf.api, which picks the weights by model id) says what the CLI
    says: the model the file needs, and where it is installed or where to get it."""
    from lcf.codec import Codec

    a, b = folders
    codec = Codec(a)
    clean_env.setenv(models.PATH_VARIABLE, str(b))
    with pytest.raises(ModelMismatchError) as caught:
        codec.decode(files[1])
    message = str(caught.value)
    assert f"encoded with model {model_id(b).hex()}" in message and f"are model {model_id(a).hex()}" in message
    assert f"installed at {b} (LCF_WEIGHTS_PATH)" in message and f"Codec({b})" in message
    clean_env.delenv(models.PATH_VARIABLE)
    with pytest.raises(ModelMismatchError, match="lcf does not know this model") as caught:
        codec.decode(files[1])
    assert model_id(b).hex() in str(caught.value) and models.PATH_VARIABLE in str(caught.value)


def test_a_decode_batch_uses_the_decoders_of_its_files_model(
    legacy: Path, files: tuple[bytes, bytes], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """lcf batch --to png --decoder NAME checks NAME against the model of the files (found by the model id in their
    headers), not the packaged model: a decoder only an older model offers works, and one the files' model lacks is
    refused before any file, naming that model."""
    clean_env.setenv(models.PATH_VARIABLE, str(legacy))
    src = tmp_path / "src"
    src.mkdir()
    (src / "b.lcf").write_bytes(files[1])
    result = cli("batch", src, tmp_path / "out", "--to", "png", "--decoder", "legacy")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png"]
    packaged = load_weights(models.packaged_root()).decoder_names
    other = next(n for n in packaged if n not in ("teacher", "legacy"))  # the packaged model has it, B has not
    result = cli("batch", src, tmp_path / "out2", "--to", "png", "--decoder", other)
    assert result.exit_code == 2, result.output
    assert f"model {model_id(legacy).hex()}" in result.stderr and str(src / "b.lcf") in result.stderr
    assert "available there: teacher, legacy" in result.stderr
    assert not (tmp_path / "out2").exists()  # refused before any work


def test_a_known_release_is_named(files: tuple[bytes, bytes], clean_env: pytest.MonkeyPatch) -> None:
    old = bytes.fromhex("aaa070525e9b08026209009be56f8feb")  # the model before integer entropy networks
    with pytest.raises(ModelMismatchError, match="lcf commits bed2875..e193d8d"):
        api.decode_array(with_model_id(files[0], old))
    where = models.where_to_get(bytes.fromhex(models.RELEASES[0].model_id))
    assert "lcf 0.1.0" in where and models.PATH_VARIABLE in where  # a released model: its folder on the path


def test_damage_is_reported_before_a_missing_model(files: tuple[bytes, bytes], clean_env: pytest.MonkeyPatch) -> None:
    data = bytearray(with_model_id(files[0], bytes(range(16))))
    data[-20] ^= 0x01  # inside the last stream chunk: its CRC no longer matches
    with pytest.raises(CorruptDataError):
        api.decode_array(bytes(data))


def test_released_decode_only_copy(
    folders: tuple[Path, Path], files: tuple[bytes, bytes], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """A packaged folder (A) with the older model B released beside it in released/<model id>/."""
    a, b = folders
    packaged = tmp_path / "weights"
    shutil.copytree(a, packaged)
    clean_env.setattr(lcf_weights, "DEFAULT_WEIGHTS", packaged)
    assert models.main(["release", str(b), "--out", str(packaged / "released" / model_id(b).hex())]) == 0
    copy = packaged / "released" / model_id(b).hex()
    assert sorted(p.name for p in copy.iterdir()) == sorted(
        [MANIFEST, "entropy.safetensors", "decoder-teacher.safetensors"]
    )
    assert (copy / "entropy.safetensors").read_bytes() == (b / "entropy.safetensors").read_bytes()
    loaded = load_weights(copy)
    assert loaded.model_id == model_id(b) and loaded.decoder_names == ["teacher"]
    assert loaded.manifest.info["decode_only"]["decoder"] == "teacher"
    assert models.folder_bytes(copy) == sum(p.stat().st_size for p in copy.iterdir())

    registry = models.installed_models()
    assert [(m.model_id, m.source, m.encodes) for m in registry.models] == [
        (model_id(a), "packaged", True),
        (model_id(b), "released", False),
    ]
    codec = api.codec_for_data(files[1])
    assert codec.weights.root == copy.resolve()
    assert np.array_equal(api.decode_array(files[1]), api.decode_array(files[1], weights=b))
    assert api.get_codec().weights.root == packaged.resolve()  # encoding: the packaged (newest) model
    with pytest.raises(LcfIOError, match="decode-only copy of model"):
        api.encode_image(np.zeros((16, 16, 3), np.uint8), weights=copy)

    with pytest.raises(UsageError, match="exists"):
        models.release_copy(b, copy)
    with pytest.raises(ModelMismatchError, match="no decoder named 'cfg9'"):
        models.release_copy(b, tmp_path / "other", decoder="cfg9")
    assert not (tmp_path / "other").exists()


def test_release_copy_default_place_and_interrupted_copy(
    folders: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "w"
    shutil.copytree(folders[1], src)
    copy = models.release_copy(src)
    assert copy.root == src / "released" / model_id(src).hex()

    def fail(path: Path, what: str) -> bytes:
        raise LcfIOError(f"cannot read {path}")

    monkeypatch.setattr(lcf_weights, "read_plain_file", fail)
    with pytest.raises(LcfIOError):
        models.release_copy(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # neither the copy nor its temporary folder


def test_folders_that_cannot_be_read_are_skipped_and_named(
    folders: tuple[Path, Path], files: tuple[bytes, bytes], tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    a, b = folders
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / MANIFEST).write_text("{not json")
    (tmp_path / "empty").mkdir()
    packaged = tmp_path / "weights"
    shutil.copytree(a, packaged)
    shutil.copytree(b, packaged / "released" / ("0" * 32))  # a released folder not named after its model id
    clean_env.setattr(lcf_weights, "DEFAULT_WEIGHTS", packaged)
    clean_env.setenv(
        models.PATH_VARIABLE,
        os.pathsep.join([str(bad), str(tmp_path / "missing"), "", str(tmp_path / "empty"), str(b)]),
    )
    registry = models.installed_models()
    assert [m.root for m in registry.models] == [packaged, b]
    reasons = {s.root.name: s.reason for s in registry.skipped}
    assert set(reasons) == {"bad", "missing", "empty", "0" * 32}
    assert "not valid JSON" in reasons["bad"] and reasons["missing"] == "does not exist"
    assert reasons["empty"] == f"no {MANIFEST} in it, nor in a folder in it"
    assert "named after its model id" in reasons["0" * 32]
    assert api.codec_for_data(files[1]).weights.root == b.resolve()  # found past the broken folders
    with pytest.raises(ModelMismatchError, match="skipped .*bad"):
        api.decode_array(with_model_id(files[0], bytes(16)))


def test_every_released_model_stays_installed(clean_env: pytest.MonkeyPatch) -> None:
    """The policy: a new model is added beside the released ones. Retraining replaces weights/; this fails until
    the model it replaced is kept as weights/released/<model id>/ (python -m lcf.models release weights)."""
    registry = models.installed_models()
    installed = {m.model_id.hex(): m for m in registry.models}
    assert not registry.skipped, registry.skipped
    for release in models.RELEASES:
        assert (release.model_id in installed) == release.installed, release
    known = {r.model_id for r in models.RELEASES}
    assert all(m.model_id.hex() in known for m in registry.models), "add the new model to lcf.models.RELEASES"
    assert registry.models[0].source == "packaged" and registry.models[0].encodes


def test_the_weights_fit_the_gpu_lease_budget() -> None:
    """Every file under weights/ travels with every GPU lease call: released models are retired (README.md, "Models
    and old files") before weights/ passes lcf.models.WEIGHTS_BUDGET."""
    root = Path(__file__).resolve().parent.parent / "weights"
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert 0 < total <= models.WEIGHTS_BUDGET, f"weights/ is {total:,} bytes; retire the oldest released model"


def test_packaged_weights_come_from_the_lcf_weights_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "lcf_weights"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "lcf_weights", None)  # not installed: the weights/ beside lcf/
    assert lcf_weights.packaged_weights() == Path(lcf_weights.__file__).resolve().parent.parent / "weights"
    monkeypatch.delitem(sys.modules, "lcf_weights")  # installed (here: the one in tmp_path)
    assert lcf_weights.packaged_weights() == package
