"""Codecs loaded once per (weights folder, device) and shared by every call of this process: the API, the batch
converter and the Pillow plugin each ask here. Which folder holds a model: :mod:`lcf.models`. PyTorch is imported
only when the first codec is made.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from lcf.container import Limits, read_container, read_header_only
from lcf.errors import ModelMismatchError
from lcf.options import check_device

if TYPE_CHECKING:
    from lcf.codec import Codec

PathLike = str | os.PathLike[str]


@functools.lru_cache(maxsize=4)
def _codec_for(weights: str | None, device: str) -> Codec:
    from lcf.codec import Codec  # torch is imported only when a codec is needed

    return Codec(weights, device=device)


def get_codec(weights: PathLike | None = None, device: str = "cpu") -> Codec:
    """The :class:`lcf.codec.Codec` for a weights folder (default: ``$LCF_WEIGHTS``, else the packaged, newest
    model) on ``device``: the one that encodes. Kept per folder and device."""
    from lcf.models import encoding_root

    check_device(device)
    return _codec_for(str(encoding_root(weights).resolve()), device)


def codec_for_model(model_id: bytes, weights: PathLike | None = None, device: str = "cpu") -> Codec:
    """The :class:`lcf.codec.Codec` that decodes files of ``model_id``: ``weights`` (or ``$LCF_WEIGHTS``) when
    given, which must hold that model, else the installed folder of that model (:func:`lcf.models.decoding_root`;
    only manifests are read to find it). ModelMismatchError names the model and where to get it when none does."""
    from lcf.models import decoding_root

    check_device(device)
    return _codec_for(str(decoding_root(model_id, weights).resolve()), device)


def codec_for_data(
    data: bytes, weights: PathLike | None = None, device: str = "cpu", limits: Limits | None = None
) -> Codec:
    """:func:`codec_for_model` for the model id in the header of the .lcf file ``data``. A file whose model is
    not installed is read whole first, so that a damaged file reports the damage (CorruptDataError) rather than a
    model id that may be damaged itself."""
    limits = limits or Limits()
    header = read_header_only(data, limits)
    try:
        return codec_for_model(header.model_id, weights, device)
    except ModelMismatchError:
        read_container(data, limits)
        raise


__all__ = ["codec_for_data", "codec_for_model", "get_codec"]
