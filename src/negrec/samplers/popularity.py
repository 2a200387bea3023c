"""Popularity negatives: item ``i`` is proposed with probability proportional to
``(count_i + smoothing) ** alpha``, counts taken from the training split only.

Popularity-biased proposals are the classic "hard-ish" static sampler (word2vec's unigram
distribution uses ``alpha = 0.75``; Rendle & Freudenthaler, WSDM 2014, discuss the bias).
negrec's default is ``alpha = 1.0``: plain frequency, the proposal whose ``log_q`` the
sampled-softmax logQ correction of Yi et al. (RecSys 2019) is usually stated for.

Exclusion of training positives, exactly and loop-free:

1. draw every entry from the unrestricted proposal by inverse CDF (one ``searchsorted``
   over the cumulative weights);
2. redraw the entries that hit one of the user's training positives, in vectorised rounds
   over the rejected entries only (at most :attr:`PopularitySampler.max_rounds`);
3. rows still holding a rejected entry after that (users whose positives carry almost all
   the popularity mass) are redrawn from the dense restricted distribution: their
   cumulative weights with the positives zeroed, [rows, n_items], in bounded chunks.

Each accepted entry is therefore an independent draw from the proposal *restricted to the
user's non-positive items and renormalised*, and ``log_q`` is the log of exactly that
probability: ``log w_i - log(sum_{j not a positive of u} w_j)``. With
``exclude_positives = false`` there is no restriction and ``log_q = log(w_i / sum_j w_j)``.

A user whose non-positive items all have weight 0 (e.g. ``smoothing = 0`` and the user has
interacted with every item that occurs in training) has no valid proposal: the sampler
refuses to build, naming ``sampler.smoothing``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.errors import ConfigError
from negrec.samplers.base import SAMPLERS, Negatives, Sampler, SamplerConfig


@dataclass
class PopularityConfig(SamplerConfig):
    """``popularity``: proposal proportional to ``(train count + smoothing) ** alpha``."""

    alpha: float = 1.0  # exponent on the training count (0: uniform, 0.75: word2vec)
    smoothing: float = 0.0  # pseudo-count added to every item before the power

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(
            math.isfinite(self.alpha) and self.alpha >= 0,
            f"{prefix}.alpha",
            f"must be a finite number >= 0, got {self.alpha}",
        )
        require(
            math.isfinite(self.smoothing) and self.smoothing >= 0,
            f"{prefix}.smoothing",
            f"must be a finite number >= 0, got {self.smoothing}",
        )


@dataclass
class _DeviceTables:
    """The sampler's lookup tables on one device."""

    cdf: torch.Tensor  # float64 [n_items], cumulative proposal weights
    weights: torch.Tensor  # float64 [n_items]
    log_w: torch.Tensor  # float64 [n_items], log weights (-inf for weight 0)
    log_norm: torch.Tensor  # float64 [n_users], log of each user's normaliser


