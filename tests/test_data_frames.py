"""``negrec.from_pandas``: a DataFrame with any ids in, Interactions with exact
vocabularies out, prepared like a file (latest row wins, threshold, k-core)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import negrec
from negrec import from_pandas
from negrec.errors import ConfigError, DataError


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer": ["007", "7", "ünï", "007", "7", "7"],
            "product": ["a", "b", "ß", "b", "a", "b"],
            "stars": [5, 4, 5, 2, 1, 5],
            "when": pd.to_datetime(
                ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-06"]
            ),
        },
        index=[10, 11, 12, 13, 14, 15],
    )


def pairs(data) -> list[tuple]:
    users, items = data.to_coo()
    return list(zip(data.user_ids[users].tolist(), data.item_ids[items].tolist(), strict=True))


def test_exported_from_negrec():
    assert "from_pandas" in negrec.__all__
    assert negrec.from_pandas is from_pandas


def test_string_zero_padded_and_unicode_ids_are_kept_exactly():
    data, report = from_pandas(frame(), user="customer", item="product")
    assert data.user_ids.tolist() == ["007", "7", "ünï"]
    assert data.item_ids.tolist() == ["a", "b", "ß"]
    assert pairs(data) == [("007", "a"), ("007", "b"), ("7", "a"), ("7", "b"), ("ünï", "ß")]
    assert report.dropped_duplicates == 1  # (7, b) twice
    assert data.timestamps is None and data.ratings is None


def test_threshold_applies_to_the_latest_rating_by_time():
    data, report = from_pandas(
        frame(),
        user="customer",
        item="product",
        rating="stars",
        timestamp="when",
        min_rating=4,
    )
    # (007, b) rated 2 and (7, a) rated 1 are dropped; (7, b) was re-rated 5 (latest)
    assert pairs(data) == [("007", "a"), ("7", "b"), ("ünï", "ß")]
    assert data.ratings.tolist() == [5.0, 5.0, 5.0]
    day = 86400.0
    start = pd.Timestamp("2024-01-01").timestamp()
    assert data.timestamps.tolist() == [start, start + 5 * day, start + 2 * day]
    assert (report.dropped_duplicates, report.dropped_threshold) == (1, 2)


def test_numeric_timestamps_and_integer_ids():
    df = pd.DataFrame({"user": [3, 1, 3], "item": [9, 9, 8], "timestamp": [2.0, 1.0, 3.0]})
    data, _ = from_pandas(df, timestamp="timestamp")
    assert data.user_ids.tolist() == [1, 3] and data.item_ids.tolist() == [8, 9]
    assert data.timestamps.tolist() == [1.0, 3.0, 2.0]  # user 1: item 9; user 3: items 8, 9


def test_k_core():
    df = pd.DataFrame({"user": ["a", "a", "b", "b", "c"], "item": ["x", "y", "x", "y", "x"]})
    data, report = from_pandas(df, k_core=2)
    assert data.user_ids.tolist() == ["a", "b"]
    assert report.dropped_kcore == 1


def test_a_split_keeps_the_raw_id_vocabularies():
    rng = np.random.default_rng(0)
    users = [f"user-{u:03d}" for u in rng.integers(0, 30, 400)]
    items = [f"item-{i}" for i in rng.integers(0, 40, 400)]
    data, _ = from_pandas(pd.DataFrame({"user": users, "item": items}))
    split = negrec.random_split(data, test_fraction=0.2, valid=0.1, seed=0)
    for part in (split.train, split.valid, split.test):
        assert part.user_ids.tolist() == sorted(set(users))
        assert part.item_ids.tolist() == sorted(set(items))


@pytest.mark.parametrize(
    ("kwargs", "df", "error", "words"),
    [
        ({"user": "who"}, None, DataError, "no column 'who' (for user); columns are"),
        ({"rating": "score"}, None, DataError, "no column 'score' (for rating)"),
        ({"min_rating": 4}, None, ConfigError, "needs the rating column"),
        (
            {},
            pd.DataFrame({"user": ["a", None], "item": ["x", "y"]}),
            DataError,
            "row 1 (index 1): missing user id",
        ),
        (
            {},
            pd.DataFrame({"user": [7, "7"], "item": ["x", "y"]}),
            DataError,
            "mixes user id types",
        ),
        (
            {"rating": "r"},
            pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "r": ["good", "bad"]}),
            DataError,
            "expected numbers",
        ),
        (
            {"timestamp": "t"},
            pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "t": [1.0, np.inf]}),
            DataError,
            "row 1 (index 1): timestamp inf",
        ),
    ],
)
def test_bad_input_is_one_clear_line(kwargs, df, error, words):
    df = pd.DataFrame({"user": ["a"], "item": ["x"]}) if df is None else df
    with pytest.raises(error) as caught:
        from_pandas(df, **kwargs)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_not_a_dataframe():
    with pytest.raises(DataError, match="expected a pandas DataFrame, got list"):
        from_pandas([("a", "x")])  # type: ignore[arg-type]
