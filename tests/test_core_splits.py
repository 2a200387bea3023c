"""Splits: per-user hold-out sizes of the random split, disjoint parts whose union is the
data, leave-one-out taking the latest interactions by timestamp, validation carved from
train, seeded determinism, and users with a single item keeping it in train.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from negrec.data.interactions import Interactions
from negrec.data.splits import (
    Split,
    carve_validation,
    holdout_mask,
    leave_one_out_split,
    random_split,
)


def random_data(seed: int, n_users: int = 40, n_items: int = 30, max_degree: int = 15):
    """Users with 1..max_degree distinct items and distinct random timestamps."""
    rng = np.random.default_rng(seed)
    degrees = rng.integers(1, max_degree + 1, size=n_users)
    degrees[:3] = [1, 2, 3]  # always some tiny users
    users = np.repeat(np.arange(n_users), degrees)
    items = np.concatenate([rng.choice(n_items, size=d, replace=False) for d in degrees])
    times = rng.permutation(users.size).astype(float)
    return Interactions.from_arrays(
        users, items, n_users=n_users, n_items=n_items, timestamps=times
    )


def pairs(data: Interactions) -> set[tuple[int, int]]:
    users, items = data.to_coo()
    return set(zip(users.tolist(), items.tolist(), strict=True))


def times_by_pair(data: Interactions) -> dict[tuple[int, int], float]:
    users, items = data.to_coo()
    assert data.timestamps is not None
    return dict(zip(zip(users.tolist(), items.tolist(), strict=True), data.timestamps, strict=True))


def assert_partition(split: Split, data: Interactions) -> None:
    parts = [pairs(split.train), pairs(split.valid), pairs(split.test)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert parts[0] | parts[1] | parts[2] == pairs(data)
    for part in (split.train, split.valid, split.test):
        assert (part.n_users, part.n_items) == (data.n_users, data.n_items)
        assert times_by_pair(part).items() <= times_by_pair(data).items()  # timestamps follow


def expected_holdout(degrees: np.ndarray, fraction: float) -> np.ndarray:
    return np.minimum(np.rint(fraction * degrees), np.maximum(degrees - 1, 0)).astype(int)


# ----------------------------------------------------------------------------- random split
@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    test_fraction=st.sampled_from([0.1, 0.2, 0.5, 0.8]),
    valid=st.sampled_from([0.1, 0.25, 0.5]),
)
def test_random_split_sizes_partition_and_single_item_users(seed, test_fraction, valid):
    data = random_data(seed)
    split = random_split(data, test_fraction, valid, seed)
    assert_partition(split, data)
    n_test = expected_holdout(data.user_degrees, test_fraction)
    assert split.test.user_degrees.tolist() == n_test.tolist()
    rest = data.user_degrees - n_test
    assert split.valid.user_degrees.tolist() == expected_holdout(rest, valid).tolist()
    assert (split.train.user_degrees >= 1).all()  # nobody is left without training items
    single = np.flatnonzero(data.user_degrees == 1)
    assert single.size > 0
    for u in single:
        assert split.train.items_of(u).tolist() == data.items_of(u).tolist()


def test_random_split_is_seeded():
    data = random_data(0)
    a, b, c = (random_split(data, 0.2, 0.1, s) for s in (5, 5, 6))
    for part in ("train", "valid", "test"):
        assert pairs(getattr(a, part)) == pairs(getattr(b, part))
    assert pairs(a.test) != pairs(c.test)


def test_holdout_mask_is_uniform_within_a_user():
    """Every item of a user is equally likely to be held out (over seeds)."""
    data = Interactions.from_arrays(np.zeros(10, int), np.arange(10), n_users=1, n_items=10)
    counts = np.zeros(10)
    for seed in range(2000):
        counts += holdout_mask(data, 0.3, np.random.default_rng(seed))
    assert counts.sum() == 3 * 2000
    assert counts.min() > 500 and counts.max() < 700  # mean 600, sd ~ 20


# ----------------------------------------------------------------------------- leave-one-out
def test_leave_one_out_takes_the_latest_items_by_timestamp():
    data = random_data(1)
    split = leave_one_out_split(data)
    assert_partition(split, data)
    times = times_by_pair(data)
    for u in range(data.n_users):
        by_time = sorted(data.items_of(u).tolist(), key=lambda i, u=u: times[(u, i)])
        degree = len(by_time)
        expected_test = by_time[-1:] if degree >= 2 else []
        expected_valid = by_time[-2:-1] if degree >= 3 else []
        assert split.test.items_of(u).tolist() == expected_test
        assert split.valid.items_of(u).tolist() == expected_valid
        assert sorted(split.train.items_of(u).tolist()) == sorted(by_time[: max(degree - 2, 1)])


def test_leave_one_out_known_answer(tiny_interactions):
    split = leave_one_out_split(tiny_interactions)
    assert [split.test.items_of(u).tolist() for u in range(4)] == [[1], [1], [7], []]
    assert [split.valid.items_of(u).tolist() for u in range(4)] == [[5], [6], [0], []]
    assert [split.train.items_of(u).tolist() for u in range(4)] == [[0, 2], [3, 4, 7], [2], [4]]


def test_leave_one_out_with_tied_timestamps_holds_out_the_last_items_of_the_sequence():
    """Regression: ranking negated times held out the *smallest* id among same-second items,
    while the sequential models order ties by ascending id, so items they place after the
    test item stayed in train and in the test context. Same-second ratings are common in
    MovieLens."""
    # user 0: items 0..3 at times 1, 5, 5, 5; user 1: items 4, 2, 6 all at time 7
    data = Interactions.from_arrays(
        np.array([0, 0, 0, 0, 1, 1, 1]),
        np.array([0, 1, 2, 3, 4, 2, 6]),
        n_users=2,
        n_items=7,
        timestamps=np.array([1.0, 5, 5, 5, 7, 7, 7]),
    )
    split = leave_one_out_split(data)
    assert [split.test.items_of(u).tolist() for u in range(2)] == [[3], [6]]
    assert [split.valid.items_of(u).tolist() for u in range(2)] == [[2], [4]]
    for u, sequence in enumerate(data.sequences()):  # held out = the sequence's last two
        assert split.valid.items_of(u).tolist() + split.test.items_of(u).tolist() == (
            sequence[-2:].tolist()
        )
    train_and_valid = carve_validation(data, data.subset(np.zeros(data.nnz, bool)), "last", 0)
    assert [train_and_valid.valid.items_of(u).tolist() for u in range(2)] == [[3], [6]]


def test_leave_one_out_needs_timestamps():
    data = Interactions.from_arrays(np.zeros(3, int), np.arange(3), n_users=1, n_items=3)
    with pytest.raises(ValueError, match="timestamps"):
        leave_one_out_split(data)


# ----------------------------------------------------------------------------- validation
def test_carve_validation_takes_valid_from_train_and_keeps_test():
    data = random_data(2)
    test = data.subset(holdout_mask(data, 0.3, np.random.default_rng(0)))
    train = data.subset(~holdout_mask(data, 0.3, np.random.default_rng(0)))
    split = carve_validation(train, test, 0.25, 3)
    assert split.test is test
    assert not pairs(split.train) & pairs(split.valid)
    assert pairs(split.train) | pairs(split.valid) == pairs(train)
    assert split.valid.user_degrees.tolist() == expected_holdout(train.user_degrees, 0.25).tolist()


def test_carve_validation_last_takes_each_users_latest_train_item():
    data = random_data(3)
    empty = data.subset(np.zeros(data.nnz, bool))
    split = carve_validation(data, empty, "last", 0)
    times = times_by_pair(data)
    for u in range(data.n_users):
        items = data.items_of(u).tolist()
        if len(items) >= 2:
            latest = max(items, key=lambda i, u=u: times[(u, i)])
            assert split.valid.items_of(u).tolist() == [latest]
        else:
            assert split.valid.items_of(u).tolist() == []
            assert split.train.items_of(u).tolist() == items


def test_carve_validation_rejects_bad_values():
    data = random_data(4)
    for bad in ("first", 1.5, True):
        with pytest.raises(ValueError):
            carve_validation(data, data, bad, 0)
