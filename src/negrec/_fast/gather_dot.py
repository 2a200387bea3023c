"""Scores of many item rows against one vector per batch row, without the [B, K, d] copy.

``gather_dot(vectors[B, d], table[n, d], rows[B, K])[b, k] = <table[rows[b, k]], vectors[b]>``
is how MF and LightGCN score a positive and its K negatives. Written as torch ops it
gathers a [B, K, d] tensor, multiplies, sums, and in the backward pass materialises two
more [B, K, d] tensors plus an index-add: about seven passes over K times the embedding
memory. On CPU this compiled version (numba) reads each gathered row once per pass and
accumulates the table's gradient in place: the K = 100 epochs of MF get ~2x faster. On
other devices, or in double precision, it falls back to the torch expression, which gives
the same values.

With ``sparse_grad=True`` the table's gradient is row-sparse (a COO tensor over the distinct
gathered rows, each row's sum in batch order), for LazyAdam and for the dense optimizers'
gradient buffers (``negrec.train.grads_accumulate_in_place``): no [n, d] zero-filled
gradient per step, and the optimizer touches only those rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from negrec._fast.kernels import (
    distinct_rows,
    gather_dot_backward_rows,
    gather_dot_backward_table,
    gather_dot_backward_vectors,
    gather_dot_forward,
)


class _GatherDot(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, vectors: torch.Tensor, table: torch.Tensor, rows: torch.Tensor, sparse: bool
    ):
        vectors, table, rows = vectors.contiguous(), table.contiguous(), rows.contiguous()
        ctx.sparse = sparse
        out = torch.empty(rows.shape, dtype=vectors.dtype)
        gather_dot_forward(vectors.numpy(), table.detach().numpy(), rows.numpy(), out.numpy())
        ctx.save_for_backward(vectors, table, rows)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        vectors, table, rows = ctx.saved_tensors
        grad = grad.contiguous()
        grad_vectors = grad_table = None
        if ctx.needs_input_grad[0]:
            grad_vectors = torch.empty_like(vectors)
            gather_dot_backward_vectors(
                grad.numpy(), table.detach().numpy(), rows.numpy(), grad_vectors.numpy()
            )
        if ctx.needs_input_grad[1] and ctx.sparse:
            # the distinct rows [U], ascending, and their summed gradients [U, d],
            # U <= min(B K, n): a coalesced COO tensor
            slot = np.full(table.shape[0], -1, dtype=np.int64)  # [n]
            unique = np.empty(min(rows.numel(), table.shape[0]), dtype=np.int64)
            unique = unique[: distinct_rows(rows.numpy(), slot, unique)]
            values = torch.empty((unique.size, table.shape[1]), dtype=table.dtype)
            gather_dot_backward_rows(
                grad.numpy(), vectors.detach().numpy(), rows.numpy(), slot, unique, values.numpy()
            )
            grad_table = torch.sparse_coo_tensor(
                torch.from_numpy(unique).unsqueeze(0),
                values,
                table.shape,
                is_coalesced=True,
                check_invariants=False,
            )
        elif ctx.needs_input_grad[1]:
            grad_table = torch.zeros_like(table)
            gather_dot_backward_table(
                grad.numpy(), vectors.detach().numpy(), rows.numpy(), grad_table.numpy()
            )
        return grad_vectors, grad_table, None, None


def gather_dot(
    vectors: torch.Tensor, table: torch.Tensor, rows: torch.Tensor, *, sparse_grad: bool = False
) -> torch.Tensor:
    """``<table[rows[b, k]], vectors[b]>`` as a [B, K] tensor, differentiable in both;
    ``sparse_grad``: the table's gradient is row-sparse (see the module doc)."""
    fused = (
        vectors.device.type == "cpu"
        and table.device.type == "cpu"
        and vectors.dtype == table.dtype == torch.float32
        and not table.is_sparse
    )
    if not fused:
        if sparse_grad:  # an embedding lookup carries the row-sparse gradient
            return (F.embedding(rows, table, sparse=True) * vectors.unsqueeze(1)).sum(dim=2)
        return gather_dot_reference(vectors, table, rows)
    return _GatherDot.apply(vectors, table, rows.to(torch.int64), sparse_grad)


def gather_dot_reference(
    vectors: torch.Tensor, table: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """The plain torch expression (non-CPU devices, float64, and tests)."""
    # multiply-and-sum, not bmm: a [B, K, d] x [B, d, 1] bmm is ~2x slower on CPU
    return (table[rows] * vectors.unsqueeze(1)).sum(dim=2)
