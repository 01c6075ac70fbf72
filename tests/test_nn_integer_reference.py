"""lcf.nn.IntegerEntropyNet (integers carried in float64 torch convolutions) equals an int64 numpy reference
(tests/intref.py) exactly, on any inputs: extreme and clipped values, odd shapes, weights pushed to the exactness
bound, one or two torch threads, batched or not. check_integer_arrays refuses weights that break the bound.
"""

from __future__ import annotations

import functools
from unittest import mock

import intref
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lcf.nn
from lcf.nn import integer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

M, MZ = 12, 8
# values that sit on or beyond the input clip (±2**16) and the int32 range
EXTREME_SYMBOLS = (
    0,
    1,
    -1,
    2**16 - 1,
    2**16,
    2**16 + 1,
    -(2**16),
    -(2**16) - 1,
    10**9,
    -(10**9),
    2**31 - 1,
    -(2**31),
    2**40,
    -(2**40),
)
EXTREME_ACTIVATIONS = (0, 1, -1, 2**28, -(2**28), 2**28 - 1, -(2**28) + 1, 2**27, -(2**27))


def _tiny_model(m: int = M) -> lcf.nn.LcfModel:
    torch.manual_seed(0)
    return lcf.nn.LcfModel(lcf.nn.ModelConfig(N=8, M=m, Mz=MZ))


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {
        k[: -len(".weight")]: tuple(v.shape)
        for k, v in model.state_dict().items()
        if k.startswith(integer.INTEGER_PREFIXES) and k.endswith(".weight")
    }


@functools.cache
def _variant(name: str) -> tuple[lcf.nn.IntegerEntropyNet, intref.IntRef]:
    """The two implementations over one set of integer layers.

    model: the tiny model as exported; loud: its float weights ×64 and biases ×4096, so that activations reach the
    ±2**28 clip; saturated: random int16 weights over the whole range (ctx: every tap ±32767, Σ|W|·2**28 ≈ 2**51.2,
    near the bound), random shifts 12 .. 16 and biases up to ±2**40.
    """
    model = _tiny_model()
    if name == "loud":
        with torch.no_grad():
            for key, *_ in intref.LAYERS:
                conv = model.get_submodule(key)
                conv.weight.mul_(64.0)
                conv.bias.mul_(4096.0)
    arrays = integer.integer_arrays(model)
    if name == "saturated":
        rng = np.random.default_rng(7)
        for key, *_ in intref.LAYERS:
            w = arrays[f"{key}.weight"]
            if key == "ctx.conv":
                new = rng.choice(np.array([-32767, 32767]), w.shape)
            else:
                new = rng.integers(-32767, 32768, w.shape)
            arrays[f"{key}.weight"] = new.astype(np.int16)
            arrays[f"{key}.bias"] = rng.integers(-(2**40), 2**40, w.shape[0]).astype(np.int64)
            arrays[f"{key}.shift"] = np.array([rng.integers(12, 17)], np.int32)
    integer.check_integer_arrays(arrays, _shapes(model))
    return lcf.nn.IntegerEntropyNet(arrays), intref.IntRef(arrays)


VARIANTS = ("model", "loud", "saturated")


def _ints(t: torch.Tensor) -> np.ndarray:
    """lcf's output (float64 holding integers) -> int64, checking that it does hold in-range integers."""
    assert t.dtype == torch.float64
    a = t.numpy()
    assert np.array_equal(a, np.floor(a))
    assert np.abs(a).max(initial=0) <= integer.ACT_MAX
    return a.astype(np.int64)


def _f64(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float64))


