"""The model contract: a model only scores; no loss lives inside a model.

``score(ctx, items[B, K]) -> [B, K]`` and ``score_all(ctx) -> [B, n_items]``, where ``ctx``
is a user-id tensor [B] (``input_kind = "user"``) or, for sequential models, a batch of
histories (``input_kind = "sequence"``). ``l2_penalty(ctx, items)`` returns the squared norm
of the parameters a batch touched, divided by B, for the explicit L2 regulariser
(LightGCN-style); models whose parameters are not per-row embeddings may return the
squared norm of all their parameters instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from negrec.config_base import require
from negrec.data.batches import Batches, PairBatches
from negrec.data.interactions import Interactions
from negrec.data.splits import Split
from negrec.errors import NegrecError
from negrec.registry import Registry


@dataclass
class ModelConfig:
    """Options every model shares."""

    name: str = "mf"
    dim: int = 64  # embedding size
    init_std: float = 0.1  # std of the normal initialisation of embeddings

    def validate(self, prefix: str) -> None:
        require(self.dim >= 1, f"{prefix}.dim", f"must be >= 1, got {self.dim}")
        require(self.init_std > 0, f"{prefix}.init_std", "must be > 0")


class NoEmbeddings(NegrecError):
    """The model scores without a dot product of user and item vectors (NeuMF), so it has
    no embeddings to compare or export."""


class Model(nn.Module):
    """Base class for all models."""

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    input_kind: ClassVar[str] = "user"

    def __init__(self, config: ModelConfig, train: Interactions, generator: torch.Generator):
        super().__init__()
        self.config = config
        self.n_users = train.n_users
        self.n_items = train.n_items

    def score(self, ctx: Any, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract

    def score_all(self, ctx: Any) -> torch.Tensor:
        raise NotImplementedError  # abstract

    def score_candidates(self, ctx: Any, items: torch.Tensor) -> torch.Tensor:
        """Scores [B, C] of one candidate list ``items`` [C] shared by every row of ``ctx``.

        The default expands the list to [B, C] and calls ``score``; dot-product models
        override it with one matrix product."""
        batch = len(ctx)
        return self.score(ctx, items.unsqueeze(0).expand(batch, -1))

    def l2_penalty(self, ctx: Any, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # abstract

    def embeddings(self) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """(users [n_users, d] or None, items [n_items, d], item bias [n_items] or None):
        the vectors whose dot product (plus the bias) is the score, for similar items and
        export. Sequential models have no user table (None: a user is a history).
        Models whose score is no dot product (NeuMF) raise :class:`NoEmbeddings`."""
        raise NoEmbeddings(
            f"model '{self.config.name}' scores without a dot product of user and item "
            "vectors, so it has no embeddings to compare or export"
        )

    # ------------------------------------------------------------ optional hooks
    def make_batches(self, train: Interactions, batch_size: int, device: torch.device) -> Batches:
        """The training batches this model reads: shuffled (user, positive) pairs by
        default; sequential models override it to cut histories into windows."""
        return PairBatches(train, batch_size, device)

    def eval_contexts(self, split: Split, part: str) -> Callable[[torch.Tensor], Any] | None:
        """``users -> ctx`` for evaluating on ``part`` of ``split``; None (the default)
        when the user ids are the context. Sequential models return the histories."""
        return None

    def dropout_generator(self, device: torch.device) -> torch.Generator | None:
        """The generator that drives this model's dropout on ``device`` (saved in
        checkpoints so a resumed run draws the same masks), or None without dropout."""
        return None


def squared_norms(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """``sum over every entry of ids of |table[id]|^2`` (a scalar), for ``l2_penalty``.

    Computed as each distinct row's squared norm times its count, so every row is read
    once: gathering [B, K, d] rows costs ~10x the rest of a step when K is a pool of 200
    weighted candidates (Softmax-v). Only the rows in ``ids`` get a gradient, so sparse
    embedding gradients stay sparse. Counting by ``bincount`` reads the whole table's
    count array; for few ids against a large table, ``unique`` sorts the ids instead."""
    flat = ids.reshape(-1)
    if flat.numel() * 8 >= table.num_embeddings:
        counts = torch.bincount(flat, minlength=table.num_embeddings)  # [n]
        rows = counts.nonzero().squeeze(1)  # [R] distinct ids
        counts = counts[rows]
    else:
        rows, counts = torch.unique(flat, return_counts=True)
    return (table(rows).pow(2).sum(dim=1) * counts).sum()


MODELS: Registry[type[Model]] = Registry("model")
