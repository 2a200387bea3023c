"""Ranking metrics as pure functions over a batch of users.

Inputs are padded per-user tensors: ``valid`` [B, P] marks the real test positives among P
padded columns. Every function returns one value per user [B]; averaging over users is
the caller's job (so per-user values can be kept and tested).

Tie rules (documented, and tested against a brute-force reference):

- The **rank** of a positive is 1 + the number of candidate items scoring strictly higher
  (docs/architecture.md#contracts). MRR uses the rank of the best-ranked positive.
- For **top-K** metrics, positives take positions in rank order; positives that tie with
  each other take consecutive positions (so NDCG <= 1 and at most K positives fit in the
  top K): ``position_k = k + max_{j <= k}(rank_j - j)`` over the sorted ranks.
  Ties between a positive and a negative therefore favour the positive.
- **AUC** and **OPAUC** count a positive tied with a negative as one half.

OPAUC(beta) is the ROC area over FPR in [0, beta], unnormalised as in Shi et al. (WWW 2023):
``sum_{j <= floor(beta * N-)} P_j / (N+ N-)`` with ``P_j`` the positives above the j-th
highest negative; its maximum is ``floor(beta N-) / N-``. AUC is OPAUC(1).
"""

from __future__ import annotations

import torch

INF = float("inf")


def positions_from_ranks(ranks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Top-K positions [B, P] (ascending, inf for padding) from positive ranks [B, P]."""
    ranks = ranks.to(torch.float64).masked_fill(~valid, INF)
    ranks, _ = ranks.sort(dim=1)
    k = torch.arange(1, ranks.shape[1] + 1, dtype=ranks.dtype, device=ranks.device)
    shifted = (ranks - k).cummax(dim=1).values + k
    return torch.where(torch.isinf(ranks), ranks, shifted)


def ideal_dcg(n_pos: torch.Tensor, k: int) -> torch.Tensor:
    """IDCG@K [B] for users with ``n_pos`` [B] positives."""
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=n_pos.device))
    cumulative = torch.cat([discounts.new_zeros(1), discounts.cumsum(0)])
    return cumulative[n_pos.clamp(max=k)]


def topk_metrics(positions: torch.Tensor, n_pos: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Recall@K, Precision@K, NDCG@K and HitRate@K [B] from positions [B, P]."""
    inside = positions <= k  # [B, P]
    hits = inside.sum(dim=1).to(torch.float64)
    gains = torch.where(inside, 1.0 / torch.log2(positions.clamp(max=1e18) + 1.0), 0.0)
    return {
        f"recall@{k}": hits / n_pos,
        f"precision@{k}": hits / k,
        f"ndcg@{k}": gains.sum(dim=1) / ideal_dcg(n_pos, k),
        f"hit@{k}": (hits > 0).to(torch.float64),
    }


def reciprocal_rank(best_rank: torch.Tensor) -> torch.Tensor:
    """MRR [B] from the rank of each user's best-ranked positive [B]."""
    return 1.0 / best_rank.to(torch.float64)


def partial_auc(
    above: torch.Tensor,
    tied: torch.Tensor,
    valid: torch.Tensor,
    n_neg: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """OPAUC(beta) [B] from, per positive [B, P], the negatives scoring strictly higher
    (``above``) and equal (``tied``); ``n_neg`` [B] negatives per user. beta = 1 gives AUC.

    The j-th highest negative counts a positive as above it if j > above + tied, half if
    above < j <= above + tied; summing j over the first n_beta negatives gives the formula.
    A user with no negatives (``n_neg`` = 0) gets NaN: the ratio is undefined there.
    """
    n_beta = torch.floor(beta * n_neg.to(torch.float64) + 1e-9).unsqueeze(1)  # [B, 1]
    above = above.to(torch.float64)
    tied = tied.to(torch.float64)
    half = torch.minimum((n_beta - above).clamp(min=0), tied)
    full = (n_beta - above - tied).clamp(min=0)
    per_pos = torch.where(valid, full + 0.5 * half, 0.0)
    n_pos = valid.sum(dim=1).to(torch.float64)
    pairs = n_pos * n_neg.to(torch.float64)  # [B], 0 only for a user without negatives
    return torch.where(pairs > 0, per_pos.sum(dim=1) / pairs.clamp(min=1), torch.nan)


def metric_names(ks: list[int], betas: list[float], with_auc: bool) -> list[str]:
    """The metric names an evaluation with these settings reports, in table order."""
    names = []
    for k in ks:
        names += [f"recall@{k}", f"precision@{k}", f"ndcg@{k}", f"hit@{k}"]
    names.append("mrr")
    if with_auc:
        names.append("auc")
        names += [opauc_name(b) for b in betas]
    return names


def opauc_name(beta: float) -> str:
    """Metric name of OPAUC(beta), e.g. ``opauc@0.05``."""
    return f"opauc@{beta:g}"