@st.composite
def _arrays(draw, shape, extremes, limit):
    """Random integers of ``shape``: a drawn spread, with a drawn share of them replaced by extreme values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from([v for v in (2, 40, 3000, 2**17, 2**27, 10**9) if v <= limit]))
    share = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    v = rng.integers(-spread, spread + 1, shape)
    return np.where(rng.random(shape) < share, rng.choice(np.array(extremes, np.int64), shape), v)


@given(
    data=st.data(),
    variant=st.sampled_from(VARIANTS),
    batch=st.integers(1, 2),
    hz=st.integers(1, 3),
    wz=st.integers(1, 3),
)
def test_hyper_and_pens_equal_the_int64_reference(data, variant, batch, hz, wz) -> None:
    net, ref = _variant(variant)
    z = data.draw(_arrays((batch, MZ, hz, wz), EXTREME_SYMBOLS, 10**9))
    y = data.draw(_arrays((batch, M, 4 * hz, 4 * wz), EXTREME_SYMBOLS, 10**9))
    t1 = _ints(net.hyper(z))
    t1_ref = ref.hyper(z)
    assert t1.shape == (batch, 2 * M, 4 * hz, 4 * wz)
    np.testing.assert_array_equal(t1, t1_ref)
    np.testing.assert_array_equal(_ints(net.anchor(_f64(t1))), ref.anchor(t1_ref))
    np.testing.assert_array_equal(_ints(net.nonanchor(_f64(t1), y)), ref.nonanchor(t1_ref, y))


@given(
    data=st.data(), variant=st.sampled_from(VARIANTS), batch=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7)
)
def test_pens_equal_the_int64_reference_on_any_activations(data, variant, batch, h, w) -> None:
    """T1 of any shape (odd sizes included) with activations anywhere in [-2**28, 2**28]; ŷ beyond the clip."""
    net, ref = _variant(variant)
    t1 = data.draw(_arrays((batch, 2 * M, h, w), EXTREME_ACTIVATIONS, 2**27))
    y = data.draw(_arrays((batch, M, h, w), EXTREME_SYMBOLS, 10**9))
    r1 = ref.anchor(t1)
    assert r1.shape == (batch, 30 * M, h, w)
    np.testing.assert_array_equal(_ints(net.anchor(_f64(t1))), r1)
    np.testing.assert_array_equal(_ints(net.nonanchor(_f64(t1), y)), ref.nonanchor(t1, y))


@given(
    data=st.data(),
    variant=st.sampled_from(VARIANTS),
    band=st.sampled_from([1, 7, 900]),
    hz=st.integers(1, 3),
    wz=st.integers(1, 3),
)
def test_layers_run_in_bands_of_rows_equal_the_int64_reference(data, variant, band, hz, wz) -> None:
    """Where a k x k layer would unfold more than BAND_ELEMENTS inputs it runs on bands of rows with their k // 2
    neighbouring rows (h_s with its pixel shuffles, the context convolution): the same integers, down to bands of
    one row."""
    net, ref = _variant(variant)
    z = data.draw(_arrays((1, MZ, hz, wz), EXTREME_SYMBOLS, 10**9))
    y = data.draw(_arrays((1, M, 4 * hz, 4 * wz), EXTREME_SYMBOLS, 10**9))
    t1_ref = ref.hyper(z)
    with mock.patch.object(integer, "BAND_ELEMENTS", band):
        t1 = net.hyper(z)
        ctx = net.context(y)
    np.testing.assert_array_equal(_ints(t1), t1_ref)
    np.testing.assert_array_equal(_ints(net.pen2(t1, ctx)), ref.nonanchor(t1_ref, y))


@given(
    data=st.data(),
    variant=st.sampled_from(VARIANTS),
    band=st.sampled_from([1, 50, 1 << 22]),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
)
def test_context_at_the_nonanchors_equals_the_int64_reference_there(data, variant, band, h, w) -> None:
    """context(ŷ, nonanchors) computes ctx only at the non-anchor positions, over the taps that can reach an anchor,
    a block of positions at a time: the reference's integers there, zeros elsewhere."""
    net, ref = _variant(variant)
    y = data.draw(_arrays((1, M, h, w), EXTREME_SYMBOLS, 10**9))
    i, j = np.indices((h, w))
    odd = ((i + j) % 2 == 1).reshape(-1)
    with mock.patch.object(integer, "BAND_ELEMENTS", band):
        got = _ints(net.context(y, np.flatnonzero(odd))).reshape(1, 2 * M, -1)
    want = ref.ctx(y).reshape(1, 2 * M, -1)
    np.testing.assert_array_equal(got[:, :, odd], want[:, :, odd])
    assert not got[:, :, ~odd].any()


