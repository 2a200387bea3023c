"""From a raw event table to :class:`Interactions`: de-duplicate, threshold, k-core, encode.

The steps run in a fixed order, each counted in a :class:`PrepareReport`:

1. **de-duplication** -- one event per (user, item) pair, the latest by timestamp (the last
   row where there are no timestamps), because :class:`Interactions` holds a set of pairs.
   It runs before the threshold so that a re-rating replaces the earlier rating: an item
   rated 5 and later 2 is not a positive at ``min_rating=4``;
2. **threshold** -- keep events with ``rating >= min_rating`` (explicit feedback turned
   implicit);
3. **k-core** -- repeatedly drop users and items with fewer than ``k`` interactions until
   none is left (removing an item can push a user under ``k`` and back again), so that
   every remaining user and item has at least ``k``;
4. **encoding** -- raw ids become contiguous ids ``0..n-1`` (sorted by raw id); the
   vocabularies are kept in :attr:`Interactions.user_ids` / ``item_ids``.

A pre-split table (a ``part`` column from :func:`negrec.data.loaders.load_split`) is
de-duplicated within each part, cleared of test rows that repeat a training pair
(:func:`handle_overlap`, by default), k-cored on train and test together, checked for test
users and items that never occur in train (:func:`check_test_in_train_table`) and
encoded with one vocabulary, so train and test share an id space. Where unseen test rows
are dropped, k-core and that check repeat until neither removes a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from negrec.data.interactions import Interactions
from negrec.data.loaders import PathLike, load_split, source_path
from negrec.errors import ConfigError, DataError

OnUnseen = Literal["error", "drop", "keep"]
_ON_UNSEEN = ("error", "drop", "keep")
OnOverlap = Literal["drop", "error", "keep"]
_ON_OVERLAP = ("drop", "error", "keep")


@dataclass(frozen=True)
class PrepareReport:
    """What preparation did to a table: rows in, rows dropped per step, what is left."""

    rows_read: int
    dropped_threshold: int
    dropped_duplicates: int
    dropped_kcore: int
    dropped_unseen: int
    n_users: int
    n_items: int
    n_interactions: int
    kcore_rounds: int = 0
    min_rating: float | None = None
    k_core: int | None = None
    parts: dict[str, int] = field(default_factory=dict)  # interactions per part, if split
    unseen_kept: int = 0  # test rows with a user or item not in train, kept (on_unseen="keep")
    dropped_overlap: int = 0  # test rows repeating a training pair, dropped (on_overlap="drop")
    overlap_kept: int = 0  # test rows repeating a training pair, kept (on_overlap="keep")

    @property
    def density(self) -> float:
        """Interactions / (users x items); 0 for an empty matrix."""
        cells = self.n_users * self.n_items
        return self.n_interactions / cells if cells else 0.0

    def __str__(self) -> str:
        lines = [
            f"read {self.rows_read:,} rows",
            f"dropped {self.dropped_duplicates:,} duplicate (user, item) rows "
            "(kept the latest of each pair)",
        ]
        if self.min_rating is not None:
            lines.append(f"dropped {self.dropped_threshold:,} with rating < {self.min_rating:g}")
        if self.k_core is not None:
            lines.append(
                f"dropped {self.dropped_kcore:,} by {self.k_core}-core filtering "
                f"({self.kcore_rounds} round{'s' if self.kcore_rounds != 1 else ''})"
            )
        if self.dropped_unseen:
            lines.append(
                f"dropped {self.dropped_unseen:,} test rows whose user or item is not in train"
            )
        if self.unseen_kept:
            lines.append(f"kept {self.unseen_kept:,} test rows whose user or item is not in train")
        if self.dropped_overlap:
            lines.append(
                f"dropped {self.dropped_overlap:,} test rows that repeat a training "
                "(user, item) pair"
            )
        if self.overlap_kept:
            lines.append(
                f"kept {self.overlap_kept:,} test rows that repeat a training (user, item) pair"
            )
        kept = f"kept {self.n_interactions:,} interactions"
        if self.parts:
            kept += " (" + ", ".join(f"{part} {n:,}" for part, n in self.parts.items()) + ")"
        lines.append(f"{kept}: {self.n_users:,} users x {self.n_items:,} items")
        return "\n".join(lines)


# ------------------------------------------------------------------------------- steps
def apply_threshold(table: pd.DataFrame, min_rating: float) -> tuple[pd.DataFrame, int]:
    """Keep rows with ``rating >= min_rating``; returns (kept table, rows dropped)."""
    if "rating" not in table.columns:
        raise ConfigError("min_rating", "the data has no rating column to threshold")
    keep = table["rating"].to_numpy(np.float64) >= min_rating
    return table[keep], int(keep.size - keep.sum())


def deduplicate(table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per (user, item) pair -- per ``part`` if there is one.

    The row kept is the latest by ``timestamp`` (ties and tables without timestamps: the
    last row). Row order is otherwise preserved. Returns (table, rows dropped).
    """
    keys = ["part", "user", "item"] if "part" in table.columns else ["user", "item"]
    n = len(table)
    if "timestamp" in table.columns:
        order = np.argsort(table["timestamp"].to_numpy(np.float64), kind="stable")
    else:
        order = np.arange(n)
    later_copy = table[keys].iloc[order].duplicated(keep="last").to_numpy()
    keep = np.ones(n, dtype=bool)
    keep[order[later_copy]] = False
    return table[keep], int(n - keep.sum())


