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
        order = np.lexsort((items, users))
        users, items = users[order], items[order]
        if users.size > 1:
            same = (users[1:] == users[:-1]) & (items[1:] == items[:-1])
            if same.any():
                k = int(np.flatnonzero(same)[0])
                raise ValueError(
                    f"duplicate (user, item) pair ({users[k]}, {items[k]}); deduplicate first"
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
            else _frozen(np.asarray(timestamps, dtype=np.float64)[order]),
            ratings=None if ratings is None else _frozen(np.asarray(ratings, np.float64)[order]),
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
