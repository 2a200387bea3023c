"""Loaders: every format round-trips, every kind of bad input names its file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from negrec.data.interactions import Interactions
from negrec.data.loaders import (
    detect_format,
    load,
    load_delimited,
    load_lightgcn,
    load_movielens_100k,
    load_movielens_csv,
    load_movielens_dat,
    load_recbole,
    load_sequences,
    load_split,
)
from negrec.data.prepare import prepare, prepare_split
from negrec.errors import ConfigError, DataError

SHARED = Path(__file__).parents[2] / "shared" / "data"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def rows(table: pd.DataFrame, *columns: str) -> list[tuple]:
    return list(zip(*(table[c].tolist() for c in columns), strict=True))


def assert_csr(data: Interactions, user_ids, item_ids, pairs, timestamps=None, ratings=None):
    """``pairs`` are (raw user, raw item) in CSR order (by user code, then item code)."""
    assert data.user_ids.tolist() == list(user_ids)
    assert data.item_ids.tolist() == list(item_ids)
    users, items = data.to_coo()
    got = list(zip(data.user_ids[users].tolist(), data.item_ids[items].tolist(), strict=True))
    assert got == list(pairs)
    if timestamps is None:
        assert data.timestamps is None
    else:
        assert data.timestamps.tolist() == list(timestamps)
    if ratings is None:
        assert data.ratings is None
    else:
        assert data.ratings.tolist() == list(ratings)


def error_at(excinfo: pytest.ExceptionInfo[DataError], path: Path, line: int | None) -> str:
    """Check a DataError names ``path`` and ``line``; return its message."""
    err = excinfo.value
    assert err.path == str(path)
    assert err.line == line
    message = str(err)
    assert path.name in message
    if line is not None:
        assert f":{line}:" in message
    return message


# ------------------------------------------------------------------------ round trips
def test_lightgcn_round_trip(tmp_path):
    path = write(tmp_path, "train.txt", "0 5 3\n\n7\n2 3 0 9\n")
    table = load_lightgcn(path)
    assert list(table.columns) == ["user", "item", "line"]
    assert rows(table, "user", "item", "line") == [
        (0, 5, 1), (0, 3, 1), (2, 3, 4), (2, 0, 4), (2, 9, 4)
    ]  # fmt: skip
    assert table["user"].dtype == np.int64 and table["item"].dtype == np.int64
    data, report = prepare(table)
    # user 7 has no items, so it has no rows and is not in the vocabulary
    assert_csr(data, [0, 2], [0, 3, 5, 9], [(0, 3), (0, 5), (2, 0), (2, 3), (2, 9)])
    assert report.n_interactions == 5


def test_lightgcn_tolerates_tabs_crlf_and_trailing_spaces(tmp_path):
    path = write(tmp_path, "train.txt", "0\t1 2 \r\n1 2\r\n")
    assert rows(load_lightgcn(path), "user", "item") == [(0, 1), (0, 2), (1, 2)]


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 50), st.lists(st.integers(0, 10**12), max_size=6, unique=True), min_size=1
    )
)
def test_lightgcn_property_round_trip(tmp_path_factory, adjacency):
    lines = [" ".join(map(str, [user, *items])) for user, items in adjacency.items()]
    path = write(tmp_path_factory.mktemp("lgcn"), "train.txt", "\n".join(lines) + "\n")
    table = load_lightgcn(path)
    expected = [(u, i) for u, items in adjacency.items() for i in items]
    assert rows(table, "user", "item") == expected


def test_sequence_round_trip_keeps_time_order(tmp_path):
    path = write(tmp_path, "train.txt", "1:30 10 20\n2:10\n3:\n")
    table = load_sequences(path)
    assert list(table.columns) == ["user", "item", "timestamp", "line"]
    assert rows(table, "user", "item", "timestamp", "line") == [
        (1, 30, 0.0, 1), (1, 10, 1.0, 1), (1, 20, 2.0, 1), (2, 10, 0.0, 2)
    ]  # fmt: skip
    data, _ = prepare(table)
    assert_csr(data, [1, 2], [10, 20, 30], [(1, 10), (1, 20), (1, 30), (2, 10)], [1, 2, 0, 0])
    assert [s.tolist() for s in data.sequences()] == [[2, 0, 1], [0]]


def test_sequence_user_on_two_lines_continues_positions(tmp_path):
    path = write(tmp_path, "train.txt", "1:30 10\n2:5\n1:20\n")
    table = load_sequences(path)
    assert rows(table, "user", "item", "timestamp") == [
        (1, 30, 0.0), (1, 10, 1.0), (2, 5, 0.0), (1, 20, 2.0)
    ]  # fmt: skip


def test_sequence_split_puts_test_after_train(tmp_path):
    train = write(tmp_path, "train.txt", "1:30 10 20\n2:10\n")
    test = write(tmp_path, "test.txt", "1:40\n2:20\n")
    table = load_split(train, test)
    assert list(table["part"]) == ["train"] * 4 + ["test"] * 2
    assert rows(table[table["part"] == "test"], "user", "item", "timestamp", "line") == [
        (1, 40, 3.0, 1), (2, 20, 1.0, 2)
    ]  # fmt: skip
    assert table.attrs["paths"] == {"train": str(train), "test": str(test)}
    train_x, test_x, _ = prepare_split(table, on_unseen="keep")
    assert_csr(test_x, [1, 2], [10, 20, 30, 40], [(1, 40), (2, 20)], [3.0, 1.0])
    assert [s.tolist() for s in train_x.sequences()] == [[2, 0, 1], [0]]


def test_recbole_round_trip_maps_columns_by_header_name(tmp_path):
    path = write(
        tmp_path,
        "toy.inter",
        "timestamp:float\titem_id:token\tuser_id:token\trating:float\tgenre:token_seq\n"
        "100\ti2\tu1\t4\ta b\n"
        "50\ti1\tu1\t2.5\tc\n"
        "70\ti1\tu2\t5\t\n",
    )
    table = load(path)
    assert list(table.columns) == ["user", "item", "rating", "timestamp", "line"]
    assert rows(table, "user", "item", "rating", "timestamp", "line") == [
        ("u1", "i2", 4.0, 100.0, 2), ("u1", "i1", 2.5, 50.0, 3), ("u2", "i1", 5.0, 70.0, 4)
    ]  # fmt: skip
    data, _ = prepare(table)
    assert_csr(
        data,
        ["u1", "u2"],
        ["i1", "i2"],
        [("u1", "i1"), ("u1", "i2"), ("u2", "i1")],
        timestamps=[50.0, 100.0, 70.0],
        ratings=[2.5, 4.0, 5.0],
    )


def test_recbole_integer_tokens_become_ints_and_optional_columns(tmp_path):
    path = write(tmp_path, "toy.inter", "user_id:token\titem_id:token\n3\t-1\n3\t7\n")
    table = load_recbole(path)
    assert list(table.columns) == ["user", "item", "line"]
    assert table["item"].dtype == np.int64
    assert rows(table, "user", "item") == [(3, -1), (3, 7)]


def test_movielens_100k_round_trip(tmp_path):
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    table = load(path)
    assert rows(table, "user", "item", "rating", "timestamp") == [
        (196, 242, 3.0, 881250949.0), (186, 302, 3.0, 891717742.0)
    ]  # fmt: skip
    data, _ = prepare(table)
    assert_csr(data, [186, 196], [242, 302], [(186, 302), (196, 242)],
               [891717742.0, 881250949.0], [3.0, 3.0])  # fmt: skip


def test_movielens_dat_round_trip(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\r\n1::661::3::978302109\r\n")
    table = load(path)
    assert rows(table, "user", "item", "rating", "timestamp", "line") == [
        (1, 1193, 5.0, 978300760.0, 1), (1, 661, 3.0, 978302109.0, 2)
    ]  # fmt: skip
    data, _ = prepare(table)
    assert_csr(data, [1], [661, 1193], [(1, 661), (1, 1193)], [978302109.0, 978300760.0],
               [3.0, 5.0])  # fmt: skip


def test_movielens_csv_round_trip(tmp_path):
    path = write(
        tmp_path,
        "ratings.csv",
        "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n\n2,10,4.0,1\n",
    )
    table = load(path)
    assert rows(table, "user", "item", "rating", "timestamp", "line") == [
        (1, 31, 2.5, 1260759144.0, 2), (2, 10, 4.0, 1.0, 4)
    ]  # fmt: skip
    data, _ = prepare(table)
    assert_csr(data, [1, 2], [10, 31], [(1, 31), (2, 10)], [1260759144.0, 1.0], [2.5, 4.0])


def test_delimited_by_header_names(tmp_path):
    path = write(tmp_path, "clicks.psv", "ts|who|what\n5|alice|x\n6|bob|y\n")
    table = load(path, "delimited", user="who", item="what", timestamp="ts", delimiter="|")
    assert list(table.columns) == ["user", "item", "timestamp", "line"]
    assert rows(table, "user", "item", "timestamp", "line") == [
        ("alice", "x", 5.0, 2), ("bob", "y", 6.0, 3)
    ]  # fmt: skip
    data, _ = prepare(table)
    assert_csr(data, ["alice", "bob"], ["x", "y"], [("alice", "x"), ("bob", "y")], [5.0, 6.0])


def test_delimited_line_numbers_with_leading_blank_lines(tmp_path):
    path = write(tmp_path, "x.csv", "\n \nu,i\n\n1,2\n3,4\n")
    assert rows(load_delimited(path, user="u", item="i"), "user", "line") == [(1, 5), (3, 6)]
    bad = write(tmp_path, "y.csv", "\n \nu,i\n\n1,2\n3,\n")
    with pytest.raises(DataError) as excinfo:
        load_delimited(bad, user="u", item="i")
    assert "empty item id" in error_at(excinfo, bad, 6)


def test_delimited_by_position_without_header(tmp_path):
    path = write(tmp_path, "data.txt", "9;1;0.5\n8;2;1.5\n")
    table = load_delimited(path, user=1, item=0, rating=2, delimiter=";", header=False)
    assert rows(table, "user", "item", "rating") == [(1, 9, 0.5), (2, 8, 1.5)]


def test_delimited_whitespace_and_multichar_delimiters(tmp_path):
    spaced = write(tmp_path, "a.txt", "1   2\t3\n  4 5 6\n")
    table = load_delimited(spaced, user=0, item=2, delimiter=None, header=False)
    assert rows(table, "user", "item", "line") == [(1, 3, 1), (4, 6, 2)]
    piped = write(tmp_path, "b.txt", "a||b\nc||d\n")
    table = load_delimited(piped, user=0, item=1, delimiter="||", header=False)
    assert rows(table, "user", "item") == [("a", "b"), ("c", "d")]


def test_padded_ids_are_stripped(tmp_path):
    path = write(tmp_path, "x.csv", "u, i, r\n a , 7, 1.5\n b,8 ,2\n")
    table = load_delimited(path, user="u", item="i", rating="r")
    assert rows(table, "user", "item", "rating") == [("a", 7, 1.5), ("b", 8, 2.0)]


def test_utf8_bom_and_string_ids(tmp_path):
    path = write(tmp_path, "x.csv", "\ufeffu,i\nzoë,1\n")
    table = load_delimited(path, user="u", item="i")
    assert rows(table, "user", "item") == [("zoë", 1)]


def test_load_split_harmonises_id_types(tmp_path):
    train = write(tmp_path, "train.inter", "user_id:token\titem_id:token\n1\t2\n")
    test = write(tmp_path, "test.inter", "user_id:token\titem_id:token\nx\t2\n")
    table = load_split(train, test)
    assert table["user"].tolist() == ["1", "x"]
    assert table["item"].dtype == np.int64


def test_zero_padded_ids_stay_text_and_match_across_a_split(tmp_path):
    """Regression: "007" and "7" became the same int id 7 (two items merged), and in a
    pre-split pair whose test file fell back to strings, train's "0007" came back as "7"
    and no longer matched test's "0007" (an unseen-item error, or a silent drop)."""
    path = write(tmp_path, "x.csv", "u,i\nu1,7\nu1,007\nu2,0\n")
    assert rows(load_delimited(path, user="u", item="i"), "item") == [("7",), ("007",), ("0",)]
    plain = write(tmp_path, "plain.csv", "u,i\nu1,7\nu2,0\nu3,-12\n")
    assert load_delimited(plain, user="u", item="i")["item"].tolist() == [7, 0, -12]
    minus_zero = write(tmp_path, "m.csv", "u,i\nu1,-0\nu2,0\n")
    assert load_delimited(minus_zero, user="u", item="i")["item"].tolist() == ["-0", "0"]
    train = write(tmp_path, "train.inter", "user_id:token\titem_id:token\n1\t0007\n2\t42\n")
    test = write(tmp_path, "test.inter", "user_id:token\titem_id:token\n2\t0007\n1\tB00X\n")
    table = load_split(train, test)
    assert table["item"].tolist() == ["0007", "42", "0007", "B00X"]


