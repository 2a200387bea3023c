"""Known answers and properties of negrec.theory.bounds (docs/theory.md).

Every worked number of docs/theory.md is reproduced: to 1e-6 relative, or, where the spec prints
fewer digits than that, to half a unit in its last printed digit (see ``close``).
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from negrec.errors import NegrecError
from negrec.theory import bounds as B

DET = settings(max_examples=200, deadline=None, derandomize=True)


def close(value: float, expected: float | str) -> None:
    """``value`` equals the spec's number to 1e-6 relative, or to the digits it prints.

    ``expected`` as a string keeps the printed digits (e.g. ``"5.89432e-5"``): the
    tolerance is then half a unit in the last printed place when that is coarser than 1e-6
    relative. Floats are compared to 1e-6 relative.
    """
    if isinstance(expected, str):
        want = float(expected)
        dec = Decimal(expected)
        half_unit = 0.5 * 10.0 ** dec.as_tuple().exponent  # type: ignore[operator]
        tol = max(half_unit * (1 + 1e-9), 1e-6 * abs(want))
    else:
        want = float(expected)
        tol = 1e-6 * abs(want)
    assert abs(value - want) <= tol, f"{value!r} != {expected} (tolerance {tol:.3g})"


# --------------------------------------------------------------------------------------
# docs/theory.md#loss-chain, docs/theory.md#bpr-equals-cce, docs/theory.md#bounded-minimum worked
# examples
# --------------------------------------------------------------------------------------

S13_POS = 2.0
S13_NEG = np.array([3, 2.5, 1, 0.5, -0.5, -1, -2, -3, 0, 2.2])


def test_section_1_3_example() -> None:
    assert B.gamma_count(S13_POS, S13_NEG) == 3
    assert B.gamma0_count(S13_NEG) == 6
    r = B.rank_of_positive(S13_POS, S13_NEG)
    assert r == 4
    close(float(B.neg_log_ndcg(r)), "0.842398")
    close(float(B.neg_log_mrr(r)), "1.386294")
    cce = float(B.loss_cce(S13_POS, S13_NEG))
    bpr = float(B.loss_bpr(S13_POS, S13_NEG))
    bce = float(B.loss_bce(S13_POS, S13_NEG))
    close(cce, "2.011119")
    close(bpr, "3.879423")
    close(bce, "12.002828")
    assert float(B.neg_log_ndcg(r)) <= float(B.neg_log_mrr(r)) <= cce <= bpr <= bce
    # the losses by definition, written out independently
    assert cce == pytest.approx(math.log(1 + sum(math.exp(s - 2.0) for s in S13_NEG)))
    assert bpr == pytest.approx(sum(math.log1p(math.exp(s - 2.0)) for s in S13_NEG))
    assert bce == pytest.approx(
        math.log1p(math.exp(-2.0)) + sum(math.log1p(math.exp(s)) for s in S13_NEG)
    )


def test_losses_broadcast_and_dispatch() -> None:
    pos = np.array([0.5, -1.0])  # [2]
    neg = np.array([[0.0, 1.0, -2.0], [3.0, -3.0, 0.5]])  # [2, 3]
    for name in B.BOUND_LOSSES:
        batch = B.sampled_loss(name, pos, neg)
        assert batch.shape == (2,)
        for i in range(2):
            assert batch[i] == pytest.approx(float(B.sampled_loss(name, pos[i], neg[i])))
    with pytest.raises(NegrecError, match="unknown loss"):
        B.sampled_loss("hinge", pos, neg)


def test_losses_stable_for_extreme_scores() -> None:
    assert float(B.loss_cce(0.0, np.array([800.0]))) == pytest.approx(800.0)
    assert float(B.loss_bpr(0.0, np.array([800.0]))) == pytest.approx(800.0)
    assert float(B.loss_bce(-800.0, np.array([-800.0]))) == pytest.approx(800.0)
    assert np.isfinite(B.loss_cce(800.0, np.array([-800.0])))


def test_section_1_4_one_negative_bpr_equals_cce() -> None:
    cce = float(B.loss_cce(2.0, np.array([0.7])))
    bpr = float(B.loss_bpr(2.0, np.array([0.7])))
    close(cce, "0.2410085")
    close(bpr, "0.2410085")
    rng = np.random.default_rng(4)
    s_pos = rng.normal(0, 5, size=1000)
    s_neg = rng.normal(0, 5, size=(1000, 1))
    np.testing.assert_allclose(B.loss_cce(s_pos, s_neg), B.loss_bpr(s_pos, s_neg), rtol=1e-12)
    # with two negatives they differ: the equality is special to K = 1
    s_neg2 = rng.normal(0, 1, size=(1000, 2))
    assert np.all(B.loss_cce(s_pos, s_neg2) < B.loss_bpr(s_pos, s_neg2))


def test_section_1_5_bounded_minimum() -> None:
    close(float(B.bounded_minimum("bce", 3.0, 4)), "0.2429368")
    close(float(B.bounded_minimum("bpr", 3.0, 4)), "0.0099027")
    close(float(B.bounded_minimum("cce", 3.0, 4)), "0.0098662")
    # the closed forms are the losses at s+ = S, s_j = -S
    for name in B.BOUND_LOSSES:
        at_corner = float(B.sampled_loss(name, 3.0, np.full(4, -3.0)))
        assert float(B.bounded_minimum(name, 3.0, 4)) == pytest.approx(at_corner, rel=1e-12)
    np.testing.assert_allclose(
        B.bounded_minimum("bpr", 1.0, np.array([1, 2, 3])), np.array([1, 2, 3]) * B.softplus(-2.0)
    )


# --------------------------------------------------------------------------------------
# docs/theory.md#lower-bounds lemmas and distribution
# --------------------------------------------------------------------------------------


def test_section_1_6_pmf_and_mean() -> None:
    pmf = B.gamma_pmf(np.arange(4), 999, 9, 10)
    want_pmf = ["0.91309945", "0.08377059", "0.00307102", "0.00005832"]
    for got, want in zip(pmf, want_pmf, strict=True):
        close(float(got), want)
    # the closed form C(r-1, k) C(N - r + 1, K - k) / C(N, K)
    for k in range(4):
        exact = math.comb(9, k) * math.comb(990, 10 - k) / math.comb(999, 10)
        assert pmf[k] == pytest.approx(exact, rel=1e-10)
    close(float(B.gamma_distribution(999, 9, 10).mean()), "0.0900901")
    assert B.gamma_pmf(np.arange(11), 999, 9, 10).sum() == pytest.approx(1.0)


def test_lemmas_hold_on_random_samples() -> None:
    rng = np.random.default_rng(1)
    s_pos = rng.normal(0, 2, size=5000)  # [T], any sign
    s_neg = rng.normal(0, 2, size=(5000, 7))  # [T, K]
    g = B.gamma_count(s_pos, s_neg)
    g0 = B.gamma0_count(s_neg)
    assert np.all(B.loss_cce(s_pos, s_neg) >= B.lower_bound_cce(g) - 1e-12)
    assert np.all(B.loss_bpr(s_pos, s_neg) >= B.lower_bound_bpr(g) - 1e-12)
    assert np.all(B.loss_bce(s_pos, s_neg) >= B.lower_bound_bce(g0, s_pos) - 1e-12)
    nonneg = s_pos >= 0
    # with s+ >= 0: Gamma subset of Gamma^0, and the tighter bound of the docs/theory.md#worst-case
    # caveat holds
    assert np.all(g[nonneg] <= g0[nonneg])
    tight = B.lower_bound_bce_tight(g[nonneg], g0[nonneg], s_pos[nonneg])
    assert np.all(B.loss_bce(s_pos[nonneg], s_neg[nonneg]) >= tight - 1e-12)
    assert np.all(tight >= B.lower_bound_bce(g0[nonneg], s_pos[nonneg]) - 1e-12)
    # and the sp(-s+) term makes the bound strictly larger than the worst-case form
    assert np.all(B.lower_bound_bce(g0, s_pos) > B.lower_bound_bce(g0))


# --------------------------------------------------------------------------------------
# docs/theory.md#theorem-1 table and further checks
# --------------------------------------------------------------------------------------

# K, r+, (m CCE, m BPR, m BCE(s+=2), m BCE(s+=0)), p_CCE, p_BPR, p_BCE(s+=2), p_BCE(s+=0)
TABLE_1_7 = [
    (10, 1, (0, 0, 0, 0), "1", "1", "1", "1"),
    (10, 2, (1, 1, 1, 0), "0.01001", "0.01001", "0.01001", "1"),
    (10, 5, (2, 2, 2, 1), "5.35844e-4", "5.35844e-4", "5.35844e-4", "0.0395013"),
    (10, 10, (3, 2, 2, 1), "5.89432e-5", "3.12996e-3", "3.12996e-3", "0.0869006"),
    (10, 16, (4, 3, 2, 2), "6.58775e-6", "3.09273e-4", "8.83975e-3", "8.83975e-3"),
    (10, 50, (5, 3, 3, 2), "4.85130e-5", "0.0104398", "0.0104398", "0.08248"),
    (10, 100, (6, 3, 3, 2), "1.23870e-4", "0.0676971", "0.0676971", "0.260199"),
    (10, 500, (8, 4, 3, 3), "0.0534587", "0.828541", "0.945843", "0.945843"),
    (100, 10, (3, 2, 2, 1), "0.052297", "0.225156", "0.225156", "0.614525"),
    (100, 50, (5, 3, 3, 2), "0.555061", "0.886537", "0.886537", "0.966392"),
    (1, 3, (1, 1, 1, 0), "0.002002", "0.002002", "0.002002", "1"),
]


@pytest.mark.parametrize("row", TABLE_1_7, ids=[f"K{r[0]}-r{r[1]}" for r in TABLE_1_7])
def test_section_1_7_table(row: tuple) -> None:
    k, r, ms, p_cce, p_bpr, p_bce2, p_bce0 = row
    assert int(B.threshold("cce", r)) == ms[0]
    assert int(B.threshold("bpr", r)) == ms[1]
    assert int(B.threshold("bce", r, s_pos=2.0)) == ms[2]
    assert int(B.threshold("bce", r, s_pos=0.0)) == ms[3]
    got = [
        float(B.bound_probability("cce", 999, k, r)),
        float(B.bound_probability("bpr", 999, k, r)),
        float(B.bound_probability("bce", 999, k, r, s_pos=2.0)),
        float(B.bound_probability("bce", 999, k, r, s_pos=0.0, n0=r - 1)),
    ]
    for value, want in zip(got, [p_cce, p_bpr, p_bce2, p_bce0], strict=True):
        close(value, want)


def test_section_1_7_table_vectorised() -> None:
    ks = np.array([row[0] for row in TABLE_1_7])
    rs = np.array([row[1] for row in TABLE_1_7])
    p = B.bound_probability("bpr", 999, ks, rs)
    assert p.shape == (len(TABLE_1_7),)
    for value, row in zip(p, TABLE_1_7, strict=True):
        close(float(value), row[4])
    grid = B.bound_probability("cce", 999, np.array([[10], [100]]), np.array([10, 50]))
    assert grid.shape == (2, 2)
    close(float(grid[1, 1]), "0.555061")


def test_section_1_7_further_checks() -> None:
    close(float(B.bound_probability("bce", 999, 10, 5, s_pos=2.0, n0=100)), "0.264093")
    closed = 1 - math.comb(999 - 2 + 1, 10) / math.comb(999, 10)
    assert closed == pytest.approx(10 / 999, rel=1e-12)
    assert float(B.bound_probability("cce", 999, 10, 2)) == pytest.approx(closed, rel=1e-10)
    # worst-case BCE (s+ -> inf) with n0 = r+ - 1 is the BPR probability
    rs = np.arange(1, 1000)
    np.testing.assert_array_equal(
        B.bound_probability("bce", 999, 10, rs), B.bound_probability("bpr", 999, 10, rs)
    )


def test_bound_probability_is_scipy_sf() -> None:
    for r in (3, 40, 700):
        m = int(B.threshold("bpr", r))
        want = stats.hypergeom.sf(m - 1, 999, r - 1, 25)
        assert float(B.bound_probability("bpr", 999, 25, r)) == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------------------
# docs/theory.md#mrr table
# --------------------------------------------------------------------------------------

# K, r+, (m CCE, m BPR, m BCE(s+=2)), p_CCE, p_BPR = p_BCE(n0 = r+ - 1)
TABLE_1_9 = [
    (10, 2, (1, 1, 1), "0.01001", "0.01001"),
    (10, 3, (2, 2, 2), "9.02706e-5", "9.02706e-5"),
    (10, 5, (4, 3, 3), "5.09073e-9", "2.88208e-6"),
    (10, 10, (9, 4, 4), "3.79637e-21", "6.26089e-7"),
    (100, 10, (9, 4, 4), "7.22157e-10", "8.03376e-3"),
    (100, 50, (49, 6, 6), "2.09108e-55", "0.365341"),
]


@pytest.mark.parametrize("row", TABLE_1_9, ids=[f"K{r[0]}-r{r[1]}" for r in TABLE_1_9])
def test_section_1_9_table(row: tuple) -> None:
    k, r, ms, p_cce, p_bpr = row
    assert int(B.threshold("cce", r, metric="mrr")) == ms[0]
    assert int(B.threshold("bpr", r, metric="mrr")) == ms[1]
    assert int(B.threshold("bce", r, metric="mrr", s_pos=2.0)) == ms[2]
    close(float(B.bound_probability("cce", 999, k, r, metric="mrr")), p_cce)
    close(float(B.bound_probability("bpr", 999, k, r, metric="mrr")), p_bpr)
    p_bce = float(B.bound_probability("bce", 999, k, r, metric="mrr", s_pos=2.0, n0=r - 1))
    close(p_bce, p_bpr)
    # CCE closed form: P(|Gamma| = r+ - 1) = C(N - r + 1, K - r + 1) / C(N, K)
    exact = math.comb(999 - r + 1, k - r + 1) / math.comb(999, k)
    assert float(B.bound_probability("cce", 999, k, r, metric="mrr")) == pytest.approx(
        exact, rel=1e-9
    )


# --------------------------------------------------------------------------------------
# thresholds: integer vs float, exactness at powers of two
# --------------------------------------------------------------------------------------

R_ALL = np.arange(1, 10_001)


def _satisfies(loss: str, metric: str, r: int, m: int) -> bool:
    """The defining inequality of the threshold (docs/theory.md#theorem-1, docs/theory.md#mrr), in
    Python integers.
    """
    if metric == "ndcg":
        return 2 ** (m + 1) >= r + 1 if loss == "cce" else 2 ** (2**m) >= r + 1
    return m >= r - 1 if loss == "cce" else 2**m >= r


def test_integer_thresholds_match_definition_everywhere() -> None:
    # m satisfies the inequality and m - 1 does not (the inequality is monotone in m)
    for metric in B.METRICS:
        for loss in ("cce", "bpr"):
            got = B.threshold(loss, R_ALL, metric=metric)
            for r, m in zip(R_ALL.tolist(), got.tolist(), strict=True):
                assert m >= 0 and _satisfies(loss, metric, r, m), (loss, metric, r, m)
                assert m == 0 or not _satisfies(loss, metric, r, m - 1), (loss, metric, r, m)


def test_integer_thresholds_match_float_forms_away_from_powers() -> None:
    pow2 = {2**j for j in range(20)}
    ndcg_away = np.array([r for r in R_ALL if r + 1 not in pow2])
    mrr_away = np.array([r for r in R_ALL if r not in pow2])
    for loss in ("cce", "bpr"):
        np.testing.assert_array_equal(
            B.threshold(loss, ndcg_away), B.threshold_float(loss, ndcg_away)
        )
        np.testing.assert_array_equal(
            B.threshold(loss, mrr_away, metric="mrr"),
            B.threshold_float(loss, mrr_away, metric="mrr"),
        )
    for s in (-1.0, 0.5, 2.0, 7.0):
        np.testing.assert_array_equal(
            B.threshold("bce", ndcg_away, s_pos=s), B.threshold_float("bce", ndcg_away, s_pos=s)
        )


def test_thresholds_exact_at_powers_of_two() -> None:
    # r+ + 1 = 2^j: 2^{m+1} >= 2^j first at m = j - 1 (CCE / NDCG)
    for j in range(1, 40):
        assert int(B.threshold("cce", 2**j - 1)) == j - 1
        assert int(B.threshold("cce", 2**j)) == j  # one more than the power
    # r+ + 1 = 2^{2^m}: BPR threshold m exactly; one more rank needs m + 1
    for m in range(0, 6):
        r = 2 ** (2**m) - 1
        assert int(B.threshold("bpr", r)) == m
        assert int(B.threshold("bpr", r + 1)) == m + 1
        assert int(B.threshold("bce", r, s_pos=0.0)) == max(0, m - 1)
    # MRR: r+ = 2^j gives ceil(log2 r+) = j
    for j in range(0, 50):
        assert int(B.threshold("bpr", 2**j, metric="mrr")) == j
        assert int(B.threshold("bpr", 2**j + 1, metric="mrr")) == j + 1
    # the helpers themselves
    xs = np.array([0, 1, 2, 3, 4, 7, 8, 2**52, 2**53 - 1])
    assert list(B.bit_length(xs)) == [int(x).bit_length() for x in xs]
    assert list(B.ceil_log2(xs[1:])) == [(int(x) - 1).bit_length() for x in xs[1:]]


def test_bce_threshold_matches_its_definition() -> None:
    # smallest m >= 0 with sp(-s+) + m ln 2 >= -ln metric(r+)
    rs = np.arange(1, 3000)
    for metric in B.METRICS:
        target = B.neg_log_metric(metric, rs)
        for s in (-2.0, 0.0, 0.3, 2.0, 10.0):
            m = B.threshold("bce", rs, metric=metric, s_pos=s)
            lemma = B.softplus(-s) + m * B.LN2
            assert np.all(lemma >= target - 1e-12)
            below = m > 0
            assert np.all(B.softplus(-s) + (m[below] - 1) * B.LN2 < target[below])


def test_threshold_ordering() -> None:
    for metric in B.METRICS:
        m_cce = B.threshold("cce", R_ALL, metric=metric)
        m_bpr = B.threshold("bpr", R_ALL, metric=metric)
        m_bce = B.threshold("bce", R_ALL, metric=metric, s_pos=1.5)
        assert np.all(m_bce <= m_bpr)
        assert np.all(m_bpr <= m_cce)


# --------------------------------------------------------------------------------------
# the theorem: p_BCE >= p_BPR >= p_CCE
# --------------------------------------------------------------------------------------


@st.composite
def problems(draw: st.DrawFn) -> tuple[int, int, int, float, int]:
    n_neg = draw(st.integers(1, 3000))
    k = draw(st.integers(1, n_neg))
    r = draw(st.integers(1, n_neg + 1))
    s_pos = draw(st.floats(0.0, 20.0, allow_nan=False))
    n0 = draw(st.integers(r - 1, n_neg))
    return n_neg, k, r, s_pos, n0


@DET
@given(problems(), st.sampled_from(B.METRICS))
def test_probability_ordering(problem: tuple[int, int, int, float, int], metric: str) -> None:
    n_neg, k, r, s_pos, n0 = problem
    p_cce = float(B.bound_probability("cce", n_neg, k, r, metric=metric))
    p_bpr = float(B.bound_probability("bpr", n_neg, k, r, metric=metric))
    p_bce = float(B.bound_probability("bce", n_neg, k, r, metric=metric, s_pos=s_pos, n0=n0))
    p_bce_worst = float(B.bound_probability("bce", n_neg, k, r, metric=metric, n0=n0))
    tol = 1e-12
    assert p_bce + tol >= p_bce_worst >= p_bpr - tol
    assert p_bpr + tol >= p_cce
    assert 0.0 <= p_cce <= 1.0 and 0.0 <= p_bce <= 1.0


def test_probability_ordering_grid() -> None:
    n_neg = np.array([9, 99, 999])[:, None, None]  # [3, 1, 1]
    ks = np.array([1, 3, 9])[None, :, None]  # [1, 3, 1]
    rs = np.array([1, 2, 4, 8, 10])[None, None, :]  # [1, 1, 5]
    p_cce = B.bound_probability("cce", n_neg, ks, rs)
    p_bpr = B.bound_probability("bpr", n_neg, ks, rs)
    for s in (0.0, 1.0, 5.0):
        n0 = np.minimum(rs - 1 + 3 * (s > 0), n_neg)  # [3, 1, 5]
        p_bce = B.bound_probability("bce", n_neg, ks, rs, s_pos=s, n0=n0)
        assert p_bce.shape == (3, 3, 5)
        assert np.all(p_bce >= p_bpr - 1e-12)
    assert np.all(p_bpr >= p_cce - 1e-12)
    # and strictly somewhere: the theorem is not vacuous
    assert np.any(p_bpr > p_cce + 1e-6)


# --------------------------------------------------------------------------------------
# loss chain (docs/theory.md#loss-chain), worst case (docs/theory.md#worst-case)
# --------------------------------------------------------------------------------------


@DET
@given(
    st.floats(0.0, 30.0),
    st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=40),
    st.integers(0, 2**32 - 1),
)
def test_loss_chain_hypothesis(s_pos: float, s_neg: list[float], seed: int) -> None:
    sn = np.array(s_neg)
    r = B.rank_of_positive(s_pos, sn)
    cce, bpr, bce = (float(B.sampled_loss(n, s_pos, sn)) for n in B.BOUND_LOSSES)
    tol = 1e-9
    assert float(B.neg_log_ndcg(r)) <= float(B.neg_log_mrr(r)) + tol
    assert float(B.neg_log_mrr(r)) <= cce + tol
    assert cce <= bpr + tol
    assert bpr <= bce + tol
    # P2 and P3 for a sampled subset
    rng = np.random.default_rng(seed)
    sub = rng.choice(sn, size=rng.integers(1, sn.size + 1), replace=False)
    assert float(B.loss_cce(s_pos, sub)) <= float(B.loss_bpr(s_pos, sub)) + tol
    assert float(B.loss_bpr(s_pos, sub)) <= float(B.loss_bce(s_pos, sub)) + tol


def test_loss_chain_fails_without_nonnegative_positive() -> None:
    # P3 needs s+ >= 0: with s+ < 0 BPR can exceed BCE (the property test can fail)
    s_pos, s_neg = -3.0, np.zeros(5)
    assert float(B.loss_bpr(s_pos, s_neg)) > float(B.loss_bce(s_pos, s_neg))


def test_worst_case_scores_make_lemmas_equalities() -> None:
    s_pos, s_neg = B.worst_case_scores(999, 10)
    assert s_pos == 0.0 and s_neg.shape == (999,)
    assert int(B.rank_of_positive(s_pos, s_neg)) == 10
    assert int(B.gamma0_count(s_neg)) == 9
    rng = np.random.default_rng(0)
    idx = np.stack([rng.choice(999, 10, replace=False) for _ in range(200)])  # [200, 10]
    sample = s_neg[idx]
    g = B.gamma_count(0.0, sample)
    assert g.max() >= 1  # not vacuous at this seed
    np.testing.assert_allclose(B.loss_cce(0.0, sample), np.log1p(g), atol=1e-12)
    np.testing.assert_allclose(B.loss_bpr(0.0, sample), g * math.log(2), atol=1e-12)
    np.testing.assert_allclose(B.loss_bce(0.0, sample), (1 + g) * math.log(2), atol=1e-12)
    for r in (1, 1000):
        _, sn = B.worst_case_scores(999, r)
        assert int(B.rank_of_positive(0.0, sn)) == r


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_neg": 999, "k": 1000, "rank": 5}, "sample size K"),
        ({"n_neg": 999, "k": 0, "rank": 5}, "sample size K"),
        ({"n_neg": 999, "k": 10, "rank": 0}, "rank r"),
        ({"n_neg": 999, "k": 10, "rank": 1001}, "rank r"),
        ({"n_neg": 999, "k": 10, "rank": 2.5}, "integer"),
        ({"n_neg": 0, "k": 1, "rank": 1}, "N_-"),
    ],
)
def test_bad_arguments_raise_negrec_error(kwargs: dict, match: str) -> None:
    with pytest.raises(NegrecError, match=match):
        B.bound_probability("cce", **kwargs)


def test_bad_n0_and_names() -> None:
    with pytest.raises(NegrecError, match="n0 must be >= r"):
        B.bound_probability("bce", 999, 10, 50, s_pos=2.0, n0=10)
    with pytest.raises(NegrecError, match="n0 must be <= r"):
        B.bound_probability("bce", 999, 10, 5, s_pos=-1.0, n0=10)
    with pytest.raises(NegrecError, match="unknown metric"):
        B.threshold("cce", 3, metric="hit")
    with pytest.raises(NegrecError, match="finite"):
        B.threshold("bce", 3, s_pos=float("inf"))


# --------------------------------------------------------------------------------------
# paper (b): docs/theory.md#opauc to docs/theory.md#theorem-3
# --------------------------------------------------------------------------------------

EX_LABELS = np.array([1, 0, 1, 0, 0, 1, 0, 0])


def test_section_2_4_example() -> None:
    k = 2
    assert int(B.topk_hits(EX_LABELS, k)) == 1
    close(float(B.recall_at_k(EX_LABELS, k)), 1 / 3)
    close(float(B.precision_at_k(EX_LABELS, k)), 0.5)
    close(float(B.ndcg_at_k(EX_LABELS, k)), "0.6131472")
    assert list(B.positives_above_negatives(EX_LABELS)) == [1, 2, 2, 3, 3]
    assert B.n_beta_of(0.4, 5) == 2
    close(float(B.auc(EX_LABELS)), 11 / 15)
    close(float(B.auc(EX_LABELS)), "0.733333")
    o = float(B.opauc(EX_LABELS, beta=0.4))
    close(o, 0.2)
    assert float(B.opauc(EX_LABELS, n_beta=2)) == o
    close(float(B.normalize_opauc_minmax(o, 2, 5)), 0.5)
    close(float(B.normalize_opauc_mcclish(o, 2, 5)), "0.6875")
    lo, hi = B.opauc_sandwich(1, 3, 2)
    assert (int(lo), round(3 * 5 * o), int(hi)) == (1, 3, 4)
    r_lo, r_hi = B.recall_bounds(o, 3, 5, 2)
    close(float(r_lo), "0.232408")
    close(float(r_hi), "0.577350")
    assert float(r_lo) <= 1 / 3 <= float(r_hi)
    p_lo, p_hi = B.precision_bounds(o, 3, 5, 2)
    close(float(p_lo), float(r_lo) * 3 / 2)
    assert float(p_lo) <= 0.5 <= float(p_hi)
    np.testing.assert_allclose(B.opauc_curve(EX_LABELS), np.cumsum([1, 2, 2, 3, 3]) / 15)


def test_ndcg_at_k_definition() -> None:
    # K larger than N+: IDCG sums only min(N+, K) terms
    labels = np.array([0, 1, 0, 0, 1, 0])
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 + 1 / math.log2(3)
    close(float(B.ndcg_at_k(labels, 5)), dcg / idcg)
    assert float(B.ndcg_at_k(np.array([1, 1, 0, 0]), 3)) == pytest.approx(1.0)


def test_section_2_2_range_and_expectation_formula() -> None:
    close(float(B.expected_opauc(800, 50)), "0.001990")
    assert float(B.expected_opauc(800, 800)) == pytest.approx(0.5)
    # exact expectation by enumeration on a small case
    n_pos, n_neg = 3, 4
    rows = []
    for where in itertools.combinations(range(7), n_pos):
        lab = np.zeros(7, dtype=int)
        lab[list(where)] = 1
        rows.append(lab)
    labels = np.array(rows)
    curve = B.opauc_curve(labels)  # [35, 4]
    np.testing.assert_allclose(curve.mean(axis=0), B.expected_opauc(n_neg, np.arange(1, 5)))
    assert curve.min() == 0.0
    np.testing.assert_allclose(curve.max(axis=0), np.arange(1, 5) / n_neg)


def test_brute_force_sandwich_attains_both_ends() -> None:
    n_pos, n_neg, k = 4, 6, 3
    pairs: dict[int, list[int]] = {}
    for where in itertools.combinations(range(n_pos + n_neg), n_pos):
        lab = np.zeros(n_pos + n_neg, dtype=int)
        lab[list(where)] = 1
        t = int(B.topk_hits(lab, k))
        area = round(float(B.opauc(lab, n_beta=k)) * n_pos * n_neg)
        lo, hi = B.opauc_sandwich(t, n_pos, k)
        assert lo <= area <= hi
        pairs.setdefault(t, []).append(area)
    got = {t: (min(v), max(v)) for t, v in pairs.items() if t > 0}
    assert got == {1: (1, 6), 2: (4, 10), 3: (9, 12)}
    for t, (lo_t, hi_t) in got.items():
        lo, hi = B.opauc_sandwich(t, n_pos, k)
        assert (lo_t, hi_t) == (int(lo), int(hi))


@DET
@given(st.integers(1, 30), st.integers(1, 30), st.data())
def test_sandwich_on_random_permutations(n_pos: int, n_neg: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n_neg))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = rng.permuted(np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)])
    t = int(B.topk_hits(labels, k))
    o = float(B.opauc(labels, n_beta=k))
    area = round(o * n_pos * n_neg)
    lo, hi = B.opauc_sandwich(t, n_pos, k)
    assert int(lo) <= area <= int(hi)
    r_lo, r_hi = B.recall_bounds(o, n_pos, n_neg, k)
    rec = t / n_pos
    assert float(r_lo) - 1e-12 <= rec <= float(r_hi) + 1e-12
    p_lo, p_hi = B.precision_bounds(o, n_pos, n_neg, k)
    assert float(p_lo) - 1e-12 <= t / k <= float(p_hi) + 1e-12


def test_correlations_identical_across_normalisations() -> None:
    rng = np.random.default_rng(7)
    base = np.r_[np.ones(200, bool), np.zeros(800, bool)]
    labels = rng.permuted(np.tile(base, (3000, 1)), axis=1)  # [3000, 1000]
    for k in (5, 50):
        recall = B.recall_at_k(labels, k)
        ndcg = B.ndcg_at_k(labels, k)
        raw = B.opauc(labels, n_beta=k)
        variants = [
            B.normalize_opauc_minmax(raw, k, 800),
            B.normalize_opauc_mcclish(raw, k, 800),
        ]
        for metric in (recall, ndcg):
            p_raw = np.corrcoef(metric, raw)[0, 1]
            s_raw = stats.spearmanr(metric, raw)[0]
            assert p_raw > 0.5
            for v in variants:
                assert np.corrcoef(metric, v)[0, 1] == pytest.approx(p_raw, abs=1e-12)
                assert stats.spearmanr(metric, v)[0] == pytest.approx(s_raw, abs=1e-12)


def test_normalisation_ranges() -> None:
    # min/max maps [0, beta] onto [0, 1]; McClish maps the permutation minimum of
    # docs/theory.md#opauc-normalisation
    for nb, n in ((1, 10), (3, 10), (10, 10)):
        b = nb / n
        assert float(B.normalize_opauc_minmax(0.0, nb, n)) == 0.0
        assert float(B.normalize_opauc_minmax(b, nb, n)) == pytest.approx(1.0)
        assert float(B.normalize_opauc_mcclish(b, nb, n)) == pytest.approx(1.0)
        assert float(B.normalize_opauc_mcclish(0.0, nb, n)) == pytest.approx((1 - b) / (2 - b))
        assert float(B.normalize_opauc_mcclish(b * b / 2, nb, n)) == pytest.approx(0.5)


def test_labels_validation() -> None:
    with pytest.raises(NegrecError, match="only 0 and 1"):
        B.auc(np.array([1, 2, 0]))
    with pytest.raises(NegrecError, match="same number of positives"):
        B.opauc_curve(np.array([[1, 0, 0], [1, 1, 0]]))
    with pytest.raises(NegrecError, match="K must lie"):
        B.recall_bounds(0.1, 3, 5, 6)
    with pytest.raises(NegrecError, match="exactly one"):
        B.opauc(EX_LABELS)
