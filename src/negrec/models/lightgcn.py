"""LightGCN: simplified graph convolution for recommendation (He et al., SIGIR 2020).

The graph is the user-item bipartite graph of the *training split only*, nodes ordered
users ``0..U-1`` then items ``U..U+I-1``, with adjacency ``A = [[0, R], [R^T, 0]]`` and the
symmetric normalisation ``Â = D^{-1/2} A D^{-1/2}`` (an edge (u, i) weighs
``1 / sqrt(deg(u) deg(i))``; isolated nodes get 0, not NaN). Layer ``k + 1`` is ``Â E^(k)``
with no weights and no non-linearity; the final embeddings are the layer mean
``(E^(0) + ... + E^(L)) / (L + 1)`` and scores are dot products of final embeddings.

Two published bugs are guarded by tests (``tests/test_models_lightgcn.py``): building A from
a transposed index array (which silently trains plain MF) and shifting user ids by one.

Cost: propagation is one sparse [N, N] x [N, d] product per layer over all nodes. It runs
*once per training step*: the final embeddings are cached, with their autograd graph, for
the step's calls (a hard-negative sampler's no-grad scoring, the positives-and-negatives
``score``), and dropped when that graph is back-propagated. In evaluation they are
computed once, without a graph, and reused for every batch of users; the cache is keyed
by the embedding tables' version counters, so any parameter update (optimizer step,
``load_state_dict``) invalidates it, as does ``model.train()`` / ``model.eval()``.
``propagations`` counts the propagations run (a diagnostic the tests use).
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.gather_dot import gather_dot
from negrec.models.base import MODELS, Model, ModelConfig


@dataclass
class LightGCNConfig(ModelConfig):
    """``lightgcn``: ``layers`` propagation layers over the training graph, layer mean."""

    name: str = "lightgcn"
    layers: int = 3  # propagation layers L (the paper: 1-4, 3 by default); 0 is plain MF

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(self.layers >= 0, f"{prefix}.layers", f"must be >= 0, got {self.layers}")


def normalized_adjacency(train: Interactions) -> torch.Tensor:
    """``Â = D^{-1/2} A D^{-1/2}`` of the training graph as a sparse CSR float32
    [U + I, U + I] tensor (users first, then items offset by U)."""
    n_users, n_nodes = train.n_users, train.n_users + train.n_items
    users, items = train.to_coo()  # [nnz] each: the edges (u, i)
    rows = np.concatenate([users, items + n_users])  # u -> U + i, and back
    cols = np.concatenate([items + n_users, users])
    degree = np.bincount(rows, minlength=n_nodes).astype(np.float64)  # [N]
    with np.errstate(divide="ignore"):
        inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(degree), 0.0)  # [N]
    values = inv_sqrt[rows] * inv_sqrt[cols]  # [2 nnz]
    coo = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([rows, cols])),
        torch.from_numpy(values).to(torch.float32),
        (n_nodes, n_nodes),
        check_invariants=False,  # valid by construction
    )
    with warnings.catch_warnings():  # "sparse CSR support is in beta": it is all we need
        warnings.simplefilter("ignore", UserWarning)
        return coo.coalesce().to_sparse_csr()


class _SymmetricSpMM(torch.autograd.Function):
    """``Â @ X`` for a symmetric sparse ``Â``; the backward pass is ``Â @ grad`` (no
    transpose of the sparse matrix, which CSR would otherwise need every step).

    Both products run in Â's float32 with autocast off: under bf16 autocast the sparse
    product would be cast to bfloat16 (no CPU kernel), and on CUDA the gradient arrives in
    bfloat16, which cuSPARSE cannot multiply with a float32 matrix."""

    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return _float32_spmm(adjacency, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, _float32_spmm(ctx.adjacency, grad)


def _float32_spmm(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return adjacency @ x.to(adjacency.dtype)


@MODELS.register("lightgcn")
class LightGCN(Model):
    """Ego embeddings E^(0) of users and items, propagated ``layers`` times over Â."""

    Config = LightGCNConfig
    config: LightGCNConfig

    def __init__(self, config: LightGCNConfig, train: Interactions, generator: torch.Generator):
        super().__init__(config, train, generator)
        with torch.random.fork_rng(devices=[]):  # default inits must not touch global RNG
            self.user = nn.Embedding(self.n_users, config.dim)
            self.item = nn.Embedding(self.n_items, config.dim)
        with torch.no_grad():
            self.user.weight.normal_(0.0, config.init_std, generator=generator)
            self.item.weight.normal_(0.0, config.init_std, generator=generator)
        # Â's CSR arrays as plain buffers: they move with .to(device), deep-copy and pickle
        # (a sparse CSR buffer would not), and are never saved (rebuilt from the train split)
        adjacency = normalized_adjacency(train)
        self.register_buffer("adj_crow", adjacency.crow_indices(), persistent=False)
        self.register_buffer("adj_col", adjacency.col_indices(), persistent=False)
        self.register_buffer("adj_value", adjacency.values(), persistent=False)
        self.adj_crow: torch.Tensor
        self.adj_col: torch.Tensor
        self.adj_value: torch.Tensor
        self._cache: tuple[tuple[Any, ...], torch.Tensor, bool] | None = None
        self.propagations = 0

    # ------------------------------------------------------------------ propagation
    @property
    def adjacency(self) -> torch.Tensor:
        """Â [U + I, U + I] as a sparse CSR tensor over the buffers (no copy)."""
        n = self.n_users + self.n_items
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self.adj_crow, self.adj_col, self.adj_value, (n, n), check_invariants=False
            )

    def propagate(self) -> torch.Tensor:
        """Final embeddings [U + I, d]: the mean of E^(0) .. E^(L), E^(k+1) = Â E^(k)."""
        self.propagations += 1
        x = torch.cat([self.user.weight, self.item.weight])  # E^(0) [N, d]
        total = x
        adjacency = self.adjacency
        for _ in range(self.config.layers):
            x = _SymmetricSpMM.apply(adjacency, x)  # [N, d]
            total = total + x
        return total / (self.config.layers + 1)

    def _key(self) -> tuple[Any, ...]:
        u, i = self.user.weight, self.item.weight
        return (u._version, i._version, u.data_ptr(), i.data_ptr(), u.device)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users [U, d], items [I, d]) final embeddings, from the cache when valid."""
        graph = self.training or torch.is_grad_enabled()
        key = self._key()
        if self._cache is None or self._cache[0] != key or (graph and not self._cache[2]):
            with torch.set_grad_enabled(graph):
                final = self.propagate()
            if graph and final.requires_grad:
                ref = weakref.ref(self)

                def consumed(grad: torch.Tensor) -> None:  # back-propagated: the step is over
                    model = ref()
                    if model is not None:
                        model._cache = None

                final.register_hook(consumed)
            self._cache = (key, final, graph)
        final = self._cache[1]
        if not torch.is_grad_enabled():
            final = final.detach()
        return final[: self.n_users], final[self.n_users :]

    def train(self, mode: bool = True) -> LightGCN:
        self._cache = None  # a new phase: recompute (and with/without a graph) once
        return super().train(mode)

    def __getstate__(self) -> dict[str, Any]:  # pickle / deepcopy: never the cached graph
        return {**self.__dict__, "_cache": None}

    # ------------------------------------------------------------------ the model contract
    def score(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # ctx: users [B]; items [B, K] -> [B, K]
        users, item_table = self.final_embeddings()
        return gather_dot(users[ctx], item_table, items)

    def score_candidates(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # [B, d] @ [d, C] -> [B, C]
        users, item_table = self.final_embeddings()
        return users[ctx] @ item_table[items].T

    def score_all(self, ctx: torch.Tensor) -> torch.Tensor:
        # [B, d] @ [d, n_items] -> [B, n_items]
        users, item_table = self.final_embeddings()
        return users[ctx] @ item_table.T

    def l2_penalty(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """On the ego embeddings E^(0) of the batch's users and items, as in the paper."""
        return (self.user(ctx).pow(2).sum() + self.item(items).pow(2).sum()) / ctx.shape[0]
