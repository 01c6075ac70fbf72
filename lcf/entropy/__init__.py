"""lcf's entropy layer: integer network outputs -> integer parameters -> integer PMFs -> ANS streams (numpy +
constriction).

Normative description: spec/entropy.md. Data flow:

    raw slots (int) --params.int_params--> IntParams --mixture (FamilyTables)--> integer PMFs --coder--> bytes
    z symbols ------------------------------------(ZTables)--------------> integer PMFs --coder--> bytes
"""

from .params import IntParams, int_params
from .streams import (
    decode_mixture_stream,
    decode_z_stream,
    encode_mixture_stream,
    encode_z_stream,
    estimate_bits,
    estimate_z_bits,
)
from .tables import FamilyTables, ZTables, build_family_tables, build_z_tables

__all__ = [
    "FamilyTables",
    "IntParams",
    "ZTables",
    "build_family_tables",
    "build_z_tables",
    "decode_mixture_stream",
    "decode_z_stream",
    "encode_mixture_stream",
    "encode_z_stream",
    "estimate_bits",
    "estimate_z_bits",
    "int_params",
]
