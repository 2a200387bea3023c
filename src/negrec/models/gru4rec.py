"""GRU4Rec: session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016).

Item embeddings of the history go through a ``layers``-deep GRU; the hidden state after
position t scores the next item by ``<h_t, w_i> + b_i`` against a separate output item
table and bias (the paper's ``W_y h + b_y``). Dropout on the input embeddings and on the
GRU output, as in the authors' later code (``dropout_p_embed``, ``dropout_p_hidden``).

Differences from the paper, on purpose: a user's whole time-ordered history is one
"session", windows of ``max_len`` replace session-parallel mini-batches
(:mod:`negrec.models.sequential`), the input is an embedding rather than one-hot, and the loss and
negatives come from negrec's loss and sampler like any other model. Histories are
right-padded, so the recurrence reaches every real position before any padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.models.base import MODELS
from negrec.models.sequential import SequentialConfig, SequentialModel


@dataclass
class GRU4RecConfig(SequentialConfig):
    """``gru4rec``: a GRU over the last ``max_len`` items (hidden size = ``dim``)."""

    name: str = "gru4rec"
    layers: int = 1  # stacked GRU layers
    dropout_embed: float = 0.0  # on the input item embeddings
    dropout_hidden: float = 0.2  # on the GRU output (and between stacked layers)

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(self.layers >= 1, f"{prefix}.layers", f"must be >= 1, got {self.layers}")
        for key in ("dropout_embed", "dropout_hidden"):
            require(0.0 <= getattr(self, key) < 1.0, f"{prefix}.{key}", "must lie in [0, 1)")


@MODELS.register("gru4rec")
class GRU4Rec(SequentialModel):
    """GRU over item histories; next-item scores against output item vectors + biases."""

    Config = GRU4RecConfig
    config: GRU4RecConfig

    def __init__(self, config: GRU4RecConfig, train: Interactions, generator: torch.Generator):
        super().__init__(config, train, generator)
        d = config.dim
        with torch.random.fork_rng(devices=[]):  # default inits must not touch global RNG
            self.item = nn.Embedding(self.n_items + 1, d, padding_idx=self.pad)
            self.grus = nn.ModuleList(nn.GRU(d, d, batch_first=True) for _ in range(config.layers))
            self.out_item = nn.Embedding(self.n_items, d)
            self.out_bias = nn.Embedding(self.n_items, 1)  # b_i, an embedding for lazy_adam
        with torch.no_grad():
            self.item.weight.normal_(0.0, config.init_std, generator=generator)
            self.item.weight[self.pad].zero_()
            self.out_item.weight.normal_(0.0, config.init_std, generator=generator)
            self.out_bias.weight.zero_()
            for gru in self.grus:
                for name, param in gru.named_parameters():
                    if name.startswith("weight"):
                        for gate in param.chunk(3, dim=0):  # reset, update, new: one each
                            nn.init.xavier_uniform_(gate, generator=generator)
                    else:
                        param.zero_()

    def input_embeddings(self) -> nn.Embedding:
        return self.item

    def output_items(self) -> tuple[nn.Embedding, nn.Embedding | None]:
        return self.out_item, self.out_bias

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        # items [R, W] right-padded -> hidden states [R, W, d]
        x = self.dropout(self.item(items), self.config.dropout_embed)
        for gru in self.grus:
            x, _ = gru(x)
            x = self.dropout(x, self.config.dropout_hidden)
        return x
