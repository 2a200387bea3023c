"""Metrics and the full-ranking evaluator against a brute-force reference.

Checks, with frequent ties (scores drawn from a few values):
- ``negrec.evaluation.evaluate`` (train items masked; validation items too when testing)
  equals a plain-Python reference for recall/precision/NDCG/hit@K, MRR, AUC and OPAUC(beta)
  that follows the tie rules documented in ``negrec.metrics``, for every user;
- the docs/theory.md#theorem-3 worked example, through the evaluator;
- the numba counting kernel (CPU path) and the torch counting path agree exactly;
- evaluation never writes into a model's parameters when ``score_all`` returns a view.
"""

from __future__ import annotations

import importlib
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import make_interactions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from negrec.data.splits import Split
from negrec.evaluation import EvalConfig, evaluate
from negrec.metrics import opauc_name, positions_from_ranks

# the package re-exports the ``evaluate`` function under the module's name
ev = importlib.import_module("negrec.evaluation")

KS = [1, 2, 3, 5]
BETAS = [0.1, 0.25, 0.4, 0.5, 1.0]


class FixedScores(nn.Module):
    """A fake model: ``score_all`` returns rows of a fixed [n_users, n_items] table."""

    def __init__(self, table: np.ndarray | torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(table, dtype=torch.float32), requires_grad=False)

    def score_all(self, ctx: torch.Tensor) -> torch.Tensor:
        return self.table[ctx]


# ----------------------------------------------------------------------------- reference
def reference_metrics(
    scores: np.ndarray, targets: set[int], masked: set[int], ks: list[int], betas: list[float]
) -> dict[str, float]:
    """Brute force for one user, straight from the documented definitions."""
    candidates = [i for i in range(len(scores)) if i not in masked or i in targets]
    negatives = [i for i in candidates if i not in targets]
    out: dict[str, float] = {}
    # top-K: sort by score descending; among equal scores positives come first, so tied
    # positives take consecutive positions and a tie with a negative favours the positive
    ordered = sorted(candidates, key=lambda i: (-scores[i], i not in targets))
    for k in ks:
        top = ordered[:k]
        hits = sum(i in targets for i in top)
        dcg = sum(1 / math.log2(p + 2) for p, i in enumerate(top) if i in targets)
        idcg = sum(1 / math.log2(p + 2) for p in range(min(len(targets), k)))
        out[f"recall@{k}"] = hits / len(targets)
        out[f"precision@{k}"] = hits / k
        out[f"ndcg@{k}"] = dcg / idcg
        out[f"hit@{k}"] = float(hits > 0)
    # rank = 1 + number of candidates strictly higher; MRR uses the best positive
    best = min(1 + sum(scores[c] > scores[t] for c in candidates) for t in targets)
    out["mrr"] = 1.0 / best
    # P_j: positives above the j-th highest negative, ties counting one half
    neg_desc = sorted((scores[j] for j in negatives), reverse=True)
    p = [sum((scores[t] > s) + 0.5 * (scores[t] == s) for t in targets) for s in neg_desc]
    n_pos, n_neg = len(targets), len(negatives)
    out["auc"] = sum(p) / (n_pos * n_neg)
    for beta in betas:
        n_beta = math.floor(Fraction(str(beta)) * n_neg)  # exact floor(beta * N-)
        out[opauc_name(beta)] = sum(p[:n_beta]) / (n_pos * n_neg)
    return out


# ----------------------------------------------------------------------------- strategies
ROLE = st.sampled_from(["train", "valid", "test", "none", "none"])


@st.composite
def scored_splits(draw):
    """A split of 1-4 users over 2-10 items, and a score table with many ties."""
    n_items = draw(st.integers(2, 10))
    n_users = draw(st.integers(1, 4))
    roles = [draw(st.lists(ROLE, min_size=n_items, max_size=n_items)) for _ in range(n_users)]
    for row in roles:  # every user keeps one candidate negative in either part
        if "none" not in row:
            row[-1] = "none"
    values = st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0])
    scores = np.array(
        [draw(st.lists(values, min_size=n_items, max_size=n_items)) for _ in range(n_users)]
    )
    parts = {
        part: make_interactions(
            [[i for i, r in enumerate(row) if r == part] for row in roles], n_items
        )
        for part in ("train", "valid", "test")
    }
    return Split(**parts), scores, roles


