"""The ``negrec theory`` commands, through a parser built with ``add_commands`` only."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from negrec.errors import NegrecError
from negrec.theory import bounds as B
from negrec.theory import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="negrec")
    sub = p.add_subparsers(dest="command", required=True)
    cli.add_commands(sub)
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


def table_rows(text: str, heading: str) -> list[list[str]]:
    """Cells of the markdown table under ``### heading``."""
    block = text.split(f"### {heading}")[1].split("###")[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return rows[2:] if len(rows) > 2 else []


def test_every_subcommand_has_help() -> None:
    p = parser()
    theory = next(
        a
        for a in p._subparsers._group_actions  # type: ignore[union-attr]
        if isinstance(a, argparse._SubParsersAction)
    ).choices["theory"]
    sub = next(a for a in theory._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"bounds", "simulate-opauc", "check"}
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert all(helps[name] for name in sub.choices)
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["theory"])
    assert exc.value.code == 2


def test_bounds_table_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            [
                "theory",
                "bounds",
                "--items",
                "1000",
                "--negatives",
                "10",
                "--rank",
                "10",
                "50",
                "--pos-score",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    ndcg = table_rows(out, "NDCG")
    mrr = table_rows(out, "MRR")
    assert [r[0] for r in ndcg] == ["10", "50"]
    # r+ = 10: m CCE/BPR/BCE(worst)/BCE(s+=2) = 3/2/2/2 and the docs/theory.md#theorem-1
    # probabilities
    r10 = ndcg[0]
    assert r10[2:10] == [
        "3",
        "5.89432e-05",
        "2",
        "0.00312996",
        "2",
        "0.00312996",
        "2",
        "0.00312996",
    ]
    assert ndcg[1][3] == "4.8513e-05" and ndcg[1][5] == "0.0104398"
    # docs/theory.md#mrr: r+ = 10, K = 10 for MRR
    assert mrr[0][2:6] == ["9", "3.79637e-21", "4", "6.26089e-07"]
    assert "s+=2" in out


def test_bounds_default_ranks_and_n0(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            [
                "theory",
                "bounds",
                "-N",
                "1000",
                "-K",
                "10",
                "--pos-score",
                "2",
                "--n0",
                "100",
                "-r",
                "5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    row = table_rows(out, "NDCG")[0]
    assert row[0] == "5" and row[-1] == "0.264093"  # docs/theory.md#theorem-1 further check
    assert run(["theory", "bounds", "-N", "1000", "-K", "10"]) == 0
    ranks = [int(r[0]) for r in table_rows(capsys.readouterr().out, "NDCG")]
    assert ranks == cli.default_ranks(1000)
    assert ranks[0] == 1 and ranks[-1] == 1000 and 10 in ranks


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["-N", "1000", "-K", "1000"], "--negatives K must lie in"),
        (["-N", "1000", "-K", "0"], "--negatives K must lie in"),
        (["-N", "1", "-K", "1"], "--items must be >= 2"),
        (["-N", "1000", "-K", "10", "-r", "0"], "--rank must lie in"),
        (["-N", "1000", "-K", "10", "-r", "1001"], "--rank must lie in"),
        (["-N", "1000", "-K", "10", "-r", "50", "--n0", "10"], "--n0 10 < r\\+ - 1"),
        (
            ["-N", "1000", "-K", "10", "-r", "5", "--pos-score", "-1", "--n0", "10"],
            "--n0 10 > r\\+ - 1",
        ),
        (["-N", "1000", "-K", "10", "--n0", "5000"], "--n0 must lie in"),
        (["-N", "1000", "-K", "10", "--pos-score", "inf"], "--pos-score must be finite"),
    ],
)
def test_bounds_bad_arguments(argv: list[str], match: str) -> None:
    with pytest.raises(NegrecError, match=match) as exc:
        run(["theory", "bounds", *argv])
    assert "\n" not in str(exc.value)
    assert exc.value.exit_code == 2


def test_simulate_opauc_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "sim"
    assert (
        run(
            [
                "theory",
                "simulate-opauc",
                "--permutations",
                "3000",
                "--ks",
                "5,20",
                "--seed",
                "1",
                "--out",
                str(out_dir),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["opauc_correlation.csv", "opauc_correlation.png", "opauc_summary.csv"]
    assert (out_dir / "opauc_correlation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = pd.read_csv(out_dir / "opauc_correlation.csv")
    assert list(curves.columns) == ["metric", "k", "n_beta", "beta", "corr"]
    assert len(curves) == 3 * 2 * 800
    summary = pd.read_csv(out_dir / "opauc_summary.csv")
    assert len(summary) == 6
    rec5 = summary[(summary.metric == "recall") & (summary.k == 5)].iloc[0]
    # the summary agrees with the curves
    curve5 = curves[(curves.metric == "recall") & (curves.k == 5)]
    assert rec5.best_n_beta == int(curve5.n_beta.iloc[int(np.argmax(curve5["corr"]))])
    assert rec5.corr_at_k == pytest.approx(float(curve5["corr"].iloc[4]))
    assert rec5.auc_corr == pytest.approx(float(curve5["corr"].iloc[-1]))
    assert rec5.corr_at_k > rec5.auc_corr + 0.3
    assert "| recall | 5 |" in text and "corr with AUC" in text
    # files are readable by others (not mkstemp's 0600) and no temporaries are left
    mode = (out_dir / "opauc_summary.csv").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--ks", "5,x"], "comma-separated integers"),
        (["--ks", "5,900"], "every K in --ks"),
        (["--permutations", "1"], "--permutations must be >= 2"),
        (["--positives", "0"], "--positives and --negatives"),
    ],
)
def test_simulate_opauc_bad_arguments(argv: list[str], match: str, tmp_path: Path) -> None:
    with pytest.raises(NegrecError, match=match):
        run(["theory", "simulate-opauc", "--out", str(tmp_path), *argv])
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "f.csv"
    target.write_text("old")

    def boom(path: Path) -> None:
        path.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        cli.atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.csv"]
    cli.atomic_write(target, lambda p: p.write_text("new"))
    assert target.read_text() == "new"


def test_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["theory", "check", "--draws", "3000", "--seed", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    results = [ln for ln in out if ln.startswith(("PASS", "FAIL"))]
    assert len(results) > 40
    assert all(ln.startswith("PASS") for ln in results)
    assert out[-1].startswith(f"{len(results)}/{len(results)} checks passed")


def test_check_fails_when_the_theory_is_wrong(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = B.bound_probability

    def off_by_a_bit(*args: object, **kwargs: object) -> np.ndarray:
        return np.minimum(real(*args, **kwargs) * 1.3 + 0.01, 1.0)  # type: ignore[arg-type]

    monkeypatch.setattr(B, "bound_probability", off_by_a_bit)
    assert run(["theory", "check", "--draws", "3000"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  worst case" in out


def test_check_bad_draws() -> None:
    with pytest.raises(NegrecError, match="--draws"):
        run(["theory", "check", "--draws", "10"])
