"""Closed-form bounds linking sampled losses to ranking metrics (pure NumPy/SciPy).

Two papers are turned into code here; the spec, with the numbers the tests reproduce, is
``docs/theory.md``.

- Paper (a): Di Teodoro et al., "A Theoretical Analysis of Recommendation Loss Functions
  under Negative Sampling", arXiv 2411.07770. One user, one positive with score ``s+`` and
  ``N_-`` negatives; ``K`` negatives are sampled uniformly without replacement. The losses
  CCE, BPR and BCE (sums over the sampled negatives) are lower-bounded by functions of the
  number of sampled negatives that outrank the positive, which is hypergeometric. This
  gives, per loss, the probability that the sampled loss upper-bounds ``-ln NDCG`` (or
  ``-ln MRR``) of the full ranking, and the ordering ``p_BCE >= p_BPR >= p_CCE``.
- Paper (b): Shi et al., "On the Theories Behind Hard Negative Sampling for
  Recommendation", WWW 2023. One-way partial AUC, OPAUC(beta), sandwiches the number of
  positives in the top K when ``beta = K / N-``, which bounds Recall@K and Precision@K.

The full proofs of neither paper were available; statements marked DERIVED were
re-derived from the papers' claims and checked numerically (Monte Carlo, brute force) and
are our definitions. All logarithms are natural, including the ``-ln`` applied to metrics.

Conventions:

- rank of the positive, pessimistic ties: ``r+ = 1 + #{j : s_j >= s+}``;
- ``Gamma_K = {j in S_K : s_j >= s+}`` and ``Gamma_K^0 = {j in S_K : s_j >= 0}``;
- ``n0 = #{j in I- : s_j >= 0}``;
- labels-by-rank vectors (paper (b)) hold 1 for a positive and 0 for a negative, best rank
  first, so they contain no ties.

Every function is vectorised with NumPy broadcasting over its array arguments (ranks,
``K``, scores). Integer thresholds use integer arithmetic (bit lengths), so they are exact
at powers of two where ``log2`` in floating point would need an epsilon.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from negrec.errors import NegrecError

Loss: TypeAlias = Literal["cce", "bpr", "bce"]
Metric: TypeAlias = Literal["ndcg", "mrr"]
BOUND_LOSSES: tuple[Loss, ...] = ("cce", "bpr", "bce")
METRICS: tuple[Metric, ...] = ("ndcg", "mrr")

ArrayLike: TypeAlias = npt.ArrayLike
FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]

LN2 = math.log(2.0)
# Slack for the one threshold that needs floating point: BCE with a finite, non-zero s+
# (the s+ enters through log2(1 + e^{-s+})). docs/theory.md#theorem-1 allows 1e-12.
THRESHOLD_EPS = 1e-12
# Largest integer argument handled by the integer threshold routines (exactly representable
# in float64 as well, so callers can pass float ranks such as 10.0 safely).
_MAX_INT = 2**53


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------


def _as_int_array(x: ArrayLike, name: str) -> IntArray:
    """Convert to an int64 array, refusing non-integral values with a NegrecError."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_:
        raise NegrecError(f"{name} must be an integer, got a boolean")
    if not np.issubdtype(arr.dtype, np.integer):
        as_float = arr.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise NegrecError(f"{name} must be an integer, got {x!r}")
        if np.any(np.abs(as_float) > _MAX_INT):
            raise NegrecError(f"{name} must be below 2**53 in absolute value, got {x!r}")
    return arr.astype(np.int64)


def _check_range(x: IntArray, lo: ArrayLike, hi: ArrayLike, name: str, what: str) -> None:
    """Raise a one-line NegrecError naming the first value of ``x`` outside [lo, hi]."""
    lo_b, hi_b, x_b = np.broadcast_arrays(np.asarray(lo), np.asarray(hi), x)
    bad = (x_b < lo_b) | (x_b > hi_b)
    if np.any(bad):
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise NegrecError(f"{name} must lie in [{lo_b[i]}, {hi_b[i]}] ({what}), got {x_b[i]}")


def _check_problem(n_neg: ArrayLike, k: ArrayLike, rank: ArrayLike) -> tuple[IntArray, ...]:
    """Validate (N_-, K, r+) of paper (a): N_- >= 1, 1 <= K <= N_-, 1 <= r+ <= N_- + 1."""
    n = _as_int_array(n_neg, "number of negatives N_-")
    kk = _as_int_array(k, "sample size K")
    r = _as_int_array(rank, "rank r+")
    _check_range(n, 1, _MAX_INT, "number of negatives N_-", "at least one negative")
    _check_range(kk, 1, n, "sample size K", "1 <= K <= N_- = number of items - 1")
    _check_range(r, 1, n + 1, "rank r+", "1 <= r+ <= N_- + 1 = number of items")
    return n, kk, r


