"""Matrix factorisation: score(u, i) = <p_u, q_i> (Koren et al. 2009; the MF of BPR)."""

from __future__ import annotations

import torch
from torch import nn

from negrec._fast.gather_dot import gather_dot
from negrec.data.interactions import Interactions
from negrec.models.base import MODELS, Model, ModelConfig, squared_norms


@MODELS.register("mf")
class MF(Model):
    """User and item embeddings of size ``dim``, dot-product scores."""

    def __init__(self, config: ModelConfig, train: Interactions, generator: torch.Generator):
        super().__init__(config, train, generator)
        with torch.random.fork_rng(devices=[]):  # nn.Embedding's own init draws globally
            self.user = nn.Embedding(self.n_users, config.dim)
            self.item = nn.Embedding(self.n_items, config.dim)
        with torch.no_grad():
            self.user.weight.normal_(0.0, config.init_std, generator=generator)
            self.item.weight.normal_(0.0, config.init_std, generator=generator)

    def score(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # ctx: users [B]; items [B, K] -> [B, K]
        # fit switches the tables to row-sparse gradients for lazy_adam
        return gather_dot(self.user(ctx), self.item.weight, items, sparse_grad=self.item.sparse)

    def score_candidates(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # [B, d] @ [d, C] -> [B, C]
        return self.user(ctx) @ self.item(items).T

    def score_all(self, ctx: torch.Tensor) -> torch.Tensor:
        # [B, d] @ [d, n_items] -> [B, n_items]
        return self.user(ctx) @ self.item.weight.T

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        return self.user.weight.detach(), self.item.weight.detach(), None

    def l2_penalty(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (squared_norms(self.user, ctx) + squared_norms(self.item, items)) / ctx.shape[0]
