"""The fast sorts behind ``Interactions.from_arrays`` and the splits give exactly the orders
of the lexsorts they replace: on random data with ties, repeated pairs, signed zeros,
infinities, NaN and tiny coarse-key widths (which force the exact tie-break), and through
whole splits, which must not change for a given seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from negrec.data import interactions as I
from negrec.data import splits as S
from negrec.data.interactions import Interactions


def lexsort_order(users: np.ndarray, keys: np.ndarray) -> np.ndarray:
    return np.lexsort((np.arange(users.size), keys, users))


def reference_from_arrays(users, items, n_users, n_items, timestamps=None):
    """The lexsort construction the fast path replaced: (indptr, indices, timestamps)."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    order = np.lexsort((items, users))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    times = None if timestamps is None else np.asarray(timestamps, np.float64)[order]
    return indptr, items[order], times


SPECIAL = [-np.inf, -1e300, -2.5, -1.0, -0.0, 0.0, 5e-324, 1e-300, 0.5, 1.0, 1.0 + 2**-52, 1e300]
special_floats = st.sampled_from([*SPECIAL, np.inf])
any_floats = st.floats(allow_nan=False, width=64) | special_floats


# ----------------------------------------------------------------------------- per-user order
@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    data=st.data(),
    n_users=st.integers(1, 6),
    n=st.integers(0, 40),
    key_bits=st.none() | st.integers(0, 58),
    sort_users=st.booleans(),
)
def test_segment_key_order_is_the_lexsort_order(data, n_users, n, key_bits, sort_users):
    users = np.array(data.draw(st.lists(st.integers(0, n_users - 1), min_size=n, max_size=n)))
    users = np.sort(users) if sort_users else users
    pool = data.draw(st.lists(any_floats, min_size=1, max_size=5))  # few values: many ties
    keys = np.array(data.draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n)), float)
    got = I._segment_key_order(users.astype(np.int64), keys, n_users, key_bits=key_bits)
    assert got.tolist() == lexsort_order(users, keys).tolist()


@pytest.mark.parametrize("key_bits", [None, 0, 1, 8, 20])
def test_segment_key_order_on_random_keys_and_timestamps(key_bits):
    rng = np.random.default_rng(0)
    n_users, n = 300, 20_000
    users = np.sort(rng.integers(0, n_users, n))
    for keys in (
        rng.random(n),  # the random hold-out's keys
        -rng.integers(1_600_000_000, 1_600_000_100, n).astype(float),  # -timestamps, ties
        rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n),  # every exponent, both signs
    ):
        got = I._segment_key_order(users, keys, n_users, key_bits=key_bits)
        assert np.array_equal(got, lexsort_order(users, keys))


def test_segment_key_order_puts_nan_last_like_lexsort():
    keys = np.array([np.nan, 1.0, -np.nan, 0.0, -0.0, np.inf, np.nan])
    users = np.array([0, 0, 0, 0, 1, 1, 1])
    assert I._segment_key_order(users, keys, 2).tolist() == lexsort_order(users, keys).tolist()


# ----------------------------------------------------------------------------- from_arrays
@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    data=st.data(),
    n_users=st.integers(1, 8),
    n_items=st.integers(1, 8),
    presorted=st.booleans(),
    force_lexsort=st.booleans(),
)
def test_from_arrays_matches_the_lexsort_construction(
    data, n_users, n_items, presorted, force_lexsort
):
    pairs = data.draw(
        st.lists(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)), max_size=40)
    )
    if presorted:
        pairs = sorted(pairs)
    users = np.array([p[0] for p in pairs], dtype=np.int64)
    items = np.array([p[1] for p in pairs], dtype=np.int64)
    times = np.arange(users.size, dtype=float)[::-1].copy()

    def build() -> Interactions:
        return Interactions.from_arrays(
            users, items, n_users=n_users, n_items=n_items, timestamps=times
        )

    with pytest.MonkeyPatch.context() as patch:
        if force_lexsort:  # as when n_users * n_items would overflow int64 keys
            patch.setattr(I, "_MAX_KEY_SPACE", 0)
        if len(set(pairs)) < len(pairs):  # the error names the first repeat in sorted order
            first = sorted(p for p in set(pairs) if pairs.count(p) > 1)[0]
            with pytest.raises(
                ValueError, match=rf"duplicate \(user, item\) pair \({first[0]}, {first[1]}\)"
            ):
                build()
            return
        got = build()
    indptr, indices, ref_times = reference_from_arrays(users, items, n_users, n_items, times)
    assert got.indptr.tolist() == indptr.tolist()
    assert got.indices.tolist() == indices.tolist()
    assert got.timestamps is not None and got.timestamps.tolist() == ref_times.tolist()


def test_from_arrays_of_sorted_input_copies_and_never_freezes_the_callers_arrays():
    users = np.array([0, 0, 1, 2], dtype=np.int64)
    items = np.array([1, 3, 0, 2], dtype=np.int64)
    times = np.array([4.0, 3.0, 2.0, 1.0])
    data = Interactions.from_arrays(users, items, n_users=3, n_items=4, timestamps=times)
    assert items.flags.writeable and times.flags.writeable
    items[0], times[0] = 9, 9.0
    assert data.indices.tolist() == [1, 3, 0, 2] and data.timestamps is not None
    assert data.timestamps.tolist() == [4.0, 3.0, 2.0, 1.0]
    assert not data.indices.flags.writeable


def test_from_arrays_rejects_misaligned_timestamps():
    with pytest.raises(ValueError, match="timestamps"):
        Interactions.from_arrays([0, 1], [0, 0], n_users=2, n_items=1, timestamps=[1.0])


# ----------------------------------------------------------------------------- whole splits
def lexsort_rank_within_user(data: Interactions, keys: np.ndarray) -> np.ndarray:
    """The lexsort ``_rank_within_user`` the fast one replaced."""
    users, items = data.to_coo()
    order = np.lexsort((items, keys, users))
    position = np.empty(data.nnz, dtype=np.int64)
    position[order] = np.arange(data.nnz) - np.repeat(data.indptr[:-1], data.user_degrees)
    return position


def split_arrays(split: S.Split) -> list[list]:
    return [
        [part.indptr.tolist(), part.indices.tolist(), np.asarray(part.timestamps).tolist()]
        for part in (split.train, split.valid, split.test)
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_are_those_of_the_lexsort_implementation(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    n_users, n_items = 200, 150
    degrees = rng.integers(1, 40, n_users)
    users = np.repeat(np.arange(n_users), degrees)
    items = np.concatenate([rng.choice(n_items, d, replace=False) for d in degrees])
    times = rng.integers(0, 20, users.size).astype(float)  # many same-time ties per user
    shuffle = rng.permutation(users.size)
    data = Interactions.from_arrays(
        users[shuffle], items[shuffle], n_users=n_users, n_items=n_items, timestamps=times
    )
    fast = [
        S.random_split(data, 0.2, 0.1, seed),
        S.random_split(data, 0.3, "last", seed),
        S.leave_one_out_split(data),
    ]
    monkeypatch.setattr(S, "_rank_within_user", lexsort_rank_within_user)
    slow = [
        S.random_split(data, 0.2, 0.1, seed),
        S.random_split(data, 0.3, "last", seed),
        S.leave_one_out_split(data),
    ]
    for a, b in zip(fast, slow, strict=True):
        assert split_arrays(a) == split_arrays(b)
