"""A weights folder (:class:`lcf.weights.Weights`, its tensors checked against the declared architecture) -> the
networks: the float :class:`lcf.nn.LcfModel` and the exact :class:`lcf.latent_codec.LatentCodec`.

Used by the codec, which loads the entropy model at once and the encoder and each decoder when first needed, and by
training (:func:`load_model`: every network as float32, to fine-tune, distil or export). Device and layout are the
caller's (lcf.resources); every failure is a :class:`ModelMismatchError` that names the part that does not fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from lcf.errors import ModelMismatchError
from lcf.nn import IntegerEntropyNet, LcfModel
from lcf.nn.integer import INTEGER_PREFIXES, check_integer_arrays, float_state
from lcf.nn.model import weights_to_load
from lcf.weights import ENCODER_PREFIXES, ENTROPY_PREFIXES, Weights, float_layout

if TYPE_CHECKING:
    from lcf.latent_codec import LatentCodec

NETWORK_PREFIXES = ENTROPY_PREFIXES[:-1]  # the gains and the entropy networks: every entropy key but the tables
MIGRATION = (
    "these weights store the entropy networks as floats, the layout of lcf before integer entropy "
    "networks (model ids up to aaa070525e9b...); convert them with `python -m lcf.train reexport "
    "--weights DIR --out NEWDIR` (a new model id: files written with the old weights decode only with "
    "the lcf version that wrote them)"
)


def tensors(arrays: dict[str, np.ndarray], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The arrays whose keys start with ``prefixes``, as (writable) torch tensors."""
    return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefixes)}


def load_part(model: LcfModel, state: dict[str, torch.Tensor], what: str, prefixes: tuple[str, ...]) -> None:
    """Load ``state`` into the parameters of ``model`` under ``prefixes``, which it must cover exactly."""
    expected = {k for k in model.state_dict() if k.startswith(prefixes)}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ModelMismatchError(
            f"the {what} weights do not fit the model {model.config}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    model.load_state_dict(state, strict=False)


def float_entropy_layout(arrays: dict[str, np.ndarray]) -> bool:
    """True for a folder from before integer entropy networks (model ids up to aaa070525e9b...): h_s, ctx and the
    PENs stored as float tensors rather than integer layers."""
    old = arrays.get("h_s.0.weight")
    return old is not None and old.dtype.kind == "f" and "h_s.0.shift" not in arrays


def entropy_state(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The gains and the float entropy networks of an ``entropy.safetensors``: the integer layers dequantized
    (:func:`lcf.nn.integer.float_state`), or a float-layout folder's tensors as stored."""
    state = tensors(arrays, ("gain.",))
    if float_entropy_layout(arrays):
        state.update({k: v for k, v in tensors(arrays, INTEGER_PREFIXES).items() if v.is_floating_point()})
    else:
        state.update(float_state(arrays))
    return state


def load_latent_codec(model: LcfModel, weights: Weights) -> LatentCodec:
    """The entropy model of ``weights``: its integer networks (checked) and tables as a :class:`LatentCodec`; their
    float equivalent and the gains are loaded into ``model`` (for encoder refinement and training)."""
    # imported here, not above: load_model must not import the entropy coder (constriction), which the lent GPU
    # machines that train (python -m lcf.train lease) do not have (tests/test_train_lease.py checks it)
    from lcf.entropy import FamilyTables, ZTables
    from lcf.latent_codec import LatentCodec

    arrays, config = weights.entropy, model.config
    if float_entropy_layout(arrays):
        raise ModelMismatchError(MIGRATION)
    shapes = {
        k[: -len(".weight")]: tuple(v.shape)
        for k, v in model.state_dict().items()
        if k.startswith(INTEGER_PREFIXES) and k.endswith(".weight")
    }
    try:
        check_integer_arrays(arrays, shapes)
    except ValueError as exc:
        raise ModelMismatchError(f"the entropy weights do not fit the model {config}: {exc}") from None
    net = IntegerEntropyNet(arrays)
    load_part(model, entropy_state(arrays), "entropy", NETWORK_PREFIXES)
    tables = {k: v for k, v in arrays.items() if k.startswith("tables.")}
    try:
        family_tables = FamilyTables.from_arrays({k: v for k, v in tables.items() if ".family." in k})
        z_tables = ZTables.from_arrays({k: v for k, v in tables.items() if k.startswith("tables.z.")})
    except ValueError as exc:
        raise ModelMismatchError(f"{weights.root / weights.manifest.entropy_file}: {exc}") from None
    if z_tables.channels != config.Mz:
        raise ModelMismatchError(f"z tables have {z_tables.channels} channels, the model {config.Mz}")
    return LatentCodec(net, family_tables, z_tables)


def load_encoder(model: LcfModel, weights: Weights) -> None:
    """g_a and h_a of ``weights`` into ``model`` (``encoder.safetensors`` checked against the model before its data
    is read)."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith(ENCODER_PREFIXES)}
    arrays = weights.encoder(float_layout(shapes))
    load_part(model, tensors(arrays, ENCODER_PREFIXES), "encoder", ENCODER_PREFIXES)


def load_decoder(model: LcfModel, weights: Weights, name: str) -> None:
    """Decoder ``name`` of ``weights`` into ``model``: a student (or another teacher shape) gets a g_s built from the
    manifest's arch first."""
    arch = weights.decoder_arch(name)
    arrays = weights.decoder(name)  # its tensors checked against the arch before being read
    if name not in model.decoders or not arch.same_network(model.decoder_archs[name]):
        with weights_to_load():  # every parameter of it is loaded below
            model.add_decoder(name, arch)
    prefix = f"decoders.{name}."
    load_part(
        model, {prefix + k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, f"decoder {name!r}", (prefix,)
    )


def load_model(weights: Weights) -> LcfModel:
    """The whole model of a weights folder (encoder, gains, entropy networks, every decoder) as a float32 LcfModel in
    eval mode, for training. Its entropy networks may be stored as integer layers (this lcf: dequantized) or as float
    tensors (before integer networks, model ids up to aaa070525e9b...: what ``lcf.train reexport`` converts). The
    factorized density of z is not shipped: it stays untrained."""
    model = LcfModel(weights.manifest.model_config)
    load_encoder(model, weights)
    load_part(model, entropy_state(weights.entropy), "entropy", NETWORK_PREFIXES)
    for name in weights.decoder_names:
        load_decoder(model, weights, name)
    return model.eval()


__all__ = [
    "entropy_state",
    "float_entropy_layout",
    "load_decoder",
    "load_encoder",
    "load_latent_codec",
    "load_model",
    "load_part",
    "tensors",
]
