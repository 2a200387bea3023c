"""The built-in synthetic dataset: seeded, well-formed, and drawn block by block exactly as
the whole-matrix Gumbel top-k draw it replaced (which needed n_users x n_items floats)."""

from __future__ import annotations

import numpy as np
import pytest

import negrec.data.synthetic as synthetic
from negrec.data.interactions import Interactions
from negrec.data.synthetic import synthetic_interactions


def whole_matrix_reference(
    n_users: int, n_items: int, mean_degree: float, seed: int
) -> Interactions:
    """The generator before it worked in blocks, at the default cluster count, dimension,
    affinity and popularity exponent: every user's keys at once, a full argsort (the
    planted structure is drawn by the same code, so the draw is what is compared)."""
    rng = np.random.default_rng(seed)
    users, items, log_popularity, degrees = synthetic.latent_structure(
        rng, n_users, n_items, mean_degree, n_clusters=12, dim=16, popularity_exponent=0.7
    )
    logits = log_popularity[None, :] + 6.0 * users @ items.T  # affinity 6
    keys = logits + rng.gumbel(size=logits.shape)
    order = np.argsort(-keys, axis=1)
    take = np.arange(n_items)[None, :] < degrees[:, None]
    user_idx = np.broadcast_to(np.arange(n_users)[:, None], order.shape)[take]
    return Interactions.from_arrays(
        user_idx,
        order[take],
        n_users=n_users,
        n_items=n_items,
        timestamps=rng.random(int(take.sum())),
    )


def _same(a: Interactions, b: Interactions) -> None:
    assert (a.n_users, a.n_items) == (b.n_users, b.n_items)
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.timestamps is not None and b.timestamps is not None
    np.testing.assert_array_equal(a.timestamps, b.timestamps)


@pytest.mark.parametrize(
    "size", [(40, 60, 9.0), (300, 50, 20.0), (943, 1682, 106.0)], ids=["tiny", "tall", "default"]
)
@pytest.mark.parametrize("block_users", [1, 7, None], ids=["1-user", "7-users", "one-block"])
def test_blocks_draw_exactly_the_whole_matrix_sample(
    monkeypatch: pytest.MonkeyPatch, size: tuple[int, int, float], block_users: int | None
) -> None:
    n_users, n_items, degree = size
    if block_users is not None:
        monkeypatch.setattr(synthetic, "BLOCK_ENTRIES", block_users * n_items)
    _same(
        synthetic_interactions(n_users, n_items, degree, seed=3),
        whole_matrix_reference(n_users, n_items, degree, seed=3),
    )


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = synthetic_interactions(50, 80, 10.0, seed=1)
    _same(first, synthetic_interactions(50, 80, 10.0, seed=1))
    other = synthetic_interactions(50, 80, 10.0, seed=2)
    assert not np.array_equal(first.indices, other.indices)


def test_every_user_has_between_5_and_half_the_catalogue_distinct_items() -> None:
    data = synthetic_interactions(200, 40, 30.0, seed=0)  # mean degree above the cap of 20
    degrees = np.diff(data.indptr)
    assert degrees.min() >= 5 and degrees.max() <= 20
    for user in range(data.n_users):  # CSR rows sorted and unique: no repeated item
        row = data.indices[data.indptr[user] : data.indptr[user + 1]]
        assert np.all(np.diff(row) > 0)
    assert degrees.max() == 20  # the cap (n_items // 2) binds


def test_popular_items_are_drawn_more_often() -> None:
    """The Zipf popularity is planted: the most drawn tenth of the items takes a far larger
    share of the interactions than under uniform draws (~13% here, the top tenth of
    Poisson(25) counts)."""
    data = synthetic_interactions(500, 400, 20.0, seed=0)
    counts = np.sort(np.bincount(data.indices, minlength=data.n_items))[::-1]
    assert counts[:40].sum() / counts.sum() > 0.2
