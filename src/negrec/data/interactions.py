"""The immutable user x item interaction matrix every other part of negrec reads.

Stored as CSR (``indptr`` [n_users + 1], ``indices`` [nnz]) with the items of each user
sorted by id and unique, which makes membership tests a binary search. Ids are contiguous
``0..n-1``; ``user_ids`` / ``item_ids`` map them back to the raw ids of the source file.
Optional ``timestamps`` and ``ratings`` are aligned with ``indices``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


class NoTimeOrder(ValueError):
    """A time order was asked of interactions that have no timestamps."""


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


#: ``user * n_items + item`` fits in int64 when ``n_users * n_items`` is at most this.
_MAX_KEY_SPACE = 2**63


def _take(array: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """``array[order]``, or a copy when ``order`` is None (never freeze the caller's array)."""
    return array.copy() if order is None else array[order]


def _pair_order(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """The permutation that sorts (user, item) pairs [nnz] by user, then item (the order of
    ``np.lexsort((items, users))`` wherever the pairs are distinct), or None when they are
    sorted already; and the boolean [nnz - 1] marking each sorted pair equal to its
    predecessor.

    One sort of the int64 keys ``user * n_items + item`` (one comparison pass, no sort, for
    already sorted input such as a :meth:`Interactions.subset`), instead of a lexsort over
    two columns, ~3x slower on shuffled rows. Distinct pairs have distinct keys, so any
    sort gives the lexsort's order; with repeated pairs only the (rejected) repeats may be
    permuted. Lexsort is kept for id spaces whose keys would overflow int64.
    """
    if int(n_users) * int(n_items) > _MAX_KEY_SPACE:
        order = np.lexsort((items, users))
        users, items = users[order], items[order]
        return order, (users[1:] == users[:-1]) & (items[1:] == items[:-1])
    keys = users * np.int64(n_items) + items
    step = keys[1:] > keys[:-1]
    if step.all():
        return None, np.zeros(step.size, dtype=bool)
    sorter = np.argsort(keys)
    keys = keys[sorter]
    return sorter, keys[1:] == keys[:-1]


_INT64_MAX = np.iinfo(np.int64).max


def _ordered_bits(value: float) -> int:
    """The signed order-preserving integer image of one (non-NaN, non -0.0) float64."""
    bits = int(np.float64(value).view(np.int64))
    return bits ^ _INT64_MAX if bits < 0 else bits


def _segment_key_order(
    users: np.ndarray, keys: np.ndarray, n_users: int, *, key_bits: int | None = None
) -> np.ndarray:
    """``np.lexsort((np.arange(nnz), keys, users))`` for user ids ``users`` [nnz] in
    ``[0, n_users)`` and float ``keys`` [nnz]: by user, then key, ties kept in array order.

    Lexsort sorts by each column in turn with random memory access (14 s at 20M rows, one
    core, against 1.4 s here); this is one stable argsort of the int64
    ``user << key_bits | coarse key``, where the coarse key is an order-preserving integer
    image of the float, offset and shifted into the bits the user id leaves free
    (``key_bits``, a parameter for the tests only).
    Distinct keys that share a coarse key, a rare event, are put in order by a lexsort over
    just those runs. NaN keys (which lexsort puts last, whatever their sign) fall back to
    lexsort.
    """
    keys = np.asarray(keys, dtype=np.float64)
    n = keys.size
    if n < 2:
        return np.arange(n)
    lo, hi = keys.min(), keys.max()  # NaN if any key is NaN
    if np.isnan(lo) or np.isnan(hi):
        return np.lexsort((np.arange(n), keys, users))
    if key_bits is None:
        key_bits = 63 - max(int(n_users) - 1, 0).bit_length()
    low, high = _ordered_bits(lo + 0.0), _ordered_bits(hi + 0.0)
    shift = max((high - low).bit_length() - key_bits, 0)
    # the float bits with negatives' magnitude bits flipped order like the floats; adding
    # 0.0 first turns -0.0 into +0.0, which compare equal
    ordered = (keys + 0.0).view(np.int64)
    ordered ^= (ordered >> 63) & _INT64_MAX
    coarse = ordered.view(np.uint64)  # in place: wraps to the offset from ``low``
    coarse -= np.uint64(low % 2**64)
    coarse >>= np.uint64(shift)
    combined = ordered  # now the coarse key, below 2**key_bits
    combined |= np.asarray(users, dtype=np.int64) << np.int64(key_bits)
    order = np.argsort(combined, kind="stable")
    if shift == 0:
        return order  # the coarse key is exact
    combined = combined[order]
    same = combined[1:] == combined[:-1]
    sorted_keys = keys[order]
    clash = same & (sorted_keys[1:] != sorted_keys[:-1])
    if clash.any():
        run = np.cumsum(np.concatenate(([True], ~same))) - 1  # run of equal combined keys
        where = np.flatnonzero(np.isin(run, run[1:][clash]))
        # stable, so equal keys keep array order; the runs stay where they are
        fix = np.lexsort((sorted_keys[where], run[where]))
        order[where] = order[where][fix]
    return order


@dataclass(frozen=True, eq=False)
class Interactions:
    """A user x item CSR matrix of implicit feedback over a fixed id space.

    Build one with :meth:`from_arrays`; every array is read-only afterwards.
    """

    indptr: np.ndarray  # int64 [n_users + 1]
    indices: np.ndarray  # int64 [nnz], sorted and unique within each row
    n_items: int
    user_ids: np.ndarray  # raw ids [n_users]
    item_ids: np.ndarray  # raw ids [n_items]
    timestamps: np.ndarray | None = None  # float64 [nnz]
    ratings: np.ndarray | None = None  # float64 [nnz]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        *,
        n_users: int,
        n_items: int,
        timestamps: np.ndarray | None = None,
        ratings: np.ndarray | None = None,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
    ) -> Interactions:
        """Build from parallel arrays of contiguous ids; (user, item) pairs must be unique."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError("users and items must be 1-d arrays of the same length")
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise ValueError(f"user ids must lie in [0, {n_users})")
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"item ids must lie in [0, {n_items})")
        for name, column in (("timestamps", timestamps), ("ratings", ratings)):
            if column is not None and np.shape(column) != users.shape:
                raise ValueError(f"{name} must hold one value per interaction")
        order, same = _pair_order(users, items, n_users, n_items)
        items = _take(items, order)  # user counts below need no sorting
        if same.any():
            k = int(np.flatnonzero(same)[0])
            raise ValueError(
                f"duplicate (user, item) pair ({_take(users, order)[k]}, {items[k]}); "
                "deduplicate first"
            )
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
        return cls(
            indptr=_frozen(indptr),
            indices=_frozen(items),
            n_items=int(n_items),
            user_ids=_frozen(np.arange(n_users) if user_ids is None else np.asarray(user_ids)),
            item_ids=_frozen(np.arange(n_items) if item_ids is None else np.asarray(item_ids)),
            timestamps=None
            if timestamps is None
            else _frozen(_take(np.asarray(timestamps, dtype=np.float64), order)),
            ratings=None
            if ratings is None
            else _frozen(_take(np.asarray(ratings, np.float64), order)),
        )

    def subset(self, keep: np.ndarray) -> Interactions:
        """Same id space and vocabularies, only the interactions where ``keep`` [nnz] is true."""
        users, items = self.to_coo()
        keep = np.asarray(keep, dtype=bool)
        return Interactions.from_arrays(
            users[keep],
            items[keep],
            n_users=self.n_users,
            n_items=self.n_items,
            timestamps=None if self.timestamps is None else self.timestamps[keep],
            ratings=None if self.ratings is None else self.ratings[keep],
            user_ids=self.user_ids,
            item_ids=self.item_ids,
        )

    # ------------------------------------------------------------------ shape
    @property
    def n_users(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def __len__(self) -> int:
        return self.nnz

    def __repr__(self) -> str:
        return f"Interactions(n_users={self.n_users}, n_items={self.n_items}, nnz={self.nnz})"

    @property
    def user_degrees(self) -> np.ndarray:
        """Interactions per user, [n_users]."""
        return np.diff(self.indptr)

    @property
    def item_degrees(self) -> np.ndarray:
        """Interactions per item, [n_items]."""
        return np.bincount(self.indices, minlength=self.n_items)

    def to_coo(self) -> tuple[np.ndarray, np.ndarray]:
        """(users [nnz], items [nnz]) in CSR order."""
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), self.user_degrees)
        return users, self.indices

    def items_of(self, user: int) -> np.ndarray:
        """Sorted item ids of one user (for inspection and tests; not for hot paths)."""
        return self.indices[self.indptr[user] : self.indptr[user + 1]]

    def sequences(self) -> list[np.ndarray]:
        """Per-user item ids in time order (ties by item id); needs timestamps."""
        if self.timestamps is None:
            raise NoTimeOrder("these interactions have no timestamps, so no time order")
        users, items = self.to_coo()
        order = np.lexsort((items, self.timestamps, users))
        return np.split(items[order], self.indptr[1:-1])

    # ------------------------------------------------------------------ torch views
    def keys(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Sorted int64 keys ``user * n_items + item`` [nnz], for vectorised membership tests."""
        cache_key = ("keys", str(device))
        if cache_key not in self._cache:
            users, items = self.to_coo()
            keys = torch.from_numpy(users * self.n_items + items).to(device)
            self._cache[cache_key] = keys
        return self._cache[cache_key]

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Boolean tensor: is (users[...], items[...]) an interaction? Shapes broadcast."""
        keys = self.keys(users.device)
        query = users.to(torch.int64) * self.n_items + items.to(torch.int64)
        if keys.numel() == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        pos = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
        return keys[pos] == query

    def torch_csr(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(indptr, indices) as int64 tensors on ``device`` (cached)."""
        cache_key = ("csr", str(device))
        if cache_key not in self._cache:
            self._cache[cache_key] = (
                torch.tensor(self.indptr, device=device),
                torch.tensor(self.indices, device=device),
            )
        return self._cache[cache_key]

    def dense_mask(self, users: torch.Tensor) -> torch.Tensor:
        """Boolean [B, n_items] matrix marking the interactions of ``users`` [B]."""
        indptr, indices = self.torch_csr(users.device)
        start, end = indptr[users], indptr[users + 1]
        counts = end - start
        rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), counts)
        # position of every stored entry of the selected rows inside ``indices``
        offsets = torch.arange(int(counts.sum()), device=users.device)
        offsets = offsets - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        cols = indices[torch.repeat_interleave(start, counts) + offsets]
        mask = torch.zeros(users.numel(), self.n_items, dtype=torch.bool, device=users.device)
        mask[rows, cols] = True
        return mask
