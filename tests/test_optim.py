"""LazyAdam: equals dense Adam when every row is touched at every step, and leaves the
parameters and moments of untouched rows exactly as they were."""

from __future__ import annotations

import pytest
import torch

from negrec._fast.optim import LazyAdam


def _tables(sparse: bool, n_rows: int = 6) -> torch.nn.Embedding:
    gen = torch.Generator().manual_seed(0)
    table = torch.nn.Embedding(n_rows, 3, sparse=sparse)
    with torch.no_grad():
        table.weight.copy_(torch.randn(n_rows, 3, generator=gen))
    return table


def test_lazy_adam_equals_adam_when_all_rows_are_touched():
    dense, sparse = _tables(False), _tables(True)
    adam = torch.optim.Adam(dense.parameters(), lr=0.05, weight_decay=0.01)
    lazy = LazyAdam(sparse.parameters(), lr=0.05, weight_decay=0.01)
    rows = torch.tensor([0, 1, 2, 3, 4, 5, 2, 2])  # every row, with repeats
    for step in range(5):
        target = torch.arange(8, dtype=torch.float32).unsqueeze(1) * (step + 1)
        for table, optimizer in ((dense, adam), (sparse, lazy)):
            optimizer.zero_grad()
            ((table(rows) - target) ** 2).sum().backward()
            optimizer.step()
    assert torch.allclose(dense.weight, sparse.weight, atol=1e-6)


def test_lazy_adam_leaves_untouched_rows_alone():
    table = _tables(True)
    lazy = LazyAdam(table.parameters(), lr=0.1)
    before = table.weight.detach().clone()
    table(torch.tensor([1, 4, 4])).sum().backward()
    lazy.step()
    changed = (table.weight != before).any(dim=1)
    assert changed.tolist() == [False, True, False, False, True, False]
    state = lazy.state[table.weight]
    assert torch.count_nonzero(state["exp_avg"][[0, 2, 3, 5]]) == 0
    assert torch.count_nonzero(state["buffer"]) == 0  # the accumulation buffer is cleared
    assert not state["touched"].any()


def test_lazy_adam_updates_dense_parameters_like_adam():
    gen = torch.Generator().manual_seed(1)
    a = torch.nn.Parameter(torch.randn(4, generator=gen))
    b = torch.nn.Parameter(a.detach().clone())
    adam, lazy = torch.optim.Adam([a], lr=0.1), LazyAdam([b], lr=0.1)
    for _ in range(3):
        for p, opt in ((a, adam), (b, lazy)):
            opt.zero_grad()
            (p**3).sum().backward()
            opt.step()
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    "n_rows, n_ids",
    [(6, 7), (6, 60), (50, 7)],
    ids=["ids-longer-than-table", "many-repeats", "ids-shorter-than-table"],
)
def test_compiled_row_update_equals_the_torch_path(monkeypatch, n_rows: int, n_ids: int):
    """The numba kernel (float32 CPU tables) and the torch fallback give the same steps,
    both when the kernel scans the touched flags (as many ids as rows, or more: K
    negatives) and when it walks the ids themselves (fewer ids than rows)."""
    import negrec._fast.optim

    results = []
    for compiled in (True, False):
        monkeypatch.setattr(negrec._fast.optim, "_compiled_ok", lambda p, c=compiled: c)
        table = _tables(True, n_rows)
        lazy = LazyAdam(table.parameters(), lr=0.05, weight_decay=0.01)
        gen = torch.Generator().manual_seed(3)
        for _ in range(4):
            rows = torch.randint(0, 6, (n_ids,), generator=gen)  # repeats and untouched rows
            lazy.zero_grad()
            (table(rows) * torch.randn(n_ids, 3, generator=gen)).sum().backward()
            lazy.step()
        state = lazy.state[table.weight]
        assert not state["touched"].any() and not state["buffer"].any()  # scratch cleared
        results.append((table.weight.detach().clone(), state["exp_avg"], state["exp_avg_sq"]))
    for fast, slow in zip(*results, strict=True):
        assert torch.allclose(fast, slow, atol=1e-6, rtol=1e-5)
    assert torch.equal(results[0][0][6:], _tables(True, n_rows).weight[6:])  # never drawn