def check_against_reference(split: Split, scores: np.ndarray, roles, part: str, batch_size: int):
    config = EvalConfig(ks=KS, betas=BETAS, auc=True, batch_size=batch_size)
    result = evaluate(FixedScores(scores), split, part, config)
    # without AUC only targets that can rank within max K (and each user's best) are
    # counted: top-K metrics and MRR must not change
    fast = evaluate(
        FixedScores(scores), split, part, EvalConfig(ks=KS, auc=False, batch_size=batch_size)
    )
    for name, values in fast.per_user.items():
        assert np.array_equal(values, result.per_user[name]), name
    expected_users = [u for u, row in enumerate(roles) if part in row]
    assert result.users.tolist() == expected_users
    masked_parts = {"train"} if part == "valid" else {"train", "valid"}
    for row, user in enumerate(result.users):
        targets = {i for i, r in enumerate(roles[user]) if r == part}
        masked = {i for i, r in enumerate(roles[user]) if r in masked_parts}
        expected = reference_metrics(scores[user], targets, masked, KS, BETAS)
        for name, value in expected.items():
            got = result.per_user[name][row]
            assert got == pytest.approx(value, abs=1e-12), (name, user, part)


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(case=scored_splits(), batch_size=st.sampled_from([1, 2, 512]))
def test_evaluator_matches_brute_force_reference(case, batch_size):
    split, scores, roles = case
    for part in ("valid", "test"):
        check_against_reference(split, scores, roles, part, batch_size)


def test_theory_worked_example_through_evaluator():
    """docs/theory.md#theorem-3: labels by rank [1,0,1,0,0,1,0,0], K = 2, beta = 0.4; plus a train
    item and a validation item scored above everything, which testing must mask."""
    scores = np.array([[8, 7, 6, 5, 4, 3, 2, 1, 100, 50]], dtype=np.float32)
    split = Split(
        train=make_interactions([[8]], 10),
        valid=make_interactions([[9]], 10),
        test=make_interactions([[0, 2, 5]], 10),
    )
    result = evaluate(FixedScores(scores), split, "test", EvalConfig(ks=[2], betas=[0.4]))
    got = {k: float(v[0]) for k, v in result.per_user.items()}
    assert got["recall@2"] == pytest.approx(1 / 3)
    assert got["precision@2"] == pytest.approx(1 / 2)
    assert got["ndcg@2"] == pytest.approx(0.6131472, abs=1e-7)
    assert got["hit@2"] == 1.0
    assert got["mrr"] == 1.0
    assert got["auc"] == pytest.approx(11 / 15)
    assert got["opauc@0.4"] == pytest.approx(0.2)


def test_evaluate_with_an_empty_split_part():
    """Regression: ``padded_rows`` indexed an empty CSR when a masked part (here train and
    valid) held no interactions at all, raising IndexError instead of masking nothing."""
    empty = make_interactions([[], []], 4)
    split = Split(train=empty, valid=empty, test=make_interactions([[1], [0, 3]], 4))
    scores = np.array([[0.0, 1.0, 2.0, 1.0], [3.0, 1.0, 2.0, 3.0]])
    result = evaluate(FixedScores(scores), split, "test", EvalConfig(ks=[1], betas=[0.5]))
    assert result.per_user["mrr"].tolist() == [1 / 2, 1.0]
    assert result.per_user["auc"].tolist() == [1.5 / 3, 1.0]  # above 1, tied 1, below 1


def test_a_user_without_negatives_leaves_the_summary_auc_defined():
    """Regression: a user who had seen or held out every item has no negatives; its AUC was
    0/0 = NaN and the plain mean turned the dataset's AUC and every OPAUC into NaN (so
    early stopping on AUC never improved). Undefined for that user, averaged over others."""
    split = Split(  # user 1 holds every item: train {0, 1}, valid {2}, test {3}
        train=make_interactions([[0], [0, 1]], 4),
        valid=make_interactions([[1], [2]], 4),
        test=make_interactions([[2], [3]], 4),
    )
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    result = evaluate(FixedScores(scores), split, "test", EvalConfig(ks=[1], betas=[0.5]))
    assert result.per_user["auc"][0] == 1.0  # item 2 above the one negative, item 3
    assert np.isnan(result.per_user["auc"][1]) and np.isnan(result.per_user["opauc@0.5"][1])
    assert result.summary["auc"] == 1.0
    assert result.summary["mrr"] == pytest.approx((1.0 + 1.0) / 2)  # top-K keeps both users
    parts = (split.train, split.valid, split.test)
    only_user_1 = Split(*(make_interactions([[], part.items_of(1).tolist()], 4) for part in parts))
    alone = evaluate(FixedScores(scores), only_user_1, "test", EvalConfig(ks=[1]))
    assert math.isnan(alone.summary["auc"]) and alone.summary["mrr"] == 1.0


