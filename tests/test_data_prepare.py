"""Preparation (threshold, de-duplication, k-core, encoding) and ``negrec data stats``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from negrec.data.cli import add_commands
from negrec.data.prepare import (
    PrepareReport,
    apply_threshold,
    check_test_in_train,
    deduplicate,
    k_core_mask,
    prepare,
    prepare_presplit,
    prepare_split,
)
from negrec.errors import ConfigError, DataError


def table(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns)


def split_table(train: list[tuple], test: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(train + test, columns=["user", "item"])
    frame["line"] = [*range(1, len(train) + 1), *range(1, len(test) + 1)]
    frame["part"] = pd.Categorical(
        ["train"] * len(train) + ["test"] * len(test), categories=["train", "test"]
    )
    frame.attrs["paths"] = {"train": "tr.txt", "test": "te.txt"}
    return frame


def raw_pairs(data) -> list[tuple]:
    users, items = data.to_coo()
    return list(zip(data.user_ids[users].tolist(), data.item_ids[items].tolist(), strict=True))


# ------------------------------------------------------------------------- threshold
def test_threshold_keeps_ratings_at_or_above():
    frame = table(user=[1, 1, 2, 2], item=[1, 2, 1, 2], rating=[1.0, 4.0, 5.0, 3.5])
    kept, dropped = apply_threshold(frame, 4)
    assert dropped == 2
    assert kept["rating"].tolist() == [4.0, 5.0]
    data, report = prepare(frame, min_rating=4)
    assert raw_pairs(data) == [(1, 2), (2, 1)]
    assert data.ratings.tolist() == [4.0, 5.0]
    assert (report.rows_read, report.dropped_threshold, report.n_interactions) == (4, 2, 2)


def test_threshold_needs_a_rating_column():
    with pytest.raises(ConfigError, match="min_rating"):
        prepare(table(user=[1], item=[1]), min_rating=4)


# ------------------------------------------------------------------------- de-duplication
def test_dedup_keeps_latest_by_timestamp():
    frame = table(
        user=["a", "a", "a", "b", "a"],
        item=["x", "x", "x", "x", "y"],
        timestamp=[5.0, 9.0, 7.0, 1.0, 3.0],
        rating=[1.0, 2.0, 3.0, 4.0, 5.0],
    )
    kept, dropped = deduplicate(frame)
    assert dropped == 2
    assert kept["rating"].tolist() == [2.0, 4.0, 5.0]  # original order of the kept rows
    data, report = prepare(frame)
    assert report.dropped_duplicates == 2
    assert raw_pairs(data) == [("a", "x"), ("a", "y"), ("b", "x")]
    assert data.timestamps.tolist() == [9.0, 3.0, 1.0]
    assert data.ratings.tolist() == [2.0, 5.0, 4.0]


def test_dedup_runs_before_the_threshold():
    # rated 5, later re-rated 2: the current opinion is 2, so no positive at min_rating=4
    frame = table(user=[1, 1, 1], item=[7, 7, 8], timestamp=[1.0, 2.0, 3.0], rating=[5.0, 2.0, 4.0])
    data, report = prepare(frame, min_rating=4)
    assert raw_pairs(data) == [(1, 8)]
    assert (report.dropped_duplicates, report.dropped_threshold) == (1, 1)


def test_dedup_ties_and_no_timestamps_keep_the_last_row():
    tied = table(user=[1, 1, 1], item=[2, 2, 2], timestamp=[4.0, 4.0, 1.0], rating=[1.0, 2.0, 3.0])
    assert deduplicate(tied)[0]["rating"].tolist() == [2.0]
    untimed = table(user=[1, 1, 1], item=[2, 2, 3], rating=[1.0, 2.0, 3.0])
    kept, dropped = deduplicate(untimed)
    assert (kept["rating"].tolist(), dropped) == ([2.0, 3.0], 1)


def test_dedup_is_per_part_in_a_split():
    frame = split_table([(1, 1), (1, 2), (1, 2)], [(1, 2), (1, 1), (1, 1)])
    kept, dropped = deduplicate(frame)
    assert dropped == 2
    assert list(zip(kept["part"], kept["item"], strict=True)) == [
        ("train", 1), ("train", 2), ("test", 2), ("test", 1)
    ]  # fmt: skip


# ------------------------------------------------------------------------- k-core
def test_k_core_hand_example_needs_three_rounds():
    # D-z goes first (D has 1); then z has 1, so C-z goes; then C has 1, so C-y goes.
    users = np.array(["A", "A", "B", "B", "C", "C", "D"])
    items = np.array(["x", "y", "x", "y", "y", "z", "z"])
    keep, rounds = k_core_mask(users, items, 2)
    assert keep.tolist() == [True, True, True, True, False, False, False]
    assert rounds == 3
    data, report = prepare(table(user=users, item=items), k_core=2)
    assert raw_pairs(data) == [("A", "x"), ("A", "y"), ("B", "x"), ("B", "y")]
    assert (report.dropped_kcore, report.kcore_rounds) == (3, 3)
    assert "dropped 3 by 2-core filtering (3 rounds)" in str(report)


def test_k_core_one_is_a_no_op_and_zero_is_rejected():
    keep, rounds = k_core_mask(np.array([1, 2]), np.array([3, 4]), 1)
    assert keep.all() and rounds == 0
    with pytest.raises(ConfigError, match="k_core"):
        k_core_mask(np.array([1]), np.array([1]), 0)


def _reference_k_core(pairs: set[tuple[int, int]], k: int) -> set[tuple[int, int]]:
    """Remove one under-connected user or item at a time until none is left."""
    pairs = set(pairs)
    while True:
        user_deg: dict[int, int] = {}
        item_deg: dict[int, int] = {}
        for u, i in pairs:
            user_deg[u] = user_deg.get(u, 0) + 1
            item_deg[i] = item_deg.get(i, 0) + 1
        weak = next(((u, i) for u, i in pairs if user_deg[u] < k or item_deg[i] < k), None)
        if weak is None:
            return pairs
        u, i = weak
        pairs = {p for p in pairs if (p[0] != u if user_deg[u] < k else p[1] != i)}


@settings(max_examples=60, deadline=None)
@given(
    st.sets(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=80),
    st.integers(1, 4),
)
def test_k_core_property(pairs, k):
    ordered = sorted(pairs)
    users = np.array([u for u, _ in ordered], dtype=np.int64)
    items = np.array([i for _, i in ordered], dtype=np.int64)
    keep, _ = k_core_mask(users, items, k)
    kept_users, kept_items = users[keep], items[keep]
    # every remaining user and item has at least k interactions
    if keep.any():
        assert np.unique(kept_users, return_counts=True)[1].min() >= k
        assert np.unique(kept_items, return_counts=True)[1].min() >= k
    # a fixed point: filtering again changes nothing
    again, rounds = k_core_mask(kept_users, kept_items, k)
    assert again.all() and rounds == 0
    # and the largest such subset (the k-core is unique)
    kept = set(zip(kept_users.tolist(), kept_items.tolist(), strict=True))
    assert kept == _reference_k_core(set(ordered), k)


# ------------------------------------------------------------------------- encoding
def test_prepare_encodes_contiguous_ids_sorted_by_raw_id():
    data, report = prepare(table(user=[30, 10, 30], item=["b", "a", "a"]))
    assert data.user_ids.tolist() == [10, 30]
    assert data.item_ids.tolist() == ["a", "b"]
    assert data.indptr.tolist() == [0, 1, 3]
    assert data.indices.tolist() == [0, 0, 1]
    assert (report.n_users, report.n_items, report.n_interactions) == (2, 2, 3)
    assert report.density == pytest.approx(3 / 4)


def test_prepare_split_shares_one_vocabulary():
    frame = split_table([("u2", "b"), ("u1", "a"), ("u1", "c")], [("u1", "b"), ("u2", "c")])
    train, test, report = prepare_split(frame)
    assert train.user_ids.tolist() == test.user_ids.tolist() == ["u1", "u2"]
    assert train.item_ids.tolist() == test.item_ids.tolist() == ["a", "b", "c"]
    assert raw_pairs(train) == [("u1", "a"), ("u1", "c"), ("u2", "b")]
    assert raw_pairs(test) == [("u1", "b"), ("u2", "c")]
    assert test.indices.tolist() == [1, 2]
    assert report.parts == {"train": 3, "test": 2}
    assert report.n_interactions == 5


def test_prepare_split_unseen_options():
    frame = split_table([(1, 1), (2, 2)], [(1, 2), (1, 9), (3, 1)])
    with pytest.raises(DataError) as excinfo:
        prepare_split(frame)
    assert excinfo.value.path == "te.txt" and excinfo.value.line == 2
    assert "test item 9 (of user 1)" in str(excinfo.value)
    train, test, report = prepare_split(frame, on_unseen="drop")
    assert raw_pairs(test) == [(1, 2)]
    assert train.item_ids.tolist() == [1, 2] and train.user_ids.tolist() == [1, 2]
    assert report.dropped_unseen == 2
    assert "dropped 2 test rows whose user or item is not in train" in str(report)
    train, test, report = prepare_split(frame, on_unseen="keep")
    assert raw_pairs(test) == [(1, 2), (1, 9), (3, 1)]
    assert train.user_ids.tolist() == [1, 2, 3] and train.item_ids.tolist() == [1, 2, 9]
    assert (report.dropped_unseen, report.unseen_kept) == (0, 2)


def test_prepare_presplit_loads_and_prepares_a_file_pair(tmp_path: Path):
    (tmp_path / "train.txt").write_text("0 1 2\n1 2\n")
    (tmp_path / "test.txt").write_text("0 3\n1 1\n")
    with pytest.raises(DataError, match=r"test\.txt:1: test item 3"):
        prepare_presplit(tmp_path / "train.txt", tmp_path / "test.txt")
    train, test, report = prepare_presplit(
        tmp_path / "train.txt", tmp_path / "test.txt", format="lightgcn", on_unseen="drop"
    )
    assert raw_pairs(train) == [(0, 1), (0, 2), (1, 2)]
    assert raw_pairs(test) == [(1, 1)]
    assert report.dropped_unseen == 1


def test_prepare_split_k_core_counts_both_parts():
    # item 2 has one train and one test interaction: it survives a 2-core on both parts
    frame = split_table([(1, 1), (1, 2), (2, 1)], [(2, 2), (3, 1)])
    train, test, report = prepare_split(frame, k_core=2)
    assert raw_pairs(train) == [(1, 1), (1, 2), (2, 1)]
    assert raw_pairs(test) == [(2, 2)]
    assert report.dropped_kcore == 1  # user 3 has one interaction


def test_prepare_split_dropping_unseen_test_rows_keeps_the_k_core():
    """Regression: k-core ran once, before unseen test rows were dropped, so a user whose
    second interaction was such a row ended with one interaction in a "2-core"."""
    # user 3: train item 1, test item 3 (item 3 also has user 0's test row, none in train)
    frame = split_table([(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1)], [(0, 3), (3, 3)])
    train, test, report = prepare_split(frame, k_core=2, on_unseen="drop")
    assert raw_pairs(train) == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert raw_pairs(test) == []
    assert (report.dropped_unseen, report.dropped_kcore) == (2, 1)
    degrees = np.bincount(train.to_coo()[0]) + np.bincount(test.to_coo()[0], minlength=3)
    assert degrees.min() >= 2


def test_unseen_check_on_arrays():
    train_u, train_i = np.array([0, 1]), np.array([5, 6])
    keep = check_test_in_train(
        train_u, train_i, np.array([0, 2, 1]), np.array([6, 5, 7]), on_unseen="drop"
    )
    assert keep.tolist() == [True, False, False]
    with pytest.raises(DataError, match="test user 2 does not occur in train") as excinfo:
        check_test_in_train(train_u, train_i, np.array([0, 2]), np.array([6, 5]))
    assert excinfo.value.line is None
    invalid: Any = "ignore"
    with pytest.raises(ConfigError, match="on_unseen"):
        check_test_in_train(train_u, train_i, train_u, train_i, on_unseen=invalid)


def test_wrong_table_kind_and_nothing_left():
    with pytest.raises(ValueError, match="prepare_split"):
        prepare(split_table([(1, 1)], [(1, 1)]))
    with pytest.raises(ValueError, match="'part' column"):
        prepare_split(table(user=[1], item=[1]))
    with pytest.raises(DataError, match="no interactions left"):
        prepare(table(user=[1, 2], item=[1, 2]), k_core=2)


def test_train_test_overlap_is_not_silent():
    """Regression: test pairs that repeat a training pair (8,743 in a public split) loaded
    without a word; the evaluator reads a target's score before masking training items,
    so each is an easy hit that inflates every metric."""
    frame = split_table([(1, 1), (1, 2), (2, 2), (2, 3)], [(1, 2), (1, 3), (2, 2), (2, 1)])
    train, test, report = prepare_split(frame)  # default: drop, and say how many
    assert raw_pairs(test) == [(1, 3), (2, 1)] and train.nnz == 4
    assert (report.dropped_overlap, report.overlap_kept) == (2, 0)
    assert "dropped 2 test rows that repeat a training (user, item) pair" in str(report)
    assert report.parts == {"train": 4, "test": 2}
    with pytest.raises(DataError) as excinfo:
        prepare_split(frame, on_overlap="error")
    assert excinfo.value.path == "te.txt" and excinfo.value.line == 1
    message = str(excinfo.value)
    assert "(user 1, item 2) is also in train" in message and "2 test rows" in message
    assert "on_overlap" in message and "\n" not in message
    _, test, report = prepare_split(frame, on_overlap="keep")
    assert test.nnz == 4 and (report.dropped_overlap, report.overlap_kept) == (0, 2)
    assert "kept 2 test rows that repeat a training (user, item) pair" in str(report)
    with pytest.raises(ConfigError, match="on_overlap"):
        prepare_split(frame, on_overlap="ignore")  # type: ignore[arg-type]


def test_overlap_counts_positives_only_and_reaches_data_stats(tmp_path: Path, capsys):
    """A training pair below the rating threshold is no training positive: its test
    copy is no overlap. ``data stats`` reports the count and takes --overlap."""
    train = tmp_path / "train.inter"
    train.write_text(
        "user_id:token\titem_id:token\trating:float\n1\t1\t5\n1\t2\t1\n2\t1\t5\n2\t2\t5\n"
    )
    test = tmp_path / "test.inter"
    test.write_text("user_id:token\titem_id:token\trating:float\n1\t1\t5\n1\t2\t5\n")
    argv = ["data", "stats", str(train), "--test", str(test), "--min-rating", "4"]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "dropped 1 test rows that repeat a training (user, item) pair" in out
    assert "(train 3, test 1)" in out
    assert run([*argv, "--overlap", "error"]) == 2
    assert "test.inter:2: test pair (user 1, item 1) is also in train" in capsys.readouterr().err


def test_report_reads_well():
    report = PrepareReport(
        rows_read=1000,
        dropped_threshold=100,
        dropped_duplicates=5,
        dropped_kcore=20,
        dropped_unseen=0,
        n_users=10,
        n_items=50,
        n_interactions=875,
        kcore_rounds=1,
        min_rating=4.0,
        k_core=5,
    )
    assert str(report).splitlines() == [
        "read 1,000 rows",
        "dropped 5 duplicate (user, item) rows (kept the latest of each pair)",
        "dropped 100 with rating < 4",
        "dropped 20 by 5-core filtering (1 round)",
        "kept 875 interactions: 10 users x 50 items",
    ]
    assert report.density == pytest.approx(875 / 500)


# ------------------------------------------------------------------------- data stats
def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="negrec")
    add_commands(main.add_subparsers(dest="command"))
    return main


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


def test_stats_prints_counts_density_and_quantiles(tmp_path: Path, capsys):
    path = tmp_path / "train.txt"
    path.write_text("1 10 20\n2 10 20\n3 10 30\n4 10 40\n")
    assert run(["data", "stats", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(lightgcn)" in out
    assert "users         4\n" in out
    assert "items         4\n" in out
    assert "interactions  8\n" in out
    assert "density       0.500000\n" in out
    table_lines = [line.split() for line in out.splitlines()[-3:]]
    assert table_lines[0] == ["degree", "min", "25%", "50%", "75%", "90%", "99%", "max"]
    assert table_lines[1] == ["user", "2", "2", "2", "2", "2", "2", "2"]
    # item degrees 4, 2, 1, 1 -> linear-interpolated quantiles
    assert table_lines[2] == ["item", "1", "1", "1.5", "2.5", "3.4", "3.9", "4"]


def test_stats_on_a_split_with_filters(tmp_path: Path, capsys):
    train = tmp_path / "train.inter"
    train.write_text("user_id:token\titem_id:token\trating:float\n1\t1\t5\n1\t2\t4\n2\t1\t1\n")
    test = tmp_path / "test.inter"
    test.write_text("user_id:token\titem_id:token\trating:float\n1\t1\t5\n3\t2\t5\n")
    argv = ["data", "stats", str(train), "--test", str(test), "--min-rating", "4"]
    argv += ["--overlap", "keep"]  # test pair (1, 1) repeats a training pair: kept here
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "test.inter:3: test user 3" in err and "--unseen drop" in err
    assert run([*argv, "--unseen", "drop"]) == 0
    out = capsys.readouterr().out
    assert "dropped 1 with rating < 4" in out
    assert "interactions  3  (train 2, test 1)" in out


def test_stats_reports_bad_input_without_traceback(tmp_path: Path, capsys):
    missing = tmp_path / "u.data"
    assert run(["data", "stats", str(missing)]) == 2
    assert f"{missing}: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser().parse_args(["data", "stats", str(missing), "--k-core", "0"])


def test_every_command_and_option_has_help():
    subparsers = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    data_help = {action.dest: action.help for action in subparsers._choices_actions}
    assert data_help["data"]
    data = subparsers.choices["data"]
    commands = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    assert all(action.help for action in commands._choices_actions)
    for command in commands.choices.values():
        assert command.description
        for action in command._actions:
            assert action.help, action.dest