def _check_loss(loss: str) -> Loss:
    if loss not in BOUND_LOSSES:
        raise NegrecError(f"unknown loss '{loss}'; expected one of {', '.join(BOUND_LOSSES)}")
    return loss


def _check_metric(metric: str) -> Metric:
    if metric not in METRICS:
        raise NegrecError(f"unknown metric '{metric}'; expected one of {', '.join(METRICS)}")
    return metric


# --------------------------------------------------------------------------------------
# integer helpers (exact, vectorised)
# --------------------------------------------------------------------------------------


def bit_length(x: ArrayLike) -> IntArray:
    """Elementwise ``int.bit_length`` of non-negative integers, by integer shifts only.

    ``bit_length(x) = ceil(log2(x + 1))`` exactly, which is what the thresholds of
    docs/theory.md#theorem-1 and docs/theory.md#mrr need without the rounding error of a float
    ``log2``.
    """
    y = _as_int_array(x, "bit_length argument").copy()
    if np.any(y < 0):
        raise NegrecError("bit_length needs non-negative integers")
    out = np.zeros_like(y)
    while np.any(y > 0):  # at most 63 passes
        nz = y > 0
        out += nz
        y >>= 1
    return out


def ceil_log2(x: ArrayLike) -> IntArray:
    """Exact ``ceil(log2(x))`` for integers ``x >= 1`` (equal to ``bit_length(x - 1)``)."""
    xi = _as_int_array(x, "ceil_log2 argument")
    if np.any(xi < 1):
        raise NegrecError("ceil_log2 needs integers >= 1")
    return bit_length(xi - 1)


# --------------------------------------------------------------------------------------
# docs/theory.md#notation, docs/theory.md#sampled-losses: scores, ranks, losses
# --------------------------------------------------------------------------------------


def softplus(x: ArrayLike) -> FloatArray:
    """Stable ``sp(x) = ln(1 + e^x)``, elementwise."""
    return np.logaddexp(0.0, np.asarray(x, dtype=np.float64))


def loss_cce(s_pos: ArrayLike, s_neg: ArrayLike) -> FloatArray:
    """Sampled softmax cross-entropy ``ln(1 + sum_j e^{s_j - s+})`` (paper (a)).

    See docs/theory.md#sampled-losses.

    Shapes: ``s_pos`` [...], ``s_neg`` [..., K] -> [...]. The positive is in the softmax
    denominator; computed as a logsumexp over ``[0, s_j - s+]``.
    """
    sp = np.asarray(s_pos, dtype=np.float64)
    sn = np.asarray(s_neg, dtype=np.float64)
    d = sn - sp[..., None]  # [..., K]
    zeros = np.zeros((*d.shape[:-1], 1))
    return np.asarray(special.logsumexp(np.concatenate([zeros, d], axis=-1), axis=-1))


def loss_bpr(s_pos: ArrayLike, s_neg: ArrayLike) -> FloatArray:
    """BPR summed over negatives, ``sum_j sp(s_j - s+)`` (docs/theory.md#sampled-losses, paper (a)).

    Shapes: ``s_pos`` [...], ``s_neg`` [..., K] -> [...]. A sum, not a mean: averaged BPR
    does not upper-bound ``-ln NDCG`` even with all negatives.
    """
    sp = np.asarray(s_pos, dtype=np.float64)
    sn = np.asarray(s_neg, dtype=np.float64)
    return softplus(sn - sp[..., None]).sum(axis=-1)


def loss_bce(s_pos: ArrayLike, s_neg: ArrayLike) -> FloatArray:
    """Binary cross-entropy ``sp(-s+) + sum_j sp(s_j)`` (docs/theory.md#sampled-losses, paper (a)).

    Shapes: ``s_pos`` [...], ``s_neg`` [..., K] -> [...].
    """
    sp = np.asarray(s_pos, dtype=np.float64)
    sn = np.asarray(s_neg, dtype=np.float64)
    return softplus(-sp) + softplus(sn).sum(axis=-1)


def sampled_loss(loss: str, s_pos: ArrayLike, s_neg: ArrayLike) -> FloatArray:
    """Dispatch to :func:`loss_cce`, :func:`loss_bpr` or :func:`loss_bce` by name."""
    name = _check_loss(loss)
    fn = {"cce": loss_cce, "bpr": loss_bpr, "bce": loss_bce}[name]
    return fn(s_pos, s_neg)


def rank_of_positive(s_pos: ArrayLike, s_neg: ArrayLike) -> IntArray:
    """Pessimistic rank ``r+ = 1 + #{j : s_j >= s+}``; ``s_pos`` [...], ``s_neg`` [..., N_-]."""
    sp = np.asarray(s_pos, dtype=np.float64)
    sn = np.asarray(s_neg, dtype=np.float64)
    return 1 + (sn >= sp[..., None]).sum(axis=-1).astype(np.int64)