@SAMPLERS.register("popularity")
class PopularitySampler(Sampler):
    """Negatives drawn proportionally to ``count ** alpha`` over each user's non-positive
    items; returns ``log_q`` (log proposal probability, renormalised per user)."""

    Config = PopularityConfig
    config: PopularityConfig
    #: rejection rounds before the dense exact fallback takes the remaining rows
    max_rounds: ClassVar[int] = 16
    #: elements of one dense fallback chunk (rows x n_items)
    dense_chunk: ClassVar[int] = 1 << 22

    def __init__(self, config: PopularityConfig, train: Interactions):
        super().__init__(config, train)
        counts = train.item_degrees.astype(np.float64) + config.smoothing
        weights = np.power(counts, config.alpha)  # 0 ** 0 = 1: alpha = 0 is uniform
        total = float(weights.sum())
        if not total > 0 or not math.isfinite(total):
            raise ConfigError(
                "sampler.smoothing",
                "no item has a positive popularity weight (empty training split?); "
                "set sampler.smoothing > 0",
            )
        self.total = total
        self.weights = weights  # float64 [n_items]
        if config.exclude_positives:
            users, items = train.to_coo()
            pos_mass = np.bincount(users, weights=weights[items], minlength=train.n_users)
            norm = total - pos_mass  # [n_users], mass of each user's non-positive items
            starved = np.flatnonzero(norm <= 1e-9 * total)
            if starved.size:
                raise ConfigError(
                    "sampler.smoothing",
                    f"user {int(starved[0])} (and {starved.size - 1} more) has no non-positive "
                    "item of non-zero popularity; set sampler.smoothing > 0",
                )
        else:
            norm = np.full(train.n_users, total)
        self.norm = norm  # float64 [n_users]
        self._tables: dict[str, _DeviceTables] = {}

    # ------------------------------------------------------------------ tables
    def tables(self, device: torch.device) -> _DeviceTables:
        key = str(device)
        if key not in self._tables:
            weights = torch.tensor(self.weights, dtype=torch.float64, device=device)
            self._tables[key] = _DeviceTables(
                cdf=weights.cumsum(0),
                weights=weights,
                log_w=weights.log(),
                log_norm=torch.tensor(np.log(self.norm), dtype=torch.float64, device=device),
            )
        return self._tables[key]

    def probabilities(self, user: int) -> np.ndarray:
        """The exact proposal of one user over all items, [n_items] (for tests and analysis)."""
        p = self.weights.copy()
        if self.config.exclude_positives:
            p[self.train.items_of(user)] = 0.0
        return p / p.sum()

    # ------------------------------------------------------------------ sampling
    def _draw(self, n: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        """``n`` item ids [n] from the unrestricted proposal (inverse CDF)."""
        t = self.tables(device)
        return _inverse_cdf(
            t.cdf, torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        )

    def sample(
        self,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        k: int,
        *,
        model: Any = None,
        generator: torch.Generator,
    ) -> Negatives:
        device = users.device
        b = users.numel()
        t = self.tables(device)
        flat = self._draw(b * k, device, generator)  # [B * K]
        if self.config.exclude_positives:
            flat_users = users.repeat_interleave(k)  # [B * K], row-major like ``flat``
            self._reject(flat_users, flat, generator)
        ids = flat.view(b, k)  # [B, K]
        log_q = t.log_w[ids] - t.log_norm[users].unsqueeze(1)  # [B, K]
        return Negatives(ids=ids, log_q=log_q.to(torch.get_default_dtype()))

    def _reject(
        self, flat_users: torch.Tensor, flat: torch.Tensor, generator: torch.Generator
    ) -> None:
        """Redraw, in place, every entry of ``flat`` [E] that is a training positive of its
        user ``flat_users`` [E]: vectorised rounds, then the dense exact fallback."""
        bad = self.train.contains(flat_users, flat).nonzero().squeeze(1)  # [E_bad] positions
        for _ in range(self.max_rounds):
            if bad.numel() == 0:
                return
            fresh = self._draw(bad.numel(), flat.device, generator)  # [E_bad]
            flat[bad] = fresh
            bad = bad[self.train.contains(flat_users[bad], fresh)]
        if bad.numel():
            self._dense_redraw(flat_users, flat, bad, generator)

    def _dense_redraw(
        self,
        flat_users: torch.Tensor,
        flat: torch.Tensor,
        bad: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        """Exact draws for the entries ``bad`` [E_bad] from each user's restricted proposal,
        through dense cumulative weights [rows, n_items] built chunk by chunk."""
        t = self.tables(flat.device)
        chunk = max(1, self.dense_chunk // max(self.n_items, 1))
        for start in range(0, bad.numel(), chunk):  # a loop over memory chunks, not users
            part = bad[start : start + chunk]  # [C]
            users = flat_users[part]  # [C]
            weights = t.weights.expand(users.numel(), -1).masked_fill(
                self.train.dense_mask(users), 0.0
            )  # [C, n_items]
            cdf = weights.cumsum(1)  # [C, n_items]
            u = torch.rand(
                part.numel(), 1, generator=generator, device=flat.device, dtype=torch.float64
            )  # [C, 1]
            flat[part] = _inverse_cdf(cdf, u).squeeze(1)


def _inverse_cdf(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Item ids for uniforms ``u`` in [0, 1): the first index whose cumulative weight
    reaches ``(1 - u) * total``. The target lies in (0, total], so the index is in range
    and never an item of weight 0 (its cumulative weight equals its predecessor's).
    ``cdf`` is [n_items] with ``u`` [E], or [R, n_items] with ``u`` [R, E]."""
    return torch.searchsorted(cdf, (1.0 - u) * cdf[..., -1:])