def test_pens_are_pointwise() -> None:
    """PEN1 and PEN2 read one position each (1x1 layers): the codec runs them on gathered positions only."""
    net, _ = _variant("model")
    rng = np.random.default_rng(3)
    t1 = torch.from_numpy(rng.integers(-(2**20), 2**20, (1, 2 * M, 5, 6)).astype(np.float64))
    ctx = net.context(rng.integers(-40, 40, (1, M, 5, 6)))
    index = torch.tensor([0, 7, 29, 13])

    def gather(t):
        return t.flatten(2)[:, :, index, None]

    np.testing.assert_array_equal(_ints(net.anchor(gather(t1))), _ints(gather(net.anchor(t1))))
    np.testing.assert_array_equal(_ints(net.pen2(gather(t1), gather(ctx))), _ints(gather(net.pen2(t1, ctx))))


@pytest.mark.parametrize("variant", ["loud", "saturated"])
def test_the_stress_variants_reach_the_clip(variant) -> None:
    """The loud and saturated weights do drive activations onto ±2**28 (else the tests above would not cover it)."""
    _, ref = _variant(variant)
    rng = np.random.default_rng(5)
    z = rng.choice(np.array([10**9, -(10**9)]), (1, MZ, 2, 2))
    y = rng.choice(np.array([10**9, -(10**9)]), (1, M, 8, 8))
    clipped = {}
    for network, x in (("h_s", intref.inputs(z)), ("ctx", intref.zero_nonanchors(intref.inputs(y)))):
        for layer in intref.H_S if network == "h_s" else intref.CTX:
            x = ref.run(x, (layer,))
            clipped[layer[0]] = bool((np.abs(x) == intref.ACT_MAX).any())
    assert clipped["ctx.conv"] and any(clipped[key] for key, *_ in intref.H_S), clipped


@pytest.mark.parametrize("variant", ["loud", "saturated"])
def test_outputs_do_not_depend_on_threads_or_batching(variant) -> None:
    net, ref = _variant(variant)
    rng = np.random.default_rng(3)
    z = rng.integers(-(2**17), 2**17, (2, MZ, 6, 7))
    y = rng.integers(-3000, 3000, (2, M, 24, 28))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            t1 = net.hyper(z)
            results.append([_ints(t1), _ints(net.anchor(t1)), _ints(net.nonanchor(t1, y))])
            separate = []
            for b in range(2):
                t1b = net.hyper(z[b : b + 1])
                separate.append([_ints(t1b), _ints(net.anchor(t1b)), _ints(net.nonanchor(t1b, y[b : b + 1]))])
            results.append([np.concatenate(parts) for parts in zip(*separate, strict=True)])
    finally:
        torch.set_num_threads(threads)
    t1_ref = ref.hyper(z)
    expected = [t1_ref, ref.anchor(t1_ref), ref.nonanchor(t1_ref, y)]
    for got in results:
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)


# -- the exactness bound --------------------------------------------------------------------------------------------


@functools.cache
def _wide() -> tuple[dict[str, np.ndarray], dict[str, tuple[int, ...]]]:
    """A model whose ctx has fan-in 24·25 = 600 > 2**24 / 32767 (tiny M = 12 gives 300, below it)."""
    model = _tiny_model(24)
    return integer.integer_arrays(model), _shapes(model)


EDGE_SHIFT = 40
EDGE_SUM = 2**24 - 2**12 - 1  # Σ|W| of the edge row: Σ|W|·2**28 + 2**40 = 2**52 − 2**28


def _edge_ctx(arrays: dict[str, np.ndarray], extra: int, sign: int) -> dict[str, np.ndarray]:
    """ctx output channel 0 with Σ|W| = EDGE_SUM, |B| = 2**28 − 1 + extra and shift 40: the bound
    Σ|W|·2**28 + |B| + 2**s < 2**52 holds with margin 1 − extra (refused from extra = 1 on)."""
    a = dict(arrays)
    w = a["ctx.conv.weight"].copy()
    row = np.zeros(w[0].size, np.int64)
    full, rest = divmod(EDGE_SUM, integer.WEIGHT_MAX)
    row[:full] = integer.WEIGHT_MAX
    row[full] = rest
    w[0] = (sign * row).reshape(w[0].shape).astype(np.int16)
    b = a["ctx.conv.bias"].copy()
    b[0] = sign * (2**28 - 1 + extra)
    a["ctx.conv.weight"], a["ctx.conv.bias"], a["ctx.conv.shift"] = w, b, np.array([EDGE_SHIFT], np.int32)
    return a