def gamma_count(s_pos: ArrayLike, s_neg: ArrayLike) -> IntArray:
    """``|Gamma_K| = #{j in S_K : s_j >= s+}``; ``s_pos`` [...], ``s_neg`` [..., K] -> [...]."""
    sp = np.asarray(s_pos, dtype=np.float64)
    sn = np.asarray(s_neg, dtype=np.float64)
    return (sn >= sp[..., None]).sum(axis=-1).astype(np.int64)


def gamma0_count(s_neg: ArrayLike) -> IntArray:
    """``|Gamma_K^0| = #{j in S_K : s_j >= 0}``; ``s_neg`` [..., K] -> [...].

    Over all negatives this is ``n0``.
    """
    return (np.asarray(s_neg, dtype=np.float64) >= 0).sum(axis=-1).astype(np.int64)


def neg_log_ndcg(rank: ArrayLike) -> FloatArray:
    """``-ln NDCG(r+) = ln log2(1 + r+)`` for one relevant item at rank ``r+``
    (docs/theory.md#notation).
    """
    r = np.asarray(rank, dtype=np.float64)
    return np.log(np.log2(1.0 + r))


def neg_log_mrr(rank: ArrayLike) -> FloatArray:
    """``-ln MRR(r+) = ln r+`` (docs/theory.md#mrr)."""
    return np.log(np.asarray(rank, dtype=np.float64))


def neg_log_metric(metric: str, rank: ArrayLike) -> FloatArray:
    """``-ln NDCG(r+)`` or ``-ln MRR(r+)`` by name."""
    m = _check_metric(metric)
    return neg_log_ndcg(rank) if m == "ndcg" else neg_log_mrr(rank)


# --------------------------------------------------------------------------------------
# docs/theory.md#bounded-minimum: bounded scores
# --------------------------------------------------------------------------------------


def bounded_minimum(loss: str, bound: float, k: ArrayLike) -> FloatArray:
    """Global minimum of a loss over scores in ``[-S, S]`` (DERIVED, paper (a)).

    See docs/theory.md#bounded-minimum.

    Each loss is monotone in every score, so all three share the minimiser ``s+ = S``,
    ``s_j = -S``: BCE ``(K + 1) sp(-S)``, BPR ``K sp(-2S)``, CCE ``ln(1 + K e^{-2S})``.
    Vectorised over ``k`` (and ``bound``).
    """
    name = _check_loss(loss)
    s = np.asarray(bound, dtype=np.float64)
    kk = np.asarray(k, dtype=np.float64)
    if np.any(s < 0):
        raise NegrecError(f"score bound S must be >= 0, got {bound}")
    if np.any(kk < 0):
        raise NegrecError(f"number of negatives K must be >= 0, got {k!r}")
    if name == "bce":
        return (kk + 1.0) * softplus(-s)
    if name == "bpr":
        return kk * softplus(-2.0 * s)
    return np.log1p(kk * np.exp(-2.0 * s))


# --------------------------------------------------------------------------------------
# docs/theory.md#lower-bounds: sampled lower bounds and their hypergeometric distributions
# --------------------------------------------------------------------------------------


def lower_bound_cce(gamma: ArrayLike) -> FloatArray:
    """Lemma L-CCE (DERIVED, docs/theory.md#lower-bounds): ``L_CCE >= ln(1 + |Gamma_K|)``."""
    return np.log1p(np.asarray(gamma, dtype=np.float64))


def lower_bound_bpr(gamma: ArrayLike) -> FloatArray:
    """Lemma L-BPR (DERIVED, docs/theory.md#lower-bounds): ``L_BPR >= |Gamma_K| ln 2``."""
    return np.asarray(gamma, dtype=np.float64) * LN2


def lower_bound_bce(gamma0: ArrayLike, s_pos: ArrayLike | None = None) -> FloatArray:
    """Lemma L-BCE (DERIVED, docs/theory.md#lower-bounds): ``L_BCE >= sp(-s+) + |Gamma_K^0| ln 2``
    for any ``s+``.

    With ``s_pos=None`` the ``sp(-s+)`` term is dropped (the ``s+ -> inf`` limit, the
    worst-case BCE bound ``|Gamma_K^0| ln 2``).
    """
    base = np.asarray(gamma0, dtype=np.float64) * LN2
    if s_pos is None:
        return base
    return softplus(-np.asarray(s_pos, dtype=np.float64)) + base


def lower_bound_bce_tight(gamma: ArrayLike, gamma0: ArrayLike, s_pos: ArrayLike) -> FloatArray:
    """Tighter BCE bound for ``s+ >= 0`` (DERIVED; not known to be in paper (a)).

    See the caveat of docs/theory.md#worst-case.

    ``L_BCE >= sp(-s+) + |Gamma_K| sp(s+) + (|Gamma_K^0| - |Gamma_K|) ln 2``: each negative
    above ``s+`` costs at least ``sp(s+)``, each other non-negative one at least ``ln 2``.
    """
    sp = np.asarray(s_pos, dtype=np.float64)
    if np.any(sp < 0):
        raise NegrecError("the tight BCE bound needs s+ >= 0")
    g = np.asarray(gamma, dtype=np.float64)
    g0 = np.asarray(gamma0, dtype=np.float64)
    return softplus(-sp) + g * softplus(sp) + (g0 - g) * LN2


