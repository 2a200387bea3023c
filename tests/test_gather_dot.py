"""The compiled gather-dot (CPU) equals the torch expression in value and in both
gradients, with repeated rows (whose gradients must add up) and K = 1."""

from __future__ import annotations

import pytest
import torch

from negrec._fast.gather_dot import gather_dot, gather_dot_reference


@pytest.mark.parametrize("k", [1, 7])
def test_gather_dot_matches_torch_values_and_gradients(k):
    gen = torch.Generator().manual_seed(k)
    vectors = torch.randn(9, 5, generator=gen)
    table = torch.randn(6, 5, generator=gen)
    rows = torch.randint(0, 6, (9, k), generator=gen)  # 63 draws of 6 rows: many repeats
    upstream = torch.randn(9, k, generator=gen)
    results = []
    for fn in (gather_dot, gather_dot_reference):
        v = vectors.clone().requires_grad_()
        t = table.clone().requires_grad_()
        out = fn(v, t, rows)
        (out * upstream).sum().backward()
        results.append((out.detach(), v.grad, t.grad))
    for fast, slow in zip(*results, strict=True):
        assert torch.allclose(fast, slow, atol=1e-5)


def test_gather_dot_falls_back_for_double_precision():
    vectors = torch.randn(3, 4, dtype=torch.float64)
    table = torch.randn(5, 4, dtype=torch.float64)
    rows = torch.tensor([[0, 4], [1, 1], [3, 2]])
    assert torch.equal(gather_dot(vectors, table, rows), gather_dot_reference(vectors, table, rows))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # compiled and fallback
def test_gather_dot_sparse_table_gradient_equals_the_dense_one(dtype):
    """``sparse_grad=True`` (LazyAdam) gives a row-sparse table gradient with the same sum
    per row as the dense gradient, repeated rows included."""
    gen = torch.Generator().manual_seed(5)
    vectors = torch.randn(8, 4, generator=gen, dtype=dtype)
    table = torch.randn(6, 4, generator=gen, dtype=dtype)
    rows = torch.randint(0, 5, (8, 3), generator=gen)  # row 5 never drawn
    upstream = torch.randn(8, 3, generator=gen, dtype=dtype)
    grads = []
    for sparse in (True, False):
        t = table.clone().requires_grad_()
        (gather_dot(vectors, t, rows, sparse_grad=sparse) * upstream).sum().backward()
        assert t.grad is not None and t.grad.is_sparse == sparse
        grads.append(t.grad.to_dense())
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
    assert not grads[0][5].any()


@pytest.mark.parametrize("n_table", [4, 50])  # fewer rows than B K gathered, and more
def test_compiled_sparse_table_gradient_lists_each_row_once_with_the_dense_bits(n_table):
    """The compiled row-sparse gradient lists each distinct row once, ascending, summed in
    batch order: the very bits of the dense kernel. (A [B K, d] slice per gathered row had
    made the K = 100 epoch of the dense path ~1.5x slower to add into its buffer.)"""
    gen = torch.Generator().manual_seed(7)
    vectors = torch.randn(16, 8, generator=gen)
    table = torch.randn(n_table, 8, generator=gen)
    rows = torch.randint(0, n_table, (16, 5), generator=gen)
    upstream = torch.randn(16, 5, generator=gen)
    grads = []
    for sparse in (True, False):  # (autograd.grad: what the backward itself returns)
        t = table.clone().requires_grad_()
        out = (gather_dot(vectors, t, rows, sparse_grad=sparse) * upstream).sum()
        grads.append(torch.autograd.grad(out, t)[0])
    assert grads[0].is_coalesced()  # ascending, each row once: what torch's coalesce gives
    assert grads[0]._indices()[0].tolist() == sorted(set(rows.flatten().tolist()))
    assert torch.equal(grads[0].to_dense(), grads[1])
