"""Bad input a user can type, in-process through ``negrec.cli.main``: each case must exit
with status 2 and one ``negrec: error:`` line naming the key, file or option, never a
Python traceback from deep inside (numpy's seed check, torch's device parser, pandas'
CSV reader, ``os.replace``). Regressions from a review that drove every command with
such input; nothing here trains beyond a config check.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import write_fake_run

from negrec.atomic import staging_folder
from negrec.cli import main
from negrec.errors import NegrecError, first_line
from negrec.experiment import rundir
from negrec.experiment.aggregate import group_runs
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.report import load_runs

CONFIG = """\
name = "tiny"

[data.synthetic]
n_users = 30
n_items = 40
mean_degree = 6

[model]
dim = 4

[train]
epochs = 1
metric = "ndcg@10"

[eval]
ks = [10]
"""


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("negrec: error:"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.seed=-1", "train.seed"),  # numpy refuses negative seeds, deep inside
        ("data.synthetic.seed=-3", "data.synthetic.seed"),
        ("data.synthetic.n_users=0", "data.synthetic.n_users"),
        ("data.synthetic.n_clusters=0", "data.synthetic.n_clusters"),
        ("data.synthetic.mean_degree=0", "data.synthetic.mean_degree"),  # trained silently
        ("train.lr=inf", "train.lr"),  # nan was refused, inf passed and diverged at batch 2
        ("name=a/b", "name"),  # a path, not a folder name
        ("name=..", "name"),
        ('name=""', "name"),  # trained into a folder called "-2"
        ("train.device=gpu", "train.device"),  # torch's RuntimeError from its parser
    ],
)
def test_a_bad_setting_is_one_line_naming_the_key(config, tmp_path, capsys, override, named):
    output = tmp_path / "runs"
    code = main(["run", str(config), "--quiet", "--set", override, "--output", str(output)])
    assert code == 2
    assert f"'{named}'" in one_error_line(capsys)
    assert not output.exists() or list(output.iterdir()) == []  # nothing half-written


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_on_a_machine_without_it_names_train_device(config, tmp_path, capsys):
    code = main(["run", str(config), "--quiet", "--set", "train.device=cuda"])
    assert code == 2 and "'train.device'" in one_error_line(capsys)


def test_an_output_that_is_a_file_and_a_config_that_is_a_folder(config, tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    assert main(["run", str(config), "--quiet", "--output", str(a_file)]) == 2
    assert str(a_file) in one_error_line(capsys)
    assert main(["run", str(tmp_path), "--quiet"]) == 2
    assert str(tmp_path) in one_error_line(capsys)


def test_resume_from_a_damaged_checkpoint_names_the_file(tmp_path, capsys):
    staging = tmp_path / "runs" / ".tiny.tmp-abc"
    staging.mkdir(parents=True)
    raw = {"name": "tiny", "output": str(tmp_path / "runs"), "train": {"epochs": 1}}
    rundir.write_toml(staging / "config.toml", ExperimentConfig.from_dict(raw).to_toml_dict())
    (staging / rundir.CHECKPOINT).write_bytes(b"PK\x03\x04 cut short")
    assert main(["run", "--resume", str(staging), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert rundir.CHECKPOINT in line and "cannot read the checkpoint" in line


@pytest.mark.parametrize(
    ("damaged", "content"),
    [
        ("summary.json", ""),
        ("summary.json", "{bad"),
        ("history.csv", ""),
        ("history.csv", b"epoch,loss\n\xff\xfe,1\n"),
    ],
)
def test_report_on_a_damaged_run_names_the_file(tmp_path, capsys, damaged, content):
    run = write_fake_run(tmp_path / "runs", "r")
    target = run / damaged
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["report", str(run)]) == 2
    assert str(target) in one_error_line(capsys)


def test_a_malformed_stored_config_names_the_file(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write_fake_run(runs, f"r{seed}", seed=seed)
    (runs / "r1" / "config.toml").write_text("[train\n")
    with pytest.raises(NegrecError, match=r"r1/config\.toml: not valid TOML"):
        group_runs(load_runs([runs]))


def test_report_metric_that_no_run_has_lists_the_ones_they_have(tmp_path, capsys):
    run = write_fake_run(tmp_path / "runs", "r")
    assert main(["report", str(run), "--metric", "nosuch"]) == 2
    line = one_error_line(capsys)
    assert "--metric nosuch" in line and "ndcg@20" in line
    assert not list((tmp_path / "runs").glob("*.png"))  # no empty plot written


@pytest.mark.parametrize(
    "argv",
    [
        ["theory", "simulate-opauc", "--seed", "-1"],
        ["theory", "check", "--seed", "-1"],
        ["run", "--seed", "-2"],
        ["hardness", "RUN", "--seed", "-1"],
        ["data", "fetch", "ml-100k", "--timeout", "-5"],
        ["data", "fetch", "ml-100k", "--timeout", "nan"],
    ],
)
def test_a_bad_option_value_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and argv[-2] in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_staging_folders_get_the_usual_mode_not_mkdtemps_0700(tmp_path):
    """A run directory or cache entry is a staging folder renamed into place: with
    mkdtemp's 0700 it stayed unreadable to the rest of a group or a shared Ray volume."""
    old = os.umask(0o022)
    try:
        folder = staging_folder(tmp_path, prefix=".x.")
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_an_error_with_an_empty_message_is_quoted_by_its_type():
    """``str(err).splitlines()[0]`` raised IndexError on an empty message (EOFError())."""
    assert first_line(EOFError()) == "EOFError"
    assert (
        first_line(RuntimeError("Expected one of cpu, cuda\nmore")) == "Expected one of cpu, cuda"
    )