def gamma_distribution(n_neg: int, n_above: int, k: int) -> Any:
    """Frozen ``scipy.stats.hypergeom(M=N_-, n=n_above, N=K)`` (docs/theory.md#lower-bounds).

    ``|Gamma_K| ~ HG(N_-, r+ - 1, K)`` and ``|Gamma_K^0| ~ HG(N_-, n0, K)``: the number of
    "marked" negatives in a uniform sample of ``K`` out of ``N_-`` without replacement.
    """
    n = int(_as_int_array(n_neg, "N_-"))
    a = int(_as_int_array(n_above, "number of marked negatives"))
    kk = int(_as_int_array(k, "K"))
    _check_range(np.asarray(kk), 0, n, "sample size K", "0 <= K <= N_-")
    _check_range(np.asarray(a), 0, n, "number of marked negatives", "0 <= n <= N_-")
    return stats.hypergeom(n, a, kk)


def gamma_pmf(count: ArrayLike, n_neg: ArrayLike, n_above: ArrayLike, k: ArrayLike) -> FloatArray:
    """``P(|Gamma| = count)`` for ``|Gamma| ~ HG(N_-, n_above, K)`` , broadcasting.

    See docs/theory.md#lower-bounds.

    Equals ``C(n_above, c) C(N_- - n_above, K - c) / C(N_-, K)``.
    """
    return np.asarray(stats.hypergeom.pmf(count, n_neg, n_above, k), dtype=np.float64)


def gamma_tail(m: ArrayLike, n_neg: ArrayLike, n_above: ArrayLike, k: ArrayLike) -> FloatArray:
    """``P(|Gamma| >= m)`` for ``|Gamma| ~ HG(N_-, n_above, K)``: ``hypergeom.sf(m - 1, ...)``.

    Broadcasts over all arguments; ``m <= 0`` gives 1 and ``m > min(n_above, K)`` gives 0.
    """
    mm = np.asarray(m, dtype=np.int64)
    return np.asarray(stats.hypergeom.sf(mm - 1, n_neg, n_above, k), dtype=np.float64)


# --------------------------------------------------------------------------------------
# docs/theory.md#theorem-1 / docs/theory.md#mrr: integer thresholds and probabilities
# --------------------------------------------------------------------------------------


def _bce_threshold(rank: IntArray, s_pos: FloatArray, metric: Metric) -> IntArray:
    """BCE threshold for a finite ``s+``, shapes broadcast from ``rank`` and ``s_pos``.

    NDCG: ``max(0, ceil(log2 log2(1 + r+) - log2(1 + e^{-s+})))``; MRR: the same with
    ``log2 r+``. ``s+ = 0`` (``log2(1 + e^0) = 1``) is done exactly, as the BPR threshold
    minus one; other values go through floating point with a slack of ``THRESHOLD_EPS``.
    """
    r, s = np.broadcast_arrays(rank, s_pos)
    bpr = threshold("bpr", r, metric=metric)
    offset = softplus(-s) / LN2  # log2(1 + e^{-s+}), > 0
    rf = r.astype(np.float64)
    target = np.log2(np.log2(1.0 + rf)) if metric == "ndcg" else np.log2(rf)
    m = np.maximum(0.0, np.ceil(target - offset - THRESHOLD_EPS)).astype(np.int64)
    return np.where(s == 0.0, np.maximum(0, bpr - 1), m).astype(np.int64)