def test_load_split_parts_must_have_the_same_columns(tmp_path):
    train = write(tmp_path, "train.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    test = write(tmp_path, "test.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataError) as excinfo:
        load_split(train, test)
    assert "expected both parts to have the same columns" in error_at(excinfo, test, None)


# ------------------------------------------------------------------------ dispatch
@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("u.data", "", "movielens-100k"),
        ("ratings.dat", "", "movielens-dat"),
        ("ratings.csv", "", "movielens-csv"),
        ("ml-100k.inter", "", "recbole"),
        ("train.txt", "\n1:2 3\n", "sequence"),
        ("train.txt", "1 2 3\n", "lightgcn"),
    ],
)
def test_detect_format(tmp_path, name, content, expected):
    assert detect_format(write(tmp_path, name, content)) == expected


def test_undetectable_or_unknown_format_is_a_config_error(tmp_path):
    path = write(tmp_path, "data.csv", "a,b\n")
    with pytest.raises(ConfigError, match="format"):
        load(path)
    with pytest.raises(ConfigError, match="unknown format 'parquet'"):
        load(path, "parquet")
    with pytest.raises(ConfigError, match="wrong options for format 'lightgcn'"):
        load(path, "lightgcn", delimiter=",")
    with pytest.raises(ConfigError, match="missing a required argument: 'user'"):
        load(path, "delimited")


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("loader", "name", "content", "line", "expected"),
    [
        (load_lightgcn, "a.txt", "0 1\n\n1 2 x 3\n", 3, "item 'x' is not a non-negative integer"),
        (load_lightgcn, "a.txt", "0 1\n1.5 2\n", 2, "user '1.5' is not a non-negative integer"),
        (load_lightgcn, "a.txt", "0 1\n1 -2\n", 2, "item '-2'"),
        (load_lightgcn, "a.txt", "0 99999999999999999999\n", 1, "not a non-negative integer"),
        (load_sequences, "s.txt", "1:2 3\n2 3 4\n", 2, "no ':'"),
        (load_sequences, "s.txt", "1:2 3\n2:3:4\n", 2, "item '3:4'"),
        (load_sequences, "s.txt", "1:2\n\nu:3\n", 3, "user 'u'"),
        (load_movielens_100k, "u.data", "1\t2\t3\t4\n1\t2\t3\n", 2, "found 3 fields, expected 4"),
        (load_movielens_100k, "u.data", "1\t2\t3\t4\t5\n", 1, "found 5 fields, expected 4"),
        (load_movielens_100k, "u.data", "1\t2\t3\t4\n1\tb\t3\t4\n", 2, "item id 'b'"),
        (load_movielens_dat, "ratings.dat", "1::2::3::4\n1::2::x::4\n", 2, "rating 'x'"),
        (load_movielens_dat, "ratings.dat", "1::2::3\n", 1, "found 3 fields"),
        (load_movielens_csv, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,NaN,4\n", 2,
         "rating 'NaN' is not a finite number"),
        (load_movielens_csv, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,\n", 2,
         "timestamp '' is not a finite number"),
        (load_movielens_csv, "ratings.csv", "user,movie\n1,2\n", 1, "does not start with userId"),
        (load_recbole, "a.inter", "user_id:token\titem_id:token\trating:float\n\n1\t2\tinf\n", 3,
         "rating 'inf' is not a finite number"),
        (load_recbole, "a.inter", "user_id:token\titem_id:token\n1\t\n", 2, "empty item id"),
        (load_recbole, "a.inter", "user_id:token\titem_id:token\n1\t2\n \t \n", 3, "empty user id"),
        (load_recbole, "a.inter", "user_id\titem_id\n1\t2\n", 1, "not 'name:type'"),
        (load_recbole, "a.inter", "uid:token\titem_id:token\n1\t2\n", 1, "no field 'user_id'"),
    ],
)  # fmt: skip
def test_malformed_lines_name_file_and_line(tmp_path, loader, name, content, line, expected):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as excinfo:
        loader(path)
    assert expected in error_at(excinfo, path, line)


