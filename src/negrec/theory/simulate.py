"""Monte-Carlo and numerical checks of the closed forms in :mod:`negrec.theory.bounds`.

- Worst-case check of paper (a) (Di Teodoro et al., arXiv 2411.07770;
  docs/theory.md#worst-case): sample ``K`` negatives without replacement many times,
  evaluate the three sampled losses on the actual scores and compare the frequency of
  ``-ln metric(r+) <= L`` with the exact hypergeometric probability of Theorem 1 (DERIVED
  integer form, docs/theory.md#theorem-1 and docs/theory.md#mrr).
- Bound validity on arbitrary scores: the empirical probability is at least ``p_L``.
- Bounded-score global minimum (docs/theory.md#bounded-minimum): minimise each loss
  numerically on ``[-S, S]``.
- Paper (b) (Shi et al., WWW 2023; docs/theory.md#opauc-simulation): correlation between
  Top-K metrics and OPAUC(beta) over uniformly random permutations of ``N+`` ones and ``N-`` zeros.

Everything is vectorised over draws / permutations (chunks bound the memory); randomness
is always an argument (an int seed or a ``numpy.random.Generator``), never global state.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import optimize
from scipy import special as sp_special
from tqdm.auto import tqdm

from negrec.errors import NegrecError
from negrec.theory import bounds as B

Seed = int | np.random.Generator

# Numerical slack for the event ``-ln metric(r+) <= L``: at the worst case the two sides can
# be mathematically equal (e.g. ln(1 + 1) = ln log2(4)) and differ by rounding.
EVENT_TOL = 1e-9
# Soft cap on the number of array elements held per chunk (float64: 8 bytes each).
_CHUNK_ELEMENTS = 4_000_000


def _rng(seed: Seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def _chunks(total: int, size: int) -> Iterator[int]:
    """Yield chunk lengths summing to ``total``."""
    done = 0
    while done < total:
        step = min(size, total - done)
        yield step
        done += step


# --------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------


def sample_without_replacement(
    n: int, k: int, size: int, seed: Seed, *, method: str = "auto"
) -> npt.NDArray[np.int64]:
    """``size`` independent uniform ``k``-subsets of ``{0..n-1}``, as an array [size, k].

    Vectorised over the ``size`` draws. Two methods:

    - ``"floyd"``: Floyd's algorithm, a loop over the ``k`` positions (not over draws),
      ``O(size k^2)``; best when ``k^2`` is small next to ``n``;
    - ``"keys"``: the ``k`` smallest of ``n`` i.i.d. uniform keys per draw
      (``argpartition``), ``O(size n)``.

    ``"auto"`` picks the cheaper. The order inside a row is not uniform; the set is.
    """
    if n < 1 or not 0 <= k <= n:
        raise NegrecError(f"need 0 <= k <= n and n >= 1, got n={n}, k={k}")
    if size < 0:
        raise NegrecError(f"size must be >= 0, got {size}")
    rng = _rng(seed)
    if method == "auto":
        method = "floyd" if k * k <= 4 * n else "keys"
    if method == "floyd":
        out = np.empty((size, k), dtype=np.int64)  # [size, k]
        for i, j in enumerate(range(n - k, n)):
            t = rng.integers(0, j + 1, size=size)  # [size], uniform on 0..j
            seen = (out[:, :i] == t[:, None]).any(axis=1)  # [size]
            out[:, i] = np.where(seen, j, t)
        return out
    if method == "keys":
        if k == n:
            return np.tile(np.arange(n, dtype=np.int64), (size, 1))
        out = np.empty((size, k), dtype=np.int64)
        rows = max(1, _CHUNK_ELEMENTS // n)
        start = 0
        for step in _chunks(size, rows):
            keys = rng.random((step, n))  # [step, n]
            out[start : start + step] = np.argpartition(keys, k, axis=1)[:, :k]
            start += step
        return out
    raise NegrecError(f"unknown sampling method '{method}'; expected auto, floyd or keys")


def label_permutations(n_pos: int, n_neg: int, size: int, seed: Seed) -> npt.NDArray[np.bool_]:
    """``size`` uniform random orderings of ``n_pos`` ones and ``n_neg`` zeros, [size, N].

    Row ``i`` is a label-by-rank vector (paper (b)): True where a positive sits.
    """
    if n_pos < 0 or n_neg < 0 or n_pos + n_neg < 1:
        raise NegrecError(f"need N+, N- >= 0 and N+ + N- >= 1, got {n_pos}, {n_neg}")
    rng = _rng(seed)
    base = np.zeros((size, n_pos + n_neg), dtype=bool)  # [size, N]
    base[:, :n_pos] = True
    return rng.permuted(base, axis=1)


# --------------------------------------------------------------------------------------
# paper (a): Monte-Carlo probability of -ln metric <= sampled loss
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmpiricalBounds:
    """Monte-Carlo results for one score vector and one sample size ``K``.

    ``probability[(loss, metric)]`` is the fraction of draws with
    ``-ln metric(r+) <= L_loss(S_K)`` (within ``EVENT_TOL``); ``lemma_gap[loss]`` is the
    smallest ``L - lemma bound`` over draws (negative would falsify a lemma of
    docs/theory.md#lower-bounds);
    ``worst_gap[loss]`` the largest (0 when the lemma is tight on every draw).
    """

    n_neg: int
    k: int
    rank: int
    n0: int
    s_pos: float
    draws: int
    probability: dict[tuple[str, str], float]
    lemma_gap: dict[str, float]
    worst_gap: dict[str, float]


def empirical_bound_probabilities(
    s_pos: float, s_neg: npt.ArrayLike, k: int, draws: int, seed: Seed
) -> EmpiricalBounds:
    """Sample ``S_K`` ``draws`` times and evaluate the three losses on the sampled scores.

    ``s_neg`` [N_-] are all negatives' scores. For each draw: ``L_CCE``, ``L_BPR``,
    ``L_BCE`` (:mod:`bounds`), ``|Gamma_K|`` and ``|Gamma_K^0|``. Returns the empirical
    probability of each ``-ln metric(r+) <= L`` (full-ranking ``r+``) and the extreme gaps
    to the lemmas ``ln(1+|Gamma|)``, ``|Gamma| ln 2``, ``sp(-s+) + |Gamma^0| ln 2``.
    """
    sn = np.asarray(s_neg, dtype=np.float64).reshape(-1)  # [N_-]
    n_neg = sn.size
    B._check_problem(n_neg, k, 1)
    if draws < 1:
        raise NegrecError(f"draws must be >= 1, got {draws}")
    rng = _rng(seed)
    rank = int(B.rank_of_positive(s_pos, sn))
    n0 = int(B.gamma0_count(sn))
    targets = {m: float(B.neg_log_metric(m, rank)) for m in B.METRICS}
    hits = {(loss, m): 0 for loss in B.BOUND_LOSSES for m in B.METRICS}
    low: dict[str, float] = dict.fromkeys(B.BOUND_LOSSES, math.inf)
    high: dict[str, float] = dict.fromkeys(B.BOUND_LOSSES, -math.inf)
    rows = max(1, _CHUNK_ELEMENTS // max(k, 1) // 4)
    for step in _chunks(draws, rows):
        idx = sample_without_replacement(n_neg, k, step, rng)  # [step, K]
        scores = sn[idx]  # [step, K]
        pos = np.full(step, float(s_pos))  # [step]
        gamma = B.gamma_count(pos, scores)  # [step]
        gamma0 = B.gamma0_count(scores)  # [step]
        lemma = {
            "cce": B.lower_bound_cce(gamma),
            "bpr": B.lower_bound_bpr(gamma),
            "bce": B.lower_bound_bce(gamma0, pos),
        }
        for loss in B.BOUND_LOSSES:
            value = B.sampled_loss(loss, pos, scores)  # [step]
            gap = value - lemma[loss]
            low[loss] = min(low[loss], float(gap.min()))
            high[loss] = max(high[loss], float(gap.max()))
            for m in B.METRICS:
                hits[(loss, m)] += int(np.count_nonzero(value >= targets[m] - EVENT_TOL))
    return EmpiricalBounds(
        n_neg=n_neg,
        k=k,
        rank=rank,
        n0=n0,
        s_pos=float(s_pos),
        draws=draws,
        probability={key: v / draws for key, v in hits.items()},
        lemma_gap=low,
        worst_gap=high,
    )


@dataclass(frozen=True)
class BoundCheck:
    """One empirical-vs-exact comparison of a Theorem-1 probability (docs/theory.md#worst-case).

    ``mode="equal"``: the worst case, where ``p_L`` is exact, so the empirical frequency must
    lie within ``z`` standard errors of it. ``mode="lower"``: other scores, where ``p_L`` is
    only a lower bound, so the frequency must not fall ``z`` standard errors below it. The
    standard error ``sqrt(p (1 - p) / draws)`` uses the exact ``p``. ``lemma_ok`` says every
    draw satisfied the loss's lemma (and, in the worst case, with equality).
    """

    loss: str
    metric: str
    n_neg: int
    k: int
    rank: int
    draws: int
    empirical: float
    exact: float
    mode: str
    lemma_ok: bool
    z: float = 3.0

    @property
    def se(self) -> float:
        return math.sqrt(self.exact * (1.0 - self.exact) / self.draws)

    @property
    def passed(self) -> bool:
        if not self.lemma_ok:
            return False
        slack = self.z * self.se + 1e-12
        if self.mode == "equal":
            return abs(self.empirical - self.exact) <= slack
        return self.empirical >= self.exact - slack

    def describe(self) -> str:
        """One line: what was checked and the numbers."""
        rel = "=" if self.mode == "equal" else ">="
        return (
            f"{self.metric.upper():4s} {self.loss.upper()} N-={self.n_neg} K={self.k} "
            f"r+={self.rank}: empirical {self.empirical:.6g} (draws {self.draws}) {rel} "
            f"exact {self.exact:.6g} ± {self.z:g}·{self.se:.2g}"
            + ("" if self.lemma_ok else "; lemma violated")
        )


def check_worst_case(n_neg: int, k: int, rank: int, *, draws: int, seed: Seed) -> list[BoundCheck]:
    """Monte-Carlo check of Theorem 1 at the worst case of docs/theory.md#worst-case (paper (a),
    DERIVED).

    Builds :func:`bounds.worst_case_scores` (``s+ = 0``), samples, and compares the
    empirical ``P(-ln metric <= L)`` with the exact ``p_L`` for every loss (BCE with
    ``s+ = 0`` and ``n0 = r+ - 1``) and metric. Also requires every lemma
    (docs/theory.md#lower-bounds) to hold
    with equality on every draw (to ``1e-9``).
    """
    s_pos, s_neg = B.worst_case_scores(n_neg, rank)
    emp = empirical_bound_probabilities(s_pos, s_neg, k, draws, seed)
    out = []
    for loss in B.BOUND_LOSSES:
        tight = emp.lemma_gap[loss] >= -1e-9 and emp.worst_gap[loss] <= 1e-9
        for metric in B.METRICS:
            exact = float(
                B.bound_probability(loss, n_neg, k, rank, metric=metric, s_pos=0.0, n0=rank - 1)
            )
            out.append(
                BoundCheck(
                    loss,
                    metric,
                    n_neg,
                    k,
                    rank,
                    draws,
                    emp.probability[(loss, metric)],
                    exact,
                    "equal",
                    tight,
                )
            )
    return out


def check_random_scores(
    n_neg: int, k: int, *, s_pos: float, draws: int, seed: Seed
) -> list[BoundCheck]:
    """Theorem 1 as a lower bound on scores that are not the worst case (docs/theory.md#theorem-1,
    docs/theory.md#worst-case caveat).

    Negative scores are i.i.d. standard normal (drawn from ``seed``), the positive score
    is ``s_pos``; ``r+`` and ``n0`` are read off the scores. Every empirical probability
    must be at least ``p_L`` (BCE with the actual ``s+`` and ``n0``), and every lemma of
    docs/theory.md#lower-bounds must hold on every draw.
    """
    rng = _rng(seed)
    s_neg = rng.standard_normal(n_neg)  # [N_-]
    emp = empirical_bound_probabilities(s_pos, s_neg, k, draws, rng)
    out = []
    for loss in B.BOUND_LOSSES:
        ok = emp.lemma_gap[loss] >= -1e-9
        for metric in B.METRICS:
            exact = float(
                B.bound_probability(loss, n_neg, k, emp.rank, metric=metric, s_pos=s_pos, n0=emp.n0)
            )
            out.append(
                BoundCheck(
                    loss,
                    metric,
                    n_neg,
                    k,
                    emp.rank,
                    draws,
                    emp.probability[(loss, metric)],
                    exact,
                    "lower",
                    ok,
                )
            )
    return out


def loss_chain_violations(
    trials: int, seed: Seed, *, n_neg: int = 20, k: int | None = None, scale: float = 3.0
) -> dict[str, int]:
    """Count violations of ``-ln NDCG <= ln r+ <= L_CCE <= L_BPR <= L_BCE``
    (docs/theory.md#loss-chain).

    ``trials`` random problems, vectorised: ``s+ = |N(0, scale^2)|`` (so ``s+ >= 0``), ``n_neg``
    negatives ``N(0, scale^2)``. With ``k=None`` the losses use all negatives (P1-P3); with
    ``k`` they use a uniform sample of ``k`` (P2 and P3, which hold for every sample; the
    rank-based links of P1 need all negatives and are then skipped). Returns a count per
    link; all zeros is a pass.
    """
    rng = _rng(seed)
    s_pos = np.abs(rng.normal(0.0, scale, size=trials))  # [T]
    s_all = rng.normal(0.0, scale, size=(trials, n_neg))  # [T, N_-]
    if k is None:
        scores = s_all
    else:
        idx = sample_without_replacement(n_neg, k, trials, rng)  # [T, K]
        scores = np.take_along_axis(s_all, idx, axis=1)  # [T, K]
    cce = B.loss_cce(s_pos, scores)
    bpr = B.loss_bpr(s_pos, scores)
    bce = B.loss_bce(s_pos, scores)
    tol = 1e-12
    out = {
        "cce<=bpr": int(np.count_nonzero(cce > bpr + tol)),
        "bpr<=bce": int(np.count_nonzero(bpr > bce + tol)),
    }
    if k is None:
        rank = B.rank_of_positive(s_pos, s_all)
        out["ndcg<=mrr"] = int(np.count_nonzero(B.neg_log_ndcg(rank) > B.neg_log_mrr(rank) + tol))
        out["mrr<=cce"] = int(np.count_nonzero(B.neg_log_mrr(rank) > cce + tol))
    return out


# --------------------------------------------------------------------------------------
# docs/theory.md#bounded-minimum: bounded-score global minimum
# --------------------------------------------------------------------------------------


def _loss_and_grad(x: npt.NDArray[np.float64], loss: str) -> tuple[float, npt.NDArray[np.float64]]:
    """Loss and gradient at ``x = [s+, s_1..s_K]`` (one problem), for L-BFGS-B."""
    sp, sn = x[0], x[1:]
    grad = np.empty_like(x)
    if loss == "bce":
        value = float(B.loss_bce(sp, sn))
        grad[0] = -sp_special.expit(-sp)
        grad[1:] = sp_special.expit(sn)
    elif loss == "bpr":
        value = float(B.loss_bpr(sp, sn))
        g = sp_special.expit(sn - sp)  # [K]
        grad[0] = -g.sum()
        grad[1:] = g
    else:
        value = float(B.loss_cce(sp, sn))
        w = sp_special.softmax(np.concatenate([[0.0], sn - sp]))  # [K + 1]
        grad[0] = -(1.0 - w[0])
        grad[1:] = w[1:]
    return value, grad


@dataclass(frozen=True)
class MinimumCheck:
    """Numerical vs closed-form minimum of one loss on ``[-S, S]^{K+1}``
    (docs/theory.md#bounded-minimum).
    """

    loss: str
    bound: float
    k: int
    numeric: float
    closed_form: float
    argmin: npt.NDArray[np.float64] = field(repr=False)
    rtol: float = 1e-6

    @property
    def at_corner(self) -> bool:
        """The minimiser is ``s+ = S`` and ``s_j = -S`` (to 1e-6)."""
        target = np.concatenate([[self.bound], np.full(self.k, -self.bound)])
        return bool(np.allclose(self.argmin, target, atol=1e-6))

    @property
    def passed(self) -> bool:
        close = abs(self.numeric - self.closed_form) <= self.rtol * max(self.closed_form, 1e-300)
        return close and self.at_corner

    def describe(self) -> str:
        return (
            f"min {self.loss.upper()} on [-{self.bound:g}, {self.bound:g}], K={self.k}: "
            f"numeric {self.numeric:.9g} vs closed form {self.closed_form:.9g}"
            + ("" if self.at_corner else "; minimiser not at (S, -S, ..., -S)")
        )


def check_bounded_minimum(
    bound: float, k: int, *, seed: Seed, starts: int = 5
) -> list[MinimumCheck]:
    """Minimise each loss over ``[-S, S]^{K+1}`` with L-BFGS-B from random starts
    (docs/theory.md#bounded-minimum).

    Compares the best value found with :func:`bounds.bounded_minimum` and checks the
    shared minimiser ``s+ = S``, ``s_j = -S`` (DERIVED, paper (a)).
    """
    if bound <= 0 or k < 1 or starts < 1:
        raise NegrecError(f"need S > 0, K >= 1, starts >= 1; got S={bound}, K={k}, {starts}")
    rng = _rng(seed)
    x0s = rng.uniform(-bound, bound, size=(starts, k + 1))  # [starts, K + 1]
    out = []
    for loss in B.BOUND_LOSSES:
        best: optimize.OptimizeResult | None = None
        for x0 in x0s:
            res = optimize.minimize(
                _loss_and_grad,
                x0,
                args=(loss,),
                jac=True,
                method="L-BFGS-B",
                bounds=[(-bound, bound)] * (k + 1),
                options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 1000},
            )
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None
        out.append(
            MinimumCheck(
                loss,
                float(bound),
                k,
                float(best.fun),
                float(B.bounded_minimum(loss, bound, k)),
                np.asarray(best.x),
            )
        )
    return out


# --------------------------------------------------------------------------------------
# paper (b): OPAUC vs Top-K correlation (docs/theory.md#opauc-simulation)
# --------------------------------------------------------------------------------------

TOPK_METRICS: tuple[str, ...] = ("recall", "precision", "ndcg")


@dataclass(frozen=True)
class OpaucCorrelation:
    """Pearson correlation of Top-K metrics with OPAUC(n/N-) over random permutations.

    ``corr[metric]`` has shape [len(ks), N-]: row ``i`` is the correlation of
    ``metric@ks[i]`` with OPAUC(n/N-) for ``n = 1..N-`` (the last column is AUC).
    DERIVED protocol of docs/theory.md#opauc-simulation (paper (b), Shi et al. WWW 2023).
    """

    n_pos: int
    n_neg: int
    permutations: int
    ks: tuple[int, ...]
    corr: dict[str, npt.NDArray[np.float64]]

    @property
    def n_betas(self) -> npt.NDArray[np.int64]:
        """[N-]: ``n = 1..N-``."""
        return np.arange(1, self.n_neg + 1, dtype=np.int64)

    @property
    def betas(self) -> npt.NDArray[np.float64]:
        """[N-]: ``beta = n / N-``."""
        return self.n_betas / float(self.n_neg)

    def argmax_n_beta(self, metric: str) -> npt.NDArray[np.int64]:
        """[len(ks)]: the ``n_beta`` of highest correlation per K."""
        return np.nanargmax(self.corr[metric], axis=1).astype(np.int64) + 1

    def max_corr(self, metric: str) -> npt.NDArray[np.float64]:
        """[len(ks)]: the highest correlation per K."""
        return np.asarray(np.nanmax(self.corr[metric], axis=1))

    def at_k(self, metric: str) -> npt.NDArray[np.float64]:
        """[len(ks)]: correlation at ``beta = K / N-`` (``n_beta = K``)."""
        return self.corr[metric][np.arange(len(self.ks)), np.asarray(self.ks) - 1]

    def auc_corr(self, metric: str) -> npt.NDArray[np.float64]:
        """[len(ks)]: correlation with AUC (``beta = 1``)."""
        return self.corr[metric][:, -1]

    def summary_rows(self) -> list[dict[str, float | int | str]]:
        """One row per (metric, K): best n_beta and beta, best corr, corr at K, AUC corr."""
        rows: list[dict[str, float | int | str]] = []
        for metric in self.corr:
            arg = self.argmax_n_beta(metric)
            best = self.max_corr(metric)
            at = self.at_k(metric)
            au = self.auc_corr(metric)
            for i, k in enumerate(self.ks):
                rows.append(
                    {
                        "metric": metric,
                        "k": k,
                        "best_n_beta": int(arg[i]),
                        "best_beta": float(arg[i]) / self.n_neg,
                        "best_corr": float(best[i]),
                        "corr_at_k": float(at[i]),
                        "auc_corr": float(au[i]),
                    }
                )
        return rows


def _topk_features(
    labels: npt.NDArray[np.bool_], above: npt.NDArray[np.int64], ks: Sequence[int], n_pos: int
) -> npt.NDArray[np.float64]:
    """[C, 3 len(ks)]: Recall@K, Precision@K, NDCG@K per permutation, metric-major."""
    kmax = max(ks)
    disc = 1.0 / np.log2(np.arange(2, kmax + 2, dtype=np.float64))  # [kmax]
    dcg = np.cumsum(labels[:, :kmax] * disc, axis=1)  # [C, kmax]
    ideal = np.cumsum(disc)  # [kmax]
    cols = []
    for k in ks:
        cols.append(above[:, k - 1] / n_pos)
    for k in ks:
        cols.append(above[:, k - 1] / k)
    for k in ks:
        cols.append(dcg[:, k - 1] / ideal[min(n_pos, k) - 1])
    return np.stack(cols, axis=1)


def opauc_topk_correlation(
    *,
    n_pos: int = 200,
    n_neg: int = 800,
    ks: Sequence[int] = (5, 10, 20, 50, 100),
    permutations: int = 100_000,
    seed: Seed = 0,
    chunk: int = 4096,
    progress: bool = False,
) -> OpaucCorrelation:
    """Correlation of Recall/Precision/NDCG@K with OPAUC(beta) for every ``n_beta``
    (docs/theory.md#opauc-simulation).

    Draws ``permutations`` uniform orderings of ``n_pos`` positives and ``n_neg`` negatives
    (paper (b), Shi et al. WWW 2023; DERIVED protocol), in chunks of ``chunk``
    permutations; streams shifted first and second moments, so memory is
    ``O(chunk (N+ + N-))`` and the result does not depend on ``chunk`` beyond rounding.
    ``progress`` shows a tqdm bar on stderr.
    """
    ks_t = tuple(int(k) for k in ks)
    if n_pos < 1 or n_neg < 1:
        raise NegrecError(f"need at least one positive and one negative, got {n_pos}, {n_neg}")
    if not ks_t:
        raise NegrecError("give at least one K")
    for k in ks_t:
        if not 1 <= k <= n_neg:
            raise NegrecError(f"every K must lie in [1, N-={n_neg}] (beta = K/N-), got {k}")
    if permutations < 2:
        raise NegrecError(f"need at least 2 permutations, got {permutations}")
    if chunk < 1:
        raise NegrecError(f"chunk must be >= 1, got {chunk}")
    rng = _rng(seed)
    scale = 1.0 / float(n_pos * n_neg)
    m = 3 * len(ks_t)
    shift_x: npt.NDArray[np.float64] | None = None
    shift_y: npt.NDArray[np.float64] | None = None
    sx = np.zeros(m)  # [M]
    sxx = np.zeros(m)  # [M]
    sy = np.zeros(n_neg)  # [N-]
    syy = np.zeros(n_neg)  # [N-]
    sxy = np.zeros((m, n_neg))  # [M, N-]
    with tqdm(
        total=permutations, desc="permutations", unit="perm", disable=not progress, leave=False
    ) as bar:
        for step in _chunks(permutations, chunk):
            labels = label_permutations(n_pos, n_neg, step, rng)  # [C, N]
            above = np.cumsum(labels, axis=1, dtype=np.int64)  # [C, N]
            p = above[~labels].reshape(step, n_neg)  # [C, N-]: P_j
            y = np.cumsum(p, axis=1, dtype=np.float64) * scale  # [C, N-]: OPAUC(n/N-)
            x = _topk_features(labels, above, ks_t, n_pos)  # [C, M]
            if shift_x is None or shift_y is None:
                shift_x, shift_y = x.mean(axis=0), y.mean(axis=0)
            xc = x - shift_x
            yc = y - shift_y
            sx += xc.sum(axis=0)
            sxx += (xc * xc).sum(axis=0)
            sy += yc.sum(axis=0)
            syy += (yc * yc).sum(axis=0)
            sxy += xc.T @ yc
            bar.update(step)
    n = float(permutations)
    mx, my = sx / n, sy / n
    var_x = sxx / n - mx * mx  # [M]
    var_y = syy / n - my * my  # [N-]
    cov = sxy / n - np.outer(mx, my)  # [M, N-]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.sqrt(np.outer(np.maximum(var_x, 0.0), np.maximum(var_y, 0.0)))
    nk = len(ks_t)
    return OpaucCorrelation(
        n_pos=n_pos,
        n_neg=n_neg,
        permutations=permutations,
        ks=ks_t,
        corr={name: corr[i * nk : (i + 1) * nk] for i, name in enumerate(TOPK_METRICS)},
    )


@dataclass(frozen=True)
class MeanCheck:
    """Monte-Carlo mean vs an exact expectation, within ``z`` standard errors."""

    name: str
    empirical: float
    exact: float
    se: float
    z: float = 3.0

    @property
    def passed(self) -> bool:
        return abs(self.empirical - self.exact) <= self.z * self.se

    def describe(self) -> str:
        return (
            f"{self.name}: empirical {self.empirical:.6g} vs exact {self.exact:.6g} "
            f"± {self.z:g}·{self.se:.2g}"
        )


def check_expected_opauc(
    *, n_pos: int = 200, n_neg: int = 800, n_beta: int = 50, permutations: int, seed: Seed
) -> MeanCheck:
    """Mean OPAUC over random permutations vs ``n_beta (n_beta+1) / (2 N- (N- + 1))``
    (docs/theory.md#opauc).
    """
    rng = _rng(seed)
    if not 1 <= n_beta <= n_neg:
        raise NegrecError(f"n_beta must lie in [1, N-={n_neg}], got {n_beta}")
    values = []
    rows = max(2, _CHUNK_ELEMENTS // (n_pos + n_neg))
    for step in _chunks(permutations, rows):
        labels = label_permutations(n_pos, n_neg, step, rng)
        values.append(B.opauc(labels, n_beta=n_beta))
    v = np.concatenate(values)  # [R]
    return MeanCheck(
        name=f"E[OPAUC] N+={n_pos} N-={n_neg} n_beta={n_beta} ({permutations} permutations)",
        empirical=float(v.mean()),
        exact=float(B.expected_opauc(n_neg, n_beta)),
        se=float(v.std(ddof=1) / math.sqrt(v.size)),
    )


def sandwich_violations(
    *, n_pos: int, n_neg: int, k: int, permutations: int, seed: Seed
) -> dict[str, int]:
    """Count violations of ``t^2 <= N+ N- OPAUC(K/N-) <= t (N+ + K - t)`` (docs/theory.md#theorem-3,
    Theorem 3).

    Also counts Recall@K and Precision@K falling outside :func:`bounds.recall_bounds` /
    :func:`bounds.precision_bounds`. Random permutations, vectorised; zeros is a pass.
    """
    labels = label_permutations(n_pos, n_neg, permutations, seed)  # [R, N]
    t = B.topk_hits(labels, k)  # [R]
    area = B.positives_above_negatives(labels)[:, :k].sum(axis=1)  # [R]: N+ N- OPAUC
    lo, hi = B.opauc_sandwich(t, n_pos, k)
    o = area / float(n_pos * n_neg)
    r_lo, r_hi = B.recall_bounds(o, n_pos, n_neg, k)
    p_lo, p_hi = B.precision_bounds(o, n_pos, n_neg, k)
    rec = t / n_pos
    prec = t / k
    eps = 1e-12
    return {
        "lower": int(np.count_nonzero(area < lo)),
        "upper": int(np.count_nonzero(area > hi)),
        "recall": int(np.count_nonzero((rec < r_lo - eps) | (rec > r_hi + eps))),
        "precision": int(np.count_nonzero((prec < p_lo - eps) | (prec > p_hi + eps))),
    }


def brute_force_sandwich(n_pos: int, n_neg: int, k: int) -> dict[int, tuple[int, int]]:
    """Min and max of ``N+ N- OPAUC(K/N-)`` for each ``t``, over every placement
    (docs/theory.md#theorem-3).

    Enumerates all ``C(N+ + N-, N+)`` label vectors (keep it small). Returns
    ``{t: (min, max)}``; Theorem 3 predicts ``(t^2, t (N+ + K - t))``, attained.
    """
    n = n_pos + n_neg
    if math.comb(n, n_pos) > 2_000_000:
        raise NegrecError(f"C({n}, {n_pos}) placements is too many to enumerate")
    if not 1 <= k <= n_neg:
        raise NegrecError(f"K must lie in [1, N-={n_neg}], got {k}")
    # every placement as a row: the positions of the N+ positives, then a 0/1 vector
    where = np.array(list(itertools.combinations(range(n), n_pos)), dtype=np.int64)
    labels = np.zeros((where.shape[0], n), dtype=bool)  # [C(n, N+), n]
    np.put_along_axis(labels, where, True, axis=1)
    t = B.topk_hits(labels, k)
    area = B.positives_above_negatives(labels)[:, :k].sum(axis=1)
    return {int(tv): (int(area[t == tv].min()), int(area[t == tv].max())) for tv in np.unique(t)}