def threshold(
    loss: str,
    rank: ArrayLike,
    *,
    metric: str = "ndcg",
    s_pos: ArrayLike | None = None,
) -> IntArray:
    """Smallest count ``m`` at which a loss's sampled bound reaches ``-ln metric(r+)``.

    DERIVED (Theorem 1 of paper (a) in integer form: docs/theory.md#theorem-1 for NDCG,
    docs/theory.md#mrr for MRR).
    The bound exceeds ``-ln metric(r+)`` exactly when ``|Gamma_K| >= m`` (CCE, BPR) or
    ``|Gamma_K^0| >= m`` (BCE).

    NDCG (``-ln NDCG = ln log2(1 + r+)``):

    - CCE: min ``m >= 0`` with ``2^{m+1} >= r+ + 1``, i.e. ``bit_length(r+) - 1``;
    - BPR: min ``m >= 0`` with ``2^{2^m} >= r+ + 1``, i.e. ``ceil_log2(bit_length(r+))``;
    - BCE: ``max(0, ceil(log2 log2(1 + r+) - log2(1 + e^{-s+})))``; with ``s_pos=None``
      the worst case (``s+ -> inf``), which is the BPR threshold.

    MRR (``-ln MRR = ln r+``): CCE ``r+ - 1``; BPR ``ceil(log2 r+)``; BCE
    ``max(0, ceil(log2 r+ - log2(1 + e^{-s+})))``.

    Vectorised over ``rank`` (and ``s_pos``). Integer arithmetic only, except BCE with a
    finite non-zero ``s+``.
    """
    name = _check_loss(loss)
    met = _check_metric(metric)
    r = _as_int_array(rank, "rank r+")
    _check_range(r, 1, _MAX_INT, "rank r+", "ranks start at 1")
    if name == "bce":
        if s_pos is None:
            return threshold("bpr", r, metric=met)
        s = np.asarray(s_pos, dtype=np.float64)
        if not np.all(np.isfinite(s)):
            raise NegrecError("positive score s+ must be finite (omit it for the worst case)")
        return _bce_threshold(r, s, met)
    if met == "ndcg":
        b = bit_length(r)  # ceil(log2(r+ + 1)) >= 1
        return b - 1 if name == "cce" else ceil_log2(b)
    return r - 1 if name == "cce" else ceil_log2(r)


def threshold_float(
    loss: str,
    rank: ArrayLike,
    *,
    metric: str = "ndcg",
    s_pos: float | None = None,
) -> FloatArray:
    """Floating-point form of :func:`threshold`, straight from the formulas of
    docs/theory.md#theorem-1 / docs/theory.md#mrr.

    For reference and tests only. It relies on ``np.log2`` returning exact integers at
    exact powers of two (true of IEEE libm); the equally natural ``ln(x) / ln(2)`` is not
    exact there (``math.log(2**29, 2) = 29.000000000000004``), and a finite ``s+`` makes
    the BCE value a float in any case. :func:`threshold` uses integer arithmetic instead.
    """
    name = _check_loss(loss)
    met = _check_metric(metric)
    rf = np.asarray(rank, dtype=np.float64)
    if met == "ndcg":
        lg = np.log2(1.0 + rf)
        v = lg - 1.0 if name == "cce" else np.log2(lg)
    else:
        if name == "cce":
            v = rf - 1.0
        else:
            with np.errstate(divide="ignore"):
                v = np.log2(rf)
    if name == "bce" and s_pos is not None:
        v = v - float(softplus(-float(s_pos))) / LN2
    return np.maximum(0.0, np.ceil(v))


def bound_probability(
    loss: str,
    n_neg: ArrayLike,
    k: ArrayLike,
    rank: ArrayLike,
    *,
    metric: str = "ndcg",
    s_pos: ArrayLike | None = None,
    n0: ArrayLike | None = None,
) -> FloatArray:
    """``p_L``: lower bound on ``P(-ln metric(r+) <= L)`` for a sampled loss (DERIVED).

    Theorem 1 of paper (a) in the integer form of docs/theory.md#theorem-1 (NDCG) and
    docs/theory.md#mrr (MRR):
    ``p_L = P(count >= m)`` with ``m = threshold(loss, r+, ...)`` and ``count``
    hypergeometric: ``|Gamma_K| ~ HG(N_-, r+ - 1, K)`` for CCE and BPR,
    ``|Gamma_K^0| ~ HG(N_-, n0, K)`` for BCE. The bound is attained by the worst case of
    docs/theory.md#worst-case (:func:`worst_case_scores`).

    Args:
        loss: ``"cce"``, ``"bpr"`` or ``"bce"``.
        n_neg: ``N_-``, the number of negatives (items - 1).
        k: sample size ``K``, ``1 <= K <= N_-``.
        rank: full-ranking rank ``r+``, ``1 <= r+ <= N_- + 1``.
        metric: ``"ndcg"`` or ``"mrr"``.
        s_pos: positive score for BCE; ``None`` is the worst case ``s+ -> inf`` (drops
            ``sp(-s+)``). Ignored by CCE and BPR.
        n0: number of negatives with score ``>= 0`` for BCE; default ``r+ - 1`` (the worst
            case). Must satisfy ``n0 >= r+ - 1`` when ``s+ >= 0`` (or ``s_pos`` is None)
            and ``n0 <= r+ - 1`` when ``s+ < 0``. Ignored by CCE and BPR.

    Returns:
        Probabilities, broadcast over ``n_neg``, ``k``, ``rank`` (and ``s_pos``, ``n0``).
    """
    name = _check_loss(loss)
    met = _check_metric(metric)
    n, kk, r = _check_problem(n_neg, k, rank)
    if name != "bce":
        m = threshold(name, r, metric=met)
        return gamma_tail(m, n, r - 1, kk)
    marked = r - 1 if n0 is None else _as_int_array(n0, "n0")
    _check_range(marked, 0, n, "n0", "0 <= n0 <= N_-")
    if s_pos is None:
        s_nonneg: npt.NDArray[np.bool_] = np.asarray(True)
    else:
        s_nonneg = np.asarray(s_pos, dtype=np.float64) >= 0
    if n0 is not None:
        b_nonneg, b_marked, b_r = np.broadcast_arrays(s_nonneg, marked, r)
        bad = np.where(b_nonneg, b_marked < b_r - 1, b_marked > b_r - 1)
        if np.any(bad):
            i = tuple(int(v) for v in np.argwhere(bad)[0])
            need = ">= r+ - 1 (since s+ >= 0)" if b_nonneg[i] else "<= r+ - 1 (since s+ < 0)"
            raise NegrecError(f"n0 must be {need}, got n0={b_marked[i]} with r+={b_r[i]}")
    m = threshold("bce", r, metric=met, s_pos=s_pos)
    return gamma_tail(m, n, marked, kk)