def test_whitespace_delimited_field_count_error(tmp_path):
    path = write(tmp_path, "w.txt", "1 2 3\n4 5 6\n7 8\n")
    with pytest.raises(DataError) as excinfo:
        load_delimited(path, user=0, item=1, rating=2, delimiter=None, header=False)
    assert "found 2 fields, expected 3" in error_at(excinfo, path, 3)


def test_delimited_unknown_column_name(tmp_path):
    path = write(tmp_path, "x.csv", "a,b\n1,2\n")
    with pytest.raises(DataError) as excinfo:
        load_delimited(path, user="a", item="c")
    assert "no column 'c'" in error_at(excinfo, path, 1)
    with pytest.raises(ConfigError, match="needs a file with a header"):
        load_delimited(path, user="a", item="b", header=False)


@pytest.mark.parametrize(
    ("loader", "name", "content"),
    [
        (load_lightgcn, "a.txt", ""),
        (load_lightgcn, "a.txt", "\n  \n"),
        (load_sequences, "s.txt", ""),
        (load_movielens_100k, "u.data", ""),
        (load_movielens_csv, "ratings.csv", "userId,movieId,rating,timestamp\n"),
        (load_recbole, "a.inter", ""),
        (load_recbole, "a.inter", "user_id:token\titem_id:token\n\n"),
    ],
)
def test_empty_files_and_header_only(tmp_path, loader, name, content):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as excinfo:
        loader(path)
    message = error_at(excinfo, path, None)
    assert "empty" in message or "no data lines" in message


