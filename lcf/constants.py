"""Numbers and names the spec fixes that more than one layer uses, defined once (standard library only, so that
lcf.nn, lcf.entropy and lcf.container may all import it).

The mixture (spec/lcf.md, "Entropy parameters"; spec/entropy.md, sections 2 and 3):

* ``SCALE_MIN``, ``SCALE_MAX``: the range of a component's scale. lcf.nn.pen clamps its float scales to it (training);
  lcf.entropy.params spaces the ``SCALE_LEVELS`` levels of the integer grid log-evenly over it.
* ``MEAN_LIMIT``: a component's mean is clamped to ±MEAN_LIMIT (latent units) by both the float PEN and the integer
  parameters (there: ``RAW_MEAN_LIMIT`` = MEAN_LIMIT · 16 on the 1/16 grid). Not to be confused with
  ``lcf.entropy.params.MEAN_GRID_MIN/MAX``, the range an int32 mean may hold on that grid.
* ``FAMILIES``: the component families, their index being the family code; ``ANCHOR_FAMILIES`` (GLLMM, K = 9) and
  ``NONANCHOR_FAMILIES`` (GMM, K = 3): the family of each component of PEN1's and PEN2's mixtures.

The file (spec/lcf.md, "File structure" and "HEAD"):

* ``SIGNATURE``: the 8 bytes every .lcf file starts with.
* ``MIN_QUALITY``, ``MAX_QUALITY``: the quality range (the header's field, the gains' levels, every option that takes
  a quality); ``DEFAULT_QUALITY`` the one used when none is given.
* ``EXIF_PREFIX``: the eXIf chunk holds bare TIFF; Pillow's ``info["exif"]`` carries this prefix before it.
"""

from __future__ import annotations

SCALE_MIN = 0.11
SCALE_MAX = 64.0
MEAN_LIMIT = 1024

FAMILIES = ("G", "L", "S")  # Gaussian (sigma), Laplacian (b), logistic (s); the index is the family code
ANCHOR_FAMILIES = ("G", "G", "G", "L", "L", "L", "S", "S", "S")  # GLLMM, K = 9
NONANCHOR_FAMILIES = ("G", "G", "G")  # GMM, K = 3

#: 8B: high bit set (catches 7-bit transfers, not ASCII text); "LCF"; CR LF (catches CR LF -> LF);
#: ^Z (stops `type` on DOS); LF (catches LF -> CR LF).
SIGNATURE = b"\x8bLCF\r\n\x1a\n"

MIN_QUALITY = 1.0
MAX_QUALITY = 7.0
DEFAULT_QUALITY = 4.0

EXIF_PREFIX = b"Exif\x00\x00"

__all__ = [
    "ANCHOR_FAMILIES",
    "DEFAULT_QUALITY",
    "EXIF_PREFIX",
    "FAMILIES",
    "MAX_QUALITY",
    "MEAN_LIMIT",
    "MIN_QUALITY",
    "NONANCHOR_FAMILIES",
    "SCALE_MAX",
    "SCALE_MIN",
    "SIGNATURE",
]
