"""``negrec tune`` and ``negrec reproduce``: the search space parses with errors naming the
key; tuning never evaluates on the test split (an evaluation spy sees no 'test' part
before the confirm stage starts); a study stopped after 3 trials resumes with only the
missing ones, a killed trial is redone with its values; ``negrec reproduce`` on a
pre-split folder runs both stages and sets the published figures ("—" when the paper
has none for the dataset) beside ours.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import negrec.experiment.runner as runner_module
import negrec.train as train_module
from negrec.cli import main
from negrec.errors import ConfigError, NegrecError
from negrec.experiment import tune
from negrec.experiment.reproduce import (
    Published,
    load_reproduction,
    published_for,
    published_table,
    resolve_dataset,
)
from negrec.experiment.tune import parse_plan, tune_studies

optuna = pytest.importorskip("optuna")


def write_folder(folder, n_users=60, n_items=600, per_user=12, seed=0):
    """A LightGCN-format pre-split dataset: each user's first 10 items train, 2 test."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for user in range(n_users):  # (fixture data: a loop over 60 users is fine)
        items = rng.choice(n_items, per_user, replace=False)
        train.append(f"{user} " + " ".join(map(str, items[:-2])))
        test.append(f"{user} " + " ".join(map(str, items[-2:])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    return folder


def plan_raw(tmp_path, trials=2, seeds=(0, 1)):
    return {
        "name": "tiny",
        "output": str(tmp_path / "out"),
        "data": {
            "source": "synthetic",
            "synthetic": {"n_users": 80, "n_items": 120, "mean_degree": 12},
        },
        "model": {"name": "mf", "dim": 8},
        "sampler": {"name": "uniform", "k": 2},
        "train": {"epochs": 3, "batch_size": 256, "metric": "ndcg@10", "patience": 2},
        "eval": {"ks": [10], "auc": False},
        "tune": {
            "trials": trials,
            "seeds": list(seeds),
            "startup_trials": 1,
            "warmup_epochs": 0,
            "space": {"train.lr": {"low": 1e-3, "high": 1e-1, "log": True}},
            "grid": {"loss.name": ["bpr", "bce"]},
        },
    }


# ---------------------------------------------------------------------------- the plan
def test_space_parses_ranges_ints_and_choices(tmp_path):
    raw = plan_raw(tmp_path)
    raw["tune"]["space"] = {
        "train": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        "model.dim": {"low": 8, "high": 32, "step": 8},
        "sampler.k": {"choices": [1, 4, 16]},
    }
    plan = parse_plan(raw)
    assert [s.name for s in plan.studies] == ["loss=bpr", "loss=bce"]
    space = plan.studies[0].space
    assert space["train.lr"].log and not space["train.lr"].is_int
    assert space["model.dim"].is_int and space["model.dim"].step == 8
    assert space["sampler.k"].choices == (1, 4, 16)
    assert plan.folder == tmp_path / "out" / "tune-tiny"


@pytest.mark.parametrize(
    ("space", "key"),
    [
        ({"train.lr": {"low": 0.0, "high": 1.0, "log": True}}, "tune.space.train.lr.low"),
        ({"train.lr": {"low": 1.0, "high": 0.5}}, "tune.space.train.lr"),
        ({"train.lr": {"choices": []}}, "tune.space.train.lr"),
        ({"train.lr": {"low": 1e-3, "hi": 1.0}}, "tune.space.train.lr"),
        ({"train.seed": {"choices": [0, 1]}}, "tune.space.train.seed"),
        ({"train.lrr": {"choices": [0.1]}}, "train.lrr"),  # not a config key
    ],
)
def test_bad_space_is_a_config_error_naming_the_key(tmp_path, space, key):
    raw = plan_raw(tmp_path)
    raw["tune"]["space"] = space
    with pytest.raises(ConfigError) as err:
        parse_plan(raw)
    assert err.value.key == key


def test_a_study_setting_a_grid_key_is_refused_not_mislabelled(tmp_path):
    # regression: grid loss.name = [bpr, cce] x a study setting loss.name = "simce" made
    # two simce studies named "loss=bpr,simce" and "loss=cce,simce"
    raw = plan_raw(tmp_path)
    raw["tune"]["studies"] = [{"name": "simce", "set": {"loss.name": "simce"}}]
    with pytest.raises(ConfigError) as err:
        parse_plan(raw)
    assert err.value.key == "tune.grid.loss.name"
    raw["tune"]["studies"] = [{"name": "k8", "set": {"sampler.k": 8}}]  # other keys cross
    assert [s.name for s in parse_plan(raw).studies] == ["loss=bpr,k8", "loss=bce,k8"]


def test_a_plan_is_not_one_run(tmp_path):
    from negrec.experiment.config import ExperimentConfig

    with pytest.raises(ConfigError, match="negrec tune"):
        ExperimentConfig.from_dict(plan_raw(tmp_path))


# ------------------------------------------------------------------ test split unread
@pytest.mark.slow
def test_tuning_never_evaluates_on_test_before_the_confirm_stage(tmp_path, monkeypatch):
    events: list[str] = []
    for module in (train_module, runner_module):
        original = module.evaluate

        def spy(model, split, part, *args, _original=original, **kwargs):
            events.append(part)
            assert part != "test" or len(split.test.indices) > 0
            return _original(model, split, part, *args, **kwargs)

        monkeypatch.setattr(module, "evaluate", spy)
    original_confirm = tune.confirm_stage

    def confirm(*args, **kwargs):
        events.append("CONFIRM")
        return original_confirm(*args, **kwargs)

    monkeypatch.setattr(tune, "confirm_stage", confirm)
    plan = parse_plan(plan_raw(tmp_path))
    text, _ = tune.run_tune(plan, log=lambda m: None)
    start = events.index("CONFIRM")
    assert "test" not in events[:start] and events[:start].count("valid") >= 4
    assert events[start:].count("test") == 4  # 2 studies x 2 seeds, once each
    assert "±" in text and (plan.folder / "tune.md").is_file()
    runs = sorted((plan.folder / "confirm").glob("*seed=*"))
    assert len(runs) == 4
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert "budget_bound" in summary


def test_trials_see_an_empty_test_split(tmp_path):
    from negrec.experiment.runner import load_split

    plan = parse_plan(plan_raw(tmp_path))
    split = load_split(plan.config(plan.studies[0], {}, "x"))
    hidden = tune.hide_test(split)
    assert len(hidden.test.indices) == 0 and len(split.test.indices) > 0
    assert (hidden.n_users, hidden.n_items) == (split.n_users, split.n_items)


# ------------------------------------------------------------------------------ resume
def test_a_stopped_study_resumes_without_repeating_finished_trials(tmp_path, monkeypatch):
    calls: list[dict] = []
    original = tune.train_trial

    def counted(config, *args, **kwargs):
        calls.append({"lr": config.train.lr, "loss": config.loss.name})
        return original(config, *args, **kwargs)

    monkeypatch.setattr(tune, "train_trial", counted)
    raw = plan_raw(tmp_path, trials=3)
    raw["tune"]["grid"] = {"loss.name": ["bpr"]}
    first = tune_studies(parse_plan(raw), log=lambda m: None)
    assert len(calls) == 3 and first[0].trials == 3
    storage = f"sqlite:///{(parse_plan(raw).folder / 'study.db').resolve()}"
    before = optuna.load_study(study_name="loss=bpr", storage=storage).trials
    raw["tune"]["trials"] = 5
    second = tune_studies(parse_plan(raw), log=lambda m: None)
    assert len(calls) == 5 and second[0].trials == 5  # only the 2 missing trials ran
    after = optuna.load_study(study_name="loss=bpr", storage=storage).trials
    assert [t.params for t in after[:3]] == [t.params for t in before]
    assert len({t.params["train.lr"] for t in after}) == 5  # no proposal replayed


def test_a_killed_trial_is_redone_with_its_values(tmp_path, monkeypatch):
    original = tune.train_trial
    seen: list[float] = []

    def killed_on_second(config, *args, **kwargs):
        seen.append(config.train.lr)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return original(config, *args, **kwargs)

    monkeypatch.setattr(tune, "train_trial", killed_on_second)
    raw = plan_raw(tmp_path, trials=3)
    raw["tune"]["grid"] = {"loss.name": ["bpr"]}
    with pytest.raises(KeyboardInterrupt):
        tune_studies(parse_plan(raw), log=lambda m: None)
    raw["tune"]["trials"] = 1  # enough finished: the retry is queued, not run, and queued once
    for _ in range(2):
        tune_studies(parse_plan(raw), log=lambda m: None)
    storage = f"sqlite:///{(parse_plan(raw).folder / 'study.db').resolve()}"
    states = [
        t.state.name for t in optuna.load_study(study_name="loss=bpr", storage=storage).trials
    ]
    assert states == ["COMPLETE", "FAIL", "WAITING"]
    raw["tune"]["trials"] = 3
    result = tune_studies(parse_plan(raw), log=lambda m: None)
    assert result[0].trials == 3
    assert seen[2] == seen[1]  # the killed trial's values, first thing after resuming
    assert len(seen) == 4


def test_a_study_from_another_config_is_refused(tmp_path):
    raw = plan_raw(tmp_path, trials=1)
    raw["tune"]["grid"] = {"loss.name": ["bpr"]}
    tune_studies(parse_plan(raw), log=lambda m: None)
    raw["model"]["dim"] = 16
    with pytest.raises(NegrecError, match="another config"):
        tune_studies(parse_plan(raw), log=lambda m: None)


# --------------------------------------------------------------------------- reproduce
@pytest.mark.slow
def test_reproduce_on_an_unknown_folder_tunes_confirms_and_reports(tmp_path, capsys):
    folder = write_folder(tmp_path / "mydata")
    out = tmp_path / "repro"
    code = main(
        [
            "reproduce", "simce", "--dataset", str(folder), "--seeds", "2",
            "--output", str(out),
            "--set", "tune.trials=1", "--set", "train.epochs=2", "--set", "train.eval_every=1",
        ]
    )  # fmt: skip
    assert code == 0
    report = (out / "reproduce.md").read_text()
    assert "| study | metric | ours (test, mean ± std) | seeds | published |" in report
    rows = [line for line in report.splitlines() if line.startswith(("| bpr", "| ssm", "| simce"))]
    assert len([r for r in rows if "ndcg@20" in r]) == 3
    assert all("| — | — |" in r for r in rows if "ndcg@20" in r)
    assert "no published figures for 'mydata'" in report
    assert len(list((out / "confirm").glob("*seed=*"))) == 6  # 3 studies x 2 seeds


def test_a_known_dataset_gets_the_published_figures(tmp_path):
    folder = write_folder(tmp_path / "ml-1m")
    plan, table, where = load_reproduction("simce", str(folder), budget="small")
    assert plan.trials == 8 and where.kind == "folder"
    published = published_for(table, where)
    assert published is not None and published.figures["mf"]["simce"]["ndcg@20"] == 0.3170
    assert published_for(table, resolve_dataset(str(write_folder(tmp_path / "other")))) is None
    summaries = [
        {"name": f"{study},trial=0,seed={seed}", "seed": seed, "test": {"ndcg@20": value}}
        for study, values in (("bpr", (0.20, 0.22)), ("simce", (0.30, 0.34)))
        for seed, value in enumerate(values)
    ]
    text = published_table(summaries, ["bpr", "simce"], ["ndcg@20"], "mf", published, "bpr")
    simce = next(line for line in text.splitlines() if line.startswith("| simce"))
    assert "0.3200 ± 0.0283" in simce and "0.3170" in simce and "+0.9%" in simce
    assert "+52.4%" in simce  # against BPR, paired over the 2 seeds
    unknown = published_table(summaries, ["bpr"], ["ndcg@20"], "mf", None)
    assert "| — | — |" in unknown
    assert isinstance(published, Published)


def test_reproduce_dataset_errors_are_one_line(tmp_path):
    with pytest.raises(NegrecError, match=r"train\.txt"):
        resolve_dataset(str(tmp_path))
    with pytest.raises(NegrecError, match="neither a folder"):
        resolve_dataset("no-such-dataset-anywhere")
    with pytest.raises(NegrecError, match="no such folder"):
        resolve_dataset(str(tmp_path / "missing"))


def test_a_set_of_a_searched_value_is_refused(tmp_path):
    folder = write_folder(tmp_path / "data")
    with pytest.raises(ConfigError, match="replaced in every trial"):
        load_reproduction("simce", str(folder), overrides=["train.lr=0.01"])
    load_reproduction("simce", str(folder), overrides=["train.epochs=5"])  # not searched


def test_load_reproduction_seeds_zero_names_the_cli_option(tmp_path, capsys):
    """Regression: `load_reproduction(..., seeds=0)` from Python said "config key
    '--seeds'": neither a config key nor the argument's name. From Python the error now
    names the argument (`seeds`, likewise `budget`); on the command line argparse
    refuses `--seeds 0` first, naming the option."""
    folder = write_folder(tmp_path / "data")
    for seeds in (0, -2, 1.5, True):
        with pytest.raises(NegrecError) as info:
            load_reproduction("simce", str(folder), seeds=seeds)
        message = str(info.value)
        assert message.startswith("seeds ") and message.endswith(f"got {seeds!r}")
        assert "--seeds" not in message and "config key" not in message
    with pytest.raises(NegrecError, match=r"^budget must be one of small, full, got 'huge'$"):
        load_reproduction("simce", str(folder), budget="huge")
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "simce", "--dataset", str(folder), "--seeds", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seeds: must be at least 1, got 0" in err and "config key" not in err


def test_tune_command_no_confirm_stops_after_tuning(tmp_path, capsys):
    import tomli_w

    raw = plan_raw(tmp_path, trials=1)
    raw["tune"]["grid"] = {"loss.name": ["bpr"]}
    raw["train"]["epochs"] = 1
    path = tmp_path / "space.toml"
    path.write_text(tomli_w.dumps(raw))
    assert main(["tune", str(path), "--no-confirm", "--output", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "study.db").is_file()
    assert not (tmp_path / "t" / "confirm").exists()
    assert "| loss=bpr | 1 | 0 |" in capsys.readouterr().out


def test_values_the_data_cannot_take_count_as_pruned(tmp_path):
    raw = plan_raw(tmp_path, trials=2)  # 120 items: K = 500 is more than the catalogue
    raw["tune"]["grid"] = {"loss.name": ["bpr"]}
    raw["tune"]["space"] = {"sampler.k": {"choices": [500]}}
    messages: list[str] = []
    result = tune_studies(parse_plan(raw), log=messages.append)
    assert (result[0].trials, result[0].pruned, result[0].best_params) == (2, 2, None)
    assert any("infeasible" in m and "sampler.k" in m for m in messages)


def test_reproduce_versus_equal_differences_up_to_rounding_is_no_t_test():
    """Regression: `negrec reproduce`'s table printed t = -450359962737049.00,
    p = 1.41e-15 for a family whose recall was 0.0063 below the baseline's on both seeds
    (differences equal but for float rounding)."""
    from negrec.experiment.reproduce import _versus

    ours = {0: {"test": {"recall@20": 0.2}}, 1: {"test": {"recall@20": 0.3}}}
    base = {0: {"test": {"recall@20": 0.1}}, 1: {"test": {"recall@20": 0.2}}}
    text = _versus(ours, base, "recall@20", False)
    assert "no t-test" in text and "e+" not in text and "p =" not in text
    spread = {0: {"test": {"recall@20": 0.2}}, 1: {"test": {"recall@20": 0.35}}}
    assert "p =" in _versus(spread, base, "recall@20", False)


def test_a_bad_tune_metric_is_named_as_tune_metric(tmp_path):
    """Regression: `--set tune.metric=foo@3` was reported as config key 'train.metric',
    a key the user never wrote."""
    raw = plan_raw(tmp_path)
    raw["tune"]["metric"] = "foo@3"
    with pytest.raises(ConfigError) as err:
        parse_plan(raw)
    assert err.value.key == "tune.metric" and "foo@3" in str(err.value)
    raw["tune"]["metric"] = "recall@10"
    assert parse_plan(raw).metric == "recall@10"