def k_core_mask(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Which interactions survive iterative k-core filtering, and after how many rounds.

    Drops every interaction whose user or item has fewer than ``k`` interactions among
    those still kept, and repeats until nothing changes (a fixed point: every remaining
    user and item has >= ``k``). ``users``/``items`` are raw or encoded ids [n]; pairs are
    assumed unique. Each round is vectorised; the loop runs over rounds only. Returns
    (keep mask [n], number of rounds that removed something).
    """
    if k < 1:
        raise ConfigError("k_core", f"must be >= 1, got {k}")
    user_codes = pd.factorize(np.asarray(users))[0]
    item_codes = pd.factorize(np.asarray(items))[0]
    alive = np.arange(user_codes.size)  # indices still kept
    rounds = 0
    while alive.size:
        u, i = user_codes[alive], item_codes[alive]
        ok = (np.bincount(u)[u] >= k) & (np.bincount(i)[i] >= k)
        if ok.all():
            break
        alive = alive[ok]
        rounds += 1
    keep = np.zeros(user_codes.size, dtype=bool)
    keep[alive] = True
    return keep, rounds


def unseen_in_train(
    train_users: np.ndarray,
    train_items: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
) -> np.ndarray:
    """Boolean mask over test rows whose user or item never occurs in train."""
    return ~(np.isin(test_users, train_users) & np.isin(test_items, train_items))


def check_test_in_train(
    train_users: np.ndarray,
    train_items: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    *,
    on_unseen: OnUnseen = "error",
    path: str | None = None,
    lines: np.ndarray | None = None,
) -> np.ndarray:
    """Check that every test user and item occurs in train; return the test rows to keep.

    A model cannot score a user or item it never trained on, so by default
    (``on_unseen="error"``) such a test row raises :class:`DataError` naming ``path`` and
    the line (``lines`` [n_test], 1-based) of the first one, with counts of all.
    ``"drop"`` returns a mask without them; ``"keep"`` returns all true. Ids may be raw or
    encoded, but train and test must use the same kind.
    """
    if on_unseen not in _ON_UNSEEN:
        raise ConfigError("on_unseen", f"must be one of {_ON_UNSEEN}, got {on_unseen!r}")
    test_users, test_items = np.asarray(test_users), np.asarray(test_items)
    if on_unseen == "keep":
        return np.ones(test_users.size, dtype=bool)
    user_seen = np.isin(test_users, np.asarray(train_users))
    item_seen = np.isin(test_items, np.asarray(train_items))
    seen = user_seen & item_seen
    if on_unseen == "error" and not seen.all():
        bad = np.flatnonzero(~seen)
        first = int(bad[np.argmin(lines[bad])]) if lines is not None else int(bad[0])
        what = (
            f"test user {test_users[first]!s}"
            if not user_seen[first]
            else f"test item {test_items[first]!s} (of user {test_users[first]!s})"
        )
        n_users = np.unique(test_users[~user_seen]).size
        n_items = np.unique(test_items[~item_seen]).size
        raise DataError(
            f"{what} does not occur in train; {bad.size:,} test rows are unseen in train "
            f"({n_users:,} users, {n_items:,} items). Every test user and item must occur "
            "in train: set on_unseen = 'drop' to drop those rows (negrec run: --set "
            "data.on_unseen=drop; negrec data: --unseen drop) or 'keep' to keep them",
            path=path,
            line=None if lines is None else int(lines[first]),
        )
    return seen


def check_test_in_train_table(
    table: pd.DataFrame, *, on_unseen: OnUnseen = "error"
) -> tuple[pd.DataFrame, int]:
    """:func:`check_test_in_train` on a pre-split table; returns (table, test rows dropped)."""
    if "part" not in table.columns:
        raise ValueError("check_test_in_train_table needs a pre-split table with a 'part' column")
    is_test = (table["part"] == "test").to_numpy()
    train, test = table[~is_test], table[is_test]
    keep_test = check_test_in_train(
        train["user"].to_numpy(),
        train["item"].to_numpy(),
        test["user"].to_numpy(),
        test["item"].to_numpy(),
        on_unseen=on_unseen,
        path=source_path(table, "test"),
        lines=test["line"].to_numpy() if "line" in test.columns else None,
    )
    keep = np.ones(len(table), dtype=bool)
    keep[np.flatnonzero(is_test)[~keep_test]] = False
    return table[keep], int(keep.size - keep.sum())


def handle_overlap(table: pd.DataFrame, on_overlap: OnOverlap = "drop") -> tuple[pd.DataFrame, int]:
    """Test rows of a pre-split table that repeat a training (user, item) pair.

    Such a pair is a target the model was trained on: the full-ranking evaluator reads a
    target's score before it masks the user's training items, so each one is an easy hit
    that inflates every metric. ``"drop"`` removes them, ``"keep"`` keeps them (the
    published protocol of a split that has them), ``"error"`` raises :class:`DataError`
    naming the test file and the line of the first. Returns (table, count of such rows).
    """
    if on_overlap not in _ON_OVERLAP:
        raise ConfigError("on_overlap", f"must be one of {_ON_OVERLAP}, got {on_overlap!r}")
    is_test = (table["part"] == "test").to_numpy()
    pairs = pd.MultiIndex.from_frame(table[["user", "item"]])
    repeat = np.zeros(len(table), dtype=bool)
    repeat[is_test] = pairs[is_test].isin(pairs[~is_test])
    count = int(repeat.sum())
    if not count or on_overlap == "keep":
        return table, count
    if on_overlap == "error":
        rows = table[repeat]
        lines = rows["line"].to_numpy() if "line" in rows.columns else None
        first = int(np.argmin(lines)) if lines is not None else 0
        raise DataError(
            f"test pair (user {rows['user'].iloc[first]!s}, item {rows['item'].iloc[first]!s}) "
            f"is also in train; {count:,} test rows repeat a training pair (easy hits that "
            "inflate every metric): set on_overlap = 'drop' (negrec run: --set "
            "data.on_overlap=drop; negrec data: --overlap drop) or 'keep'",
            path=source_path(table, "test"),
            line=None if lines is None else int(lines[first]),
        )
    return table[~repeat], count


# ------------------------------------------------------------------------- the pipeline
def _filter(
    table: pd.DataFrame,
    min_rating: float | None,
    k_core: int | None,
    on_overlap: OnOverlap | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """De-duplicate, threshold, handle train/test overlap (``on_overlap``, a pre-split
    table only) and k-core ``table``; returns it with the drop counts."""
    for column in ("user", "item"):
        if column not in table.columns:
            raise ValueError(f"the table needs a {column!r} column")
    counts = {"rows_read": len(table), "dropped_threshold": 0, "kcore_rounds": 0, "overlap": 0}
    table, counts["dropped_duplicates"] = deduplicate(table)
    if min_rating is not None:
        table, counts["dropped_threshold"] = apply_threshold(table, min_rating)
    if on_overlap is not None:  # after the threshold: only training positives count
        table, counts["overlap"] = handle_overlap(table, on_overlap)
    before = len(table)
    if k_core is not None:
        keep, counts["kcore_rounds"] = k_core_mask(
            table["user"].to_numpy(), table["item"].to_numpy(), k_core
        )
        table = table[keep]
    counts["dropped_kcore"] = before - len(table)
    return table, counts


def _nothing_left(counts: dict[str, int]) -> DataError:
    return DataError(
        f"no interactions left after filtering ({counts['rows_read']:,} rows read, "
        f"{counts['dropped_duplicates']:,} duplicates, "
        f"{counts['dropped_threshold']:,} below the rating threshold, "
        f"{counts['dropped_kcore']:,} by k-core); lower min_rating or k_core"
    )


def _build(
    table: pd.DataFrame,
    user_codes: np.ndarray,
    item_codes: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> Interactions:
    return Interactions.from_arrays(
        user_codes,
        item_codes,
        n_users=len(user_ids),
        n_items=len(item_ids),
        timestamps=table["timestamp"].to_numpy(np.float64)
        if "timestamp" in table.columns
        else None,
        ratings=table["rating"].to_numpy(np.float64) if "rating" in table.columns else None,
        user_ids=user_ids,
        item_ids=item_ids,
    )


def _vocabulary(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes [n], sorted unique raw ids) -- the contiguous encoding of one id column."""
    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), np.asarray(uniques)


