"""Export of a model to a weights folder: float32 and float16 storage, and an encoder-only run shipped into a copy
of a folder (lcf.train.export)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from images import make_rgb_array

from lcf.codec import Codec
from lcf.errors import ModelMismatchError, TrainError
from lcf.nn import LcfModel, ModelConfig
from lcf.nn.integer import INTEGER_PREFIXES, float_state
from lcf.train.export import export_model, reexport
from lcf.weights import save_weights


def _model(seed: int = 5) -> LcfModel:
    torch.manual_seed(seed)
    return LcfModel(ModelConfig(N=16, M=24, Mz=16)).eval()


def _network_bytes(folder) -> int:  # the entropy file is mostly integer tables at this size
    return sum((folder / name).stat().st_size for name in ("encoder.safetensors", "decoder-teacher.safetensors"))


def test_float16_export_stores_half_precision_and_round_trips(tmp_path):
    w32 = export_model(_model(), tmp_path / "w32")
    w16 = export_model(_model(), tmp_path / "w16", dtype="float16")
    assert w16.model_id != w32.model_id  # the z tables come from the rounded density, so files of one refuse the other
    for key, arr in w16.entropy.items():
        if key.startswith("gain."):  # the only float tensors of the entropy file
            assert arr.dtype == np.float16, key
        elif key.startswith(INTEGER_PREFIXES):  # quantized from the float32 model, whatever the storage dtype
            assert arr.dtype == w32.entropy[key].dtype and np.array_equal(arr, w32.entropy[key]), key
        else:
            assert key.startswith("tables.") and arr.dtype == w32.entropy[key].dtype, key
    assert all(a.dtype == np.float16 for a in w16.encoder().values())
    assert all(a.dtype == np.float16 for a in w16.decoder("teacher").values())
    assert _network_bytes(tmp_path / "w16") < 0.55 * _network_bytes(tmp_path / "w32")

    img = make_rgb_array(72, 56, kind="mixed", seed=3)
    c32, c16 = Codec(w32), Codec(w16)
    for q in (1.0, 4.0, 7.0):
        data = c16.encode(img, q)
        a, b = c16.decode(data), c16.decode(data)
        np.testing.assert_array_equal(a.rgb, b.rgb)
        # an untrained model: both precisions reconstruct the same image up to the rounding of the weights
        diff = np.abs(a.rgb.astype(int) - c32.decode(c32.encode(img, q)).rgb.astype(int))
        assert diff.mean() < 2.0, (q, diff.mean())


def test_values_that_overflow_float16_are_refused(tmp_path):
    model = _model()
    with torch.no_grad():
        model.g_a[0].conv.weight[0, 0, 0, 0] = 1e6
    with pytest.raises(TrainError, match="does not fit in float16"):
        export_model(model, tmp_path / "w", dtype="float16")
    with pytest.raises(TrainError, match="must be one of"):
        export_model(_model(), tmp_path / "w2", dtype="bfloat16")


def _float_layout_copy(weights, out):
    """The folder as lcf wrote it before integer entropy networks: h_s, ctx, PEN1, PEN2 as float32 tensors."""
    entropy = {k: v for k, v in weights.entropy.items() if not k.startswith(INTEGER_PREFIXES)}
    entropy.update({k: v.numpy() for k, v in float_state(weights.entropy).items()})
    decoders = {name: (weights.decoder_arch(name), weights.decoder(name)) for name in weights.decoder_names}
    return save_weights(
        out,
        model_config=weights.manifest.model_config,
        encoder=weights.encoder(),
        entropy=entropy,
        decoders=decoders,
        default_decoder=weights.default_decoder,
    )


def test_float_layout_weights_are_refused_with_the_way_out_and_reexport_converts_them(tmp_path):
    current = export_model(_model(), tmp_path / "w")
    old = _float_layout_copy(current, tmp_path / "old")
    with pytest.raises(ModelMismatchError, match="python -m lcf.train reexport"):
        Codec(old)
    converted = reexport(old.root, tmp_path / "new")
    for key in current.entropy:  # dequantizing and quantizing again gives back the same integer layers
        np.testing.assert_array_equal(converted.entropy[key], current.entropy[key], err_msg=key)
    assert converted.model_id == current.model_id
    img = make_rgb_array(64, 48, kind="mixed", seed=4)
    data = Codec(current).encode(img, 3.0)
    np.testing.assert_array_equal(Codec(converted).decode(data).rgb, Codec(current).decode(data).rgb)


@pytest.mark.usefixtures("one_torch_thread")
def test_an_encoder_only_run_ships_into_a_copy_with_the_same_model_id(tmp_path, tiny_weights):
    """export_encoder: the new folder's encoder is the run's, every other file is the old folder's byte for byte,
    and a file encoded with the new encoder decodes with the old folder (same model id)."""
    from PIL import Image

    from lcf.train.export import export_encoder
    from lcf.train.loop import TrainConfig, train

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(make_rgb_array(70, 72, kind="mixed", seed=3)).save(data / "a.png")
    run = tmp_path / "run"
    train(
        TrainConfig(
            data=[str(data)],
            run=str(run),
            N=16,
            M=24,
            Mz=16,
            crop=64,
            batch=2,
            steps=3,
            lr=1e-2,
            init_weights=str(tiny_weights),
            train_only="g_a,h_a",
        )
    )
    out = tmp_path / "new"
    new = export_encoder(run, tiny_weights, out)
    old = Codec(tiny_weights)
    assert new.model_id == old.weights.model_id
    assert new.encoder_id() != old.weights.encoder_id()  # what tells the two apart (benchmark rows, lcf bench)
    for path in tiny_weights.iterdir():
        if path.name not in ("encoder.safetensors", "manifest.json"):
            assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    assert (out / "encoder.safetensors").read_bytes() != (tiny_weights / "encoder.safetensors").read_bytes()
    assert new.manifest.info["encoder"]["train_only"] == "g_a,h_a"

    image = make_rgb_array(64, 80, kind="mixed", seed=4)
    data_new = Codec(out).encode(image, quality=3)
    assert data_new != old.encode(image, quality=3)  # the encoder moved
    assert np.array_equal(old.decode(data_new).rgb, Codec(out).decode(data_new).rgb)

    with pytest.raises(TrainError, match="new or empty folder"):
        export_encoder(run, tiny_weights, out)
    other = tmp_path / "other"  # a run of another model: its gains and teacher are not the folder's
    train(TrainConfig(data=[str(data)], run=str(other), N=16, M=24, Mz=16, crop=64, batch=2, steps=1))
    with pytest.raises(TrainError, match="was not started from"):
        export_encoder(other, tiny_weights, tmp_path / "x")


_WRITE_PAST_LIMIT = """
import json, resource, signal, sys
from pathlib import Path

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
from lcf.train.export import export_encoder
from lcf.weights import load_weights, save_weights