def test_positions_of_tied_positives_are_consecutive():
    ranks = torch.tensor([[1.0, 1.0, 1.0], [3.0, 3.0, 5.0], [2.0, 6.0, 2.0], [4.0, 1.0, 0.0]])
    valid = torch.tensor([[True] * 3, [True] * 3, [True] * 3, [True, True, False]])
    positions = positions_from_ranks(ranks, valid)
    assert positions.tolist() == [
        [1.0, 2.0, 3.0],
        [3.0, 4.0, 5.0],
        [2.0, 3.0, 6.0],
        [1.0, 4.0, math.inf],
    ]


# ----------------------------------------------------------------------------- CPU vs torch
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 5),
    n=st.integers(1, 40),
    p=st.integers(1, 6),
    block=st.sampled_from([1, 7, 1 << 26]),
)
def test_numba_and_torch_counts_agree(seed, b, n, p, block):
    rng = np.random.default_rng(seed)
    levels = np.array([-np.inf, -1.0, 0.0, 0.5, 1.0], dtype=np.float32)
    scores = torch.from_numpy(levels[rng.integers(1, 5, size=(b, n))])
    scores[torch.from_numpy(rng.random((b, n)) < 0.2)] = -math.inf  # masked items
    valid = torch.from_numpy(np.arange(p)[None, :] < rng.integers(0, p + 1, size=(b, 1)))
    pos_scores = torch.from_numpy(levels[rng.integers(1, 5, size=(b, p))])
    pos_scores = pos_scores.masked_fill(~valid, -math.inf)

    above, equal, pos_above, pos_equal = ev._target_counts(scores, pos_scores, valid)  # numba
    old_block = ev.COMPARE_BLOCK
    ev.COMPARE_BLOCK = block  # small blocks exercise the blocked loop of the torch path
    try:
        t_above, t_equal = ev._count_torch(scores, pos_scores)
    finally:
        ev.COMPARE_BLOCK = old_block
    # targets among themselves, through the same torch helper (padding is -inf)
    t_pos_above, t_pos_equal = ev._count_torch(pos_scores, pos_scores)

    s, ps = scores.double().numpy(), pos_scores.double().numpy()
    brute_above = (s[:, None, :] > ps[:, :, None]).sum(2)
    brute_equal = (s[:, None, :] == ps[:, :, None]).sum(2)
    m = valid.numpy()
    assert np.array_equal(above.numpy()[m], brute_above[m])
    assert np.array_equal(equal.numpy()[m], brute_equal[m])
    assert np.array_equal(t_above.numpy()[m], above.numpy()[m])
    assert np.array_equal(t_equal.numpy()[m], equal.numpy()[m])
    assert np.array_equal(t_pos_above.numpy()[m], pos_above.numpy()[m])
    assert np.array_equal(t_pos_equal.numpy()[m], pos_equal.numpy()[m])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_items=st.sampled_from([127, 128, 129, 700]))
def test_capped_topk_ranks_equal_exact_ranks_on_catalogues_wider_than_a_block(seed, n_items):
    """The top-K path stops counting a target once max K items beat it, one 128-item
    block at a time (negrec._fast.kernels.count_above_capped); the small catalogues above never
    reach a second block. Top-K metrics and MRR must equal the exact (AUC) path, ties
    included (scores are small integers)."""
    rng = np.random.default_rng(seed)
    n_users = 40
    roles = rng.choice(
        ["train", "valid", "test", "none"], p=[0.2, 0.05, 0.05, 0.7], size=(n_users, n_items)
    )
    split = Split(
        **{
            part: make_interactions(
                [np.flatnonzero(row == part).tolist() for row in roles], n_items
            )
            for part in ("train", "valid", "test")
        }
    )
    scores = rng.integers(0, 40, size=(n_users, n_items)).astype(np.float32)
    exact = evaluate(FixedScores(scores), split, "test", EvalConfig(ks=[1, 5, 20], auc=True))
    fast = evaluate(FixedScores(scores), split, "test", EvalConfig(ks=[1, 5, 20], auc=False))
    for name, values in fast.per_user.items():
        np.testing.assert_array_equal(values, exact.per_user[name], err_msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluator_cuda_path_matches_cpu():
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 50
    roles = rng.choice(["train", "valid", "test", "none"], size=(n_users, n_items))
    roles[:, -1] = "none"
    split = Split(
        **{
            part: make_interactions(
                [np.flatnonzero(row == part).tolist() for row in roles], n_items
            )
            for part in ("train", "valid", "test")
        }
    )
    scores = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float32)
    config = EvalConfig(ks=KS, betas=BETAS, batch_size=7)
    cpu = evaluate(FixedScores(scores), split, "test", config)
    gpu = evaluate(FixedScores(scores).to("cuda"), split, "test", config)
    for name in cpu.per_user:  # same ranks; float64 sums may differ in the last bit
        np.testing.assert_allclose(cpu.per_user[name], gpu.per_user[name], rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- no side effects
class PopularityView(nn.Module):
    """``score_all`` returns an expanded view of one shared parameter (no copy)."""

    def __init__(self, n_items: int):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(n_items, dtype=torch.float32))

    def score_all(self, ctx: torch.Tensor) -> torch.Tensor:
        return self.weight.expand(ctx.numel(), -1)


