"""The ``negrec`` command end to end, driven as a user would (``python -m negrec`` in a
subprocess, small configs in a temporary folder):

- ``negrec run CONFIG --set ...`` writes a complete run directory and prints a markdown
  table; ``negrec report RUN_DIR`` prints the table and writes the PNG;
- bad input (unknown key, wrong type, malformed TOML, a diverging run) exits with status 2
  and one line on stderr naming the key or line, no traceback, and leaves nothing in the
  output folder (not even a hidden staging directory);
- ``negrec --help`` and ``negrec run --help`` work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

CONFIG = """\
name = "tiny"

[data.synthetic]
n_users = 60
n_items = 80
mean_degree = 10

[model]
dim = 8

[sampler]
k = 2

[train]
epochs = 20
batch_size = 256
lr = 0.01
metric = "ndcg@10"

[eval]
ks = [5, 10]
"""

RUN_FILES = (
    "config.toml",
    "environment.json",
    "history.csv",
    "test_per_user.csv",
    "summary.json",
    "best.pt",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def negrec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "negrec", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One successful ``negrec run`` (2 epochs on tiny synthetic data)."""
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.toml"
    config.write_text(CONFIG)
    output = root / "runs"
    result = negrec(
        "run", str(config), "--set", "train.epochs=2", "--output", str(output), "--quiet",
        cwd=root,
    )
    return result, output


def test_run_writes_a_run_directory_and_prints_a_table(finished_run):
    result, output = finished_run
    assert result.returncode == 0, result.stderr
    run_dir = output / "tiny"
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert not [p.name for p in output.iterdir() if p.name.startswith(".")], "staging left"

    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| run |"))
    assert "test ndcg@10" in header
    row = next(line for line in lines if line.startswith("| tiny |"))
    assert row.count("|") == header.count("|")

    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2]  # --set train.epochs=2 won over the file
    assert "valid/ndcg@10" in history and "loss" in history
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["selection_metric"] == "ndcg@10"
    assert 0.0 <= summary["test"]["ndcg@10"] <= 1.0
    per_user = pd.read_csv(run_dir / "test_per_user.csv")
    assert len(per_user) == summary["n_test_users"] > 0
    assert per_user["ndcg@10"].mean() == pytest.approx(summary["test"]["ndcg@10"], abs=1e-5)
    stored = (run_dir / "config.toml").read_text()
    assert "epochs = 2" in stored and "n_users = 60" in stored
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["torch"] and env["python"]


def test_report_prints_the_table_and_writes_the_png(finished_run, tmp_path):
    result, output = finished_run
    assert result.returncode == 0, result.stderr
    run_dir = output / "tiny"
    plot = tmp_path / "curves.png"
    report = negrec("report", str(run_dir), "--plot", str(plot), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "| tiny |" in report.stdout and "| run |" in report.stdout
    assert plot.read_bytes().startswith(PNG_MAGIC)
    # the default place: beside the run directory, named after the selection metric
    default = output / "valid-ndcg@10.png"
    default.unlink(missing_ok=True)
    report = negrec("report", str(run_dir), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert default.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("extra", "config_text", "expected"),
    [
        ([], CONFIG.replace("[model]\n", "[model]\nwidth = 3\n"), "'model.width'"),
        ([], CONFIG + "bogus = 1\n", "'eval.bogus'"),
        (["--set", "train.epochs=ten"], CONFIG, "'train.epochs'"),
        ([], CONFIG.replace("dim = 8", "dim = = 8"), "line 9"),
        (["--set", "train.lr=1e30"], CONFIG, "epoch 1, batch"),  # fails mid-training
    ],
    ids=["unknown-key", "unknown-key-eval", "wrong-type", "malformed-toml", "diverged"],
)
def test_bad_input_exits_2_with_one_line_and_no_run_directory(
    tmp_path, extra, config_text, expected
):
    config = tmp_path / "bad.toml"
    config.write_text(config_text)
    output = tmp_path / "runs"
    result = negrec("run", str(config), *extra, "--output", str(output), "--quiet", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("negrec: error:")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    leftovers = sorted(p.name for p in output.iterdir()) if output.exists() else []
    assert leftovers == [], f"left in the output folder: {leftovers}"


def test_help(tmp_path):
    top = negrec("--help", cwd=tmp_path)
    assert top.returncode == 0
    assert "run" in top.stdout and "report" in top.stdout
    run = negrec("run", "--help", cwd=tmp_path)
    assert run.returncode == 0
    assert "--set" in run.stdout and "CONFIG" in run.stdout.upper()
