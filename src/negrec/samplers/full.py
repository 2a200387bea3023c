"""Every item as a negative: turns CCE into the full softmax (no sampling at all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from negrec.samplers.base import SAMPLERS, Negatives, Sampler, SamplerConfig


@dataclass
class FullConfig(SamplerConfig):
    """``full``: every item; ``k`` is ignored."""


@SAMPLERS.register("full")
class FullCatalogue(Sampler):
    """All items except the user's training positives (``k`` is ignored).

    Returns ``ids=None`` so the trainer scores with ``score_all`` instead of gathering
    [B, n_items] embedding rows; ``valid`` [B, n_items] masks the training positives.
    """

    Config = FullConfig

    def sample(
        self,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        k: int,
        *,
        model: Any = None,
        generator: torch.Generator,
    ) -> Negatives:
        if not self.config.exclude_positives:
            valid = torch.ones(users.numel(), self.n_items, dtype=torch.bool, device=users.device)
            valid[torch.arange(users.numel(), device=users.device), pos_items] = False
            return Negatives(ids=None, valid=valid)
        return Negatives(ids=None, valid=~self.train.dense_mask(users))