def attempt(call):
    try:
        call()
    except Exception as exc:
        return f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    return "no error"

src, again, run, out = (Path(a) for a in sys.argv[2:6])
w = load_weights(src)
decoders = {name: (w.decoder_arch(name), w.decoder(name)) for name in w.decoder_names}
doubled = {k: 2 * v for k, v in w.encoder().items()}
print(json.dumps([
    attempt(lambda: save_weights(again, model_config=w.manifest.model_config, encoder=doubled, entropy=w.entropy,
                                 decoders=decoders, default_decoder=w.default_decoder)),
    attempt(lambda: export_encoder(run, src, out)),
]))
"""


def test_an_export_that_fails_midway_leaves_no_partial_file(tmp_path, tiny_weights):
    """save_weights (export_model, reexport) and export_encoder write each file through lcf.fileio's atomic write:
    when a write fails midway (here a file-size limit, as a full disk would), the export stops with an LcfIOError
    naming the file, and every file of the folder is either complete or absent (or as it was); no temporary file."""
    import json
    import os
    import resource  # noqa: F401  (POSIX; the subprocess sets RLIMIT_FSIZE)
    import subprocess
    import sys

    from lcf.train.checkpoint import save_checkpoint
    from lcf.train.export import export_encoder
    from lcf.train.loop import model_from_folder
    from lcf.weights import load_weights

    model, weights = model_from_folder(tiny_weights)
    with torch.no_grad():
        model.g_a[0].conv.weight.mul_(1.5)  # the encoder-only run moved the encoder
    run = tmp_path / "run"
    ckpt = {"model": model.state_dict(), "model_config": weights.manifest.model_config.to_dict(), "step": 1}
    save_checkpoint(run, {**ckpt, "train_config": {"train_only": "g_a,h_a"}})
    reference = tmp_path / "reference"
    export_encoder(run, tiny_weights, reference)  # what a complete export holds
    again = tmp_path / "again"
    _float_layout_copy(load_weights(tiny_weights), again)  # an existing folder that a new export replaces
    before = {p.name: p.read_bytes() for p in again.iterdir()}
    limit = min(p.stat().st_size for p in tiny_weights.glob("*.safetensors")) // 2

    out = tmp_path / "out"
    args = [str(limit), str(tiny_weights), str(again), str(run), str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _WRITE_PAST_LIMIT, *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    replaced, copied = json.loads(done.stdout.splitlines()[-1])
    assert replaced.startswith("lcf.errors.LcfIOError: cannot write ") and "File too large" in replaced, replaced
    assert copied.startswith("lcf.errors.LcfIOError: cannot write ") and "File too large" in copied, copied
    assert {p.name: p.read_bytes() for p in again.iterdir()} == before  # the old folder, untouched
    assert sorted(p.name for p in out.iterdir()) == sorted(  # what was written is complete, nothing else
        p.name for p in reference.iterdir() if (out / p.name).exists()
    )
    for path in out.iterdir():
        assert path.read_bytes() == (reference / path.name).read_bytes(), f"{path.name} is incomplete"
