"""Train / validation / test splits over one id space.

Model selection and early stopping read ``valid`` only; ``test`` is read once, at the end.
Every split is seeded (a ``numpy.random.Generator`` or an int seed) and fully vectorised:
per-user positions come from one stable argsort, never from a loop over users.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from negrec.data.interactions import Interactions, NoTimeOrder, _segment_key_order
from negrec.data.prepare import PrepareReport


@dataclass(frozen=True)
class Split:
    """``train``, ``valid`` and ``test`` Interactions over the same users and items, and
    what preparing the data dropped or kept (``report``; None for generated data)."""

    train: Interactions
    valid: Interactions
    test: Interactions
    report: PrepareReport | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        shapes = {(p.n_users, p.n_items) for p in (self.train, self.valid, self.test)}
        if len(shapes) != 1:
            raise ValueError(f"split parts disagree on (n_users, n_items): {sorted(shapes)}")

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items


def _rank_within_user(data: Interactions, keys: np.ndarray) -> np.ndarray:
    """Position [nnz] of each interaction inside its user's row when the row is ordered by
    ``keys`` [nnz] (ascending, ties by item id). Vectorised with one stable argsort: the
    order of ``np.lexsort((items, keys, users))``, as rows are stored sorted by item."""
    users, _ = data.to_coo()
    order = _segment_key_order(users, keys, data.n_users)
    position = np.empty(data.nnz, dtype=np.int64)
    position[order] = np.arange(data.nnz) - np.repeat(data.indptr[:-1], data.user_degrees)
    return position


def holdout_mask(
    data: Interactions, fraction: float, rng: np.random.Generator, *, min_train: int = 1
) -> np.ndarray:
    """Boolean [nnz]: a uniformly random ``fraction`` of each user's items (rounded, so a user
    with ``d`` items holds out ``round(fraction * d)``), never leaving fewer than ``min_train``
    items in train."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"hold-out fraction must lie in (0, 1), got {fraction}")
    degrees = data.user_degrees
    n_out = np.minimum(
        np.rint(fraction * degrees).astype(np.int64), np.maximum(degrees - min_train, 0)
    )
    position = _rank_within_user(data, rng.random(data.nnz))
    return position < np.repeat(n_out, degrees)


def last_items_mask(data: Interactions, n_last: int = 1, *, min_train: int = 1) -> np.ndarray:
    """Boolean [nnz]: each user's ``n_last`` latest interactions (needs timestamps), keeping
    at least ``min_train`` items in train."""
    if data.timestamps is None:
        raise NoTimeOrder("leave-last-out needs timestamps (or sequence positions)")
    degrees = data.user_degrees
    n_out = np.minimum(n_last, np.maximum(degrees - min_train, 0))
    # Count from the end of the ascending time order (ties by item id), the order that
    # `Interactions.sequences` and `sequences.time_ordered` give the sequential models, so
    # the held-out items are the last ones of those sequences even when timestamps tie.
    # (Ranking negated times instead broke ties the other way: among same-second items it
    # held out the smallest id, leaving items ordered after it in train and in the context.)
    from_end = np.repeat(degrees, degrees) - 1 - _rank_within_user(data, data.timestamps)
    return from_end < np.repeat(n_out, degrees)


def random_split(data: Interactions, test_fraction: float, valid: float | str, seed: int) -> Split:
    """Random per-user hold-out: ``test_fraction`` of each user's items to test, then
    validation carved from the rest (a fraction, or ``"last"``: see carve_validation)."""
    rng = np.random.default_rng(seed)
    test = holdout_mask(data, test_fraction, rng)
    return carve_validation(data.subset(~test), data.subset(test), valid, rng)


def leave_one_out_split(data: Interactions) -> Split:
    """Leave-one-out by time: each user's last item is test, the second-last validation."""
    test = last_items_mask(data, 1)
    rest = data.subset(~test)
    valid = last_items_mask(rest, 1)
    return Split(train=rest.subset(~valid), valid=rest.subset(valid), test=data.subset(test))


def carve_validation(
    train: Interactions,
    test: Interactions,
    valid: float | str,
    rng: np.random.Generator | int,
) -> Split:
    """Carve a validation split out of ``train``: a per-user fraction (float) or ``"last"``
    (each user's latest train item, needs timestamps)."""
    if isinstance(rng, int):
        rng = np.random.default_rng(rng)
    if valid == "last":
        mask = last_items_mask(train, 1)
    elif isinstance(valid, float | int) and not isinstance(valid, bool):
        mask = holdout_mask(train, float(valid), rng)
    else:
        raise ValueError(f"validation must be a fraction in (0, 1) or 'last', got {valid!r}")
    return Split(train=train.subset(~mask), valid=train.subset(mask), test=test)