def _ctx_layer(arrays: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ctx layer alone (no input clip, no anchor zeroing) on activations x, by lcf and by the reference."""
    got = lcf.nn.IntegerEntropyNet(arrays)._run(_f64(x), integer.CTX)
    return _ints(got), intref.IntRef(arrays).run(x, intref.CTX)


def test_check_accepts_the_exported_arrays() -> None:
    model = _tiny_model()
    integer.check_integer_arrays(integer.integer_arrays(model), _shapes(model))
    integer.check_integer_arrays(*_wide())


def test_check_refuses_weights_that_break_the_bound() -> None:
    arrays, shapes = _wide()
    bad = dict(arrays, **{"ctx.conv.weight": np.full_like(arrays["ctx.conv.weight"], 32767)})  # 600·32767 > 2**24
    with pytest.raises(ValueError, match="exactness bound"):
        integer.check_integer_arrays(bad, shapes)
    bad = dict(arrays, **{"ctx.conv.weight": np.full_like(arrays["ctx.conv.weight"], -32767)})
    with pytest.raises(ValueError, match="exactness bound"):
        integer.check_integer_arrays(bad, shapes)


def test_check_refuses_a_weight_of_minus_32768() -> None:
    model = _tiny_model()
    arrays, shapes = integer.integer_arrays(model), _shapes(model)
    w = arrays["pen_anchor.net.2.weight"].copy()
    w[3, 5, 0, 0] = -32768
    with pytest.raises(ValueError, match="-32768"):
        integer.check_integer_arrays(dict(arrays, **{"pen_anchor.net.2.weight": w}), shapes)


@pytest.mark.parametrize("sign", [1, -1])
def test_the_bound_is_sharp_and_exact_at_its_edge(sign) -> None:
    """Margin 1 is accepted and evaluated exactly with |acc| = 2**52 − 2**40 − 1 (its worst case); margin 0 is
    refused."""
    arrays, shapes = _wide()
    edge = _edge_ctx(arrays, 0, sign)
    integer.check_integer_arrays(edge, shapes)
    with pytest.raises(ValueError, match="exactness bound"):
        integer.check_integer_arrays(_edge_ctx(arrays, 1, sign), shapes)
    w0 = edge["ctx.conv.weight"][0].astype(np.int64)  # (24, 5, 5): the centre output (2, 2) sees every tap
    x = (np.sign(w0) * sign * integer.ACT_MAX)[None]  # every product W·x = |W|·2**28 with the bias's sign
    got, ref = _ctx_layer(edge, x)
    np.testing.assert_array_equal(got, ref)
    assert ref[0, 0, 2, 2] == sign * 4095  # (±(2**52 − 2**40 − 1) + 2**39) >> 40


def test_rounding_halves_go_up() -> None:
    """(acc + 2**(s−1)) >> s: ties round towards +∞ for both signs, in both implementations."""
    arrays, _ = _wide()
    a = dict(arrays)
    w = np.zeros_like(a["ctx.conv.weight"])
    w[0, 0, 2, 2] = 1
    a["ctx.conv.weight"], a["ctx.conv.bias"] = w, np.zeros_like(a["ctx.conv.bias"])
    a["ctx.conv.shift"] = np.array([13], np.int32)
    k = np.arange(-6, 7, dtype=np.int64)
    x = np.zeros((1, 24, 1, k.size), np.int64)
    x[0, 0, 0] = k * 2**13 + 2**12  # exactly between k and k + 1
    got, ref = _ctx_layer(a, x)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(ref[0, 0, 0], k + 1)
    x[0, 0, 0] = k * 2**13 + 2**12 - 1  # just below: rounds to k
    got, ref = _ctx_layer(a, x)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(ref[0, 0, 0], k)
