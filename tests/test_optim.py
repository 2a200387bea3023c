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


# ----------------------------------------------------------------------------- RowwiseAdam
def _rowwise_against_dense(
    steps: int, n_rows: int, reads: int, scale: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Train one table with torch's dense Adam and one with RowwiseAdam on the same random
    row reads (row-sparse gradients, a learning rate that changes halfway); checks that every
    row read equals dense Adam's before the step. Returns both tables after a final
    ``synchronize`` and the largest drift from the start."""
    from negrec._fast.optim import RowwiseAdam

    gen = torch.Generator().manual_seed(seed)
    start = torch.randn(n_rows, 4, generator=gen) * 0.1
    a, b = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    adam, rowwise = torch.optim.Adam([a], lr=0.01), RowwiseAdam([b], lr=0.01)
    for step in range(steps):
        if step == steps // 2:
            for optimizer in (adam, rowwise):
                optimizer.param_groups[0]["lr"] = 0.003
        rows = torch.randint(0, n_rows, (reads,), generator=gen)
        target = torch.randn(reads, 4, generator=gen)
        rowwise.catch_up(b, rows)
        torch.testing.assert_close(b[rows], a[rows], rtol=1e-5, atol=1e-6)
        adam.zero_grad()
        (scale * ((a[rows] - target) ** 2).sum()).backward()
        adam.step()
        values = 2 * scale * (b.detach()[rows] - target)  # d loss / d row, per read
        b.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, b.shape)
        rowwise.step()
    rowwise.synchronize()
    return a.detach(), b.detach(), float((a.detach() - start).abs().max())


@pytest.mark.parametrize("scale", [1e-3, 1e-7])  # ordinary and tiny gradients (eps-dominated)
def test_rowwise_adam_equals_dense_adam(scale: float) -> None:
    """Rows read rarely (gaps of tens of steps) and often: the closed-form catch-up of the
    momentum-only steps gives dense Adam's parameters and moments up to float rounding,
    both where the eps series applies and where sqrt(v) is so small the steps are summed
    one by one."""
    dense, rowwise, drift = _rowwise_against_dense(400, 60, 5, scale, seed=0)
    assert drift > 0.05  # it did move
    torch.testing.assert_close(rowwise, dense, rtol=1e-5, atol=2e-6)


def test_rowwise_adam_catches_up_gaps_beyond_the_cap() -> None:
    """A row left alone for longer than CATCH_UP_CAP steps: its remaining drift is below
    float32 rounding, and its moments decay over the whole gap."""
    from negrec._fast.kernels import CATCH_UP_CAP

    dense, rowwise, _ = _rowwise_against_dense(3 * CATCH_UP_CAP, 400, 1, 1e-3, seed=1)
    torch.testing.assert_close(rowwise, dense, rtol=1e-5, atol=2e-6)


def test_rowwise_adam_dense_gradient_is_dense_adam() -> None:
    """Row-sparse steps mixed with dense ones (a step scoring the whole catalogue, after
    ``synchronize``) are dense Adam's steps; the state dict round-trips (load_state_dict
    casts state tensors to the table's dtype: the row marks and flags get theirs back)."""
    from negrec._fast.optim import RowwiseAdam

    gen = torch.Generator().manual_seed(2)
    start = torch.randn(8, 3, generator=gen)
    a, b = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    adam, rowwise = torch.optim.Adam([a], lr=0.05), RowwiseAdam([b], lr=0.05)
    for step in range(6):
        for p, optimizer in ((a, adam), (b, rowwise)):
            optimizer.zero_grad()
            if step % 2:  # dense: every row is read, so every row is brought up to date
                if p is b:
                    rowwise.synchronize()
                (p**2).sum().backward()
            elif p is a:
                (p[[1, 3]] ** 2).sum().backward()
            else:
                rowwise.catch_up(p, torch.tensor([1, 3]))  # before the rows are read
                p.grad = torch.sparse_coo_tensor(
                    torch.tensor([[1, 3]]), 2 * p.detach()[[1, 3]], p.shape
                )
            optimizer.step()
    again = RowwiseAdam([b], lr=0.05)
    again.load_state_dict(rowwise.state_dict())
    again.synchronize()
    torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-6)


