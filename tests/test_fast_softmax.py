"""The compiled CCE value and gradient (CPU float32) against the torch formula in float64:
masked negatives, logQ, weights, both reductions, wide and narrow rows, and a NaN or +inf
score giving a NaN value (the fused step's divergence check reads it)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from negrec.losses.functions import cce_value_and_grad


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    k=st.integers(1, 120),
    spread=st.sampled_from([0.1, 3.0, 40.0]),
    masked=st.booleans(),
    corrected=st.booleans(),
    weighted=st.booleans(),
    mean=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_compiled_cce_matches_the_float64_formula(
    rows, k, spread, masked, corrected, weighted, mean, seed
):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(rows, 1 + k, generator=gen) * spread  # float32: the compiled path
    if masked:
        scores[:, 1:][torch.rand(rows, k, generator=gen) < 0.3] = float("-inf")
    log_q = torch.rand(rows, k, generator=gen).clamp_min(1e-3).log() if corrected else None
    weights = torch.rand(rows, k, generator=gen) if weighted else None
    value, grad = cce_value_and_grad(scores, log_q, weights, mean)
    as64 = [None if t is None else t.double() for t in (log_q, weights)]
    want_value, want_grad = cce_value_and_grad(scores.double(), *as64, mean)
    assert value.dtype == grad.dtype == torch.float32
    torch.testing.assert_close(value.double(), want_value, rtol=2e-6, atol=2e-6)
    # column 0 is (softmax - 1) / B: near-cancelling, so float32's error there is ~eps / B
    torch.testing.assert_close(grad.double(), want_grad, rtol=1e-5, atol=1e-6 / rows)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("column", [0, 3])
def test_compiled_cce_value_is_nan_for_a_nan_or_inf_score(bad: float, column: int) -> None:
    scores = torch.randn(4, 6)
    scores[2, column] = bad
    value, _ = cce_value_and_grad(scores, None, None, False)
    assert torch.isnan(value)
