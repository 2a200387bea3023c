"""DNS(M, N): dynamic negative sampling with a candidate pool.

Dynamic Negative Sampling (Zhang et al., "Optimizing Top-N Collaborative Filtering via
Dynamic Negative Item Sampling", SIGIR 2013) draws N uniform candidates, scores them with
the current model and keeps the highest-scored one. Shi et al. ("On the Theories Behind
Hard Negative Sampling for Recommendation", WWW 2023) generalise it to DNS(M, N): keep the
top M of the pool, and average the BPR loss over them (Algorithm 1). Their Theorem 1 ties
BPR + DNS(M, N) to OPAUC(beta) with beta = M / N: the top M of a uniform pool of N are, in
expectation, the top M/N fraction of the user's negatives (exactly so when the pool is all
of them, beta = M / n-). ``negrec hardness`` measures the beta a run actually gets.

Config: ``k`` = M (kept negatives, ``k = 1`` is the original DNS), ``pool`` = N. The pool
is drawn by :class:`~negrec.samplers.uniform.UniformSampler` (exact uniform over the
user's non-positive items, with replacement by default as in the paper's code), so kept
negatives are never training positives. Returns ``weights`` = 1/M on every kept negative,
so the default ``neg_reduction = "sum"`` of every loss becomes the mean over the M.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.errors import ConfigError
from negrec.samplers.base import SAMPLERS, Negatives, Sampler, SamplerConfig
from negrec.samplers.uniform import UniformConfig, UniformSampler

Scorer = Callable[[torch.Tensor], torch.Tensor]


def require_scorer(model: Any, name: str) -> Scorer:
    """The ``model=`` argument of a hard-negative sampler, or a clear error without one."""
    if model is None:
        raise ValueError(
            f"sampler '{name}' scores its candidates: pass model=, a callable mapping "
            "item ids [B, N] to scores [B, N] (the trainer does this when needs_model is True)"
        )
    return model


def uniform_pool(
    config: SamplerConfig, pool: int, replacement: bool, train: Interactions
) -> UniformSampler:
    """The uniform candidate sampler behind a pool-based hard-negative sampler; a pool too
    large to draw without replacement is reported against ``sampler.pool``."""
    try:
        return UniformSampler(
            UniformConfig(
                name="uniform",
                k=pool,
                exclude_positives=config.exclude_positives,
                replacement=replacement,
            ),
            train,
        )
    except ConfigError as err:
        if err.key == "sampler.k":
            raise ConfigError("sampler.pool", str(err).split(": ", 1)[-1]) from None
        raise


@dataclass
class DNSConfig(SamplerConfig):
    """``dns``: keep the top ``k`` = M of ``pool`` = N uniform candidates."""

    pool: int = 200  # N, candidates scored per positive (the paper's code uses 200)
    replacement: bool = True  # may the pool repeat a candidate?

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(self.pool >= 1, f"{prefix}.pool", f"must be >= 1, got {self.pool}")
        require(
            self.k <= self.pool,
            f"{prefix}.k",
            f"DNS keeps the top k = M of pool = N candidates: need k <= pool, "
            f"got k={self.k}, pool={self.pool}",
        )


@SAMPLERS.register("dns")
class DNSSampler(Sampler):
    """DNS(M, N): the M highest-scored of N uniform non-positive candidates, weights 1/M."""

    Config = DNSConfig
    config: DNSConfig
    needs_model = True

    def __init__(self, config: DNSConfig, train: Interactions):
        super().__init__(config, train)
        self.pool = uniform_pool(config, config.pool, config.replacement, train)

    def sample(
        self,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        k: int,
        *,
        model: Any = None,
        generator: torch.Generator,
    ) -> Negatives:
        scorer = require_scorer(model, "dns")
        n = self.config.pool
        if not 1 <= k <= n:
            raise ValueError(f"dns keeps k of pool={n} candidates: need 1 <= k <= {n}, got {k}")
        pool = self.pool.sample(users, pos_items, n, generator=generator).ids  # [B, N]
        assert pool is not None
        scores = scorer(pool)  # [B, N], no grad
        top = scores.topk(k, dim=1).indices  # [B, M]
        ids = pool.gather(1, top)  # [B, M]
        weights = torch.full(ids.shape, 1.0 / k, dtype=scores.dtype, device=ids.device)
        return Negatives(ids=ids, weights=weights)
