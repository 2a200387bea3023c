"""The ``negrec`` command end to end, driven as a user would (``python -m negrec`` in a
subprocess, small configs in a temporary folder):

- ``negrec run CONFIG --set ...`` writes a complete run directory and prints a markdown
  table; ``negrec report RUN_DIR`` prints the table and writes the PNG;
- bad input (unknown key, wrong type, malformed TOML) exits with status 2 and one line on
  stderr naming the key or line, no traceback, and leaves nothing in the output folder; a
  run failing mid-training leaves no hidden staging directory either;
- ``negrec --help`` and ``negrec run --help`` work (in-process: same parser, no import cost).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from negrec.cli import main
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import run_experiment
from negrec.train import TrainingDiverged

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "negrec", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


BAD = {  # case -> (config text, extra arguments, what the one-line error must name)
    "unknown-key": (CONFIG.replace("[model]\n", "[model]\nwidth = 3\n"), [], "'model.width'"),
    "wrong-type": (CONFIG, ["--set", "train.epochs=ten"], "'train.epochs'"),
    "malformed-toml": (
        CONFIG.replace("dim = 8", "dim = = 8"),
        [],
        "malformed-toml.toml:9: invalid TOML",
    ),
}


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess[str]]]:
    """The subprocesses of this file, started together (each pays seconds of imports):
    one good run (2 epochs on tiny synthetic data), then a report of it, and the bad
    inputs."""
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.toml").write_text(CONFIG)
    running = {
        "run": start(
            "run",
            "tiny.toml",
            "--set",
            "train.epochs=2",
            "--output",
            "runs",
            "--quiet",
            cwd=root,
        ),
    }
    for case, (text, extra, _) in BAD.items():
        (root / f"{case}.toml").write_text(text)
        running[case] = start(
            "run", f"{case}.toml", *extra, "--output", f"out-{case}", "--quiet", cwd=root
        )
    results = {"run": finish(running.pop("run"))}
    report = start("report", "runs/tiny", cwd=root)
    results.update({name: finish(process) for name, process in running.items()})
    results["report"] = finish(report)
    return root, results


@pytest.mark.slow
def test_run_writes_a_run_directory_and_prints_a_table(cli):
    root, results = cli
    result, output = results["run"], root / "runs"
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


@pytest.mark.slow
def test_report_prints_the_table_and_writes_the_png(cli):
    root, results = cli
    assert results["run"].returncode == 0, results["run"].stderr
    report = results["report"]
    assert report.returncode == 0, report.stderr
    assert "| tiny |" in report.stdout and "| run |" in report.stdout
    plot = root / "runs" / "tiny-valid-ndcg@10.png"  # beside the run, named after it and the metric
    assert f"plot: {Path('runs') / 'tiny-valid-ndcg@10.png'}" in report.stdout
    assert plot.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_line_and_no_run_directory(cli, case):
    root, results = cli
    result, expected = results[case], BAD[case][2]
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("negrec: error:")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    output = root / f"out-{case}"
    leftovers = sorted(p.name for p in output.iterdir()) if output.exists() else []
    assert leftovers == [], f"left in the output folder: {leftovers}"


def test_failure_during_training_leaves_no_staging_directory(tmp_path):
    """The runner's side of the same promise, in-process (a subprocess costs seconds):
    a run that diverges mid-training removes its hidden staging directory."""
    raw = tomllib.loads(CONFIG)
    raw["output"] = str(tmp_path / "runs")
    raw["train"]["lr"] = 1e30
    config = ExperimentConfig.from_dict(raw)
    with pytest.raises(TrainingDiverged, match="epoch 1, batch"):
        run_experiment(config, progress=False)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["report", "--help"]])
def test_help(argv, capsys):
    """In-process (the parser is the same; ``python -m negrec`` is exercised above)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: negrec")
    if argv == ["--help"]:
        assert "run" in out and "report" in out
    elif argv[0] == "run":
        assert "--set" in out and "config" in out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