@pytest.mark.parametrize("fmt", ["lightgcn", "sequence", "recbole", "movielens-100k"])
def test_non_utf8_bytes(tmp_path, fmt):
    path = write(tmp_path, "bad.txt", b"1:1 2\n2:3\n3:\xff4\n")
    with pytest.raises(DataError) as excinfo:
        load(path, fmt)
    assert "0xff is not valid UTF-8" in error_at(excinfo, path, 3)


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError) as excinfo:
        load(missing)
    assert "file not found" in error_at(excinfo, missing, None)
    with pytest.raises(DataError) as excinfo:
        load(tmp_path, "lightgcn")
    assert "is a directory" in error_at(excinfo, tmp_path, None)


def test_unseen_test_user_and_item_name_the_test_file_and_line(tmp_path):
    train = write(tmp_path, "train.txt", "0 1 2\n1 2\n")
    test = write(tmp_path, "test.txt", "0 3\n1 1\n5 1\n")
    table = load_split(train, test)
    with pytest.raises(DataError) as excinfo:
        prepare_split(table)
    message = error_at(excinfo, test, 1)
    assert "test item 3 (of user 0)" in message
    assert "2 test rows are unseen in train (1 users, 1 items)" in message
    test_user = write(tmp_path, "test2.txt", "0 1\n\n7 2\n")
    with pytest.raises(DataError) as excinfo:
        prepare_split(load_split(train, test_user))
    assert "test user 7" in error_at(excinfo, test_user, 3)


