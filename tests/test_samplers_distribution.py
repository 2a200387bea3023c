"""What each sampler draws, against its definition.

- popularity: chi-square against count^alpha restricted to the user's non-positive items,
  on the rejection path and on the dense fallback path; ``log_q`` is that probability;
- uniform: chi-square against uniform over non-positives;
- in-batch: ``valid`` and ``log_q`` exactly as documented;
- DNS(M, N): keeps exactly the top M of the pool it scored (M = 1 is the original DNS), and
  with the pool equal to all of a user's negatives, the user's top M (Theorem 1's case);
- Softmax-v(rho, N): a known-answer example of Algorithm 2, weights summing to 1, uniform as
  rho -> 0 and one-hot on the hardest candidate as rho grows, the tau guard; the fixed-tau
  sampler of Eq. 3.

Chi-square tests use fixed seeds, so their p-values are fixed numbers; each one is paired
with a wrong hypothesis that the same draws must reject, so the test can fail.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from negrec.data.interactions import Interactions
from negrec.errors import ConfigError
from negrec.samplers import SAMPLERS, Sampler
from negrec.samplers.softmax_v import softmax_v_weights

N_ITEMS = 50


def popularity_data() -> Interactions:
    """60 users x 50 items. Item i is held by 50 - i users among users 1..59, and user 0
    holds items 0..9, so the counts are 51..42 then 40..1: every item is seen, and user 0's
    positives are the most popular fifth."""
    users, items = [np.arange(10) * 0], [np.arange(10)]
    for i in range(N_ITEMS):
        holders = 1 + (np.arange(N_ITEMS - i) + 7 * i) % 59  # 50 - i distinct users in 1..59
        users.append(holders)
        items.append(np.full(holders.size, i))
    u, it = np.concatenate(users), np.concatenate(items)
    return Interactions.from_arrays(u, it, n_users=60, n_items=N_ITEMS)


def build(name: str, train: Interactions, **options) -> Sampler:
    config = SAMPLERS.config(name, {"name": name, **options}, "sampler")
    return SAMPLERS.get(name, "sampler.name")(config, train)


def draw_counts(
    sampler: Sampler, user: int, n: int, seed: int = 0
) -> tuple[np.ndarray, torch.Tensor]:
    users = torch.full((n // 100,), user)
    g = torch.Generator().manual_seed(seed)
    neg = sampler.sample(users, users * 0, 100, generator=g)
    assert neg.ids is not None
    return np.bincount(neg.ids.flatten().numpy(), minlength=N_ITEMS), neg.ids


def chi2_p(observed: np.ndarray, p: np.ndarray) -> float:
    support = p > 0
    assert observed[~support].sum() == 0, "drew an item of probability 0"
    expected = p[support] * observed.sum()
    return float(stats.chisquare(observed[support], expected).pvalue)


# ------------------------------------------------------------------ popularity
@pytest.mark.parametrize("alpha", [1.0, 0.5])
@pytest.mark.parametrize("dense", [False, True])
def test_popularity_matches_count_to_the_alpha(alpha: float, dense: bool) -> None:
    train = popularity_data()
    sampler = build("popularity", train, alpha=alpha)
    if dense:  # every rejected entry goes through the dense exact fallback
        sampler.max_rounds = 0  # type: ignore[misc]
    counts = train.item_degrees.astype(float)
    np.testing.assert_array_equal(counts, 50 - np.arange(N_ITEMS) + (np.arange(N_ITEMS) < 10))
    for user in (0, 5):
        observed, _ = draw_counts(sampler, user, 20_000, seed=user)
        p = counts**alpha
        p[train.items_of(user)] = 0.0
        p /= p.sum()
        np.testing.assert_allclose(sampler.probabilities(user), p, rtol=1e-12)
        assert chi2_p(observed, p) > 1e-3
        wrong = counts ** (alpha + 0.25)  # a nearby wrong exponent must be rejected
        wrong[train.items_of(user)] = 0.0
        assert chi2_p(observed, wrong / wrong.sum()) < 1e-6


def test_popularity_log_q_is_the_restricted_probability() -> None:
    train = popularity_data()
    sampler = build("popularity", train, alpha=0.75)
    users = torch.tensor([0, 3, 7, 0])
    neg = sampler.sample(users, users * 0, 30, generator=torch.Generator().manual_seed(0))
    assert neg.ids is not None and neg.log_q is not None
    for row, user in enumerate(users.tolist()):
        p = sampler.probabilities(user)
        np.testing.assert_allclose(
            neg.log_q[row].numpy(), np.log(p[neg.ids[row].numpy()]), rtol=1e-5
        )


def test_popularity_without_exclusion_is_the_plain_proposal() -> None:
    train = popularity_data()
    sampler = build("popularity", train, exclude_positives=False)
    observed, _ = draw_counts(sampler, 0, 20_000)
    p = train.item_degrees / train.item_degrees.sum()
    assert observed[:10].sum() > 0  # user 0's positives are allowed now
    assert chi2_p(observed, p) > 1e-3


def test_popularity_refuses_a_user_without_popular_negatives() -> None:
    # item 3 is never seen in training; user 0 holds every other item
    train = Interactions.from_arrays(
        np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0]), n_users=2, n_items=4
    )
    with pytest.raises(ConfigError) as err:
        build("popularity", train)
    assert err.value.key == "sampler.smoothing"
    sampler = build("popularity", train, smoothing=1.0)
    neg = sampler.sample(
        torch.tensor([0, 0]), torch.tensor([0, 1]), 5, generator=torch.Generator().manual_seed(0)
    )
    assert neg.ids is not None and bool((neg.ids == 3).all())


# ------------------------------------------------------------------ uniform
def test_uniform_is_uniform_over_non_positives() -> None:
    train = popularity_data()
    observed, _ = draw_counts(build("uniform", train), 0, 20_000)
    p = np.ones(N_ITEMS)
    p[:10] = 0.0
    assert chi2_p(observed, p / p.sum()) > 1e-3
    p_pop = train.item_degrees.astype(float)
    p_pop[:10] = 0.0
    assert chi2_p(observed, p_pop / p_pop.sum()) < 1e-6


# ------------------------------------------------------------------ in-batch
def test_inbatch_masks_positives_and_gives_batch_frequency() -> None:
    train = popularity_data()
    sampler = build("inbatch", train)
    users = torch.tensor([0, 0, 3, 9, 40])
    pos = torch.tensor([2, 7, 12, 13, 2])
    assert bool(train.contains(users, pos).all())
    neg = sampler.sample(users, pos, 1, generator=torch.Generator().manual_seed(0))
    assert neg.ids is not None and neg.valid is not None and neg.log_q is not None
    assert torch.equal(neg.ids, pos.expand(5, 5))
    for b in range(5):
        for j in range(5):
            own = int(pos[j]) in set(train.items_of(int(users[b])).tolist())
            assert bool(neg.valid[b, j]) == (not own)
    assert not bool(neg.valid.diagonal().any())
    assert not bool(neg.valid[0, 1]) and not bool(neg.valid[1, 0])  # user 0's two positives
    expected = np.log(train.item_degrees[pos.numpy()] / train.nnz)
    np.testing.assert_allclose(neg.log_q[3].numpy(), expected, rtol=1e-6)
    loose = build("inbatch", train, exclude_positives=False)
    neg = loose.sample(users, pos, 1, generator=torch.Generator().manual_seed(0))
    assert neg.valid is not None
    # only the row's own positive item is masked (item 2 is the positive of rows 0 and 4)
    assert torch.equal(neg.valid, pos.unsqueeze(0) != pos.unsqueeze(1))
    assert not bool(neg.valid[0, 4]) and bool(neg.valid[0, 1])


# ------------------------------------------------------------------ DNS
class RecordingScorer:
    """A fixed random score per (user, item); remembers the ids it was asked about."""

    def __init__(self, users: torch.Tensor, n_users: int, seed: int = 0):
        self.table = torch.randn(n_users, N_ITEMS, generator=torch.Generator().manual_seed(seed))
        self.users = users
        self.calls: list[torch.Tensor] = []

    def __call__(self, items: torch.Tensor) -> torch.Tensor:
        self.calls.append(items.clone())
        return self.table[self.users.unsqueeze(1), items]


@pytest.mark.parametrize(("m", "n"), [(1, 8), (3, 8), (5, 20), (20, 20)])
def test_dns_keeps_exactly_the_top_m_of_its_pool(m: int, n: int) -> None:
    train = popularity_data()
    sampler = build("dns", train, k=m, pool=n)
    users = torch.arange(60).repeat(4)
    scorer = RecordingScorer(users, 60)
    neg = sampler.sample(
        users, users * 0, m, model=scorer, generator=torch.Generator().manual_seed(0)
    )
    assert neg.ids is not None and neg.weights is not None
    (pool,) = scorer.calls
    assert pool.shape == (users.numel(), n)
    pool_scores = scorer.table[users.unsqueeze(1), pool]  # [B, N]
    kept_scores = scorer.table[users.unsqueeze(1), neg.ids]  # [B, M]
    top = pool_scores.sort(dim=1, descending=True).values[:, :m]
    assert torch.equal(kept_scores.sort(dim=1, descending=True).values, top)
    # every kept id is in its row's pool
    assert bool((neg.ids.unsqueeze(2) == pool.unsqueeze(1)).any(dim=2).all())
    assert torch.equal(neg.weights, torch.full((users.numel(), m), 1.0 / m))


def test_dns_with_the_whole_complement_as_pool_keeps_the_users_top_m() -> None:
    # every user holds 10 items, so pool = 40 without replacement is all their negatives
    rng = np.random.default_rng(0)
    rows = [rng.choice(N_ITEMS, 10, replace=False) for _ in range(30)]
    train = Interactions.from_arrays(
        np.repeat(np.arange(30), 10), np.concatenate(rows), n_users=30, n_items=N_ITEMS
    )
    sampler = build("dns", train, k=3, pool=40, replacement=False)
    users = torch.arange(30)
    scorer = RecordingScorer(users, 30, seed=1)
    neg = sampler.sample(
        users, users * 0, 3, model=scorer, generator=torch.Generator().manual_seed(0)
    )
    assert neg.ids is not None
    masked = scorer.table.masked_fill(train.dense_mask(users), -math.inf)
    top3 = masked.topk(3, dim=1).indices
    assert torch.equal(neg.ids.sort(dim=1).values, top3.sort(dim=1).values)


# ------------------------------------------------------------------ Softmax-v
def test_softmax_v_known_answer() -> None:
    # losses 0, 1, 2: unbiased Var = 1; rho = 0.5 -> tau = sqrt(1 / 1) = 1
    w = softmax_v_weights(torch.tensor([[0.0, 1.0, 2.0]]), 0.5)
    e = np.exp([0.0, 1.0, 2.0])
    np.testing.assert_allclose(w[0].numpy(), e / e.sum(), rtol=1e-6)
    # rho = 2 -> tau = 1/2: softmax(2 l)
    w = softmax_v_weights(torch.tensor([[0.0, 1.0, 2.0]]), 2.0)
    e = np.exp([0.0, 2.0, 4.0])
    np.testing.assert_allclose(w[0].numpy(), e / e.sum(), rtol=1e-6)


def test_softmax_v_guards_tau() -> None:
    constant = softmax_v_weights(torch.full((2, 5), 0.7), 3.0)
    assert torch.equal(constant, torch.full((2, 5), 0.2))
    single = softmax_v_weights(torch.tensor([[1.3], [0.2]]), 3.0)
    assert torch.equal(single, torch.ones(2, 1))
    big = softmax_v_weights(torch.tensor([[1e30, -1e30, 0.0]]), 1e6)
    assert bool(torch.isfinite(big).all()) and float(big[0, 0]) > 0.999


def _softmax_v_draw(rho: float, n: int = 16):
    train = popularity_data()
    sampler = build("softmax_v", train, rho=rho, pool=n)
    users = torch.arange(60)
    pos = torch.tensor([int(train.items_of(u)[0]) for u in range(60)])
    scorer = RecordingScorer(users, 60, seed=2)
    neg = sampler.sample(users, pos, n, model=scorer, generator=torch.Generator().manual_seed(0))
    return scorer, pos, neg


def test_softmax_v_scores_positive_and_pool_in_one_call() -> None:
    scorer, pos, neg = _softmax_v_draw(1.0)
    (items,) = scorer.calls
    assert neg.ids is not None and neg.weights is not None
    assert torch.equal(items[:, 0], pos) and torch.equal(items[:, 1:], neg.ids)
    s = scorer.table[scorer.users.unsqueeze(1), items]
    loss = torch.nn.functional.softplus(s[:, 1:] - s[:, :1]).double()
    tau = (loss.var(dim=1, keepdim=True) / 2.0).sqrt()  # rho = 1
    expected = torch.softmax(loss / tau, dim=1)
    np.testing.assert_allclose(neg.weights.numpy(), expected.numpy(), rtol=1e-4, atol=1e-7)


def test_softmax_v_weights_sum_to_one_and_move_from_uniform_to_hardest() -> None:
    n = 16
    top_weight = []
    for rho in (1e-8, 0.01, 0.1, 1.0, 10.0, 100.0, 1e6):
        scorer, _, neg = _softmax_v_draw(rho, n)
        w = neg.weights
        assert w is not None and neg.ids is not None
        np.testing.assert_allclose(w.sum(dim=1).numpy(), 1.0, rtol=1e-6)
        s = scorer.table[scorer.users.unsqueeze(1), neg.ids]  # [B, N]
        # the pool is drawn with replacement: the hardest item may fill several slots
        on_hardest = (w * (s == s.max(dim=1, keepdim=True).values)).sum(dim=1)  # [B]
        top_weight.append(float(on_hardest.mean()))
        if rho == 1e-8:
            np.testing.assert_allclose(w.numpy(), 1.0 / n, rtol=1e-3)
        if rho == 1e6:
            assert float(on_hardest.min()) > 0.99
    assert all(a < b for a, b in itertools.pairwise(top_weight)), top_weight


def test_softmax_tau_fixed_temperature() -> None:
    train = popularity_data()
    users = torch.arange(60)
    for tau, check in ((1e4, "uniform"), (1e-4, "hardest"), (0.5, "exact")):
        sampler = build("softmax_tau", train, tau=tau, pool=12)
        scorer = RecordingScorer(users, 60, seed=3)
        neg = sampler.sample(
            users, users * 0, 12, model=scorer, generator=torch.Generator().manual_seed(0)
        )
        assert neg.weights is not None and neg.ids is not None
        s = scorer.table[users.unsqueeze(1), neg.ids]
        if check == "uniform":
            np.testing.assert_allclose(neg.weights.numpy(), 1 / 12, rtol=1e-3)
        elif check == "hardest":
            assert bool((neg.weights.argmax(dim=1) == s.argmax(dim=1)).all())
        else:
            np.testing.assert_allclose(
                neg.weights.numpy(), torch.softmax(s / 0.5, dim=1).numpy(), rtol=1e-5
            )