def prepare(
    table: pd.DataFrame,
    *,
    min_rating: float | None = None,
    k_core: int | None = None,
) -> tuple[Interactions, PrepareReport]:
    """Turn a raw event table into :class:`Interactions` (see the module docstring).

    ``min_rating`` keeps ``rating >= min_rating``; ``k_core`` keeps the k-core. Raises
    :class:`DataError` when nothing is left. For a table with a ``part`` column use
    :func:`prepare_split`.
    """
    if "part" in table.columns:
        raise ValueError("this table is pre-split (it has a 'part' column): use prepare_split")
    table, counts = _filter(table, min_rating, k_core)
    if len(table) == 0:
        raise _nothing_left(counts)
    user_codes, user_ids = _vocabulary(table["user"])
    item_codes, item_ids = _vocabulary(table["item"])
    data = _build(table, user_codes, item_codes, user_ids, item_ids)
    report = PrepareReport(
        rows_read=counts["rows_read"],
        dropped_threshold=counts["dropped_threshold"],
        dropped_duplicates=counts["dropped_duplicates"],
        dropped_kcore=counts["dropped_kcore"],
        dropped_unseen=0,
        n_users=data.n_users,
        n_items=data.n_items,
        n_interactions=data.nnz,
        kcore_rounds=counts["kcore_rounds"],
        min_rating=min_rating,
        k_core=k_core,
    )
    return data, report


