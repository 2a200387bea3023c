"""LightGCN (He et al. 2020): the normalised graph against a hand-built adjacency, the
propagation rule and layer-mean readout, the graph coming from the training split only,
and the caching contract: one propagation per training step, one per evaluation, and a
fresh one whenever the parameters change.

Two published bugs motivate the graph tests: an adjacency built from a transposed index
array (which silently trains plain MF) and user ids shifted by one. Both change the
hand-built matrix below, on a non-square, irregular graph where no symmetry hides them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from negrec.data.interactions import Interactions
from negrec.data.splits import Split, leave_one_out_split
from negrec.data.synthetic import synthetic_interactions
from negrec.evaluation import EvalConfig, evaluate
from negrec.losses import Loss, LossConfig
from negrec.models.lightgcn import LightGCN, LightGCNConfig, normalized_adjacency
from negrec.samplers import SAMPLERS
from negrec.train import TrainConfig, ValidationEval, fit

#: 4 users x 5 items; user 3 and item 4 are isolated
ROWS = [[0, 1], [1, 2, 3], [3], []]
N_ITEMS = 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def graph() -> Interactions:
    users = np.repeat(np.arange(len(ROWS)), [len(r) for r in ROWS])
    items = np.concatenate([np.asarray(r, dtype=np.int64) for r in ROWS])
    return Interactions.from_arrays(users, items, n_users=len(ROWS), n_items=N_ITEMS)


def hand_built() -> np.ndarray:
    """D^-1/2 A D^-1/2 written out entry by entry (users 0-3, then items as nodes 4-8).

    Degrees: users 2, 3, 1, 0; items 1, 2, 1, 2, 0.
    """
    a = np.zeros((9, 9))
    u, i = 0, 4  # node offsets
    entries = {
        (u + 0, i + 0): 1 / math.sqrt(2 * 1),
        (u + 0, i + 1): 1 / math.sqrt(2 * 2),
        (u + 1, i + 1): 1 / math.sqrt(3 * 2),
        (u + 1, i + 2): 1 / math.sqrt(3 * 1),
        (u + 1, i + 3): 1 / math.sqrt(3 * 2),
        (u + 2, i + 3): 1 / math.sqrt(1 * 2),
    }
    for (r, c), value in entries.items():
        a[r, c] = a[c, r] = value
    return a


def make(train: Interactions, layers: int = 2, dim: int = 4, seed: int = 0) -> LightGCN:
    config = LightGCNConfig(name="lightgcn", dim=dim, layers=layers)
    return LightGCN(config, train, torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ the graph
def test_adjacency_matches_the_hand_built_matrix() -> None:
    adjacency = normalized_adjacency(graph())
    assert adjacency.layout == torch.sparse_csr
    assert adjacency.shape == (9, 9)
    np.testing.assert_allclose(adjacency.to_dense().numpy(), hand_built(), rtol=1e-6)


def test_the_hand_built_check_catches_the_published_bugs() -> None:
    """The check above fails for an adjacency built from transposed indices or with user
    ids shifted by one (the matrix each bug produces on this graph)."""
    good = hand_built()
    users, items = graph().to_coo()
    for bad_users, bad_items in [(items, users), ((users + 1) % 4, items)]:  # bug 1, bug 2
        rows = np.concatenate([bad_users, bad_items + 4])
        cols = np.concatenate([bad_items + 4, bad_users])
        degree = np.bincount(rows, minlength=9)
        inv = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1)), 0)
        bad = np.zeros((9, 9))
        bad[rows, cols] = inv[rows] * inv[cols]
        assert not np.allclose(bad, good)


def test_isolated_nodes_get_zero_rows_not_nan() -> None:
    dense = normalized_adjacency(graph()).to_dense()
    assert bool(torch.isfinite(dense).all())
    assert dense[3].abs().sum() == 0 and dense[4 + 4].abs().sum() == 0


def test_one_layer_is_the_normalised_neighbour_sum() -> None:
    """E^(1)_u = sum_{i in N(u)} e_i / sqrt(|N(u)| |N(i)|), written per user and item."""
    model = make(graph(), layers=1)
    users, items = model.user.weight.detach(), model.item.weight.detach()
    with torch.no_grad():
        final_users, final_items = model.eval().final_embeddings()
    user_deg = [len(r) for r in ROWS]
    item_deg = [sum(i in r for r in ROWS) for i in range(N_ITEMS)]
    for u, row in enumerate(ROWS):
        layer1 = sum((items[i] / math.sqrt(user_deg[u] * item_deg[i]) for i in row), torch.zeros(4))
        torch.testing.assert_close(final_users[u], (users[u] + layer1) / 2)
    for i in range(N_ITEMS):
        layer1 = sum(
            (users[u] / math.sqrt(user_deg[u] * item_deg[i]) for u in range(4) if i in ROWS[u]),
            torch.zeros(4),
        )
        torch.testing.assert_close(final_items[i], (items[i] + layer1) / 2)


def test_layer_mean_readout() -> None:
    model = make(graph(), layers=3).eval()
    a = torch.tensor(hand_built(), dtype=torch.float32)
    e0 = torch.cat([model.user.weight, model.item.weight]).detach()
    layers = [e0, a @ e0, a @ a @ e0, a @ a @ a @ e0]
    expected = torch.stack(layers).mean(dim=0)
    with torch.no_grad():
        users, items = model.final_embeddings()
    torch.testing.assert_close(torch.cat([users, items]), expected)


def test_zero_layers_is_matrix_factorisation() -> None:
    model = make(graph(), layers=0).eval()
    ctx, items = torch.tensor([0, 1, 2]), torch.tensor([[0, 1], [2, 3], [4, 0]])
    with torch.no_grad():
        expected = (model.user(ctx).unsqueeze(1) * model.item(items)).sum(-1)
        torch.testing.assert_close(model.score(ctx, items), expected)


def test_graph_comes_from_the_training_split_only() -> None:
    data = synthetic_interactions(n_users=20, n_items=30, mean_degree=6, seed=1)
    split = leave_one_out_split(data)
    model = make(split.train)
    adjacency = model.adjacency.to_dense()
    n_users = split.n_users
    assert int((adjacency != 0).sum()) == 2 * split.train.nnz
    for part in (split.valid, split.test):
        users, items = part.to_coo()
        assert bool((adjacency[users, items + n_users] == 0).all())
    users, items = split.train.to_coo()
    assert bool((adjacency[users, items + n_users] > 0).all())


def test_the_graph_is_not_saved_with_the_weights() -> None:
    assert set(make(graph()).state_dict()) == {"user.weight", "item.weight"}


# ------------------------------------------------------------------ caching
@pytest.fixture(scope="module")
def split() -> Split:
    data = synthetic_interactions(n_users=40, n_items=50, mean_degree=8, seed=2)
    return leave_one_out_split(data)


def test_one_propagation_per_training_step_and_per_evaluation(split: Split) -> None:
    """With a hard-negative sampler the step scores twice (candidates without gradient,
    then positives and negatives): still one propagation. Evaluation in several user
    batches: one propagation per evaluation."""
    model = make(split.train)
    sampler_cls = SAMPLERS.get("dns", "sampler.name")
    options = {"name": "dns", "k": 2, "pool": 5}
    sampler = sampler_cls(SAMPLERS.config("dns", options, "sampler"), split.train)
    config = TrainConfig(epochs=2, batch_size=16, l2=1e-4, metric="ndcg@10")
    steps = len(model.make_batches(split.train, 16, torch.device("cpu")))
    evaluation = ValidationEval(EvalConfig(ks=[10], auc=False, batch_size=7))
    fit(model, sampler, Loss(LossConfig(name="bpr")), split, config, callbacks=[evaluation])
    assert steps > 1 and split.n_users > 7
    assert model.propagations == 2 * steps + 2  # per step, plus one per evaluation

    before = model.propagations
    evaluate(model, split, "test", EvalConfig(ks=[10], batch_size=5))
    assert model.propagations == before + 1


def test_evaluation_cache_follows_parameter_changes(split: Split) -> None:
    model = make(split.train).eval()
    users = torch.arange(10)
    with torch.no_grad():
        first = model.score_all(users)
        assert torch.equal(model.score_all(users), first) and model.propagations == 1
        model.user.weight.mul_(2.0)  # any in-place update: optimizer step, load_state_dict
        second = model.score_all(users)
    assert model.propagations == 2
    assert not torch.equal(first, second)
    fresh = make(split.train).eval()
    with torch.no_grad():
        fresh.user.weight.mul_(2.0)
        torch.testing.assert_close(fresh.score_all(users), second)


def test_cached_graph_is_released_after_backward(split: Split) -> None:
    """Two backward passes without an optimizer step (gradient accumulation) work: the
    cached graph is dropped once it has been back-propagated."""
    model = make(split.train).train()
    users, items = torch.tensor([0, 1, 2]), torch.tensor([[0, 1], [2, 3], [4, 5]])
    model.score(users, items).sum().backward()
    model.score(users, items).sum().backward()
    assert model.propagations == 2
    assert model.user.weight.grad is not None


def test_train_mode_no_grad_scoring_shares_the_steps_graph(split: Split) -> None:
    model = make(split.train).train()
    users, items = torch.tensor([0, 1]), torch.tensor([[0, 1], [2, 3]])
    with torch.no_grad():
        candidates = model.score(users, items)
    assert not candidates.requires_grad
    scores = model.score(users, items)
    assert scores.requires_grad and model.propagations == 1
    torch.testing.assert_close(scores.detach(), candidates)


# ------------------------------------------------------------------ row-subset last layer
def _scores_and_grads(split: Split, layers: int, share: float, monkeypatch) -> tuple:
    monkeypatch.setattr("negrec.models.lightgcn.ROW_SUBSET_MAX_SHARE", share)
    model = make(split.train, layers=layers, seed=3).train()
    users = torch.tensor([0, 5, 5, 17, 39])  # a repeated user
    items = torch.tensor([[0, 1, 1], [2, 49, 3], [2, 7, 8], [10, 11, 0], [48, 47, 46]])
    scores = model.score(users, items)  # [5, 3]
    weights = torch.linspace(-1.0, 2.0, scores.numel()).reshape(scores.shape)
    (scores * weights).sum().backward()
    assert model.propagations == 1
    assert model.user.weight.grad is not None and model.item.weight.grad is not None
    return scores.detach(), model.user.weight.grad, model.item.weight.grad


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_row_subset_last_layer_equals_the_full_propagation(split: Split, layers, monkeypatch):
    """The step's last layer for its rows only (share 1.0: always) gives the scores and
    the gradients of the full propagation (share -1: never), repeated rows included."""
    subset = _scores_and_grads(split, layers, 1.0, monkeypatch)
    full = _scores_and_grads(split, layers, -1.0, monkeypatch)
    for got, want in zip(subset, full, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_row_subset_is_skipped_above_its_share_of_the_graph(split: Split, monkeypatch):
    monkeypatch.setattr("negrec.models.lightgcn.ROW_SUBSET_MAX_SHARE", 0.0)
    model = make(split.train).train()
    assert model._rows_final(torch.tensor([0, 40])) is None  # any row has a non-zero
    monkeypatch.setattr("negrec.models.lightgcn.ROW_SUBSET_MAX_SHARE", 1.0)
    final, position = model._rows_final(torch.tensor([40, 0, 40]))
    assert final.shape == (2, model.config.dim) and position[0] == 0 and position[40] == 1
    model.eval()
    assert model._rows_final(torch.tensor([0])) is None  # evaluation: the full cache


def test_training_with_the_row_subset_matches_full_training(split: Split, monkeypatch):
    """Two epochs of BPR with uniform negatives, row-subset steps against full ones: the
    same weights (the per-step cache is released after each backward pass)."""
    trained = []
    for share in (1.0, -1.0):
        monkeypatch.setattr("negrec.models.lightgcn.ROW_SUBSET_MAX_SHARE", share)
        model = make(split.train, seed=4)
        sampler_cls = SAMPLERS.get("uniform", "sampler.name")
        sampler = sampler_cls(SAMPLERS.config("uniform", {"k": 3}, "sampler"), split.train)
        config = TrainConfig(epochs=2, batch_size=16, l2=1e-4, metric="ndcg@10")
        fit(model, sampler, Loss(LossConfig(name="bpr")), split, config)
        trained.append(torch.cat([model.user.weight, model.item.weight]).detach())
    torch.testing.assert_close(trained[0], trained[1], rtol=1e-4, atol=1e-6)
