"""Samplers: the uniform sampler never proposes a training positive (property test over
random CSR matrices), returns [B, K] int64 on the users' device, is reproducible from its
generator alone, gives distinct rows without replacement, is uniform over each user's
non-positive items (chi-square), covers every item when ``exclude_positives = false``, and
rejects impossible ``k``; the ``full`` sampler masks exactly the training positives.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_interactions
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from negrec.data.interactions import Interactions
from negrec.errors import ConfigError
from negrec.samplers import SAMPLERS
from negrec.samplers.full import FullCatalogue, FullConfig
from negrec.samplers.uniform import UniformConfig, UniformSampler


def uniform(train: Interactions, **options) -> UniformSampler:
    return UniformSampler(UniformConfig(name="uniform", **options), train)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draw(sampler, users, k: int, seed: int = 0) -> torch.Tensor:
    users = torch.as_tensor(users, dtype=torch.int64)
    pos = torch.zeros_like(users)
    negatives = sampler.sample(users, pos, k, generator=gen(seed))
    assert negatives.ids is not None
    return negatives.ids


@st.composite
def random_csr(draw_):
    """Random positives per user, every user keeping at least one non-positive item."""
    n_items = draw_(st.integers(2, 30))
    n_users = draw_(st.integers(1, 6))
    rows = []
    for _ in range(n_users):
        row = draw_(st.sets(st.integers(0, n_items - 1), max_size=n_items - 1))
        rows.append(sorted(row))
    return make_interactions(rows, n_items), rows


# ----------------------------------------------------------------------------- contract
@settings(max_examples=120, deadline=None, derandomize=True)
@given(
    case=random_csr(),
    k=st.integers(1, 12),
    replacement=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 20),
)
def test_uniform_never_returns_a_training_positive(case, k, replacement, seed, batch):
    train, rows = case
    min_available = train.n_items - max(len(r) for r in rows)
    if not replacement:
        k = min(k, min_available)
    sampler = uniform(train, k=k, replacement=replacement)
    rng = np.random.default_rng(seed)
    users = rng.integers(0, train.n_users, size=batch)
    ids = draw(sampler, users, k, seed)
    assert ids.shape == (batch, k)
    assert ids.dtype == torch.int64
    assert ids.device == torch.device("cpu")
    assert int(ids.min()) >= 0 and int(ids.max()) < train.n_items
    for u, row in zip(users.tolist(), ids.tolist(), strict=True):
        assert not set(row) & set(rows[u]), f"user {u} got a training positive"
        if not replacement:
            assert len(set(row)) == k


def test_same_generator_seed_gives_the_same_negatives_whatever_the_global_seed():
    train = make_interactions([[0, 3], [1], [2, 4, 5, 6]], 50)
    sampler = uniform(train, k=8)
    users = [0, 1, 2, 2, 1, 0]
    torch.manual_seed(1)
    first = draw(sampler, users, 8, seed=42)
    torch.manual_seed(2)
    second = draw(sampler, users, 8, seed=42)
    other = draw(sampler, users, 8, seed=43)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize(
    ("n_items", "k"),
    [(100, 5), (12, 8)],  # the redraw path (many items), the dense path (k near catalogue)
)
def test_without_replacement_rows_are_distinct(n_items, k):
    train = make_interactions([[0, 1], [2], [3, 4, 5]], n_items)
    sampler = uniform(train, k=k, replacement=False)
    ids = draw(sampler, [0, 1, 2] * 50, k)
    for row in ids.tolist():
        assert len(set(row)) == k


# ----------------------------------------------------------------------------- uniformity
POSITIVES = [1, 4, 5, 9, 17]


def chi_square_p(ids: torch.Tensor, support: list[int]) -> float:
    counts = np.bincount(ids.flatten().numpy(), minlength=max(support) + 1)
    assert counts.sum() == counts[support].sum(), "draws outside the allowed items"
    return float(chisquare(counts[support]).pvalue)


def test_uniform_over_the_non_positive_items():
    train = make_interactions([POSITIVES, [0]], 20)
    allowed = [i for i in range(20) if i not in POSITIVES]
    ids = draw(uniform(train, k=50), [0] * 2000, 50, seed=7)  # 100,000 draws
    assert chi_square_p(ids, allowed) > 0.001


@pytest.mark.parametrize(("n_items", "k"), [(20, 5), (200, 4)])  # dense path, redraw path
def test_uniform_marginals_without_replacement(n_items, k):
    train = make_interactions([POSITIVES], n_items)
    allowed = [i for i in range(n_items) if i not in POSITIVES]
    ids = draw(uniform(train, k=k, replacement=False), [0] * 20000, k, seed=3)
    assert chi_square_p(ids, allowed) > 0.001


def test_chi_square_detects_a_biased_sampler():
    """The uniformity test above can fail: a sampler that never draws one allowed item."""
    train = make_interactions([POSITIVES], 20)
    allowed = [i for i in range(20) if i not in POSITIVES]
    ids = draw(uniform(train, k=50), [0] * 2000, 50, seed=7)
    ids[ids == allowed[0]] = allowed[1]
    assert chi_square_p(ids, allowed) < 0.001


def test_exclude_positives_false_draws_every_item_uniformly():
    train = make_interactions([POSITIVES], 20)
    ids = draw(uniform(train, k=50, exclude_positives=False), [0] * 2000, 50, seed=11)
    assert set(ids.flatten().tolist()) == set(range(20))
    assert chi_square_p(ids, list(range(20))) > 0.001


# ----------------------------------------------------------------------------- config errors
def test_k_beyond_available_items_without_replacement_is_a_config_error():
    train = make_interactions([[0, 1, 2, 3], [0]], 10)  # user 0 has 6 non-positives
    uniform(train, k=6, replacement=False)  # exactly enough
    with pytest.raises(ConfigError, match=r"sampler\.k"):
        uniform(train, k=7, replacement=False)
    uniform(train, k=7, replacement=True)  # with replacement any k works
    with pytest.raises(ConfigError, match=r"sampler\.k"):
        uniform(train, k=11, replacement=False, exclude_positives=False)


def test_a_user_with_every_item_leaves_no_negatives():
    train = make_interactions([[0, 1, 2], [0]], 3)
    with pytest.raises(ConfigError, match="sampler"):
        uniform(train, k=1)


def test_sampler_configs_reject_unknown_keys_and_bad_k():
    with pytest.raises(ConfigError, match=r"sampler\.bogus"):
        SAMPLERS.config("uniform", {"name": "uniform", "bogus": 1}, "sampler")
    with pytest.raises(ConfigError, match=r"sampler\.k"):
        SAMPLERS.config("uniform", {"name": "uniform", "k": 0}, "sampler")
    with pytest.raises(ConfigError, match=r"sampler\.name"):
        SAMPLERS.config("nope", {"name": "nope"}, "sampler")


# ----------------------------------------------------------------------------- full
def test_full_sampler_masks_exactly_the_training_positives():
    rows = [[0, 3], [], [1, 2, 6], [7]]
    train = make_interactions(rows, 8)
    sampler = FullCatalogue(FullConfig(name="full"), train)
    users = torch.tensor([2, 0, 1, 3, 2])
    negatives = sampler.sample(users, torch.zeros_like(users), 1, generator=gen())
    assert negatives.ids is None
    assert negatives.valid is not None and negatives.valid.shape == (5, 8)
    for row, u in zip(negatives.valid.tolist(), users.tolist(), strict=True):
        assert [i for i in range(8) if not row[i]] == rows[u]


def test_full_sampler_without_exclusion_masks_only_the_batch_positive():
    train = make_interactions([[0, 3], [1, 2, 6]], 8)
    sampler = FullCatalogue(FullConfig(name="full", exclude_positives=False), train)
    users, pos = torch.tensor([0, 1]), torch.tensor([3, 6])
    negatives = sampler.sample(users, pos, 1, generator=gen())
    assert negatives.valid is not None
    assert negatives.valid.logical_not().nonzero().tolist() == [[0, 3], [1, 6]]


def test_k_larger_than_the_catalogue_is_a_config_error(tmp_path):
    """Even with replacement, more negatives per positive than items is a config mistake,
    reported before any run directory exists."""
    from negrec.errors import ConfigError
    from negrec.experiment.config import ExperimentConfig
    from negrec.experiment.runner import run_experiment

    config = ExperimentConfig.from_dict(
        {
            "output": str(tmp_path / "runs"),
            "data": {"synthetic": {"n_users": 10, "n_items": 20, "mean_degree": 5}},
            "sampler": {"k": 21},
        }
    )
    with pytest.raises(ConfigError, match=r"sampler\.k.*catalogue has only 20"):
        run_experiment(config, progress=False)
    assert not (tmp_path / "runs").exists()


def test_compiled_and_torch_complement_lookups_agree():
    """The CPU kernel (binary search inside each row) and the device-agnostic torch path
    (one global searchsorted) map every rank to the same item, at row ends included."""
    from negrec.data.synthetic import synthetic_interactions
    from negrec.samplers.uniform import ComplementIndex

    data = synthetic_interactions(n_users=50, n_items=70, mean_degree=20, seed=4)
    index = ComplementIndex(data, torch.device("cpu"))
    users = torch.arange(50).repeat_interleave(8)
    avail = index.available[users].unsqueeze(1)
    ranks = torch.cat(
        [torch.zeros_like(avail), avail - 1, (torch.rand(users.numel(), 6) * avail).long()], 1
    )
    fast, slow = index.items_at_cpu(users, ranks), index.items_at(users, ranks)
    assert torch.equal(fast, slow)
    assert not data.contains(users.unsqueeze(1).expand_as(fast), fast).any()


@settings(max_examples=60, deadline=None)
@given(
    degrees=st.lists(st.integers(0, 12), min_size=1, max_size=8),
    width=st.sampled_from([1, 2, 3, 7, 200]),
    seed=st.integers(0, 2**31 - 1),
)
def test_complement_kernel_matches_a_brute_force_complement(degrees, width, seed):
    """Regression for the lockstep binary search: users with no positives, one positive,
    every row length, ranks at both ends of the complement; the answer is the rank-th
    entry of the sorted complement, computed directly."""
    from negrec.samplers.uniform import ComplementIndex

    rng = np.random.default_rng(seed)
    n_items = 13
    rows = [sorted(rng.choice(n_items, size=d, replace=False).tolist()) for d in degrees]
    data = make_interactions(rows, n_items)
    index = ComplementIndex(data, torch.device("cpu"))
    users = torch.arange(len(rows)).repeat_interleave(3)
    avail = index.available[users].unsqueeze(1)  # [B, 1]
    ranks = (
        torch.rand(users.numel(), width, generator=torch.Generator().manual_seed(seed)) * avail
    ).long()
    ranks[:, 0], ranks[:, -1] = 0, (avail - 1).squeeze(1)
    got = index.items_at_cpu(users, ranks)
    for b, user in enumerate(users.tolist()):
        complement = [i for i in range(n_items) if i not in set(rows[user])]
        assert got[b].tolist() == [complement[r] for r in ranks[b].tolist()]


def test_compiled_uniform_ranks_equal_the_torch_expression():
    """The CPU draw computes ranks in one compiled pass; they equal the torch expression
    (float32 product, truncated, capped at available - 1) for the same uniforms, at the
    edges of [0, 1) included, so CPU draws map to the same items as on other devices."""
    from negrec._fast.kernels import uniform_ranks
    from negrec.data.synthetic import synthetic_interactions
    from negrec.samplers.uniform import ComplementIndex

    data = synthetic_interactions(n_users=40, n_items=3000, mean_degree=30, seed=1)
    index = ComplementIndex(data, torch.device("cpu"))
    users = torch.arange(40).repeat_interleave(5)
    uniforms = torch.rand(users.numel(), 9, generator=torch.Generator().manual_seed(0))
    uniforms[:, 0] = 0.0
    uniforms[:, 1] = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))  # largest < 1
    got = torch.empty(uniforms.shape, dtype=torch.int64)
    uniform_ranks(index.available.numpy(), users.numpy(), uniforms.numpy(), got.numpy())
    assert torch.equal(got, index.ranks(users, uniforms))
    assert (got[:, 1] == index.available[users] - 1).all()


@settings(max_examples=40, deadline=None)
@given(
    degrees=st.lists(st.integers(0, 250), min_size=1, max_size=6),
    width=st.sampled_from([1, 3, 8, 33, 100]),
    seed=st.integers(0, 2**31 - 1),
)
def test_one_pass_cpu_draw_maps_uniforms_like_the_torch_path(degrees, width, seed):
    """The CPU draw (ranks and complement search in one compiled pass; rows of at most
    ``SCAN_MAX_ROW`` positives by a direct scan, longer ones by binary search) gives, for
    the same uniforms, the items of the device-agnostic torch path: the rank-th
    non-positive item, rank = trunc(u * available), edges of [0, 1) included."""
    from negrec._fast.kernels import (
        _UNIFORM_COMPLEMENT_DRAW,
        SCAN_MAX_ROW,
        uniform_complement_draw,
    )
    from negrec.samplers.uniform import ComplementIndex

    rng = np.random.default_rng(seed)
    n_items = 300
    rows = [sorted(rng.choice(n_items, size=d, replace=False).tolist()) for d in degrees]
    rows.append(list(range(SCAN_MAX_ROW + 1)))  # a row just past the scan, one run of q
    data = make_interactions(rows, n_items)
    index = ComplementIndex(data, torch.device("cpu"))
    users = torch.arange(len(rows)).repeat_interleave(3)
    uniforms = torch.rand(users.numel(), width, generator=gen(seed))
    uniforms[:, 0] = 0.0
    uniforms[:, -1] = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))  # largest < 1
    available, indptr, q = index._arrays
    want = index.items_at(users, index.ranks(users, uniforms))
    got = torch.empty(uniforms.shape, dtype=torch.int64)
    uniform_complement_draw(available, indptr, q, users.numpy(), uniforms.numpy(), got.numpy())
    assert torch.equal(got, want)
    if width >= 8:  # the parallel twin (used for large batches on several threads) too
        got.fill_(-1)
        _UNIFORM_COMPLEMENT_DRAW[1](
            available, indptr, q, users.numpy(), uniforms.numpy(), got.numpy()
        )
        assert torch.equal(got, want)
