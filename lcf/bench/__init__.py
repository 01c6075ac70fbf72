"""lcf.bench: rate-distortion measurement of lcf and classical codecs (issue 4).

    from lcf.bench import run_benchmark
    result = run_benchmark("kodak/", codecs=["webp", "avif"], lcf_encode_decode=hook, out_dir="out/")

Modules: ``metrics`` (PSNR, MS-SSIM), ``classical`` (Pillow codecs and their sweeps), ``bdrate`` (Bjøntegaard
delta), ``published`` (published Kodak curves), ``report`` (tables, CSV, plots), ``runner`` (the benchmark loop),
``scripts`` (the options and output shared by the scripts in ``benchmarks/``).
lcf itself enters only through the ``EncodeDecode`` hook; this package never imports ``lcf.codec``.
"""

from lcf.bench.bdrate import bd_quality, bd_rate
from lcf.bench.classical import CODECS, ClassicalCodec
from lcf.bench.metrics import ms_ssim, psnr
from lcf.bench.published import read_published
from lcf.bench.results import EncodeDecode, Measurement, RDCurve, RDPoint, aggregate
from lcf.bench.runner import LCF_LEVELS, BenchmarkResult, run_benchmark

__all__ = [
    "CODECS",
    "LCF_LEVELS",
    "BenchmarkResult",
    "ClassicalCodec",
    "EncodeDecode",
    "Measurement",
    "RDCurve",
    "RDPoint",
    "aggregate",
    "bd_quality",
    "bd_rate",
    "ms_ssim",
    "psnr",
    "read_published",
    "run_benchmark",
]
