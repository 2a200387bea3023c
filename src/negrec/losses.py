"""Recommendation losses as pure tensor functions of positive and negative scores.

Every loss is ``loss(pos[B], neg[B, K], *, log_q=None, weights=None) -> scalar``, defined
per positive and averaged over the batch. Sums over negatives are the default (that is what
the theory of Di Teodoro et al., arXiv 2411.07770, uses: BPR equals CCE exactly at K = 1);
``neg_reduction = "mean"`` divides by K. Negatives scored ``-inf`` (padding, or masked
items of the full catalogue) contribute nothing to any loss. Only stable forms are used:
softplus and logsumexp.

Per positive with score ``s+`` and negatives ``s_j``:

- BPR (Rendle et al. 2009):  sum_j softplus(s_j - s+)
- BCE:                       softplus(-s+) + sum_j softplus(s_j)
- CCE / sampled softmax (SSM):  logsumexp([s+, s_1..s_K]) - s+
- SimCE (Yang et al., "SimCE: Simplifying Cross-Entropy Loss for CF"): relu(margin - s+ + max_j s_j)
- hinge (pairwise margin):   sum_j relu(margin - s+ + s_j)
- softmax: CCE over every item (requires the ``full`` sampler)

``weights`` [B, K] turn each sum over negatives into a weighted sum (importance weights,
e.g. DNS's 1/M or Softmax-v); in CCE they weight ``e^{s_j}``; SimCE's max ignores weights
but skips negatives of weight 0. ``log_q`` [B, K] applies the logQ correction of sampled
softmax (Yi et al. 2019): CCE and softmax use ``s_j - log(K q_j)`` in place of ``s_j``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from negrec.config_base import require
from negrec.registry import Registry

NEG_INF = float("-inf")


@dataclass
class LossConfig:
    """Options every loss shares."""

    name: str = "bpr"
    neg_reduction: Literal["sum", "mean"] = "sum"
    margin: float = 1.0  # used by simce and hinge only

    def validate(self, prefix: str) -> None:
        require(self.name in LOSSES.names(), f"{prefix}.name", f"unknown loss '{self.name}'")
        if self.name not in ("simce", "hinge"):
            require(
                self.margin == 1.0,
                f"{prefix}.margin",
                f"only simce and hinge take a margin, not {self.name}",
            )


def _reduce_neg(per_neg: torch.Tensor, weights: torch.Tensor | None, mean: bool) -> torch.Tensor:
    """Sum [B, K] -> [B] over negatives, weighted, or mean over K when asked."""
    if weights is not None:
        per_neg = per_neg * weights
    total = per_neg.sum(dim=1)
    return total / per_neg.shape[1] if mean else total


def bpr(pos, neg, *, log_q=None, weights=None, neg_reduction="sum", margin=1.0):
    """Bayesian personalised ranking: sum_j softplus(s_j - s+), batch mean."""
    per_neg = F.softplus(neg - pos.unsqueeze(1))  # [B, K]
    return _reduce_neg(per_neg, weights, neg_reduction == "mean").mean()


def bce(pos, neg, *, log_q=None, weights=None, neg_reduction="sum", margin=1.0):
    """Binary cross-entropy: softplus(-s+) + sum_j softplus(s_j), batch mean."""
    per_neg = F.softplus(neg)  # [B, K]
    return (F.softplus(-pos) + _reduce_neg(per_neg, weights, neg_reduction == "mean")).mean()


def cce(pos, neg, *, log_q=None, weights=None, neg_reduction="sum", margin=1.0):
    """Sampled softmax cross-entropy: logsumexp([s+, s_j]) - s+, batch mean.

    With ``neg_reduction="mean"`` the negatives' mass is divided by K (log K subtracted).
    """
    k = neg.shape[1]
    logits = neg
    if log_q is not None:
        logits = logits - (log_q + math.log(k))  # logQ correction, Yi et al. RecSys 2019
    if weights is not None:
        logits = logits + torch.log(weights)  # weight 0 -> -inf -> no mass
    if neg_reduction == "mean":
        logits = logits - math.log(k)
    all_logits = torch.cat([pos.unsqueeze(1), logits], dim=1)  # [B, 1 + K]
    return (torch.logsumexp(all_logits, dim=1) - pos).mean()


def simce(pos, neg, *, log_q=None, weights=None, neg_reduction="sum", margin=1.0):
    """SimCE: relu(margin - s+ + max_j s_j), batch mean (the hardest sampled negative)."""
    if weights is not None:
        neg = neg.masked_fill(weights <= 0, NEG_INF)
    hardest = neg.max(dim=1).values  # [B]
    return F.relu(margin - pos + hardest).mean()


def hinge(pos, neg, *, log_q=None, weights=None, neg_reduction="sum", margin=1.0):
    """Pairwise hinge: sum_j relu(margin - s+ + s_j), batch mean."""
    per_neg = F.relu(margin - pos.unsqueeze(1) + neg)
    return _reduce_neg(per_neg, weights, neg_reduction == "mean").mean()


LossFn = Callable[..., torch.Tensor]


class Loss:
    """A configured loss: calls the pure function with the config's options."""

    Config = LossConfig

    def __init__(self, config: LossConfig):
        self.config = config
        self.fn: LossFn = _FUNCTIONS[config.name]

    def __call__(
        self,
        pos: torch.Tensor,
        neg: torch.Tensor,
        *,
        log_q: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.fn(
            pos,
            neg,
            log_q=log_q,
            weights=weights,
            neg_reduction=self.config.neg_reduction,
            margin=self.config.margin,
        )


_FUNCTIONS: dict[str, LossFn] = {
    "bpr": bpr,
    "bce": bce,
    "cce": cce,
    "ssm": cce,  # the SimCE paper's name for sampled softmax
    "softmax": cce,  # with the full sampler this is the full softmax
    "simce": simce,
    "hinge": hinge,
}

LOSSES: Registry[type[Loss]] = Registry("loss")
for _name in _FUNCTIONS:
    LOSSES.register(_name)(Loss)
