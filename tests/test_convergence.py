"""Training to convergence: a run cut by its epoch budget while still improving is flagged
budget-bound (summary.json, report tables, console), one stopped by patience is not; the
plateau learning-rate schedule lowers the lr after ``lr_patience`` flat evaluations and
resumes from a checkpoint with the same schedule.
"""

from __future__ import annotations

import json

import pytest
import torch

from negrec.data.splits import Split, random_split
from negrec.data.synthetic import synthetic_interactions
from negrec.errors import ConfigError
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.report import comparison_table, load_runs
from negrec.experiment.runner import build_components, run_experiment
from negrec.train import Callback, Checkpoint, EarlyStopping, PlateauSchedule, TrainState, fit

METRIC = "ndcg@10"
KEY = f"valid/{METRIC}"


@pytest.fixture(scope="module")
def split() -> Split:
    data = synthetic_interactions(n_users=120, n_items=150, mean_degree=20)
    return random_split(data, 0.2, 0.1, 0)


def config(tmp_path, **train) -> ExperimentConfig:
    options = {"epochs": 2, "lr": 0.05, "batch_size": 512, "metric": METRIC, **train}
    return ExperimentConfig.from_dict(
        {
            "name": "tiny",
            "output": str(tmp_path),
            "model": {"name": "mf", "dim": 8},
            "sampler": {"name": "uniform", "k": 2},
            "train": options,
            "eval": {"ks": [10], "auc": False},
        }
    )


class Scripted(Callback):
    """Replaces the validation metric of each epoch by a scripted value (known answers)."""

    def __init__(self, values: list[float]):
        self.values = values

    def on_epoch_end(self, state: TrainState) -> None:
        state.log[KEY] = self.values[state.epoch - 1]


# ---------------------------------------------------------------------- budget-bound flag
def test_a_run_cut_by_its_budget_is_flagged(tmp_path, split, capsys):
    path = run_experiment(config(tmp_path, epochs=2, patience=5), split=split, progress=False)
    summary = json.loads((path / "summary.json").read_text())
    assert summary["budget_bound"] is True
    assert summary["stopped_early"] is False
    assert (summary["last_epoch"], summary["epoch_budget"]) == (2, 2)
    assert "budget-bound: raise train.epochs" in capsys.readouterr().err
    table = comparison_table(load_runs([path]))
    assert "stop" in table.splitlines()[0] and "budget-bound" in table.splitlines()[2]
    from negrec.cli import main

    assert main(["report", str(path), "--plot", str(tmp_path / "p.png")]) == 0
    assert "1 run(s) ended on their epoch budget" in capsys.readouterr().out


def test_a_run_stopped_by_patience_is_not_flagged(tmp_path, split, capsys):
    flat = Scripted([0.5] * 20)  # never improves after epoch 1: patience 3 stops at epoch 4
    path = run_experiment(
        config(tmp_path, epochs=20, patience=3),
        split=split,
        progress=False,
        extra_callbacks=(flat,),
    )
    summary = json.loads((path / "summary.json").read_text())
    assert (summary["best_epoch"], summary["last_epoch"]) == (1, 4)
    assert summary["stopped_early"] is True and summary["budget_bound"] is False
    assert "budget-bound" not in capsys.readouterr().err
    assert "| patience |" in comparison_table(load_runs([path]))


@pytest.mark.parametrize(
    ("values", "patience", "bound"),
    [
        ([0.1, 0.2, 0.3, 0.4], 3, True),  # still improving at the last evaluation
        ([0.1, 0.4, 0.3, 0.3], 3, True),  # best 2 evaluations before the end, patience 3
        ([0.4, 0.3, 0.3, 0.3], 3, False),  # patience ran out at the last epoch: stopped
        ([0.1, 0.4, 0.3, 0.3], 0, False),  # never stops; best not the last evaluation
        ([0.1, 0.2, 0.3, 0.4], 0, True),
    ],
)
def test_budget_bound_is_best_within_patience_of_the_last(split, values, patience, bound):
    stopper = EarlyStopping(METRIC, patience)
    state = TrainState(model=None, split=split, config=None, device=torch.device("cpu"))  # type: ignore[arg-type]
    state.model = torch.nn.Linear(1, 1)  # type: ignore[assignment]
    for epoch, value in enumerate(values, start=1):
        state.epoch, state.log = epoch, {KEY: value}
        stopper.on_epoch_end(state)
    assert stopper.budget_bound is bound


# ---------------------------------------------------------------------- plateau schedule
class Rates(Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_epoch_end(self, state: TrainState) -> None:
        assert state.optimizer is not None
        self.lrs.append(state.optimizer.param_groups[0]["lr"])


def _fit(split, cfg, callbacks, resume=None):
    parts = build_components(cfg, split)
    return fit(
        parts.model, parts.sampler, parts.loss, split, cfg.train, callbacks=callbacks, resume=resume
    )


SCRIPT = [0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]


def test_plateau_lowers_the_lr_after_patience_flat_evaluations(tmp_path, split):
    cfg = config(tmp_path, epochs=9, lr_schedule="plateau", lr_factor=0.5, lr_patience=3)
    rates = Rates()  # (before the schedule: the lr each epoch trained at)
    state = _fit(split, cfg, [Scripted(SCRIPT), rates, PlateauSchedule(cfg.train)])
    # best at epoch 2; epochs 3, 4, 5 flat: the rate halves from epoch 6, again from epoch 9
    assert rates.lrs == [0.05] * 5 + [0.025] * 3 + [0.0125]
    assert [row["lr"] for row in state.history] == rates.lrs


def test_plateau_schedule_resumes_from_a_checkpoint(tmp_path, split):
    cfg = config(tmp_path, epochs=9, lr_schedule="plateau", lr_patience=3)
    whole = Rates()
    _fit(split, cfg, [Scripted(SCRIPT), whole, PlateauSchedule(cfg.train)])

    class Kill(Callback):
        def on_epoch_end(self, state: TrainState) -> None:
            if state.epoch == 5:  # after the checkpoint of epoch 5: two flat evaluations held
                raise KeyboardInterrupt

    path = tmp_path / "ckpt.pt"
    first = [Scripted(SCRIPT), Rates(), PlateauSchedule(cfg.train)]
    with pytest.raises(KeyboardInterrupt):
        _fit(split, cfg, [*first, Checkpoint(path, first), Kill()])
    again = [Scripted(SCRIPT), Rates(), PlateauSchedule(cfg.train)]
    payload = torch.load(path, weights_only=True)
    _fit(split, cfg, [*again, Checkpoint(path, again)], resume=payload)
    assert first[1].lrs + again[1].lrs == whole.lrs


def test_plateau_needs_its_callback_and_no_step_decay(tmp_path, split):
    with pytest.raises(ValueError, match="PlateauSchedule"):
        _fit(split, config(tmp_path, lr_schedule="plateau"), [])
    with pytest.raises(ConfigError, match=r"train\.lr_schedule"):
        config(tmp_path, lr_schedule="plateau", lr_decay=0.5)
    with pytest.raises(ConfigError, match=r"train\.lr_factor"):
        config(tmp_path, lr_factor=1.0)
