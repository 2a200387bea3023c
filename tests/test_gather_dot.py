"""The compiled gather-dot (CPU) equals the torch expression in value and in both
gradients, with repeated rows (whose gradients must add up) and K = 1."""

from __future__ import annotations

import pytest
import torch

from negrec.gather_dot import gather_dot, gather_dot_reference


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