class RowView(nn.Module):
    """``score_all`` returns a writable view (a narrowed row) of its parameter."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def score_all(self, ctx: torch.Tensor) -> torch.Tensor:
        assert ctx.numel() == 1
        return self.table.narrow(0, int(ctx[0]), 1)


@pytest.mark.parametrize("kind", ["expand", "narrow"])
def test_evaluation_does_not_modify_model_whose_scores_are_a_view(tiny_split, kind):
    n_users, n_items = tiny_split.n_users, tiny_split.n_items
    if kind == "expand":
        model: nn.Module = PopularityView(n_items)
    else:
        model = RowView(torch.arange(n_users * n_items, dtype=torch.float32).view(n_users, -1))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    config = EvalConfig(ks=[2], betas=[0.5], batch_size=1)
    first = evaluate(model, tiny_split, "test", config)
    second = evaluate(model, tiny_split, "test", config)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), "evaluation wrote into the model's parameters"
    for name in first.per_user:
        np.testing.assert_array_equal(first.per_user[name], second.per_user[name])


def test_evaluation_restores_training_mode(tiny_split):
    model = FixedScores(np.zeros((tiny_split.n_users, tiny_split.n_items)))
    model.train()
    evaluate(model, tiny_split, "valid", EvalConfig(ks=[1]))
    assert model.training
    model.eval()
    evaluate(model, tiny_split, "valid", EvalConfig(ks=[1]))
    assert not model.training


def test_torch_and_numba_target_counts_agree_on_cpu():
    """The accelerator path (_target_counts_torch) runs on CPU too and must give the same
    four counts as the numba kernel, ties and padding included."""
    import importlib

    ev = importlib.import_module("negrec.evaluation")
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (6, 12), generator=gen).float()
    pos_items = torch.randint(0, 12, (6, 5), generator=gen)
    valid = torch.rand(6, 5, generator=gen) < 0.7
    valid[:, 0] = True
    pos_scores = scores.gather(1, pos_items).masked_fill(~valid, float("-inf"))
    numba_counts = ev._target_counts_numba(scores, pos_scores, valid)
    torch_counts = ev._target_counts_torch(scores, pos_scores, valid)
    for a, b in zip(numba_counts, torch_counts, strict=True):
        assert torch.equal(a[valid], b[valid])


@pytest.mark.parametrize("layout", ["contiguous (compiled merge walk)", "strided (torch scatter)"])
def test_masking_keeps_a_target_that_also_sits_in_a_masked_part(layout):
    """Given train/test files may overlap: a test item that is also a training item must
    stay a candidate and not count among the masked items (so AUC's negatives are right).
    Both masking paths: the CPU kernel (contiguous scores) and the torch scatter."""
    from negrec.evaluation import mask_seen_

    train = make_interactions([[1, 2, 3], [0], []], 6)
    valid = make_interactions([[4], [], [5]], 6)
    test = make_interactions([[2, 5], [0], [1]], 6)
    users = torch.tensor([0, 1, 2])
    pos_items = torch.tensor([[2, 5], [0, 0], [1, 0]])
    valid_targets = torch.tensor([[True, True], [True, False], [True, False]])
    strided = torch.zeros(6, 3).T  # a [3, 6] view with strides (1, 3)
    scores = torch.zeros(3, 6) if layout.startswith("contiguous") else strided
    n_masked = mask_seen_(scores, [train, valid], test, users, pos_items, valid_targets)
    masked = torch.isinf(scores)
    assert masked.tolist() == [
        [False, True, False, True, True, False],  # 2 is a target: kept
        [False, False, False, False, False, False],  # 0 is a target: kept
        [False, False, False, False, False, True],
    ]
    assert n_masked.tolist() == [3, 0, 1]
