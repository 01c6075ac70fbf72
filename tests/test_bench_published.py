"""lcf.bench.published: reading published R-D points from a CSV (a temporary one; ../shared is not needed)."""

import pytest

from lcf.bench.published import read_published
from lcf.bench.results import find_curve

CSV = """codec,quality,bpp,psnr_rgb,ms_ssim,source_file
vtm,QP37,0.245817,31.199874,0.956108,a/vtm.json
vtm,QP42,0.112495,28.493022,0.917691,a/vtm.json
webp,q=5,0.234419,28.328424,,b/webp.json
"""


def test_read_published(tmp_path):
    p = tmp_path / "pub.csv"
    p.write_text(CSV)
    curves = read_published(p)
    assert [c.id for c in curves] == ["published:vtm", "published:webp"]
    vtm = find_curve(curves, "published:vtm")
    assert vtm.source == "published" and vtm.label == "vtm (published)" and vtm.note == "a/vtm.json"
    assert [pt.param for pt in vtm.points] == ["QP42", "QP37"]  # sorted by bpp
    assert vtm.points[1].psnr == pytest.approx(31.199874)
    assert vtm.points[0].ms_ssim == pytest.approx(0.917691)
    webp = find_curve(curves, "published:webp")
    assert webp.points[0].ms_ssim != webp.points[0].ms_ssim  # empty -> NaN


def test_read_published_errors(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("codec,quality,bpp\nx,1,0.1\n")
    with pytest.raises(ValueError, match="missing column"):
        read_published(p)
    p.write_text(CSV + "jpeg,q=5,abc,20,0.9,c\n")
    with pytest.raises(ValueError, match=r"bad.csv:5: column 'bpp'"):
        read_published(p)
    with pytest.raises(KeyError, match="present"):
        find_curve([], "published:vtm")
