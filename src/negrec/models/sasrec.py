"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

The history's item embeddings (scaled by sqrt(d)) plus learned position embeddings go
through ``blocks`` causal self-attention blocks, each
``x = x + Dropout(Attn(LN(x)))`` then ``x = x + Dropout(FFN(LN(x)))`` (the paper's
``g(x) = x + Dropout(g(LayerNorm(x)))``), and a final LayerNorm. The hidden state after
position t scores the next item by its dot product with the *shared* item embedding.
Attention weights get dropout as in the authors' code.

Histories are right-padded (:mod:`negrec.models.sequential`): with the causal mask a real position
attends only to real positions, so padding never reaches a scored row; pad embeddings are
zeroed as well. Positions count from the first item of the window (0 .. max_len - 1), so the
state after a prefix depends on that prefix only, in training and in evaluation alike.
Dropout masks come from the model's own seeded generator (:class:`SequentialModel`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.models.base import MODELS
from negrec.models.sequential import SequentialConfig, SequentialModel


@dataclass
class SASRecConfig(SequentialConfig):
    """``sasrec``: causal self-attention over the last ``max_len`` items."""

    name: str = "sasrec"
    blocks: int = 2  # self-attention blocks (the paper: 2)
    heads: int = 1  # attention heads (the paper: 1); must divide dim
    dropout: float = 0.2  # on embeddings, attention weights and block outputs (ML-1M: 0.2)

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(self.blocks >= 1, f"{prefix}.blocks", f"must be >= 1, got {self.blocks}")
        require(self.heads >= 1, f"{prefix}.heads", f"must be >= 1, got {self.heads}")
        require(
            self.dim % self.heads == 0,
            f"{prefix}.heads",
            f"must divide model.dim = {self.dim}, got {self.heads}",
        )
        require(0.0 <= self.dropout < 1.0, f"{prefix}.dropout", "must lie in [0, 1)")


class _Block(nn.Module):
    """One pre-LayerNorm causal self-attention block with a point-wise feed-forward net."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn_in = nn.Linear(dim, dim)
        self.ffn_out = nn.Linear(dim, dim)


@MODELS.register("sasrec")
class SASRec(SequentialModel):
    """Causal Transformer encoder over item histories; next-item scores by dot product."""

    Config = SASRecConfig
    config: SASRecConfig

    def __init__(self, config: SASRecConfig, train: Interactions, generator: torch.Generator):
        super().__init__(config, train, generator)
        d = config.dim
        with torch.random.fork_rng(devices=[]):  # default inits must not touch global RNG
            self.item = nn.Embedding(self.n_items + 1, d, padding_idx=self.pad)
            self.position = nn.Embedding(config.max_len, d)
            self.blocks = nn.ModuleList(_Block(d, config.heads) for _ in range(config.blocks))
            self.norm = nn.LayerNorm(d)
        with torch.no_grad():
            self.item.weight.normal_(0.0, config.init_std, generator=generator)
            self.item.weight[self.pad].zero_()
            self.position.weight.normal_(0.0, config.init_std, generator=generator)
            for block in self.block_list():
                for layer in (block.qkv, block.out, block.ffn_in, block.ffn_out):
                    nn.init.xavier_uniform_(layer.weight, generator=generator)
                    layer.bias.zero_()

    def block_list(self) -> list[_Block]:
        return [cast(_Block, block) for block in self.blocks]

    def input_embeddings(self) -> nn.Embedding:
        return self.item

    def output_items(self) -> tuple[nn.Embedding, nn.Embedding | None]:
        return self.item, None  # shared input / output embeddings, as in the paper

    def _attention(self, block: _Block, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        r, w, d = x.shape
        h = block.heads
        q, k, v = block.qkv(x).view(r, w, 3, h, d // h).permute(2, 0, 3, 1, 4)  # [R, h, W, d/h]
        logits = q @ k.transpose(-1, -2) / math.sqrt(d // h)  # [R, h, W, W]
        weights = logits.masked_fill(~causal, float("-inf")).softmax(dim=-1)  # diagonal kept
        weights = self.dropout(weights, self.config.dropout)
        mixed = (weights @ v).transpose(1, 2).reshape(r, w, d)  # [R, W, d]
        return block.out(mixed)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        # items [R, W] right-padded -> hidden states [R, W, d]
        p = self.config.dropout
        w = items.shape[1]
        real = (items != self.pad).unsqueeze(2)  # [R, W, 1]
        positions = torch.arange(w, device=items.device)
        x = self.item(items) * math.sqrt(self.config.dim) + self.position(positions)
        x = self.dropout(x, p) * real
        causal = torch.ones(w, w, dtype=torch.bool, device=items.device).tril()  # [W, W]
        for block in self.block_list():
            x = x + self.dropout(self._attention(block, block.norm_attn(x), causal), p)
            y = block.ffn_out(self.dropout(F.relu(block.ffn_in(block.norm_ffn(x))), p))
            x = (x + self.dropout(y, p)) * real
        return self.norm(x)
