"""NCF / NeuMF: neural collaborative filtering (He et al., WWW 2017).

Two branches over separate user and item embeddings, fused by one output layer:

- GMF: ``p_u^G * q_i^G`` (element-wise product, size ``dim``);
- MLP: ``[p_u^M ; q_i^M]`` (size ``layers[0]``, so each embedding is ``layers[0] / 2``)
  through ReLU layers of sizes ``layers[1:]``;
- NeuMF: ``score = h^T [GMF ; MLP] + b`` (a logit: losses apply their own link).

``variant = "gmf"`` or ``"mlp"`` keeps one branch (the paper's ablations).

The first MLP layer on a concatenation splits exactly into a user part and an item part,
``W [p ; q] = W_u p + W_i q``, so ``score_all`` computes ``W_u p_u`` once per user and
``W_i q_i`` once per item and only the later (small) layers run per (user, item) pair, in
blocks of items that bound memory (``score_all_block`` elements): batched and exact, the
same arithmetic as ``score``. ``l2_penalty`` covers the embedding rows a batch touched; the
MLP and output weights are dense parameters left to ``train.weight_decay``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.models.base import MODELS, Model, ModelConfig, squared_norms


@dataclass
class NCFConfig(ModelConfig):
    """``ncf``: NeuMF (GMF + MLP), or one branch alone."""

    name: str = "ncf"
    init_std: float = 0.01  # the paper's N(0, 0.01) for embeddings
    variant: Literal["neumf", "gmf", "mlp"] = "neumf"
    # MLP tower: layers[0] = concatenated embedding size, then the hidden layer sizes
    layers: list[int] = field(default_factory=lambda: [64, 32, 16])

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        if self.variant != "gmf":
            require(len(self.layers) >= 2, f"{prefix}.layers", "need an input and >= 1 hidden size")
            require(min(self.layers) >= 1, f"{prefix}.layers", "sizes must be >= 1")
            require(
                self.layers[0] % 2 == 0,
                f"{prefix}.layers",
                f"layers[0] = {self.layers[0]} is the concatenated user + item embedding: "
                "it must be even",
            )


@MODELS.register("ncf")
class NCF(Model):
    """NeuMF: a GMF branch and an MLP branch fused by a linear output layer."""

    Config = NCFConfig
    config: NCFConfig
    #: elements of a [B, items, hidden] block in ``score_all`` (bounds memory)
    score_all_block: ClassVar[int] = 1 << 22

    def __init__(self, config: NCFConfig, train: Interactions, generator: torch.Generator):
        super().__init__(config, train, generator)
        self.use_gmf = config.variant in ("neumf", "gmf")
        self.use_mlp = config.variant in ("neumf", "mlp")
        out = 0
        with torch.random.fork_rng(devices=[]):  # default inits must not touch global RNG
            if self.use_gmf:
                self.user_gmf = nn.Embedding(self.n_users, config.dim)
                self.item_gmf = nn.Embedding(self.n_items, config.dim)
                out += config.dim
            if self.use_mlp:
                half = config.layers[0] // 2
                self.user_mlp = nn.Embedding(self.n_users, half)
                self.item_mlp = nn.Embedding(self.n_items, half)
                self.first_user = nn.Linear(half, config.layers[1])  # W_u (+ the bias)
                self.first_item = nn.Linear(half, config.layers[1], bias=False)  # W_i
                self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(config.layers[1:]))
                out += config.layers[-1]
            self.predict = nn.Linear(out, 1)  # h and b
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Embedding):
                    module.weight.normal_(0.0, config.init_std, generator=generator)
                elif isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight, generator=generator)
                    if module.bias is not None:
                        module.bias.zero_()

    def _mlp_tail(self, z: torch.Tensor) -> torch.Tensor:
        # z [..., layers[1]] pre-activation of the first layer -> [..., layers[-1]]
        z = F.relu(z)
        for layer in self.hidden:
            z = F.relu(layer(z))
        return z

    def _fuse(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return self.predict(torch.cat(parts, dim=-1)).squeeze(-1)

    # ------------------------------------------------------------------ the model contract
    def score(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # ctx: users [B]; items [B, K] -> [B, K]
        parts = []
        if self.use_gmf:
            parts.append(self.user_gmf(ctx).unsqueeze(1) * self.item_gmf(items))  # [B, K, d]
        if self.use_mlp:
            zu = self.first_user(self.user_mlp(ctx)).unsqueeze(1)  # [B, 1, h1]
            zi = self.first_item(self.item_mlp(items))  # [B, K, h1]
            parts.append(self._mlp_tail(zu + zi))  # [B, K, h_last]
        return self._fuse(parts)

    def score_all(self, ctx: torch.Tensor) -> torch.Tensor:
        # users [B] -> [B, n_items], in blocks of items
        width = max(self.config.dim, max(self.config.layers))
        block = max(1, self.score_all_block // max(1, ctx.numel() * width))
        gmf_u = self.user_gmf(ctx).unsqueeze(1) if self.use_gmf else None  # [B, 1, d]
        zu = self.first_user(self.user_mlp(ctx)).unsqueeze(1) if self.use_mlp else None
        zi_all = self.first_item(self.item_mlp.weight) if self.use_mlp else None  # [I, h1]
        out = []
        for lo in range(0, self.n_items, block):  # loop over item blocks, not users
            parts = []
            if gmf_u is not None:
                parts.append(gmf_u * self.item_gmf.weight[lo : lo + block])  # [B, C, d]
            if zu is not None and zi_all is not None:
                parts.append(self._mlp_tail(zu + zi_all[lo : lo + block]))  # [B, C, h]
            out.append(self._fuse(parts))  # [B, C]
        return torch.cat(out, dim=1)

    def l2_penalty(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), device=ctx.device)
        if self.use_gmf:
            total = total + squared_norms(self.user_gmf, ctx) + squared_norms(self.item_gmf, items)
        if self.use_mlp:
            total = total + squared_norms(self.user_mlp, ctx) + squared_norms(self.item_mlp, items)
        return total / ctx.shape[0]