# ------------------------------------------------------------------------ real data
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")


@pytest.mark.shared_data
@needs_shared
@pytest.mark.parametrize(
    ("name", "n_users", "n_items", "n_train", "n_test", "unseen_ok"),
    [
        ("ml-1m", 6038, 3533, 457819, 117462, False),
        ("gowalla", 29858, 40981, 810128, 217242, True),
        ("amazon-beauty", 22363, 12101, 176139, 22363, False),
    ],
)
def test_shared_pre_split_counts(name, n_users, n_items, n_train, n_test, unseen_ok):
    table = load_split(SHARED / name / "train.txt", SHARED / name / "test.txt")
    train, test, report = prepare_split(table, on_unseen="keep")
    assert (report.n_users, report.n_items) == (n_users, n_items)
    assert (train.nnz, test.nnz) == (n_train, n_test)
    assert report.dropped_duplicates == 0
    assert (report.unseen_kept == 0) == unseen_ok
    if not unseen_ok:  # ML-1M and Beauty have test items that never occur in train
        with pytest.raises(DataError, match=r"test\.txt:\d+: test item"):
            prepare_split(table)


@pytest.mark.shared_data
@needs_shared
def test_shared_ml100k_threshold():
    data, report = prepare(load(SHARED / "ml-100k" / "ml-100k.inter"), min_rating=4)
    assert report.rows_read == 100_000
    assert data.nnz == 55_375
    assert (data.n_users, data.n_items) == (942, 1447)