def prepare_split(
    table: pd.DataFrame,
    *,
    min_rating: float | None = None,
    k_core: int | None = None,
    on_unseen: OnUnseen = "error",
    on_overlap: OnOverlap = "drop",
) -> tuple[Interactions, Interactions, PrepareReport]:
    """Turn a pre-split table into (train, test) :class:`Interactions` over one id space.

    De-duplication is per part; test rows that repeat a training pair are dropped
    (``on_overlap``, see :func:`handle_overlap`); ``k_core`` counts train and test
    together; afterwards every test user and item must occur in train (``on_unseen``:
    ``"error"`` raises a :class:`DataError` naming the test file and line, ``"drop"``
    drops those test rows, ``"keep"`` keeps them -- the shared vocabulary then includes
    test-only ids). Users and items are encoded with one vocabulary over what is left of
    both parts.
    """
    if "part" not in table.columns:
        raise ValueError("prepare_split needs a pre-split table with a 'part' column")
    parts = set(table["part"].unique()) - {"train", "test"}
    if parts:
        raise ValueError(f"'part' must be 'train' or 'test', found {sorted(map(str, parts))}")
    table, counts = _filter(table, min_rating, k_core, on_overlap)
    table, dropped_unseen = check_test_in_train_table(table, on_unseen=on_unseen)
    last_drop = dropped_unseen if on_unseen == "drop" else 0
    while last_drop and k_core is not None:  # dropped test rows can leave some under k
        keep, rounds = k_core_mask(table["user"].to_numpy(), table["item"].to_numpy(), k_core)
        if keep.all():
            break
        table = table[keep]
        counts["dropped_kcore"] += int((~keep).sum())
        counts["kcore_rounds"] += rounds
        table, last_drop = check_test_in_train_table(table, on_unseen="drop")
        dropped_unseen += last_drop
    unseen_kept = 0
    if on_unseen == "keep":
        is_test = (table["part"] == "test").to_numpy()
        unseen_kept = int(
            unseen_in_train(
                table["user"].to_numpy()[~is_test],
                table["item"].to_numpy()[~is_test],
                table["user"].to_numpy()[is_test],
                table["item"].to_numpy()[is_test],
            ).sum()
        )
    if len(table) == 0:
        raise _nothing_left(counts)
    user_codes, user_ids = _vocabulary(table["user"])
    item_codes, item_ids = _vocabulary(table["item"])
    is_test = (table["part"] == "test").to_numpy()
    train, test = (
        _build(table[mask], user_codes[mask], item_codes[mask], user_ids, item_ids)
        for mask in (~is_test, is_test)
    )
    report = PrepareReport(
        rows_read=counts["rows_read"],
        dropped_threshold=counts["dropped_threshold"],
        dropped_duplicates=counts["dropped_duplicates"],
        dropped_kcore=counts["dropped_kcore"],
        dropped_unseen=dropped_unseen,
        n_users=len(user_ids),
        n_items=len(item_ids),
        n_interactions=train.nnz + test.nnz,
        kcore_rounds=counts["kcore_rounds"],
        min_rating=min_rating,
        k_core=k_core,
        parts={"train": train.nnz, "test": test.nnz},
        unseen_kept=unseen_kept,
        dropped_overlap=counts["overlap"] if on_overlap == "drop" else 0,
        overlap_kept=counts["overlap"] if on_overlap == "keep" else 0,
    )
    return train, test, report


def prepare_presplit(
    train_path: PathLike,
    test_path: PathLike,
    *,
    format: str | None = None,
    min_rating: float | None = None,
    k_core: int | None = None,
    on_unseen: OnUnseen = "error",
    on_overlap: OnOverlap = "drop",
    **options: Any,
) -> tuple[Interactions, Interactions, PrepareReport]:
    """Load a pre-split file pair and prepare it: :func:`~negrec.data.loaders.load_split`
    followed by :func:`prepare_split` (``options`` go to the format's loader)."""
    table = load_split(train_path, test_path, format, **options)
    return prepare_split(
        table, min_rating=min_rating, k_core=k_core, on_unseen=on_unseen, on_overlap=on_overlap
    )
