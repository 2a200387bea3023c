"""``negrec recommend`` and ``negrec export`` end to end on a run trained on string ids."""

from __future__ import annotations

import builtins
import os
import sys

import numpy as np
import pandas as pd
import pytest
from test_recommend import train_run

from negrec.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    path, memory = train_run(folder, {"name": "mf", "dim": 4}, {"method": "random"})
    return path, memory


def test_recommend_writes_raw_ids(run, tmp_path, capsys):
    path, memory = run
    (tmp_path / "users.txt").write_text("007\nü-ser\n\n", encoding="utf-8")
    out = tmp_path / "recs.csv"
    assert (
        main(
            [
                "recommend",
                str(path),
                "--users",
                str(tmp_path / "users.txt"),
                "-n",
                "3",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out, dtype={"user": str, "item": str})
    expected = memory.recommend(["007", "ü-ser"], n=3)
    assert table["user"].tolist() == ["007"] * 3 + ["ü-ser"] * 3
    assert table["item"].tolist() == expected["item"].tolist()
    assert np.allclose(table["score"], expected["score"], rtol=1e-6)
    assert "6 recommendations written" in capsys.readouterr().err

    assert main(["recommend", str(path), "--users", "u1", "-n", "12", "--include-seen"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "user,rank,item,score" and len(printed) == 13  # every item, seen too
    assert main(["recommend", str(path), "--users", "u1", "-n", "12"]) == 0
    unseen = capsys.readouterr().out.splitlines()[1:]
    seen = set(memory.item_ids[memory.history.items_of(list(memory.user_ids).index("u1"))])
    assert unseen and not {line.split(",")[2] for line in unseen} & seen


def test_an_ids_file_with_a_bom_reads_its_first_id(run, tmp_path, capsys):
    """Regression: a users file saved with a UTF-8 BOM (Windows editors) made its first
    id '\\ufeff007', reported unknown; data files and configs with a BOM are accepted."""
    path, _ = run
    (tmp_path / "users.txt").write_bytes("\ufeff007\r\nü-ser\r\n".encode())
    assert main(["recommend", str(path), "--users", str(tmp_path / "users.txt"), "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split(",")[0] for line in lines] == ["007", "007", "ü-ser", "ü-ser"]


def test_recommend_errors_are_one_line(run, capsys):
    path, _ = run
    assert main(["recommend", str(path), "--users", "7", "nobody"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown user id: 'nobody'" in err
    assert (
        main(["recommend", str(path), "--users", "nobody", "--unknown", "popular", "-n", "2"]) == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["recommend", str(path.parent / "missing")]) == 2
    assert "not a finished run directory" in capsys.readouterr().err


def test_export_npz_and_csv(run, tmp_path):
    path, memory = run
    emb = memory.embeddings()
    assert main(["export", str(path), "--output", str(tmp_path / "e.npz")]) == 0
    with np.load(tmp_path / "e.npz", allow_pickle=False) as stored:
        assert stored["user_ids"].tolist() == list(memory.user_ids)  # '007' stays '007'
        assert stored["item_ids"].tolist() == list(memory.item_ids)
        assert np.array_equal(stored["users"], emb.users.to_numpy())
        assert np.array_equal(stored["items"], emb.items.to_numpy())
    assert main(["export", str(path), "--format", "csv", "--output", str(tmp_path / "csv")]) == 0
    items = pd.read_csv(tmp_path / "csv" / "items.csv", dtype={"item": str})
    users = pd.read_csv(tmp_path / "csv" / "users.csv", dtype={"user": str})
    assert list(items.columns) == ["item", "f0", "f1", "f2", "f3"]
    assert items["item"].tolist() == list(memory.item_ids)
    assert np.allclose(users.iloc[:, 1:].to_numpy(), emb.users.to_numpy(), rtol=1e-6)
    assert not [p for p in os.listdir(tmp_path / "csv") if p.endswith(".tmp")]


@pytest.mark.parametrize("fresh", [False, True])
def test_export_writes_two_files_non_transactionally(run, tmp_path, monkeypatch, capsys, fresh):
    """Regression: `export --format csv` wrote items.csv and users.csv as two separate
    atomic files, so a failure writing the second left a new items.csv beside the old
    users.csv (or alone). Now both are written or neither: earlier files stay intact and
    nothing new (not even the folder, or a staging folder) is left."""
    path, _ = run
    out = tmp_path / "csv"
    if not fresh:
        out.mkdir()
        for name in ("items.csv", "users.csv", "notes.txt"):
            (out / name).write_text(f"old {name}\n")
    real_to_csv = pd.DataFrame.to_csv
    calls = []

    def disk_full_on_second_file(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_to_csv(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full_on_second_file)
    with pytest.raises(OSError, match="No space left"):
        main(["export", str(path), "--format", "csv", "--output", str(out)])
    assert len(calls) == 2
    assert sorted(os.listdir(tmp_path)) == ([] if fresh else ["csv"])
    if not fresh:
        assert sorted(os.listdir(out)) == ["items.csv", "notes.txt", "users.csv"]
        for name in ("items.csv", "users.csv", "notes.txt"):
            assert (out / name).read_text() == f"old {name}\n"
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["export", str(path), "--format", "csv", "--output", str(out)]) == 0
    assert set(os.listdir(out)) == {"items.csv", "users.csv"} | (set() if fresh else {"notes.txt"})
    assert (out / "users.csv").read_text().startswith("user,f0,")


def test_export_parquet_and_its_missing_dependency(run, tmp_path, monkeypatch, capsys):
    path, memory = run
    pytest.importorskip("pyarrow")
    assert main(["export", str(path), "--format", "parquet", "--output", str(tmp_path / "pq")]) == 0
    items = pd.read_parquet(tmp_path / "pq" / "items.parquet")
    assert items["item"].tolist() == list(memory.item_ids)
    capsys.readouterr()
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pyarrow", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    assert main(["export", str(path), "--format", "parquet", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'negrec[parquet]'" in err
    assert not (tmp_path / "x").exists()


def test_hardness_runs_from_another_folder_without_the_data(run, tmp_path, monkeypatch, capsys):
    """Regression (issue 18): `negrec hardness RUN` failed outside the run's working
    directory (events.inter: file not found), the data root being stored as '.'."""
    path, _ = run
    monkeypatch.chdir(tmp_path)
    data = path.parent.parent / "events.inter"  # RUN = folder/runs/NAME
    moved = tmp_path / "moved.inter"
    data.rename(moved)
    try:
        assert (
            main(["hardness", str(path), "--users", "3", "--draws", "1", "--out", str(tmp_path)])
            == 0
        )
    finally:
        moved.rename(data)
    assert "Hardness of sampler" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("damaged", "bad_advice"), [("best.pt", "weights_only"), ("interactions.npz", "allow_pickle")]
)
def test_a_damaged_run_file_is_called_damaged_not_an_untrusted_pickle(
    run, tmp_path, capsys, damaged, bad_advice
):
    """Regression: a garbage best.pt / interactions.npz was reported with torch's and
    numpy's advice to load it unsafely (weights_only=False, allow_pickle=)."""
    import shutil

    path, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    whole = (copy / damaged).read_bytes()
    for content in (b"garbage\n", whole[: len(whole) // 2]):  # not a file at all, truncated
        (copy / damaged).write_bytes(content)
        assert main(["recommend", str(copy), "--users", "007"]) == 2
        err = capsys.readouterr().err
        assert f"{damaged}: cannot" in err and "damaged or truncated" in err
        assert bad_advice not in err
        assert err.count("\n") == 1


def test_output_that_is_a_folder_is_one_line_naming_it(run, tmp_path, capsys):
    """Regression: `recommend --output DIR` (a folder) failed naming a temporary file
    (`.../.DIR.io252kfk.tmp -> DIR: Is a directory`); the folder is named now."""
    path, _ = run
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["recommend", str(path), "--users", "007", "--output", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == f"negrec: error: {folder}: is a folder; expected the path of a file to write\n"
    assert not list(tmp_path.glob(".*.tmp"))
