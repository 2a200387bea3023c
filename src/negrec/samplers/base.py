"""The sampler contract: propose negatives for a batch of (user, positive) pairs.

``sample(users[B], pos_items[B], k, *, model=None, generator) -> Negatives`` with
``ids`` [B, K], optional ``log_q`` [B, K] (log proposal probability, for the logQ
correction of sampled softmax), optional ``weights`` [B, K] (importance weights) and
optional ``valid`` [B, K] (False marks padding that the trainer scores as -inf).
``ids = None`` means "every item" (full softmax): the trainer then calls ``score_all``.
Negatives never contain the user's training positives unless the config allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.registry import Registry


@dataclass(frozen=True)
class Negatives:
    """What a sampler returns for a batch of B positives."""

    ids: torch.Tensor | None  # int64 [B, K], or None for the whole catalogue
    log_q: torch.Tensor | None = None  # float [B, K]
    weights: torch.Tensor | None = None  # float [B, K]
    valid: torch.Tensor | None = None  # bool [B, K] (or [B, n_items] when ids is None)
    #: every row of ``ids`` is the same candidate list (in-batch): the trainer scores the
    #: K candidates once per batch with ``model.score_candidates`` ([B, d] @ [d, K]) instead
    #: of gathering [B, K, d] embedding rows
    shared: bool = False


@dataclass
class SamplerConfig:
    """Options every sampler shares."""

    name: str = "uniform"
    k: int = 1  # negatives per positive
    exclude_positives: bool = True  # never propose a user's training positives

    def validate(self, prefix: str) -> None:
        require(self.k >= 1, f"{prefix}.k", f"must be >= 1, got {self.k}")


class Sampler:
    """Base class: holds the training interactions it must exclude."""

    Config: ClassVar[type[SamplerConfig]] = SamplerConfig
    #: True when the sampler scores candidates with the model (hard negatives)
    needs_model: ClassVar[bool] = False

    def __init__(self, config: SamplerConfig, train: Interactions):
        self.config = config
        self.train = train
        self.n_items = train.n_items

    @property
    def draws_rows_in_order(self) -> bool:
        """True when ``sample`` reads the generator row after row and each row's draws
        depend only on its own (user, positive) and its part of the stream: one call for
        several batches, their rows concatenated, then returns exactly what one call per
        batch would. The trainer then draws a block of batches at once (fewer calls, and
        the sampler's compiled pass gets enough rows to run on several threads). False
        unless a sampler says so; ``SamplerContract`` checks the claim."""
        return False

    def sample(
        self,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        k: int,
        *,
        model: Any = None,
        generator: torch.Generator,
    ) -> Negatives:
        raise NotImplementedError  # abstract


SAMPLERS: Registry[type[Sampler]] = Registry("sampler")