def test_catch_up_all_is_the_same_on_any_thread_count() -> None:
    """The parallel flush gives the bits of the serial one (rows are independent)."""
    import numba
    import numpy as np

    from negrec._fast import kernels

    rng = np.random.default_rng(0)
    n, d, steps = 3000, 16, 40
    tables = [rng.standard_normal((n, d)).astype(np.float32) for _ in range(3)]
    tables[2] = np.abs(tables[2]) * 1e-6
    last = rng.integers(0, steps, n).astype(np.int64)
    hist_a = np.full(steps, 1e-3)
    hist_sc2 = np.sqrt(1 - 0.999 ** np.arange(1, steps + 1))
    outs = []
    for kernel in kernels._ADAM_CATCH_UP_ALL:
        arrays = [t.copy() for t in tables]
        marks = last.copy()
        powers = kernels.catch_up_powers(0.9, 0.999)
        kernel(*arrays, marks, steps, hist_a, hist_sc2, 0, powers, 0.9, 0.999, 1e-8)
        outs.append((arrays, marks))
    assert numba.get_num_threads() >= 1
    for x, y in zip(outs[0][0], outs[1][0], strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_make_optimizer_does_not_switch_the_callers_embeddings_to_sparse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression (issue 21): ``make_optimizer(..., lazy_adam)`` set ``sparse = True`` on the
    caller's embeddings as a side effect. Now only ``fit`` switches them, for the run, and
    gives them their own setting back afterwards."""
    from negrec.data.splits import random_split
    from negrec.data.synthetic import synthetic_interactions
    from negrec.losses import Loss, LossConfig
    from negrec.models import MF, ModelConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler
    from negrec.train import TrainConfig, fit, make_optimizer

    data = synthetic_interactions(n_users=20, n_items=30, mean_degree=5.0, n_clusters=2, seed=0)
    split = random_split(data, 0.2, 0.1, 0)
    model = MF(ModelConfig(dim=4), split.train, torch.Generator().manual_seed(0))
    config = TrainConfig(optimizer="lazy_adam", fused=False, epochs=1, eval_every=10)
    make_optimizer(model, config)
    assert not model.user.sparse and not model.item.sparse
    seen = []
    real_step = LazyAdam.step

    def step(self, closure=None):  # type: ignore[no-untyped-def]
        seen.append(model.item.weight.grad.is_sparse)
        return real_step(self, closure)

    monkeypatch.setattr(LazyAdam, "step", step)
    sampler = UniformSampler(UniformConfig(k=1), split.train)
    fit(model, sampler, Loss(LossConfig(name="bpr")), split, config)
    assert seen and all(seen)  # row-sparse gradients during the run
    assert not model.user.sparse and not model.item.sparse  # given back


def test_rowwise_adam_resumes_from_a_torch_adam_checkpoint() -> None:
    """Runs checkpointed before RowwiseAdam became the default saved torch's Adam state (a
    tensor ``step``, no row marks): loaded into RowwiseAdam they continue as dense Adam."""
    from negrec._fast.optim import RowwiseAdam

    gen = torch.Generator().manual_seed(3)
    start = torch.randn(6, 3, generator=gen)
    a, b = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    adam, old = torch.optim.Adam([a], lr=0.05), torch.optim.Adam([b], lr=0.05)
    for p, optimizer in ((a, adam), (b, old)):
        (p[[0, 2]] ** 2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    rowwise = RowwiseAdam([b], lr=0.05)
    rowwise.load_state_dict(old.state_dict())
    for step in range(4):
        rows = torch.tensor([step % 6, (step + 3) % 6])
        (a[rows] ** 2).sum().backward()
        adam.step()
        adam.zero_grad()
        rowwise.catch_up(b, rows)
        b.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), 2 * b.detach()[rows], b.shape)
        rowwise.step()
    rowwise.synchronize()
    torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-6)


def _two_rowwise_tables(seed: int) -> tuple[list[torch.nn.Parameter], object]:
    """A user and an item table after 30 RowwiseAdam steps on random rows: rows with
    pending momentum-only steps of many lengths (0 ... 30)."""
    from negrec._fast.optim import RowwiseAdam

    gen = torch.Generator().manual_seed(seed)
    tables = [torch.nn.Parameter(torch.randn(n, 16, generator=gen) * 0.1) for n in (40, 70)]
    rowwise = RowwiseAdam(tables, lr=0.01)
    for _ in range(30):
        for table in tables:
            rows = torch.randint(0, table.shape[0], (6,), generator=gen)
            rowwise.catch_up(table, rows)
            values = torch.randn(6, 16, generator=gen)
            table.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, table.shape)
        rowwise.step()
    return tables, rowwise


@pytest.mark.parametrize("width", [2, 3, 40])  # narrow (three passes) and wide (one pass)
def test_catch_up_and_score_equals_catch_up_then_gather_dot(width: int) -> None:
    """The fused MF step's first pass: the one-loop catch-up and scoring gives the same
    bits, parameters, moments, ``last`` and scores, as catching up the users, then the
    items, then the dot products (the kernel run directly too, for narrow rows)."""
    from negrec._fast.kernels import adam_catch_up_and_score, gather_dot_forward

    gen = torch.Generator().manual_seed(1)
    users = torch.randint(0, 40, (25,), generator=gen)
    items = torch.randint(0, 70, (25, width), generator=gen)
    runs = []
    for mode in ("separate", "method", "kernel", "kernel prefetching 3 ids ahead"):
        tables, rowwise = _two_rowwise_tables(seed=3)
        scores = torch.empty(25, width)
        if mode == "separate":
            rowwise.catch_up(tables[0], users)
            rowwise.catch_up(tables[1], items.reshape(-1))
            gather_dot_forward(
                tables[0].detach().numpy(), tables[1].detach().numpy(), items.numpy(),
                scores.numpy(), users.numpy(),
            )  # fmt: skip
        elif mode == "method":
            rowwise.catch_up_and_score(*tables, users.numpy(), items.numpy(), scores.numpy())
        else:
            states = [rowwise.state[t] for t in tables]
            arrays = [
                (
                    s["exp_avg"].numpy(),
                    s["exp_avg_sq"].numpy(),
                    (s["hist_a"].numpy(), s["hist_sc2"].numpy()),
                )
                for s in states
            ]
            group = rowwise.param_groups[0]
            adam_catch_up_and_score(
                (tables[0].detach().numpy(), *arrays[0][:2]), states[0]["last"].numpy(),
                arrays[0][2], (states[0]["step"], states[0]["step"] + 1, states[0]["base"]),
                (tables[1].detach().numpy(), *arrays[1][:2]), states[1]["last"].numpy(),
                arrays[1][2], (states[1]["step"], states[1]["step"] + 1, states[1]["base"]),
                rowwise._view(tables[0])[4], *group["betas"], group["eps"],
                users.numpy(), items.numpy(), scores.numpy(), 3 if "ahead" in mode else 0,
            )  # fmt: skip
        state = [
            rowwise.state[t][k].clone() for t in tables for k in ("exp_avg", "exp_avg_sq", "last")
        ]
        runs.append([scores, *(t.detach().clone() for t in tables), *state])
    for other in runs[1:]:
        for got, want in zip(other, runs[0], strict=True):
            assert torch.equal(got, want)
    assert not torch.equal(runs[0][1], _two_rowwise_tables(seed=3)[0][0].detach())  # moved
