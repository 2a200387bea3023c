"""Interactions from a pandas DataFrame you already have: :func:`from_pandas`.

The in-memory twin of the file loaders: name the columns holding the user and item ids
(and optionally a rating and a timestamp), and the rows go through the same preparation
as a file (:mod:`negrec.data.prepare`: de-duplication keeping the latest row, rating
threshold, k-core, contiguous ids). Raw ids are kept exactly as they are in the frame --
strings stay strings (``"007"`` and ``"7"`` are two users), unicode included -- and are the
vocabularies :attr:`Interactions.user_ids` / ``item_ids`` map back to.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from negrec.data.interactions import Interactions
from negrec.data.prepare import PrepareReport, prepare
from negrec.errors import ConfigError, DataError


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (shown as 3, not np.int64(3))."""
    return value.item() if isinstance(value, np.generic) else value


def _row_label(frame: pd.DataFrame, position: int) -> str:
    return f"row {position} (index {_plain(frame.index[position])!r})"


def _ids(frame: pd.DataFrame, column: str, role: str) -> np.ndarray:
    """The raw ids of ``column``, unchanged; a missing one or a mix of types is an error."""
    values = frame[column]
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"{_row_label(frame, int(np.argmax(missing)))}: missing {role} id in column "
            f"{column!r}; expected every row to have one"
        )
    array = values.to_numpy()
    kind = pd.api.types.infer_dtype(array, skipna=False)  # (in C, not a loop over rows)
    if kind.startswith("mixed"):  # e.g. 7 and "7": sorting them fails, and they would not match
        raise DataError(
            f"column {column!r} mixes {role} id types ({kind}); expected one type: "
            f"convert it first, e.g. df[{column!r}].astype(str)"
        )
    return array


def _numbers(frame: pd.DataFrame, column: str, role: str) -> np.ndarray:
    """``column`` as finite float64 (datetimes as seconds since the Unix epoch, UTC)."""
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        stamps = values.to_numpy(dtype="datetime64[ns]")
        floats = stamps.astype(np.int64) / 1e9
        floats[np.isnat(stamps)] = np.nan
    elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
        values.dtype
    ):
        floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        raise DataError(
            f"column {column!r} ({role}) has dtype {values.dtype}; expected numbers"
            + (" or datetimes" if role == "timestamp" else "")
        )
    bad = ~np.isfinite(floats)
    if bad.any():
        position = int(np.argmax(bad))
        raise DataError(
            f"{_row_label(frame, position)}: {role} {_plain(values.iloc[position])!r} in column "
            f"{column!r} is not a finite number"
        )
    return floats


def from_pandas(
    df: pd.DataFrame,
    *,
    user: str = "user",
    item: str = "item",
    rating: str | None = None,
    timestamp: str | None = None,
    min_rating: float | None = None,
    k_core: int | None = None,
) -> tuple[Interactions, PrepareReport]:
    """Interactions from the rows of ``df``, prepared like a data file.

    ``user`` / ``item`` name the id columns (any hashable ids: strings, integers; kept
    exactly). ``rating`` and ``timestamp`` name optional numeric columns (timestamps may
    also be datetimes; they become seconds since the Unix epoch) -- without ``timestamp``
    the last row of a repeated (user, item) pair wins and time-ordered splits are not
    available. ``min_rating`` keeps rows with ``rating >= min_rating``; ``k_core`` keeps
    the iterative k-core. Returns (Interactions with the raw-id vocabularies, the
    :class:`~negrec.data.prepare.PrepareReport` of what was dropped).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    roles: dict[str, str | None] = {
        "user": user,
        "item": item,
        "rating": rating,
        "timestamp": timestamp,
    }
    for role, column in roles.items():
        if column is not None and column not in df.columns:
            raise DataError(
                f"the DataFrame has no column {column!r} (for {role}); "
                f"columns are {[str(c) for c in df.columns]}"
            )
    if min_rating is not None and rating is None:
        raise ConfigError(
            "min_rating", "needs the rating column: from_pandas(df, rating='<column>', ...)"
        )
    frame = df
    columns: dict[str, Any] = {
        "user": _ids(frame, user, "user"),
        "item": _ids(frame, item, "item"),
    }
    if rating is not None:
        columns["rating"] = _numbers(frame, rating, "rating")
    if timestamp is not None:
        columns["timestamp"] = _numbers(frame, timestamp, "timestamp")
    return prepare(pd.DataFrame(columns), min_rating=min_rating, k_core=k_core)


__all__ = ["from_pandas"]