def worst_case_scores(
    n_neg: int, rank: int, *, low: float = -60.0
) -> tuple[float, npt.NDArray[np.float64]]:
    """Scores that make all three lemmas of docs/theory.md#lower-bounds equalities (DERIVED,
    docs/theory.md#worst-case).

    ``s+ = 0``; ``r+ - 1`` negatives tied at 0 (above the positive under pessimistic ties);
    all others at ``low`` (standing in for ``-inf``). Then ``L_CCE = ln(1 + |Gamma|)``,
    ``L_BPR = |Gamma| ln 2`` and ``L_BCE = (1 + |Gamma|) ln 2`` up to ``e^{low}``, so the
    probabilities of :func:`bound_probability` (BCE with ``s+ = 0``, ``n0 = r+ - 1``) are
    exact.

    Returns:
        ``(s_pos, s_neg)`` with ``s_neg`` of shape [N_-].
    """
    n, _, r = _check_problem(n_neg, 1, rank)
    if low >= 0:
        raise NegrecError(f"low must be negative, got {low}")
    s_neg = np.full(int(n), float(low))
    s_neg[: int(r) - 1] = 0.0
    return 0.0, s_neg


def bound_table(
    n_items: int,
    k: int,
    ranks: ArrayLike,
    *,
    metric: str = "ndcg",
    s_pos: float | None = None,
    n0: int | None = None,
) -> dict[str, npt.NDArray[np.float64] | IntArray]:
    """Thresholds and probabilities for every loss at the given ranks, as columns.

    Columns: ``rank``, ``neg_log_metric``, then ``m_<loss>`` and ``p_<loss>`` for ``cce``,
    ``bpr``, ``bce_worst`` (``s+ -> inf``, shown unless ``s_pos < 0``) and, when ``s_pos``
    is given, ``bce``. ``n_items = N_- + 1``. Used by ``negrec theory bounds``.
    """
    if int(n_items) < 2:
        raise NegrecError(f"number of items must be >= 2, got {n_items}")
    n_neg = int(n_items) - 1
    r = _as_int_array(ranks, "rank r+").reshape(-1)
    n, kk, r = _check_problem(n_neg, k, r)
    met = _check_metric(metric)
    cols: dict[str, npt.NDArray[np.float64] | IntArray] = {
        "rank": r,
        "neg_log_metric": neg_log_metric(met, r),
    }
    for name in ("cce", "bpr"):
        cols[f"m_{name}"] = threshold(name, r, metric=met)
        cols[f"p_{name}"] = bound_probability(name, n, kk, r, metric=met)
    if s_pos is None or s_pos >= 0:
        cols["m_bce_worst"] = threshold("bce", r, metric=met)
        cols["p_bce_worst"] = bound_probability("bce", n, kk, r, metric=met, n0=n0)
    if s_pos is not None:
        cols["m_bce"] = threshold("bce", r, metric=met, s_pos=s_pos)
        cols["p_bce"] = bound_probability("bce", n, kk, r, metric=met, s_pos=s_pos, n0=n0)
    return cols


# --------------------------------------------------------------------------------------
# Paper (b): Top-K metrics, AUC, OPAUC on label-by-rank vectors (docs/theory.md#topk-metrics to
# docs/theory.md#theorem-3)
# --------------------------------------------------------------------------------------


def _labels(labels: ArrayLike) -> npt.NDArray[np.bool_]:
    """Validate a 0/1 label-by-rank array [..., N] and return it as bool."""
    arr = np.asarray(labels)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise NegrecError("labels must be a non-empty array [..., N] of 0/1 by rank")
    if arr.dtype != np.bool_:
        if np.any((arr != 0) & (arr != 1)):
            raise NegrecError("labels must contain only 0 and 1")
        arr = arr.astype(bool)
    return arr


