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

The last layer of a training step is computed for the step's rows only. A step's loss
reads the final embeddings of B users and a few items per user; the other rows of the
last product ``Â E^(L-1)`` are never used, and in the backward pass the gradient that
enters the first product is zero outside those rows. So when the step scores first (no
hard-negative sampler has propagated already) and the rows' share of Â's non-zeros is at
most ``ROW_SUBSET_MAX_SHARE``, ``score`` computes ``E^(0) + ... + E^(L-1)`` in full and
``Â[R] E^(L-1)`` for the rows R only, and the backward pass multiplies by ``Â[:, R]``:
two of the step's 2L sparse products shrink to the rows' share of the graph. The result
is the same as the full propagation's (same sums, same order); on Gowalla a batch of
1024 touches ~8% of Â's non-zeros. On ML-1M (42%: a few thousand popular items) the full
product is kept.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from negrec._fast.gather_dot import gather_dot
from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.models.base import MODELS, Model, ModelConfig, squared_norms


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


ROW_SUBSET_MAX_SHARE = 0.25  # of Â's non-zeros; above it the full last product is as cheap


def _csr(
    crow: torch.Tensor, col: torch.Tensor, value: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """A sparse CSR tensor over the given arrays (no copy, no invariant checks)."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, value, shape, check_invariants=False)


class _RowsSpMM(torch.autograd.Function):
    """``Â[R] @ X`` [R, d] for the rows ``Â[R]`` of a symmetric Â, given as CSR arrays
    (``crow`` [R + 1], ``col`` / ``value`` [nnz_R]). The backward pass is
    ``Â[R]^T @ grad`` = ``Â[:, R] @ grad`` [N, d], with ``Â[:, R]`` built as CSR by a
    stable sort of the columns (a scatter-add of the rows is ~8x slower on CPU)."""

    @staticmethod
    def forward(
        ctx: Any, crow: torch.Tensor, col: torch.Tensor, value: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(crow, col, value)
        ctx.n_nodes = x.shape[0]
        return _float32_spmm(_csr(crow, col, value, (crow.numel() - 1, x.shape[0])), x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None, torch.Tensor]:
        crow, col, value = ctx.saved_tensors
        n_rows, n_nodes = crow.numel() - 1, ctx.n_nodes
        index = dict(dtype=col.dtype, device=col.device)  # (CSR: one index dtype)
        row = torch.repeat_interleave(torch.arange(n_rows, **index), crow.diff())
        order = torch.argsort(col, stable=True)  # [nnz_R] edges by column
        crow_t = torch.zeros(n_nodes + 1, **index)
        torch.cumsum(torch.bincount(col, minlength=n_nodes), 0, dtype=col.dtype, out=crow_t[1:])
        transposed = _csr(crow_t, row[order], value[order], (n_nodes, n_rows))
        return None, None, None, _float32_spmm(transposed, grad)


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
        # int32 indices where they fit: torch's CPU sparse product converts int64 indices
        # to int32 on every call (a copy of 2 nnz indices, 4-7% of an ML-1M step)
        index_dtype = torch.int32 if adjacency.values().numel() < 2**31 else torch.int64
        self.register_buffer("adj_crow", adjacency.crow_indices().to(index_dtype), persistent=False)
        self.register_buffer("adj_col", adjacency.col_indices().to(index_dtype), persistent=False)
        self.register_buffer("adj_value", adjacency.values(), persistent=False)
        self.adj_crow: torch.Tensor
        self.adj_col: torch.Tensor
        self.adj_value: torch.Tensor
        self._cache: tuple[tuple[Any, ...], torch.Tensor, bool] | None = None
        # a training step's layers 0..L-1 (sum, last) for the row-subset last layer
        self._step_layers: tuple[tuple[Any, ...], torch.Tensor, torch.Tensor] | None = None
        self.propagations = 0

    # ------------------------------------------------------------------ propagation
    @property
    def adjacency(self) -> torch.Tensor:
        """Â [U + I, U + I] as a sparse CSR tensor over the buffers (no copy)."""
        n = self.n_users + self.n_items
        return _csr(self.adj_crow, self.adj_col, self.adj_value, (n, n))

    def propagate(self) -> torch.Tensor:
        """Final embeddings [U + I, d]: the mean of E^(0) .. E^(L), E^(k+1) = Â E^(k)."""
        total, _ = self._layer_sum(self.config.layers)
        return total / (self.config.layers + 1)

    def _layer_sum(self, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(E^(0) + ... + E^(layers), E^(layers)), each [N, d]; one propagation."""
        self.propagations += 1
        x = torch.cat([self.user.weight, self.item.weight])  # E^(0) [N, d]
        total = x
        adjacency = self.adjacency
        for _ in range(layers):
            x = _SymmetricSpMM.apply(adjacency, x)  # [N, d]
            total = total + x
        return total, x

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
                self._release_when_consumed(final, "_cache")
            self._cache = (key, final, graph)
        final = self._cache[1]
        if not torch.is_grad_enabled():
            final = final.detach()
        return final[: self.n_users], final[self.n_users :]

    def _release_when_consumed(self, tensor: torch.Tensor, cache: str) -> None:
        """Drop the cache attribute ``cache`` once ``tensor``'s graph has been
        back-propagated (the step is over); a weak reference, so no cycle keeps the model."""
        ref = weakref.ref(self)

        def consumed(grad: torch.Tensor) -> None:
            model = ref()
            if model is not None:
                setattr(model, cache, None)

        tensor.register_hook(consumed)

    def train(self, mode: bool = True) -> LightGCN:
        self._cache = self._step_layers = None  # a new phase: recompute once
        return super().train(mode)

    def __getstate__(self) -> dict[str, Any]:  # pickle / deepcopy: never the cached graph
        return {**self.__dict__, "_cache": None, "_step_layers": None}

    def _rows_final(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For a training step that has not propagated yet: the final embeddings [R, d] of
        the distinct ``nodes`` (ids into users-then-items) and each node's row in them,
        with the last layer computed for those rows only (module docstring). None when
        it does not apply or the rows hold too much of the graph."""
        if not (self.training and torch.is_grad_enabled()) or self.config.layers == 0:
            return None
        key = self._key()
        if self._cache is not None and self._cache[0] == key and self._cache[2]:
            return None  # this step already propagated in full (a hard-negative sampler)
        n_nodes = self.n_users + self.n_items
        present = torch.zeros(n_nodes, dtype=torch.bool, device=nodes.device)
        present[nodes] = True
        rows = present.nonzero().squeeze(1)  # [R] distinct nodes, sorted
        start, stop = self.adj_crow[rows], self.adj_crow[rows + 1]
        counts = stop - start  # [R] non-zeros per row
        crow = torch.zeros(rows.numel() + 1, dtype=self.adj_col.dtype, device=nodes.device)
        torch.cumsum(counts, 0, dtype=crow.dtype, out=crow[1:])  # (CSR: one index dtype)
        nnz = int(crow[-1])
        if nnz > ROW_SUBSET_MAX_SHARE * self.adj_col.numel():
            return None
        # [nnz_R] positions of the rows' non-zeros in Â's arrays
        edges = torch.repeat_interleave(start - crow[:-1], counts) + torch.arange(
            nnz, device=nodes.device
        )
        if self._step_layers is None or self._step_layers[0] != key:
            total, last = self._layer_sum(self.config.layers - 1)
            self._step_layers = (key, total, last)
            self._release_when_consumed(total, "_step_layers")
        _, total, last = self._step_layers
        top = _RowsSpMM.apply(crow, self.adj_col[edges], self.adj_value[edges], last)  # [R, d]
        final = (total[rows] + top) / (self.config.layers + 1)  # [R, d]
        position = torch.cumsum(present, 0) - 1  # [N] node -> its row in ``final``
        return final, position

    # ------------------------------------------------------------------ the model contract
    def score(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # ctx: users [B]; items [B, K] -> [B, K]
        item_nodes = items + self.n_users  # [B, K]
        subset = self._rows_final(torch.cat([ctx, item_nodes.reshape(-1)]))
        if subset is not None:  # a training step: the last layer for these rows only
            final, position = subset  # [R, d], [N]
            return gather_dot(final[position[ctx]], final, position[item_nodes])
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

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor, None]:
        """The final (propagated, layer-mean) embeddings: their dot product is the score."""
        with torch.no_grad():
            users, items = self.final_embeddings()
        return users, items, None

    def l2_penalty(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """On the ego embeddings E^(0) of the batch's users and items, as in the paper."""
        return (squared_norms(self.user, ctx) + squared_norms(self.item, items)) / ctx.shape[0]
