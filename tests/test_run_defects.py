"""Regressions from a reliability probe of ``negrec run`` / ``report`` / ``presets`` and the
config reader (issue 21's defects), driven in-process through ``negrec.cli.main`` on tiny
data: each test is named after the defect it pins down and failed before its fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import write_fake_run

from negrec._fast.fused import BlockedMFSteps
from negrec.cli import main
from negrec.experiment.config import ExperimentConfig, load_config, read_toml
from negrec.experiment.rundir import CHECKPOINT, find_resumable
from negrec.experiment.runner import run_experiment
from negrec.losses import Loss
from negrec.train import EXPLODED_WEIGHT, TrainingDiverged, check_weights

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TINY = """\
name = "tiny"

[data.synthetic]
n_users = 30
n_items = 40
mean_degree = 8

[model]
dim = 4

[sampler]
k = 2

[train]
epochs = 2
batch_size = 64
lr = 0.01
metric = "ndcg@10"

[eval]
ks = [10]
auc = false
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


# ------------------------------------------------------------------- divergence advice
def _diverge_in_epoch_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN from the 6th loss call on: batch 2 of epoch 2 (TINY has 4 batches per epoch),
    after a step of epoch 2, so resuming epoch 1's checkpoint with a lower rate can help;
    at batch 1 it could not (see the test after a checkpoint that already diverges)."""
    calls = {"n": 0}
    real_call = Loss.__call__

    def nan_after_epoch_one(self, pos, neg, **kwargs):
        calls["n"] += 1
        value = real_call(self, pos, neg, **kwargs)
        return value * float("nan") if calls["n"] > 5 else value

    real_value_and_grad = Loss.value_and_grad

    def nan_after_epoch_one_fused(self, scores, **kwargs):  # MF's default (fused) step
        calls["n"] += 1
        value, grad = real_value_and_grad(self, scores, **kwargs)
        return (value * float("nan") if calls["n"] > 5 else value), grad

    monkeypatch.setattr(Loss, "__call__", nan_after_epoch_one)
    monkeypatch.setattr(Loss, "value_and_grad", nan_after_epoch_one_fused)
    # BPR's blocked steps compute the loss in compiled code: take the per-step path
    monkeypatch.setattr(BlockedMFSteps, "applies", staticmethod(lambda loss: False))


def _diverged_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, **train: object) -> Path:
    """A run that diverged in epoch 2 (checkpoint of epoch 1 kept); its staging folder.
    ``train``: more [train] settings."""
    raw = tomllib.loads(TINY)
    raw["train"].update(epochs=3, **train)
    raw["output"] = str(tmp_path / "runs")
    _diverge_in_epoch_two(monkeypatch)
    with pytest.raises(TrainingDiverged):
        run_experiment(ExperimentConfig.from_dict(raw), progress=False)
    monkeypatch.undo()
    staging = find_resumable(tmp_path / "runs" / "tiny")
    assert torch.load(staging / CHECKPOINT, weights_only=True)["epoch"] == 1
    return staging


def test_divergence_advice_that_cannot_work(tmp_path, monkeypatch, capsys):
    """Regression: after `loss became inf` the printed `negrec run --resume DIR` diverged
    again at the same batch, and --resume refused `--set train.lr=...`."""
    staging = _diverged_run(tmp_path, monkeypatch, capsys)
    err = capsys.readouterr().err
    assert f"negrec run --resume {staging} --set train.lr=0.001" in err
    # overrides outside the documented set are refused, naming the allowed ones
    assert main(["run", "--resume", str(staging), "--set", "loss.name=bpr", "--quiet"]) == 2
    message = capsys.readouterr().err
    assert "loss.name" in message and "train.lr" in message and "train.patience" in message
    assert main(["run", "--resume", str(staging), "--set", "train.lr=0.001", "--quiet"]) == 0
    capsys.readouterr()
    final = tmp_path / "runs" / "tiny"
    summary = json.loads((final / "summary.json").read_text())
    assert summary["resumed"] == [{"after_epoch": 1, "set": {"train.lr": 0.001}}]
    history = pd.read_csv(final / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["resumed_with"].fillna("").tolist() == ["", "train.lr=0.001", ""]
    config = tomllib.loads((final / "config.toml").read_text())
    assert config["train"]["lr"] == 0.001  # what the run continued with


def test_resume_lr_override_is_ignored_on_a_plateau_schedule(tmp_path, monkeypatch, capsys):
    """Regression: with `lr_schedule = "plateau"`, `--resume DIR --set train.lr=X` was
    recorded (summary, history, config) but training went on at the lr the optimizer's
    restored state held: the plateau schedule never sets the rate, so X was never used."""
    staging = _diverged_run(tmp_path, monkeypatch, capsys, lr_schedule="plateau")
    assert main(["run", "--resume", str(staging), "--set", "train.lr=0.0005", "--quiet"]) == 0
    capsys.readouterr()
    history = pd.read_csv(tmp_path / "runs" / "tiny" / "history.csv")
    assert history["lr"].tolist() == [0.01, 0.0005, 0.0005]


def test_divergent_checkpoint_kept_as_good(tmp_path, capsys):
    """Regression: an epoch whose losses were finite but whose weights had exploded
    (plain SGD at lr 500: max |w| ~1e5 after epoch 1, ~5e10 after epoch 2, ~2e16 after
    epoch 3) was checkpointed as good; the loss overflowed in epoch 4, and `--resume`
    continued from epoch 3's |w| ~2e16, scores ~1e33, past help by any rate. Now an epoch
    ending above EXPLODED_WEIGHT is itself the divergence: its checkpoint is not
    written, and the kept one (epoch 1) resumes at a lower rate."""
    raw = tomllib.loads(TINY)
    raw["train"].update(epochs=4, optimizer="sgd", lr=500.0, patience=0)
    raw["loss"] = {"name": "bce"}
    raw["output"] = str(tmp_path / "runs")
    with pytest.raises(TrainingDiverged, match=r"weights exploded by the end of epoch 2") as info:
        run_experiment(ExperimentConfig.from_dict(raw), progress=False)
    assert "lower train.lr" in str(info.value)
    staging = find_resumable(tmp_path / "runs" / "tiny")
    assert f"negrec run --resume {staging} --set train.lr=50" in capsys.readouterr().err
    kept = torch.load(staging / CHECKPOINT, weights_only=True)
    assert kept["epoch"] == 1
    assert max(float(w.abs().max()) for w in kept["model"].values()) <= EXPLODED_WEIGHT
    assert main(["run", "--resume", str(staging), "--set", "train.lr=5", "--quiet"]) == 0


def test_check_weights_refuses_nan_and_huge_weights():
    layer = torch.nn.Linear(2, 2)
    check_weights(layer, 3)  # small finite weights pass
    with torch.no_grad():
        layer.bias[1] = 2 * EXPLODED_WEIGHT
    with pytest.raises(TrainingDiverged, match=r"epoch 3: max \|bias\| = 2e\+06") as info:
        check_weights(layer, 3)
    assert (info.value.epoch, info.value.batch) == (3, None)
    with torch.no_grad():
        layer.bias[1] = float("nan")
    with pytest.raises(TrainingDiverged, match="nan"):
        check_weights(layer, 1)


def test_stale_temp_file_inside_a_finished_run(tmp_path, monkeypatch, capsys):
    """Regression: killed mid-write and resumed, the final run directory kept the
    atomic writer's `.history.csv.XXXX.tmp`."""
    staging = _diverged_run(tmp_path, monkeypatch, capsys)
    (staging / ".history.csv.k3j9x.tmp").write_text("epoch,loss\n1,")
    (staging / ".checkpoint.pt.a1b2.tmp").write_bytes(b"\0")
    assert main(["run", "--resume", str(staging), "--quiet"]) != 2  # diverges again or not
    capsys.readouterr()
    final = tmp_path / "runs" / "tiny"
    where = final if final.is_dir() else staging
    assert not list(where.glob(".*.tmp"))


