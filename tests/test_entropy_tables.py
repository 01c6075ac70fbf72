"""lcf.entropy.tables and lcf.entropy.mixture: integer tables, windows and coder PMFs (spec sections 3 to 5)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lcf.entropy import escape, mixture
from lcf.entropy.mixture import BUCKETS, MixturePlan
from lcf.entropy.params import (
    ANCHOR_FAMILIES,
    FAMILIES,
    MEAN_GRID_MAX,
    MEAN_GRID_MIN,
    MEAN_SCALE,
    SCALE_LEVELS,
    WEIGHT_TOTAL,
    IntParams,
)
from lcf.entropy.tables import (
    CODER_TOTAL,
    PAD,
    TABLE_TOTAL,
    FamilyTables,
    ZTables,
    build_family_tables,
    build_z_tables,
)


@pytest.fixture(scope="module")
def arrays():
    return build_family_tables()


@pytest.fixture(scope="module")
def tables(arrays):
    return FamilyTables.from_arrays(arrays)


def random_int_params(seed: int, n: int, families, spread: int = 6) -> IntParams:
    """Random IntParams on the grids, with edge cases: single components, extreme means and scales."""
    rng = np.random.default_rng(seed)
    k = len(families)
    cuts = np.sort(rng.integers(0, WEIGHT_TOTAL + 1, (n, k - 1)), axis=1)
    w = np.diff(np.concatenate([np.zeros((n, 1), int), cuts, np.full((n, 1), WEIGHT_TOTAL)], axis=1), axis=1)
    one = rng.random(n) < 0.2
    w[one] = 0
    w[one, rng.integers(0, k, one.sum())] = WEIGHT_TOTAL
    centre = rng.integers(-(1 << spread), 1 << spread, (n, 1)) * MEAN_SCALE
    means = centre + rng.integers(-8 * MEAN_SCALE, 8 * MEAN_SCALE, (n, k))
    far = rng.random((n, k)) < 0.05
    means[far] = rng.choice([MEAN_GRID_MIN, MEAN_GRID_MAX, 0], far.sum())
    means = np.clip(means, MEAN_GRID_MIN, MEAN_GRID_MAX)
    scale_idx = rng.integers(0, SCALE_LEVELS, (n, k))
    scale_idx[rng.random((n, k)) < 0.1] = SCALE_LEVELS - 1
    return IntParams(w, means, scale_idx, families)


def test_family_table_arrays(arrays, tables):
    assert set(arrays) == {"tables.family.pmf", "tables.family.half_width", "tables.family.format"}
    assert arrays["tables.family.pmf"].dtype == np.int32 and arrays["tables.family.half_width"].shape == (
        3,
        SCALE_LEVELS,
    )
    assert arrays["tables.family.pmf"].min() >= 0
    # every row sums to at most TABLE_TOTAL; its tail mass is tiny for the table's support
    for f in range(3):
        for s in (0, 20, SCALE_LEVELS - 1):
            d = int(tables.half_width[f, s])
            for r in range(MEAN_SCALE):
                row = tables.cdf[tables.row_start[f, s, r] - PAD : tables.row_start[f, s, r] + 2 * d + 2 + PAD]
                assert np.all(row[:PAD] == 0) and np.all(np.diff(row) >= 0)
                total = row[PAD + 2 * d + 1]
                assert TABLE_TOTAL - 4 <= total <= TABLE_TOTAL and np.all(row[PAD + 2 * d + 1 :] == total)
    assert np.all(tables.reach <= tables.half_width[:, :, None])
    assert np.all(tables.reach[:, :, 0] == -1)  # weight 0 never widens a window
    assert np.all(tables.reach[:, :, -1] >= 1)  # a single component always does
    # reach grows with the weight and with the scale
    assert np.all(np.diff(tables.reach, axis=2) >= 0) and np.all(np.diff(tables.reach[:, :, -1], axis=1) >= 0)
    again = FamilyTables.from_arrays({**tables.to_arrays(), "h_s.weight": np.zeros(3)})  # other keys are ignored
    assert np.array_equal(again.cdf, tables.cdf) and np.array_equal(again.reach, tables.reach)


def test_tables_survive_safetensors(arrays, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    z = build_z_tables(np.full((2, 5), 0.2), np.zeros(2))
    safetensors_numpy.save_file({**arrays, **z}, str(tmp_path / "t.safetensors"))
    loaded = safetensors_numpy.load_file(str(tmp_path / "t.safetensors"))
    family, ztab = FamilyTables.from_arrays(loaded), ZTables.from_arrays(loaded)
    assert np.array_equal(family.pmf, arrays["tables.family.pmf"]) and np.array_equal(ztab.pmf, z["tables.z.pmf"])


def test_family_tables_are_deterministic(arrays):
    again = build_family_tables()
    for key in arrays:
        assert np.array_equal(arrays[key], again[key])


def test_family_table_shapes_match_the_scale_means(tables):
    # the Gaussian row at scale index s, fraction 0 has variance close to scale_level(s)**2 + 1/12
    from lcf.entropy.params import scale_level

    for s in (30, 45, 60):
        d = int(tables.half_width[0, s])
        start = tables.row_start[0, s, 0]
        pmf = np.diff(tables.cdf[start : start + 2 * d + 2]).astype(np.float64)
        x = np.arange(-d, d + 1)
        var = np.sum(pmf * x**2) / pmf.sum()
        assert var == pytest.approx(scale_level(s) ** 2 + 1 / 12, rel=0.02)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda a: a.pop("tables.family.pmf"),
        lambda a: a.__setitem__("tables.family.pmf", a["tables.family.pmf"].astype(np.int64)),
        lambda a: a.__setitem__("tables.family.pmf", a["tables.family.pmf"][:-1]),
        lambda a: a.__setitem__("tables.family.half_width", a["tables.family.half_width"][:, :10]),
        lambda a: a.__setitem__("tables.family.format", np.array([2, 16, 64, 16], np.int32)),
        lambda a: a["tables.family.pmf"].__setitem__(0, TABLE_TOTAL),
        lambda a: a["tables.family.pmf"].__setitem__(0, -1),
    ],
)
def test_family_tables_reject_bad_arrays(arrays, mutate):
    bad = {k: np.array(v) for k, v in arrays.items()}
    mutate(bad)
    with pytest.raises(ValueError):
        FamilyTables.from_arrays(bad)


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 120),
    st.sampled_from([ANCHOR_FAMILIES, ("G", "G", "G"), ("L",), ("S", "L")]),
)
def test_coder_pmfs_are_valid(tables, seed, n, families):
    p = random_int_params(seed, n, families)
    plan = MixturePlan.build(p, tables)
    assert np.all(plan.half >= 1) and np.all(np.isin(plan.half, BUCKETS))
    seen = 0
    for start, stop, h in plan.segments:
        f = plan.pmf(start, stop, h)
        assert f.shape == (stop - start, 2 * h + 2)
        assert f.min() >= 1, "every symbol and the escape must be codable"
        assert np.all(f.sum(axis=1) == CODER_TOTAL)
        assert np.all(plan.half[plan.order[start:stop]] == h)
        seen += stop - start
    assert seen == n
    assert sorted(plan.order.tolist()) == list(range(n))


def reference_pmf(p: IntParams, tables: FamilyTables, i: int, c: int, h: int) -> np.ndarray:
    """Straight from the spec, one element, with Python integers."""
    width = 2 * h + 1
    m = [0] * (width + 1)
    for k, fam in enumerate(p.families):
        f, s, mk, wk = FAMILIES.index(fam), int(p.scale_idx[i, k]), int(p.means[i, k]), int(p.weights[i, k])
        q, r, d = mk >> 4, mk & 15, int(tables.half_width[f, s])
        start = int(tables.row_start[f, s, r])
        for j in range(width + 1):
            m[j] += wk * int(tables.cdf[start + min(max(c - h + j - q + d, 0), 2 * d + 1)])
    alphabet = width + 1
    out = [1 + ((m[j + 1] - m[j]) * (CODER_TOTAL - alphabet) >> 30) for j in range(width)]
    return np.array(out + [CODER_TOTAL - sum(out)])


@given(st.integers(0, 2**32 - 1), st.sampled_from([ANCHOR_FAMILIES, ("G", "L", "S")]))
def test_coder_pmf_matches_the_spec_formula(tables, seed, families):
    p = random_int_params(seed, 6, families, spread=3)
    plan = MixturePlan.build(p, tables)
    for start, stop, h in plan.segments:
        f = plan.pmf(start, stop, h)
        for row, i in enumerate(plan.order[start:stop]):
            c = int((p.weights[i].astype(np.int64) * p.means[i]).sum() >> 18)
            assert c == plan.centre[i]
            assert np.array_equal(f[row], reference_pmf(p, tables, int(i), c, h))


def test_windows_follow_the_reach(tables):
    # one Gaussian of scale index s at mean 5: window centred on 5 with half-width >= reach
    for s in (0, 20, 40, 63):
        p = IntParams(np.array([[WEIGHT_TOTAL]]), np.array([[5 * 16]]), np.array([[s]]), ("G",))
        plan = MixturePlan.build(p, tables)
        reach = tables.reach[0, s, -1]
        assert plan.centre[0] == 5
        assert plan.half[0] == BUCKETS[min(np.searchsorted(BUCKETS, reach), len(BUCKETS) - 1)]


def test_chunking_does_not_change_pmfs(tables, monkeypatch):
    p = random_int_params(7, 400, ANCHOR_FAMILIES)
    big = MixturePlan.build(p, tables)
    monkeypatch.setattr(mixture, "CHUNK_ENTRIES", 64)
    small = MixturePlan.build(p, tables)
    assert len(small.segments) > len(big.segments)
    whole = {i: row for s in big.segments for i, row in zip(big.order[s[0] : s[1]], big.pmf(*s), strict=True)}
    for s in small.segments:
        for i, row in zip(small.order[s[0] : s[1]], small.pmf(*s), strict=True):
            assert np.array_equal(row, whole[i])


def test_plan_built_in_blocks_is_the_same_plan(tables, monkeypatch):
    """MixturePlan.build works a block of BUILD_BLOCK elements at a time: any block size gives the same plan."""
    p = random_int_params(9, 300, ANCHOR_FAMILIES)
    whole = MixturePlan.build(p, tables)
    monkeypatch.setattr(mixture, "BUILD_BLOCK", 7)
    blocks = MixturePlan.build(p, tables)
    for name in ("order", "centre", "half", "weights", "first"):
        assert np.array_equal(getattr(blocks, name), getattr(whole, name)), name
    assert blocks.segments == whole.segments and len(set(whole.half.tolist())) > 1


def test_z_tables():
    rng = np.random.default_rng(0)
    pmf = rng.random((5, 7)) ** 4
    pmf[0] = 0.0
    pmf[1] = 0.0
    pmf[1, 3] = 1.0
    arrays = build_z_tables(pmf, np.array([1.0, 0.0, 1e-9, 0.1, 0.5]))
    zt = ZTables.from_arrays(arrays)
    assert zt.channels == 5 and zt.lz == 3
    assert zt.pmf.dtype == np.int32 and zt.pmf.shape == (5, 8)
    assert zt.pmf.min() >= 1 and np.all(zt.pmf.sum(axis=1) == CODER_TOTAL)
    assert zt.pmf[0, :-1].max() == 1  # all mass in the escape
    assert zt.pmf[1, 3] >= CODER_TOTAL - 8
    for bad in (
        {"tables.z.pmf": arrays["tables.z.pmf"].astype(np.int64)},
        {"tables.z.pmf": arrays["tables.z.pmf"][:, :7]},
        {"tables.z.pmf": arrays["tables.z.pmf"] + 1},
        {},
    ):
        with pytest.raises(ValueError):
            ZTables.from_arrays(bad)
    with pytest.raises(ValueError):
        build_z_tables(np.ones((2, 4)), np.zeros(2))  # even width
    with pytest.raises(ValueError):
        build_z_tables(np.zeros((1, 3)), np.zeros(1))  # no mass at all


def test_escape_head_pmf():
    assert escape.HEAD_PMF.sum() == CODER_TOTAL and escape.HEAD_PMF.min() >= 1
    assert len(escape.HEAD_PMF) == 64


@given(st.lists(st.integers(1, 2**32 - 1), max_size=40), st.integers(0, 2**32 - 1))
def test_escape_split_join(values, seed):
    u = np.array(values, dtype=np.int64)
    below = np.random.default_rng(seed).random(u.size) < 0.5
    head, groups = escape.split(u, below)
    assert np.all(head >> 1 == np.array([v.bit_length() - 1 for v in values], dtype=np.int64))
    for b, g in zip(range(1, 9), groups, strict=True):
        assert g.size == 0 or (g.min() >= 0 and g.max() < 1 << b)
    assert escape.group_sizes(head) == [g.size for g in groups]
    u2, below2 = escape.join(head, groups)
    assert np.array_equal(u2, u) and np.array_equal(below2, below)


def test_family_cdf_rows_and_reach_follow_their_definitions():
    # from_arrays builds the padded CDF rows and the reach table fast (issue 21: a codec's start-up); checked here
    # against their definitions, row by row
    from lcf.entropy.params import FAMILIES, MEAN_SCALE, SCALE_LEVELS, WEIGHT_BITS
    from lcf.entropy.tables import PAD, REACH_TAIL, FamilyTables, build_family_tables

    tables = FamilyTables.from_arrays(build_family_tables())
    start = 0
    for f in range(len(FAMILIES)):
        for s in range(SCALE_LEVELS):
            d = int(tables.half_width[f, s])
            totals = []
            for r in range(MEAN_SCALE):
                row = tables.pmf[start : start + 2 * d + 1].astype(np.int64)
                start += 2 * d + 1
                i, total = int(tables.row_start[f, s, r]), int(row.sum())
                want = np.concatenate([np.zeros(PAD + 1), np.cumsum(row), np.full(PAD, total)])
                assert np.array_equal(tables.cdf[i - PAD : i + 2 * d + 2 + PAD], want), (f, s, r)
                totals.append(total)
            for b in range(WEIGHT_BITS + 2):
                bound = REACH_TAIL << (WEIGHT_BITS + 1 - b) if b else 0
                if b == 0 or max(totals) <= bound:
                    assert tables.reach[f, s, b] == -1
                    continue
                rows = [
                    tables.cdf[int(tables.row_start[f, s, r]) :][: 2 * d + 2].astype(np.int64)
                    for r in range(MEAN_SCALE)
                ]
                outside = [max(int(c[-1] - c[d + k + 1] + c[d - k]) for c in rows) for k in range(d + 1)]
                assert tables.reach[f, s, b] == next(k for k in range(d + 1) if outside[k] <= bound), (f, s, b)
