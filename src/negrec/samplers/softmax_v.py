"""Softmax-based hard negatives as importance weights over a uniform pool.

Both samplers draw N uniform candidates outside the user's training positives, score the
positive and the candidates in one model call (no gradient), and return *all* N candidates
with detached ``weights`` [B, N] that sum to 1 per row. The loss then takes the weighted sum
over negatives, which is the expectation of the loss under the softmax distribution, as in
Algorithm 2 of Shi et al., "On the Theories Behind Hard Negative Sampling for
Recommendation" (WWW 2023).

- ``softmax_v`` = Softmax-v(rho, N): weights ``softmax_j(l_j / tau)`` with the adaptive
  temperature ``tau = sqrt(Var_j(l_j) / (2 rho))``, the closed-form second-order solution of
  the KL-constrained worst case ``max_{P: KL(P || uniform) <= rho} E_P[l]``. Hardness is the
  BPR per-pair loss ``l_j = softplus(s_j - s+)``, as in the paper (whatever loss the run
  trains). ``rho -> 0`` gives uniform weights (BPR / AUC); large ``rho`` puts all weight on
  the hardest candidate. Theorem 2 of the paper relates it to OPAUC(beta); the relation
  negrec reports, ``beta = exp(-rho)``, is DERIVED (the uniform distribution on the top beta
  fraction is the CVaR worst case and has KL = ln(1/beta) to uniform), not checked against
  the paper's text. ``Var`` is the unbiased variance, as ``torch.var`` in the authors' code.
- ``softmax_tau`` = the fixed-temperature softmax sampler (the paper's Eq. 3):
  ``softmax_j(h_j / tau)`` with a given ``tau`` and hardness ``h_j`` the candidate's score
  (``by = "score"``, the usual softmax sampler) or its BPR loss (``by = "loss"``, the
  fixed-temperature counterpart of Softmax-v).

Numerics: ``l_j / tau`` is computed as ``sqrt(2 rho) * (l_j - mean) / std`` (softmax is
shift-invariant), bounded by ``sqrt(2 rho (N - 1))``; rows with zero variance and N = 1
get uniform weights (tau is undefined there), so weights are always finite.

Config: the pool size N is ``pool``; ``k`` is derived from it (``k = pool``, because every
candidate is returned). Give either one: ``pool`` alone, or ``k`` alone (then ``pool = k``);
giving both requires them equal (``k = 1``, the shared default, counts as unset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.samplers.base import SAMPLERS, Negatives, Sampler, SamplerConfig
from negrec.samplers.dns import require_scorer, uniform_pool


@dataclass
class _PoolConfig(SamplerConfig):
    """Shared fields of the weighted-pool samplers: ``pool`` = N, ``k`` derived = N."""

    pool: int | None = None  # N candidates per positive; None: take N from k
    replacement: bool = True  # may the pool repeat a candidate?

    def _validate_pool(self, prefix: str) -> None:
        if self.pool is None:
            self.pool = self.k
        require(self.pool >= 1, f"{prefix}.pool", f"must be >= 1, got {self.pool}")
        require(
            self.k in (1, self.pool),
            f"{prefix}.k",
            f"{self.name} returns all pool = {self.pool} candidates, weighted; "
            f"leave k unset or set it to {self.pool}, got {self.k}",
        )
        self.k = self.pool


@dataclass
class SoftmaxVConfig(_PoolConfig):
    """``softmax_v``: Softmax-v(rho, N) weights over a pool of N uniform candidates."""

    rho: float = 1.0  # KL radius: 0 -> uniform (AUC), large -> hardest only

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(
            math.isfinite(self.rho) and self.rho > 0,
            f"{prefix}.rho",
            f"must be a finite number > 0, got {self.rho}",
        )
        self._validate_pool(prefix)


@dataclass
class SoftmaxTauConfig(_PoolConfig):
    """``softmax_tau``: fixed-temperature softmax weights over N uniform candidates."""

    tau: float = 1.0  # temperature: large -> uniform, small -> hardest only
    by: Literal["score", "loss"] = "score"  # hardness: the candidate's score or BPR loss

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(
            math.isfinite(self.tau) and self.tau > 0,
            f"{prefix}.tau",
            f"must be a finite number > 0, got {self.tau}",
        )
        self._validate_pool(prefix)


def bpr_pair_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """The BPR loss of every (positive, candidate) pair: softplus(s_j - s+), [B, N]."""
    return F.softplus(neg_scores - pos_scores.unsqueeze(1))


def softmax_v_weights(losses: torch.Tensor, rho: float) -> torch.Tensor:
    """Softmax-v weights [B, N] for per-candidate losses [B, N] (Algorithm 2 of Shi et al.):
    ``softmax(l / tau)``, ``tau = sqrt(Var(l) / (2 rho))``, uniform where tau is undefined
    (zero variance, or N = 1)."""
    n = losses.shape[1]
    if n == 1:
        return torch.ones_like(losses)
    std = losses.std(dim=1, keepdim=True)  # [B, 1], unbiased as in the authors' code
    centred = losses - losses.mean(dim=1, keepdim=True)  # [B, N]
    z = torch.where(std > 0, centred / std, torch.zeros_like(centred))  # standardised, bounded
    return torch.softmax(math.sqrt(2.0 * rho) * z, dim=1)


class _WeightedPool(Sampler):
    """Draw N uniform candidates, score [positive, candidates] once, weight them."""

    needs_model = True
    config: _PoolConfig

    def __init__(self, config: _PoolConfig, train: Interactions):
        super().__init__(config, train)
        assert config.pool is not None  # set by validate()
        self.pool = uniform_pool(config, config.pool, config.replacement, train)

    def weights(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract: [B] and [B, N] scores -> [B, N] weights

    def sample(
        self,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        k: int,
        *,
        model: Any = None,
        generator: torch.Generator,
    ) -> Negatives:
        scorer = require_scorer(model, self.config.name)
        ids = self.pool.sample(users, pos_items, k, generator=generator).ids  # [B, N], N = k
        assert ids is not None
        scores = scorer(torch.cat([pos_items.unsqueeze(1), ids], dim=1))  # [B, 1 + N]
        weights = self.weights(scores[:, 0], scores[:, 1:]).detach()  # [B, N]
        return Negatives(ids=ids, weights=weights)


@SAMPLERS.register("softmax_v")
class SoftmaxVSampler(_WeightedPool):
    """Softmax-v(rho, N): all N uniform candidates, weighted by softmax(loss / adaptive tau)."""

    Config = SoftmaxVConfig
    config: SoftmaxVConfig

    def weights(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        return softmax_v_weights(bpr_pair_loss(pos_scores, neg_scores), self.config.rho)


@SAMPLERS.register("softmax_tau")
class SoftmaxTauSampler(_WeightedPool):
    """All N uniform candidates, weighted by softmax(hardness / tau) with a fixed tau."""

    Config = SoftmaxTauConfig
    config: SoftmaxTauConfig

    def weights(self, pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
        hardness = (
            neg_scores if self.config.by == "score" else bpr_pair_loss(pos_scores, neg_scores)
        )
        return torch.softmax(hardness / self.config.tau, dim=1)  # [B, N]
