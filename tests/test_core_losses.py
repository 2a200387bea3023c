"""Losses: hand-computed values (docs/theory.md#loss-chain, docs/theory.md#bpr-equals-cce),
batch averaging, ``neg_reduction``,
importance weights and the logQ correction as documented in ``negrec.losses``, -inf
negatives contributing nothing (with finite gradients), BPR == CCE in value and gradient
at K = 1, and numerical stability at scores of +-1e4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from negrec.errors import ConfigError
from negrec.losses import LOSSES, Loss, LossConfig, bce, bpr, cce, hinge, make_loss, simce

# the pure function of every registered loss, declared on its class (softmax and ssm are cce)
SAMPLED = {f.__name__: f for cls in LOSSES.entries().values() if (f := cls.function) is not None}

# docs/theory.md#loss-chain: s+ = 2 and ten negatives
S_POS = 2.0
S_NEG = [3.0, 2.5, 1.0, 0.5, -0.5, -1.0, -2.0, -3.0, 0.0, 2.2]


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def example(dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([S_POS], dtype=dtype), torch.tensor([S_NEG], dtype=dtype)


# ----------------------------------------------------------------------------- known values
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cce", 2.011119),
        ("bpr", 3.879423),
        ("bce", 12.002828),
        ("simce", 2.0),  # relu(1 - 2 + max 3)
        ("hinge", 4.7),  # relu(s_j - 1): 2 + 1.5 + 1.2
    ],
)
def test_theory_example_values(name, expected):
    pos, neg = example()
    assert SAMPLED[name](pos, neg).item() == pytest.approx(expected, abs=1e-6)


def test_margin_option_of_simce_and_hinge():
    pos, neg = example()
    assert simce(pos, neg, margin=0.5).item() == pytest.approx(1.5)
    assert hinge(pos, neg, margin=0.5).item() == pytest.approx(1.5 + 1.0 + 0.7)


def test_bpr_equals_cce_at_one_negative_theory_example():
    pos, neg = torch.tensor([2.0], dtype=torch.float64), torch.tensor([[0.7]], dtype=torch.float64)
    assert bpr(pos, neg).item() == pytest.approx(0.2410085, abs=1e-7)
    assert cce(pos, neg).item() == pytest.approx(0.2410085, abs=1e-7)


# ----------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_batch_loss_is_the_mean_of_per_positive_losses(name):
    fn = SAMPLED[name]
    gen = torch.Generator().manual_seed(1)
    pos = torch.randn(5, generator=gen, dtype=torch.float64)
    neg = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    per_row = [fn(pos[i : i + 1], neg[i : i + 1]).item() for i in range(5)]
    assert fn(pos, neg).item() == pytest.approx(float(np.mean(per_row)), rel=1e-12)


def test_neg_reduction_mean_divides_the_negative_sum_by_k():
    pos, neg = example()
    k = len(S_NEG)
    mean = {
        name: SAMPLED[name](pos, neg, neg_reduction="mean").item()
        for name in SAMPLED
        if "neg_reduction" in LOSSES.get(name, "loss.name").option_keys()
    }
    assert mean["bpr"] == pytest.approx(sum(sp(s - S_POS) for s in S_NEG) / k)
    assert mean["bce"] == pytest.approx(sp(-S_POS) + sum(sp(s) for s in S_NEG) / k)
    assert mean["hinge"] == pytest.approx(4.7 / k)
    # CCE: the negatives' mass divided by K inside the log
    cce_mean = math.log(math.exp(S_POS) + sum(math.exp(s) for s in S_NEG) / k) - S_POS
    assert mean["cce"] == pytest.approx(cce_mean)
    assert "simce" not in mean  # a max has nothing to average: SimCE takes no neg_reduction


def test_sum_is_the_default_reduction():
    pos, neg = example()
    for name, fn in SAMPLED.items():
        configured = Loss(LossConfig(name=name))(pos, neg).item()
        assert configured == pytest.approx(fn(pos, neg).item()), name
    mean = make_loss("bpr", neg_reduction="mean")(pos, neg).item()
    assert mean == pytest.approx(bpr(pos, neg).item() / len(S_NEG))


# ----------------------------------------------------------------------------- weights, logQ
WEIGHTS = [0.5, 2.0, 0.0, 1.0, 1.5, 0.25, 3.0, 1.0, 0.0, 0.75]


def test_weights_turn_sums_into_weighted_sums():
    pos, neg = example()
    w = torch.tensor([WEIGHTS], dtype=torch.float64)
    assert bpr(pos, neg, weights=w).item() == pytest.approx(
        sum(wj * sp(s - S_POS) for wj, s in zip(WEIGHTS, S_NEG, strict=True))
    )
    assert bce(pos, neg, weights=w).item() == pytest.approx(
        sp(-S_POS) + sum(wj * sp(s) for wj, s in zip(WEIGHTS, S_NEG, strict=True))
    )
    assert hinge(pos, neg, weights=w).item() == pytest.approx(
        sum(wj * max(0.0, 1 - S_POS + s) for wj, s in zip(WEIGHTS, S_NEG, strict=True))
    )
    # CCE: weights multiply e^{s_j}
    mass = sum(wj * math.exp(s) for wj, s in zip(WEIGHTS, S_NEG, strict=True))
    assert cce(pos, neg, weights=w).item() == pytest.approx(
        math.log(math.exp(S_POS) + mass) - S_POS
    )


def test_simce_max_skips_negatives_of_weight_zero():
    pos, neg = example()
    w = torch.ones(1, len(S_NEG), dtype=torch.float64)
    assert simce(pos, neg, weights=w).item() == pytest.approx(2.0)
    w[0, 0] = 0.0  # the hardest negative (3.0) is skipped; the next one is 2.5
    assert simce(pos, neg, weights=w).item() == pytest.approx(1.5)
    w[0, 0] = 5.0  # other weights do not scale the max
    assert simce(pos, neg, weights=w).item() == pytest.approx(2.0)


def test_log_q_correction_of_cce():
    pos, neg = example()
    k = len(S_NEG)
    q = torch.tensor([[0.05, 0.2, 0.1, 0.02, 0.08, 0.15, 0.1, 0.1, 0.1, 0.1]], dtype=torch.float64)
    # s_j - log(K q_j) in place of s_j
    mass = sum(math.exp(s - math.log(k * qj)) for s, qj in zip(S_NEG, q[0].tolist(), strict=True))
    expected = math.log(math.exp(S_POS) + mass) - S_POS
    assert cce(pos, neg, log_q=q.log()).item() == pytest.approx(expected)
    # a uniform proposal (q = 1/K) changes nothing
    uniform = torch.full_like(q, math.log(1 / k))
    assert cce(pos, neg, log_q=uniform).item() == pytest.approx(cce(pos, neg).item())


@pytest.mark.parametrize("name", ["bpr", "bce", "simce", "hinge"])
def test_log_q_is_ignored_by_other_losses(name):
    pos, neg = example()
    q = torch.full((1, len(S_NEG)), math.log(0.01), dtype=torch.float64)
    fn = SAMPLED[name]
    assert fn(pos, neg, log_q=q).item() == fn(pos, neg).item()


# ----------------------------------------------------------------------------- -inf padding
@pytest.mark.parametrize("name", sorted(SAMPLED))
@pytest.mark.parametrize("with_weights", [False, True])
def test_minus_inf_negatives_contribute_nothing_and_keep_gradients_finite(name, with_weights):
    fn = SAMPLED[name]
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(4, generator=gen, dtype=torch.float64)
    neg = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    weights = torch.rand(4, 3, generator=gen, dtype=torch.float64) + 0.5
    padded_neg = torch.cat([neg, torch.full((4, 2), -math.inf, dtype=torch.float64)], dim=1)
    padded_neg = padded_neg[:, [0, 3, 1, 4, 2]]  # padding between real negatives
    padded_w = torch.cat([weights, torch.ones(4, 2, dtype=torch.float64)], dim=1)[
        :, [0, 3, 1, 4, 2]
    ]

    def value_and_grads(p, n, w):
        p, n = p.clone().requires_grad_(), n.clone().requires_grad_()
        out = fn(p, n, weights=w if with_weights else None)
        out.backward()
        return out, p.grad, n.grad

    plain, g_pos, g_neg = value_and_grads(pos, neg, weights)
    padded, gp_pos, gp_neg = value_and_grads(pos, padded_neg, padded_w)
    assert padded.item() == pytest.approx(plain.item(), rel=1e-12)
    assert torch.isfinite(gp_pos).all() and torch.isfinite(gp_neg).all()
    assert torch.allclose(gp_pos, g_pos, rtol=1e-12)
    assert torch.allclose(gp_neg[:, [0, 2, 4]], g_neg, rtol=1e-12)
    assert (gp_neg[:, [1, 3]] == 0).all()


# ----------------------------------------------------------------------------- BPR == CCE, K=1
@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.floats(-30, 30), st.floats(-30, 30)),
        min_size=1,
        max_size=6,
    )
)
def test_bpr_and_cce_agree_in_value_and_gradient_at_one_negative(pairs):
    pos0 = torch.tensor([p for p, _ in pairs], dtype=torch.float64)
    neg0 = torch.tensor([[n] for _, n in pairs], dtype=torch.float64)
    results = []
    for fn in (bpr, cce):
        pos, neg = pos0.clone().requires_grad_(), neg0.clone().requires_grad_()
        value = fn(pos, neg)
        value.backward()
        results.append((value.detach(), pos.grad, neg.grad))
    (v1, gp1, gn1), (v2, gp2, gn2) = results
    # torch's softplus is linear above 20, an error of at most e^-20 ~ 2e-9
    assert torch.allclose(v1, v2, rtol=1e-10, atol=1e-8)
    assert torch.allclose(gp1, gp2, rtol=0, atol=1e-8)
    assert torch.allclose(gn1, gn2, rtol=0, atol=1e-8)
    assert torch.allclose(gp1, -gn1[:, 0])  # and the gradient is antisymmetric


# ----------------------------------------------------------------------------- stability
@pytest.mark.parametrize("name", sorted(SAMPLED))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_extreme_scores(name, dtype):
    fn = SAMPLED[name]
    pos = torch.tensor([1e4, -1e4, 1e4, -1e4], dtype=dtype, requires_grad=True)
    neg = torch.tensor(
        [[-1e4, -1e4], [1e4, 1e4], [1e4, -1e4], [-1e4, 1e4]], dtype=dtype, requires_grad=True
    )
    value = fn(pos, neg)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all()


def test_extreme_scores_give_the_asymptotic_values():
    pos = torch.tensor([-1e4], dtype=torch.float32)
    neg = torch.tensor([[1e4]], dtype=torch.float32)
    # a negative 2e4 above the positive costs 2e4 (BPR, CCE) and 1e4 + 1e4 (BCE)
    for fn in (bpr, cce, bce):
        assert fn(pos, neg).item() == pytest.approx(2e4, rel=1e-6)
    # and a well-ranked pair costs (almost) nothing
    for fn in (bpr, cce, bce):
        assert fn(neg[:, 0], pos.unsqueeze(1)).item() == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- config
def test_loss_registry_and_config_validation():
    assert {"bpr", "bce", "cce", "ssm", "softmax", "simce", "hinge"} <= set(LOSSES.names())
    assert {"bpr": bpr, "bce": bce, "cce": cce, "simce": simce, "hinge": hinge} == SAMPLED
    assert LOSSES.get("ssm", "loss.name") is LOSSES.get("cce", "loss.name")  # an alias
    with pytest.raises(ConfigError, match=r"loss\.margin.*'bpr'.*name, neg_reduction"):
        make_loss("bpr", margin=0.5)
    with pytest.raises(ConfigError, match=r"loss\.neg_reduction.*'simce'.*name, margin"):
        make_loss("simce", neg_reduction="mean")
    with pytest.raises(ConfigError, match=r"loss\.name"):
        make_loss("nope")
    assert make_loss("simce", margin=5).config.margin == 5.0  # type: ignore[attr-defined]
    assert type(Loss(LossConfig(name="ssm"))) is LOSSES.get("cce", "loss.name")


def test_keys_stored_by_negrec_0_1_load_at_their_old_defaults():
    """Every config.toml negrec 0.1 wrote carries ``neg_reduction`` and ``margin`` for every
    loss: a loss that takes no such key accepts it at the 0.1 default (and drops it), so old
    runs still load, compare and group as before; any other value is refused."""
    bpr_config = make_loss("bpr", margin=1.0).config
    assert bpr_config == make_loss("bpr").config
    assert (
        make_loss("simce", neg_reduction="sum", margin=2.0).config
        == make_loss("simce", margin=2.0).config
    )
    with pytest.raises(ConfigError, match=r"loss\.margin"):
        make_loss("bce", margin=2.0)