def _counts(lab: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """(N+, N-) shared by every row of a label array; rows must agree."""
    pos = lab.sum(axis=-1)
    n_pos = int(pos.flat[0])
    if np.any(pos != n_pos):
        raise NegrecError("every row of labels must hold the same number of positives")
    n_neg = lab.shape[-1] - n_pos
    if n_pos < 1 or n_neg < 1:
        raise NegrecError(
            f"need at least one positive and one negative, got N+={n_pos}, N-={n_neg}"
        )
    return n_pos, n_neg


def _check_k(k: int, n: int) -> int:
    kk = int(_as_int_array(k, "K"))
    _check_range(np.asarray(kk), 1, n, "K", "1 <= K <= list length")
    return kk


def topk_hits(labels: ArrayLike, k: int) -> IntArray:
    """``t = sum_{i <= K} rel_i``, the positives in the top K; labels [..., N] -> [...]."""
    lab = _labels(labels)
    kk = _check_k(k, lab.shape[-1])
    return lab[..., :kk].sum(axis=-1).astype(np.int64)


def recall_at_k(labels: ArrayLike, k: int) -> FloatArray:
    """Recall@K = t / N+ (docs/theory.md#topk-metrics, as in the code of paper (b)).

    labels [..., N] -> [...].
    """
    lab = _labels(labels)
    return topk_hits(lab, k) / lab.sum(axis=-1)


def precision_at_k(labels: ArrayLike, k: int) -> FloatArray:
    """Precision@K = t / K (docs/theory.md#topk-metrics); labels [..., N] -> [...]."""
    return topk_hits(labels, k) / float(k)


def ndcg_at_k(labels: ArrayLike, k: int) -> FloatArray:
    """NDCG@K = DCG@K / IDCG@K with binary gains and ``1/log2(i + 1)`` discounts
    (docs/theory.md#topk-metrics).

    ``IDCG@K = sum_{i <= min(N+, K)} 1/log2(i + 1)``; labels [..., N] -> [...].
    """
    lab = _labels(labels)
    kk = _check_k(k, lab.shape[-1])
    disc = 1.0 / np.log2(np.arange(2, kk + 2, dtype=np.float64))  # [K]
    dcg = lab[..., :kk] @ disc  # [...]
    n_pos = lab.sum(axis=-1)  # [...]
    if np.any(n_pos < 1):
        raise NegrecError("NDCG@K needs at least one positive per list")
    ideal = np.concatenate([[0.0], np.cumsum(disc)])  # [K + 1]; ideal[j] = IDCG with j hits
    return np.asarray(dcg / ideal[np.minimum(n_pos, kk)], dtype=np.float64)


def positives_above_negatives(labels: ArrayLike) -> IntArray:
    """``P_j``, the positives ranked above the j-th highest negative (docs/theory.md#opauc).

    labels [..., N] with the same ``N-`` in every row -> [..., N-].
    """
    lab = _labels(labels)
    _, n_neg = _counts(lab)
    above = np.cumsum(lab, axis=-1, dtype=np.int64)  # [..., N]
    return above[~lab].reshape(*lab.shape[:-1], n_neg)


def opauc_curve(labels: ArrayLike) -> FloatArray:
    """OPAUC(n / N-) for every ``n = 1..N-``: ``sum_{j <= n} P_j / (N+ N-)`` (docs/theory.md#opauc).

    labels [..., N] -> [..., N-]; the last column is the AUC.
    """
    lab = _labels(labels)
    n_pos, n_neg = _counts(lab)
    p = positives_above_negatives(lab)  # [..., N-]
    return np.cumsum(p, axis=-1, dtype=np.float64) / float(n_pos * n_neg)


def n_beta_of(beta: float, n_neg: int) -> int:
    """``n_beta = floor(beta N-)``, immune to ``(K / N-) * N-`` landing just below ``K``."""
    if not 0.0 < beta <= 1.0:
        raise NegrecError(f"beta must lie in (0, 1], got {beta}")
    n = math.floor(beta * n_neg + 1e-9)
    if n < 1:
        raise NegrecError(f"beta={beta} is below 1/N- = {1.0 / n_neg:.6g} (n_beta = 0)")
    return n


def opauc(labels: ArrayLike, *, beta: float | None = None, n_beta: int | None = None) -> FloatArray:
    """One-way partial AUC over FPR in ``[0, beta]`` (DERIVED, standard, paper (b);
    docs/theory.md#opauc).

    ``OPAUC(beta) = sum_{j=1}^{n_beta} P_j / (N+ N-)`` with ``n_beta = floor(beta N-)``;
    give exactly one of ``beta`` or ``n_beta``. Range over permutations: ``[0, n_beta/N-]``.
    labels [..., N] -> [...].
    """
    lab = _labels(labels)
    n_pos, n_neg = _counts(lab)
    if (beta is None) == (n_beta is None):
        raise NegrecError("give exactly one of beta and n_beta")
    if beta is not None:
        nb = n_beta_of(beta, n_neg)
    else:
        assert n_beta is not None
        nb = int(n_beta)
    _check_range(np.asarray(nb), 1, n_neg, "n_beta", "1 <= n_beta <= N-")
    p = positives_above_negatives(lab)[..., :nb]  # [..., n_beta]
    return p.sum(axis=-1) / float(n_pos * n_neg)


def auc(labels: ArrayLike) -> FloatArray:
    """AUC = ``sum_j P_j / (N+ N-)`` = OPAUC(1) (docs/theory.md#opauc); labels [..., N] -> [...]."""
    lab = _labels(labels)
    _, n_neg = _counts(lab)
    return opauc(lab, n_beta=n_neg)


def expected_opauc(n_neg: int, n_beta: ArrayLike) -> FloatArray:
    """``E[OPAUC]`` under uniform permutations: ``n_beta (n_beta + 1) / (2 N- (N- + 1))``.

    DERIVED (docs/theory.md#opauc): ``E[P_j] = N+ j / (N- + 1)``; about ``beta^2 / 2``.
    Independent of N+.
    """
    nb = np.asarray(n_beta, dtype=np.float64)
    return nb * (nb + 1.0) / (2.0 * n_neg * (n_neg + 1.0))


def normalize_opauc_minmax(value: ArrayLike, n_beta: int, n_neg: int) -> FloatArray:
    """Min/max normalisation ``OPAUC N- / n_beta`` onto [0, 1] (NOT VERIFIED form,
    docs/theory.md#opauc-normalisation).
    """
    if not 1 <= n_beta <= n_neg:
        raise NegrecError(f"n_beta must lie in [1, N-={n_neg}], got {n_beta}")
    return np.asarray(value, dtype=np.float64) * (n_neg / n_beta)


def normalize_opauc_mcclish(value: ArrayLike, n_beta: int, n_neg: int) -> FloatArray:
    """McClish standardised partial AUC ``(1 + (OPAUC - b^2/2) / (b - b^2/2)) / 2``
    (docs/theory.md#opauc-normalisation).

    ``b = n_beta / N-``; 0.5 for a random ranking on average, 1 for a perfect one; its
    permutation minimum is ``(1 - b) / (2 - b)``. NOT VERIFIED as the paper's exact form.
    Affine in OPAUC, so correlations are unchanged.
    """
    if not 1 <= n_beta <= n_neg:
        raise NegrecError(f"n_beta must lie in [1, N-={n_neg}], got {n_beta}")
    b = n_beta / n_neg
    half_sq = b * b / 2.0
    return 0.5 * (1.0 + (np.asarray(value, dtype=np.float64) - half_sq) / (b - half_sq))


def opauc_sandwich(t: ArrayLike, n_pos: int, k: int) -> tuple[IntArray, IntArray]:
    """Theorem 3 of paper (b): ``t^2 <= N+ N- OPAUC(K/N-) <= t (N+ + K - t)`` (DERIVED).

    See docs/theory.md#theorem-3.

    Returns ``(lower, upper)`` in units of ``N+ N- OPAUC``; ``t`` [...] -> ([...], [...]).
    """
    tt = _as_int_array(t, "t")
    _check_range(tt, 0, min(int(n_pos), int(k)), "t", "0 <= t <= min(N+, K)")
    return tt * tt, tt * (int(n_pos) + int(k) - tt)


def recall_bounds(
    opauc_value: ArrayLike, n_pos: int, n_neg: int, k: int
) -> tuple[FloatArray, FloatArray]:
    """Recall@K interval implied by OPAUC(K/N-) (DERIVED from Theorem 3 of paper (b)).

    See docs/theory.md#theorem-3.

    With ``A = N+ N- OPAUC``:
    ``[(N+ + K) - sqrt((N+ + K)^2 - 4A)] / (2 N+) <= Recall@K <= sqrt(N- OPAUC / N+)``.
    Needs ``1 <= K <= N-``. Vectorised over ``opauc_value``.
    """
    if not 1 <= k <= n_neg:
        raise NegrecError(f"K must lie in [1, N-={n_neg}] for beta = K/N-, got {k}")
    o = np.asarray(opauc_value, dtype=np.float64)
    a = n_pos * n_neg * o
    s = float(n_pos + k)
    disc = np.maximum(s * s - 4.0 * a, 0.0)  # >= 0 up to rounding: A <= (N+ + K)^2 / 4
    lo = (s - np.sqrt(disc)) / (2.0 * n_pos)
    hi = np.sqrt(np.maximum(n_neg * o / n_pos, 0.0))
    return lo, hi


def precision_bounds(
    opauc_value: ArrayLike, n_pos: int, n_neg: int, k: int
) -> tuple[FloatArray, FloatArray]:
    """Precision@K interval: the Recall@K interval times ``N+ / K`` (paper (b)).

    See docs/theory.md#theorem-3.
    """
    lo, hi = recall_bounds(opauc_value, n_pos, n_neg, k)
    return lo * (n_pos / k), hi * (n_pos / k)