def test_orphan_staging_directories_are_reported(tiny, tmp_path, capsys):
    """Regression: a run killed before its first checkpoint left `.NAME.tmp-XXXX` that
    --resume cannot use, and `negrec run` said nothing about it."""
    output = tmp_path / "out"
    orphan = output / ".tiny.tmp-abc123"
    orphan.mkdir(parents=True)
    (orphan / "config.toml").write_text("")
    assert main(["run", str(tiny), "--output", str(output), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert str(orphan) in err and "no checkpoint" in err and "rm -r" in err
    assert orphan.exists()  # told about, not deleted behind the user's back


# ------------------------------------------------------------------- a run and its data
def _presplit(tmp_path: Path) -> Path:
    folder = tmp_path / "pair"
    folder.mkdir()
    # user 0: item 1 twice (a duplicate row); users 0-5 with 3 train items each
    train = ["0 1 1 2 3"] + [f"{u} {u % 4} {(u + 1) % 4} {(u + 2) % 4}" for u in range(1, 6)]
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    # user 0: item 0 (fresh), item 1 (repeats a training pair), item 9 (not in train)
    test = ["0 0 1 9"] + [f"{u} {(u + 3) % 4}" for u in range(1, 6)]
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    config = tmp_path / "pair.toml"
    config.write_text(
        TINY.replace(
            "[data.synthetic]\nn_users = 30\nn_items = 40\nmean_degree = 8\n",
            f'[data]\nsource = "presplit"\nroot = "{folder}"\ntrain = "train.txt"\n'
            'test = "test.txt"\nformat = "lightgcn"\non_unseen = "drop"\n\n'
            '[split]\nmethod = "given"\nvalid = 0.3\n',
        )
        .replace("[eval]\nks = [10]\nauc = false\n", "[eval]\nks = [2]\nauc = false\n")
        .replace('metric = "ndcg@10"', 'metric = "ndcg@2"')
    )
    return config


def test_a_run_is_silent_about_its_data(tmp_path, capsys):
    """Regression: `negrec run` printed nothing about duplicates, unseen test rows or
    train/test overlaps, and recorded none of it in the run."""
    config = _presplit(tmp_path)
    assert main(["run", str(config), "--output", str(tmp_path / "runs")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("negrec: data:")]
    assert len(lines) == 1, err
    line = lines[0]
    assert "1 duplicate" in line and "1 test row unseen in train" in line
    assert "1 test row repeating a training pair" in line
    run = tmp_path / "runs" / "tiny"
    summary = json.loads((run / "summary.json").read_text())
    data = summary["data"]
    assert (data["dropped_duplicates"], data["dropped_unseen"], data["dropped_overlap"]) == (
        1,
        1,
        1,
    )
    assert json.loads((run / "environment.json").read_text())["data"] == data


def test_a_presplit_config_stores_only_the_active_source_keys(tmp_path, capsys):
    """Regression: a pre-split run's resolved config.toml carried a [data.synthetic]
    block of generator settings it never read."""
    config = _presplit(tmp_path)
    assert main(["run", str(config), "--output", str(tmp_path / "runs"), "--quiet"]) == 0
    stored = tomllib.loads((tmp_path / "runs" / "tiny" / "config.toml").read_text())
    assert "synthetic" not in stored["data"] and stored["data"]["source"] == "presplit"
    assert "synthetic" in load_config(None).to_toml_dict()["data"]  # where it is read


def test_unseen_rows_advice_names_an_option_negrec_run_accepts(tmp_path, capsys):
    """Regression: the unseen-rows error of `negrec run` suggested `--unseen drop`, which
    only `negrec data` accepts."""
    config = _presplit(tmp_path)
    config.write_text(config.read_text().replace('on_unseen = "drop"\n', ""))
    assert main(["run", str(config), "--output", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "--set data.on_unseen=drop" in err
    advice = "--set data.on_unseen=drop"
    assert main(["run", str(config), "--output", str(tmp_path / "runs"), "--set", advice[6:]]) == 0


# --------------------------------------------------------------------------- config files
def test_a_utf8_bom_in_a_toml_config_is_accepted(tmp_path):
    """Regression: a config saved with a byte-order mark was refused (`Invalid statement`)."""
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff".encode() + TINY.encode())
    assert read_toml(path)["name"] == "tiny"


def test_a_toml_syntax_error_is_labelled_with_the_file_and_line(tmp_path, capsys):
    """Regression: the error read `config key '<path>': invalid TOML ...`."""
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[train]\nepochs = = 3\n')
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"negrec: error: {path}:3: invalid TOML"), err
    assert "config key" not in err and "\n" not in err


# ------------------------------------------------------------------------ presets, report
def test_presets_name_prints_what_the_preset_contains(capsys):
    assert main(["presets"]) == 0
    name = capsys.readouterr().out.split()[0]
    assert main(["presets", name]) == 0
    shown = capsys.readouterr().out
    assert tomllib.loads(shown) and "[" in shown
    assert main(["presets", "no-such-preset"]) == 2
    assert "no-such-preset" in capsys.readouterr().err


def test_report_outputs_do_not_collide(tmp_path, capsys):
    """Regression: `report` wrote valid-<metric>.png and report.html beside the folder
    given, so two reports in one output folder overwrote each other."""
    runs = tmp_path / "runs"
    first = write_fake_run(runs, name="a")
    second = write_fake_run(runs, name="b")
    assert main(["report", str(first)]) == 0
    assert main(["report", str(second)]) == 0
    capsys.readouterr()
    pngs = sorted(p.name for p in runs.glob("*.png"))
    pages = sorted(p.name for p in runs.glob("*.html"))
    assert len(pngs) == 2 and len(pages) == 2, (pngs, pages)


def test_single_runs_in_one_output_folder_do_not_share_one_plot(tiny, tmp_path, capsys):
    """Regression: every single `negrec run` in one output folder overwrote the same
    valid-ndcg@20.png."""
    output = tmp_path / "out"
    assert main(["run", str(tiny), "--output", str(output), "--quiet"]) == 0
    assert main(["run", str(tiny), "--output", str(output), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in output.glob("*.png")) == [
        "tiny-2-valid-ndcg@10.png",
        "tiny-valid-ndcg@10.png",
    ]
    assert "tiny-2" in out


def test_the_repeated_run_name_suffix_is_documented(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "NAME-2" in capsys.readouterr().out
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "NAME-2" in readme


LOSSES3 = ("bpr", "cce", "bce")


def test_report_stems_of_two_run_sets_with_the_same_first_run_differ(tmp_path, capsys):
    """Regression: a report of several runs was named NAME-and-N-more, so `report a b`
    and then `report a c` in one folder overwrote each other's plot and page."""
    runs = tmp_path / "runs"
    a, b, c = (write_fake_run(runs, n, loss=lo) for n, lo in zip("abc", LOSSES3, strict=True))
    assert main(["report", str(a), str(b)]) == 0
    assert main(["report", str(a), str(c)]) == 0
    capsys.readouterr()
    pages = sorted(p.name for p in runs.glob("a-and-1-more*.html"))
    assert len(pages) == 2, pages


def test_data_line_pluralises_row_not_the_first_word():
    """Regression: the run's data line made the first word plural: '30 tests row
    repeating a training pair', '2 duplicates row'."""
    from negrec.data.prepare import PrepareReport
    from negrec.experiment.data import describe_data

    report = PrepareReport(
        rows_read=990,
        dropped_threshold=0,
        dropped_duplicates=2,
        dropped_kcore=3,
        dropped_unseen=1,
        n_users=80,
        n_items=100,
        n_interactions=954,
        dropped_overlap=30,
        overlap_kept=0,
    )
    line = describe_data(report)
    assert "2 duplicate rows" in line
    assert "3 rows by k-core" in line
    assert "1 test row unseen in train" in line
    assert "30 test rows repeating a training pair" in line


def test_resume_with_a_config_is_not_called_a_config_key(tiny, capsys):
    """Regression: `negrec run CONFIG --resume DIR` said "config key '--resume': ...",
    an option labelled as a key of the config."""
    assert main(["run", str(tiny), "--resume", "somewhere"]) == 2
    err = capsys.readouterr().err
    assert "error: --resume takes no CONFIG or --output" in err and "config key" not in err


def test_report_of_a_tune_folder_names_the_folder_of_runs_below_it(tmp_path, capsys):
    """Regression: `negrec report runs/tune-NAME` (the folder `negrec tune` prints) said
    only "not a run directory"; its runs are one level down, in confirm/."""
    tune = tmp_path / "tune-x"
    write_fake_run(tune / "confirm", "a")
    (tune / "study.db").write_bytes(b"")
    assert main(["report", str(tune)]) == 2
    err = capsys.readouterr().err
    assert f"the runs below it are in {tune / 'confirm'}" in err and err.count("\n") == 1


def test_resume_advice_after_a_checkpoint_that_already_diverges(tmp_path, monkeypatch, capsys):
    """Regression: when the loss is non-finite at batch 1 of an epoch, the weights of the
    last checkpoint (the previous epoch's end) already give it, before any step: the
    advice to resume with a lower learning rate could never work (every resume diverged
    again at batch 1). The message now says so and tells to start again."""
    from negrec.train import Checkpoint

    epoch_one_saved = {"done": False}
    real_save = Checkpoint.on_epoch_end

    def save_then_poison(self, state):
        real_save(self, state)
        epoch_one_saved["done"] = True

    real_call, real_fused = Loss.__call__, Loss.value_and_grad

    def nan_once_saved(self, *args, **kwargs):
        value = real_call(self, *args, **kwargs)
        return value * float("nan") if epoch_one_saved["done"] else value

    def nan_once_saved_fused(self, scores, **kwargs):  # MF's default (fused) step
        value, grad = real_fused(self, scores, **kwargs)
        return (value * float("nan") if epoch_one_saved["done"] else value), grad

    monkeypatch.setattr(Checkpoint, "on_epoch_end", save_then_poison)
    monkeypatch.setattr(Loss, "__call__", nan_once_saved)
    monkeypatch.setattr(Loss, "value_and_grad", nan_once_saved_fused)
    monkeypatch.setattr(BlockedMFSteps, "applies", staticmethod(lambda loss: False))
    raw = tomllib.loads(TINY)
    raw["train"].update(epochs=3)
    raw["output"] = str(tmp_path / "runs")
    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch 1\b"):
        run_experiment(ExperimentConfig.from_dict(raw), progress=False)
    err = capsys.readouterr().err
    assert "already gives a non-finite loss" in err and "resuming it cannot help" in err
    assert "--resume" not in err
    assert "again from the start with a lower learning rate (--set train.lr=0.001)" in err


def test_resume_loads_an_old_checkpoint_with_exploded_weights(tmp_path, monkeypatch, capsys):
    """Regression: checkpoints written before exploded weights were refused could hold
    finite weights far beyond EXPLODED_WEIGHT; --resume loaded them and trained on (to a
    loss of inf a few steps later, with advice to resume the same checkpoint again). Now
    the resume is refused, naming the epoch and the parameter."""
    staging = _diverged_run(tmp_path, monkeypatch, capsys)
    capsys.readouterr()
    payload = torch.load(staging / CHECKPOINT, weights_only=True)
    payload["model"]["user.weight"] = payload["model"]["user.weight"] * 1e9
    torch.save(payload, staging / CHECKPOINT)
    assert main(["run", "--resume", str(staging), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint of epoch 1 cannot be resumed" in err and "user.weight" in err
    assert "Traceback" not in err
