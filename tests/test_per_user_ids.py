"""Raw ids in per-user outputs (issue 18): ``test_per_user.csv`` has ``user`` (the id
from the data file) and ``user_index`` (the model's internal index); old run directories
with only the internal ``user`` column still read, and tables of two runs join on
``user``. End to end: ``negrec run`` on a CSV with string ids writes them back."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from negrec.experiment.rundir import read_per_user, write_per_user

IDS = np.array(["007", "7", "NA", "ünï", "a,b"], dtype=object)


def test_written_with_raw_ids_and_the_internal_index(tmp_path):
    path = tmp_path / "test_per_user.csv"
    users = np.array([4, 0, 2, 1, 3])
    write_per_user(path, users, {"ndcg@10": np.array([0.5, 1.0, 0.0, 0.25, np.nan])}, IDS)
    table = read_per_user(path)
    assert list(table.columns) == ["user", "user_index", "ndcg@10"]
    assert table["user"].tolist() == ["a,b", "007", "NA", "7", "ünï"]
    assert table["user_index"].tolist() == [4, 0, 2, 1, 3]
    assert table["ndcg@10"].tolist()[:4] == [0.5, 1.0, 0.0, 0.25]
    assert np.isnan(table["ndcg@10"].iloc[4])  # a missing metric stays missing


def test_without_a_vocabulary_the_user_is_the_index(tmp_path):
    path = tmp_path / "test_per_user.csv"
    write_per_user(path, np.array([2, 0]), {"auc": np.array([0.5, 1.0])})
    table = read_per_user(path)
    assert table["user"].tolist() == ["2", "0"]
    assert table["user_index"].tolist() == [2, 0]


def test_old_run_files_with_only_the_internal_user_still_read(tmp_path):
    path = tmp_path / "test_per_user.csv"
    path.write_text("user,recall@10,ndcg@10\n3,0.5,0.25\n0,1,1\n")
    table = read_per_user(path)
    assert list(table.columns) == ["user", "user_index", "recall@10", "ndcg@10"]
    assert table["user_index"].tolist() == [3, 0]
    assert table["ndcg@10"].tolist() == [0.25, 1.0]


def test_two_runs_pair_on_the_raw_user(tmp_path):
    """Users evaluated in different orders (or with different internal indices) pair by id."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_per_user(a, np.array([0, 1, 3]), {"ndcg@10": np.array([0.1, 0.2, 0.4])}, IDS)
    write_per_user(b, np.array([3, 0, 1]), {"ndcg@10": np.array([0.8, 0.5, 0.6])}, IDS)
    paired = read_per_user(a).merge(read_per_user(b), on="user", suffixes=("_a", "_b"))
    by_user = {
        user: (a, b)
        for user, a, b in zip(paired["user"], paired["ndcg@10_a"], paired["ndcg@10_b"], strict=True)
    }
    assert by_user == {"007": (0.1, 0.5), "7": (0.2, 0.6), "ünï": (0.4, 0.8)}


CONFIG = """\
name = "own-csv"

[data]
source = "file"
path = "ratings.csv"
format = "delimited"
columns = {user = "user", item = "item", rating = "rating", timestamp = "timestamp"}

[split]
method = "leave_one_out"

[model]
dim = 4

[train]
epochs = 2
batch_size = 64
metric = "ndcg@5"

[eval]
ks = [5]
auc = false
betas = []
"""


def ratings_csv() -> tuple[str, list[str]]:
    """12 users (incl. '007', '7' and a unicode id) x 10 items each, out of 15 items."""
    rng = np.random.default_rng(0)
    users = ["007", "7", "ünï"] + [f"u{u:02d}" for u in range(9)]
    lines = ["user,item,rating,timestamp"]
    time = 0
    for user in users:
        for item in rng.choice(15, size=10, replace=False):
            time += 1
            lines.append(f"{user},i{item:02d},{rng.integers(1, 6)},{time}")
    return "\n".join(lines) + "\n", users


@pytest.mark.slow
def test_negrec_run_on_a_csv_writes_raw_user_ids(tmp_path):
    text, users = ratings_csv()
    (tmp_path / "ratings.csv").write_text(text, encoding="utf-8")
    (tmp_path / "cfg.toml").write_text(CONFIG, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "negrec", "run", "cfg.toml", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "runs" / "own-csv" / "test_per_user.csv"
    table = read_per_user(path)
    assert sorted(table["user"]) == sorted(users)  # leave-one-out: every user is tested
    vocabulary = sorted(users)  # internal index = position in the sorted raw ids
    assert [vocabulary[i] for i in table["user_index"]] == table["user"].tolist()
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)  # as a user would read it
    assert {"007", "7", "ünï"} <= set(raw["user"])
