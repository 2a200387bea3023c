"""Monte-Carlo and numerical checks of negrec.theory.simulate (docs/theory.md, paper (a) and (b)).

Monte-Carlo comparisons use fixed seeds and 3 standard errors; docs/theory.md#opauc-simulation
reference values are
checked with R = 20,000 permutations and a tolerance of 0.02 (standard error ~0.002).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from negrec.errors import NegrecError
from negrec.theory import bounds as B
from negrec.theory import simulate as S

# --------------------------------------------------------------------------------------
# sampling without replacement
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["floyd", "keys", "auto"])
def test_samples_are_uniform_subsets(method: str) -> None:
    n, k, size = 12, 4, 60_000
    idx = S.sample_without_replacement(n, k, size, 3, method=method)
    assert idx.shape == (size, k) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < n
    srt = np.sort(idx, axis=1)
    assert np.all(np.diff(srt, axis=1) > 0)  # no repeats inside a draw
    # every item appears with probability k/n
    counts = np.bincount(idx.ravel(), minlength=n)
    chi2 = stats.chisquare(counts).pvalue
    assert chi2 > 1e-3
    # pairs are uniform too (not just the margins): co-occurrence of items 0 and 1
    both = np.mean(np.any(idx == 0, axis=1) & np.any(idx == 1, axis=1))
    p = k * (k - 1) / (n * (n - 1))
    assert abs(both - p) < 4 * math.sqrt(p * (1 - p) / size)


def test_sampling_is_deterministic_given_seed() -> None:
    a = S.sample_without_replacement(50, 5, 100, 11)
    b = S.sample_without_replacement(50, 5, 100, np.random.default_rng(11))
    c = S.sample_without_replacement(50, 5, 100, 12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(NegrecError):
        S.sample_without_replacement(5, 6, 1, 0)
    with pytest.raises(NegrecError, match="unknown sampling method"):
        S.sample_without_replacement(5, 2, 1, 0, method="reservoir")


def test_full_sample_is_all_items() -> None:
    idx = S.sample_without_replacement(7, 7, 5, 0, method="keys")
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.tile(np.arange(7), (5, 1)))


# --------------------------------------------------------------------------------------
# docs/theory.md#worst-case worst case: empirical vs exact
# --------------------------------------------------------------------------------------

DRAWS = 20_000


@pytest.mark.parametrize(("k", "rank"), [(10, 10), (10, 50), (100, 10)])
def test_worst_case_matches_theory(k: int, rank: int) -> None:
    checks = S.check_worst_case(999, k, rank, draws=DRAWS, seed=rank + k)
    assert len(checks) == 6
    for c in checks:
        assert c.lemma_ok, c.describe()
        assert abs(c.empirical - c.exact) <= 3 * c.se + 1e-12, c.describe()
        assert c.passed


def test_worst_case_reference_table() -> None:
    # docs/theory.md#worst-case (2e5 draws there); our 2e4 draws must agree with its theory column
    # and with its empirical column to 3 standard errors of the difference.
    want = {10: ("0.00006", "0.00313", "0.08690"), 50: ("0.00005", "0.01044", "0.08248")}
    emp_ref = {10: (0.00004, 0.00316, 0.08765), 50: (0.00007, 0.01055, 0.08210)}
    for rank, theory in want.items():
        checks = {
            c.loss: c
            for c in S.check_worst_case(999, 10, rank, draws=DRAWS, seed=rank)
            if c.metric == "ndcg"
        }
        for loss, text, ref in zip(("cce", "bpr", "bce"), theory, emp_ref[rank], strict=True):
            c = checks[loss]
            assert abs(c.exact - float(text)) <= 0.5e-5
            se_diff = c.se * math.sqrt(1 + DRAWS / 200_000)
            assert abs(c.empirical - ref) <= 3 * se_diff + 1e-12


def test_check_detects_a_wrong_probability() -> None:
    good = S.check_worst_case(999, 10, 50, draws=DRAWS, seed=0)[2]  # NDCG BPR
    assert good.passed
    wrong = S.BoundCheck(
        good.loss,
        good.metric,
        good.n_neg,
        good.k,
        good.rank,
        good.draws,
        good.empirical,
        good.exact * 1.5,
        "equal",
        True,
    )
    assert not wrong.passed
    broken = S.BoundCheck(
        good.loss,
        good.metric,
        good.n_neg,
        good.k,
        good.rank,
        good.draws,
        good.empirical,
        good.exact,
        "equal",
        False,
    )
    assert not broken.passed


def test_empirical_counts_use_actual_losses() -> None:
    s_pos, s_neg = B.worst_case_scores(999, 50)
    emp = S.empirical_bound_probabilities(s_pos, s_neg, 10, DRAWS, 1)
    assert emp.rank == 50 and emp.n0 == 49
    for loss in B.BOUND_LOSSES:
        assert abs(emp.lemma_gap[loss]) < 1e-9 and abs(emp.worst_gap[loss]) < 1e-9
    # MRR events are rarer than NDCG events (-ln MRR >= -ln NDCG)
    for loss in B.BOUND_LOSSES:
        assert emp.probability[(loss, "mrr")] <= emp.probability[(loss, "ndcg")]


def test_bce_bound_is_loose_for_positive_score() -> None:
    # docs/theory.md#worst-case caveat: s+ = 2, r+ = 50, the worst case otherwise: empirical ~0.397
    # while
    # p_BCE = 0.0104; the tighter bound of the caveat is respected on every draw.
    s_neg = np.full(999, -60.0)
    s_neg[:49] = 2.0
    emp = S.empirical_bound_probabilities(2.0, s_neg, 10, DRAWS, 5)
    assert emp.rank == 50
    p = emp.probability[("bce", "ndcg")]
    bound = float(B.bound_probability("bce", 999, 10, 50, s_pos=2.0, n0=49))
    assert bound == pytest.approx(0.0104398, rel=1e-5)
    assert abs(p - 0.397) < 0.02
    assert p > bound
    # exact probability of the event under the tighter bound: |Gamma| sp(2) + sp(-2) >= target
    g_needed = math.ceil(
        (float(B.neg_log_ndcg(50)) - float(B.softplus(-2.0))) / float(B.softplus(2.0))
    )
    exact = float(B.gamma_tail(g_needed, 999, 49, 10))
    assert abs(p - exact) <= 3 * math.sqrt(exact * (1 - exact) / DRAWS)


def test_random_scores_respect_the_bounds() -> None:
    for k, s_pos in ((10, 2.0), (100, 2.5)):
        for c in S.check_random_scores(999, k, s_pos=s_pos, draws=5000, seed=k):
            assert c.passed, c.describe()


def test_loss_chain_violations_zero() -> None:
    assert S.loss_chain_violations(20_000, 0) == {
        "cce<=bpr": 0,
        "bpr<=bce": 0,
        "ndcg<=mrr": 0,
        "mrr<=cce": 0,
    }
    assert S.loss_chain_violations(20_000, 1, k=5) == {"cce<=bpr": 0, "bpr<=bce": 0}


# --------------------------------------------------------------------------------------
# docs/theory.md#bounded-minimum bounded minimum
# --------------------------------------------------------------------------------------


def test_bounded_minimum_numeric_matches_closed_form() -> None:
    checks = S.check_bounded_minimum(3.0, 4, seed=0)
    got = {c.loss: c for c in checks}
    assert set(got) == {"cce", "bpr", "bce"}
    for c in checks:
        assert c.passed, c.describe()
        assert c.at_corner
    assert got["bce"].numeric == pytest.approx(0.2429368, rel=1e-6)
    assert got["bpr"].numeric == pytest.approx(0.0099027, rel=1e-4)
    assert got["cce"].numeric == pytest.approx(0.0098662, rel=1e-4)
    for c in S.check_bounded_minimum(1.0, 10, seed=1, starts=2):
        assert c.passed, c.describe()
    wrong = S.MinimumCheck("bce", 3.0, 4, got["bce"].numeric, 0.25, got["bce"].argmin)
    assert not wrong.passed


# --------------------------------------------------------------------------------------
# paper (b): docs/theory.md#opauc expectation, docs/theory.md#theorem-3 sandwich,
# docs/theory.md#opauc-simulation correlations
# --------------------------------------------------------------------------------------


def test_label_permutations() -> None:
    lab = S.label_permutations(3, 5, 1000, 0)
    assert lab.shape == (1000, 8) and lab.dtype == np.bool_
    assert np.all(lab.sum(axis=1) == 3)
    # each position holds a positive with probability 3/8
    assert np.all(np.abs(lab.mean(axis=0) - 3 / 8) < 4 * math.sqrt(3 / 8 * 5 / 8 / 1000))


def test_expected_opauc_monte_carlo() -> None:
    check = S.check_expected_opauc(n_beta=50, permutations=20_000, seed=0)
    assert check.exact == pytest.approx(50 * 51 / (2 * 800 * 801))
    assert check.passed, check.describe()
    assert abs(check.empirical - 0.001992) < 3 * check.se * math.sqrt(2)  # docs/theory.md#opauc MC


def test_sandwich_no_violations_and_brute_force() -> None:
    for k in (5, 50, 200):
        v = S.sandwich_violations(n_pos=200, n_neg=800, k=k, permutations=2000, seed=k)
        assert v == {"lower": 0, "upper": 0, "recall": 0, "precision": 0}
    brute = S.brute_force_sandwich(4, 6, 3)
    assert {t: brute[t] for t in (1, 2, 3)} == {1: (1, 6), 2: (4, 10), 3: (9, 12)}
    # both ends of the sandwich are attained for every t
    for t, (lo, hi) in brute.items():
        assert (lo, hi) == (t * t, t * (4 + 3 - t))


# docs/theory.md#opauc-simulation: K -> (recall corr at n_beta = K, argmax n_beta, NDCG corr at K,
# AUC corr)
REFERENCE_2_5 = {
    5: (0.916, 6, 0.956, 0.125),
    10: (0.922, 12, 0.954, 0.179),
    20: (0.925, 24, 0.942, 0.246),
    50: (0.925, 60, 0.927, 0.379),
    100: (0.921, 120, 0.918, 0.523),
}


@pytest.fixture(scope="module")
def correlation() -> S.OpaucCorrelation:
    return S.opauc_topk_correlation(permutations=20_000, seed=0)


def test_opauc_correlation_reference_values(correlation: S.OpaucCorrelation) -> None:
    res = correlation
    assert res.ks == (5, 10, 20, 50, 100)
    assert res.corr["recall"].shape == (5, 800)
    at_k = res.at_k("recall")
    arg = res.argmax_n_beta("recall")
    ndcg_at_k = res.at_k("ndcg")
    auc = res.auc_corr("recall")
    for i, k in enumerate(res.ks):
        rec_ref, arg_ref, ndcg_ref, auc_ref = REFERENCE_2_5[k]
        assert abs(at_k[i] - rec_ref) < 0.02, (k, at_k[i])
        assert abs(ndcg_at_k[i] - ndcg_ref) < 0.02, (k, ndcg_at_k[i])
        assert abs(auc[i] - auc_ref) < 0.03, (k, auc[i])
        # the curve is flat near its peak: the argmax agrees to within 25 %
        assert abs(arg[i] - arg_ref) <= 0.25 * arg_ref + 1, (k, arg[i])
        # the peak beats AUC clearly (the paper's qualitative claim)
        assert res.max_corr("recall")[i] > auc[i] + 0.3


def test_precision_correlation_equals_recall(correlation: S.OpaucCorrelation) -> None:
    np.testing.assert_allclose(
        correlation.corr["precision"], correlation.corr["recall"], atol=1e-10
    )
    assert not np.allclose(correlation.corr["ndcg"], correlation.corr["recall"], atol=1e-3)


def test_correlation_matches_direct_computation() -> None:
    # streamed, chunked moments == np.corrcoef on the same permutations
    res = S.opauc_topk_correlation(
        n_pos=20, n_neg=30, ks=(3, 7), permutations=3000, seed=4, chunk=700
    )
    # the generator is consumed chunk by chunk, so redraw the same stream in chunks
    rng = np.random.default_rng(4)
    labels = np.concatenate([S.label_permutations(20, 30, c, rng) for c in (700,) * 4 + (200,)])
    curve = B.opauc_curve(labels)  # [R, 30]
    for i, k in enumerate((3, 7)):
        for name, fn in (("recall", B.recall_at_k), ("ndcg", B.ndcg_at_k)):
            x = fn(labels, k)
            direct = np.array([np.corrcoef(x, curve[:, j])[0, 1] for j in range(30)])
            np.testing.assert_allclose(res.corr[name][i], direct, atol=1e-10)
    rows = res.summary_rows()
    assert len(rows) == 6 and {r["metric"] for r in rows} == {"recall", "precision", "ndcg"}


def test_correlation_seed_and_validation() -> None:
    a = S.opauc_topk_correlation(n_pos=5, n_neg=10, ks=(2,), permutations=500, seed=1)
    b = S.opauc_topk_correlation(n_pos=5, n_neg=10, ks=(2,), permutations=500, seed=1)
    c = S.opauc_topk_correlation(n_pos=5, n_neg=10, ks=(2,), permutations=500, seed=2)
    np.testing.assert_array_equal(a.corr["recall"], b.corr["recall"])
    assert not np.array_equal(a.corr["recall"], c.corr["recall"])
    with pytest.raises(NegrecError, match="every K"):
        S.opauc_topk_correlation(n_pos=5, n_neg=10, ks=(11,), permutations=10)
    with pytest.raises(NegrecError, match="permutations"):
        S.opauc_topk_correlation(permutations=1)
