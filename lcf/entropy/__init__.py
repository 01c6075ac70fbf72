"""lcf's entropy layer: float entropy parameters -> integer grids -> integer PMFs -> ANS streams (numpy + constriction).

Normative description: spec/entropy.md. Data flow:

    MixtureParams --params.quantize--> IntParams --mixture (FamilyTables)--> integer PMFs --coder--> bytes
    z symbols ------------------------------------(ZTables)--------------> integer PMFs --coder--> bytes
"""

from .params import IntParams, MixtureParams, quantize
from .streams import (
    decode_mixture_stream,
    decode_z_stream,
    encode_mixture_stream,
    encode_z_stream,
    estimate_bits,
    estimate_z_bits,
    pack_bitmap,
    unpack_bitmap,
)
from .tables import FamilyTables, ZTables, build_family_tables, build_z_tables

__all__ = [
    "FamilyTables",
    "IntParams",
    "MixtureParams",
    "ZTables",
    "build_family_tables",
    "build_z_tables",
    "decode_mixture_stream",
    "decode_z_stream",
    "encode_mixture_stream",
    "encode_z_stream",
    "estimate_bits",
    "estimate_z_bits",
    "pack_bitmap",
    "quantize",
    "unpack_bitmap",
]
