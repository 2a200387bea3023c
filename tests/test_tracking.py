"""Experiment tracking (``[logging]``, negrec.experiment.tracking).

- the section is typed like the others (unknown keys rejected), off by default, and
  stored in ``config.toml`` only when on; it is not part of an experiment's identity;
- TensorBoard: a tiny run writes event files whose scalars, read back with tensorboard's
  EventAccumulator, equal ``history.csv`` (and the test metrics ``summary.json``); an
  interrupted run resumed from its checkpoint logs every epoch exactly once;
- MLflow: with a fake ``mlflow`` module injected in ``sys.modules`` (runs everywhere) the
  tracker logs params, the config, every history value per epoch and the test metrics, and
  a resumed run continues the same MLflow run; with the real package (when installed) a
  file-store tracking URI in a temporary folder holds the same metrics;
- a missing package is a ConfigError naming the key that asked for it.
"""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from negrec.errors import ConfigError
from negrec.experiment import rundir
from negrec.experiment.config import ExperimentConfig, read_toml
from negrec.experiment.rundir import CHECKPOINT
from negrec.experiment.runner import run_experiment
from negrec.experiment.tracking import mlflow_key
from negrec.train import Checkpoint, TrainingDiverged, TrainState

EPOCHS = 4


def tiny(output: Path, **logging: Any) -> ExperimentConfig:
    """A run of a few seconds, bound monitor on (its columns are logged too)."""
    return ExperimentConfig.from_dict(
        {
            "name": "tracked",
            "output": str(output),
            "data": {"synthetic": {"n_users": 60, "n_items": 80, "mean_degree": 10}},
            "model": {"dim": 8},
            "sampler": {"k": 2},
            "train": {
                "epochs": EPOCHS,
                "lr": 0.01,
                "patience": 0,
                "batch_size": 64,
                "metric": "ndcg@10",
            },
            "eval": {"ks": [10], "auc": False},
            "monitor": {"enabled": True, "users": 16},
            "logging": logging,
        }
    )


def history_values(run: Path) -> dict[str, dict[int, float]]:
    """``history.csv`` as column -> {epoch: value}, NaN cells (no evaluation) left out."""
    history = pd.read_csv(run / "history.csv")
    return {
        column: {int(e): float(v) for e, v in zip(history["epoch"], history[column], strict=True)}
        for column in history.columns
        if column != "epoch"
    }


def drop_nan(values: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    return {k: {e: v for e, v in d.items() if not math.isnan(v)} for k, d in values.items()}


# ---------------------------------------------------------------------------------- config
def test_logging_section_is_typed_off_by_default_and_stored_only_when_on(tmp_path):
    config = ExperimentConfig.from_dict({})
    assert not config.logging.tensorboard and not config.logging.mlflow
    assert "logging" not in config.to_toml_dict()  # run directories as before
    with pytest.raises(ConfigError, match=r"logging\.tensorbord"):
        ExperimentConfig.from_dict({"logging": {"tensorbord": True}})
    with pytest.raises(ConfigError, match=r"logging\.mlflow"):
        ExperimentConfig.from_dict({"logging": {"mlflow": "yes"}})
    with pytest.raises(ConfigError, match="logging"):
        ExperimentConfig.from_dict({"logging": True})
    on = ExperimentConfig.from_dict({"logging": {"tensorboard": True, "dir": "tb"}})
    assert on.to_toml_dict()["logging"] == {
        "tensorboard": True,
        "mlflow": False,
        "dir": "tb",
        "mlflow_experiment": "negrec",
    }
    assert ExperimentConfig.from_dict(on.to_toml_dict()) == on


def test_logging_is_not_part_of_an_experiments_identity(tmp_path):
    from negrec.experiment.aggregate import group_runs
    from negrec.experiment.report import load_runs

    folder = tmp_path / "runs"
    for seed, logging in ((0, {}), (1, {"tensorboard": True})):
        raw = {"name": f"s{seed}", "train": {"seed": seed}, "logging": logging}
        config = ExperimentConfig.from_dict(raw)
        path = folder / config.name
        path.mkdir(parents=True)
        rundir.write_toml(path / "config.toml", config.to_toml_dict())
        rundir.write_json(path / "environment.json", {})
        rundir.write_json(path / "summary.json", {"name": config.name, "test": {}})
        pd.DataFrame([{"epoch": 1}]).to_csv(path / "history.csv", index=False)
    groups = group_runs(load_runs([folder]))
    assert len(groups) == 1 and groups[0].n == 2


def test_a_sweep_does_not_redo_runs_for_turning_tracking_on(tmp_path):
    from negrec.experiment.grid import GridRun
    from negrec.experiment.sweep import config_differences

    before = ExperimentConfig.from_dict({"name": "r", "loss": {"name": "cce"}})
    rundir.write_toml(tmp_path / "config.toml", before.to_toml_dict())
    tracked = ExperimentConfig.from_dict(
        {"name": "r", "loss": {"name": "cce"}, "logging": {"mlflow": True}}
    )
    assert config_differences(tmp_path, GridRun("r", {}, tracked)) == []
    other = ExperimentConfig.from_dict({"name": "r", "loss": {"name": "bpr"}})
    assert config_differences(tmp_path, GridRun("r", {}, other)) != []


# ----------------------------------------------------------------------------- TensorBoard
def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_equal_the_history(tmp_path):
    pytest.importorskip("tensorboard")
    run = run_experiment(tiny(tmp_path, tensorboard=True), progress=False)
    events = run / "tensorboard"
    assert list(events.glob("events.out.tfevents.*")), "no event file in the run directory"
    scalars = read_scalars(events)

    expected = drop_nan(history_values(run))
    assert "loss" in expected and "valid/ndcg@10" in expected and "train_seconds" in expected
    assert any(tag.startswith("bound/k=2/") for tag in expected)  # the monitor's columns
    for tag, by_epoch in expected.items():
        logged = scalars[tag]
        assert [step for step, _ in logged] == sorted(by_epoch), tag  # each epoch once
        for step, value in logged:
            assert value == pytest.approx(by_epoch[step], rel=1e-6, abs=1e-7), (tag, step)

    summary = rundir_summary(run)
    for metric, value in summary["test"].items():
        ((step, logged),) = scalars[f"test/{metric}"]
        assert step == summary["best_epoch"] and logged == pytest.approx(value, rel=1e-6)
    assert scalars["run/best_epoch"][0][1] == summary["best_epoch"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events))
    acc.Reload()
    assert "config/text_summary" in acc.Tags()["tensors"]  # the resolved config as text
    assert set(acc.PluginTagToContent("hparams")) == {
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    }


def rundir_summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def test_tensorboard_dir_puts_each_run_in_its_own_folder(tmp_path):
    pytest.importorskip("tensorboard")
    board = tmp_path / "board"
    first = run_experiment(tiny(tmp_path / "a", tensorboard=True, dir=str(board)), progress=False)
    run_experiment(tiny(tmp_path / "b", tensorboard=True, dir=str(board)), progress=False)
    assert sorted(p.name for p in board.iterdir()) == ["tracked", "tracked-2"]
    assert not (first / "tensorboard").exists()
    assert read_scalars(board / "tracked")["loss"][0][0] == 1


class Interrupted(Exception):
    """Stands for a kill between the trackers' log of an epoch and its checkpoint."""


def interrupt_at(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    original = Checkpoint.on_epoch_end

    def on_epoch_end(self: Checkpoint, state: TrainState) -> None:
        if state.epoch == epoch:
            raise Interrupted
        original(self, state)

    monkeypatch.setattr(Checkpoint, "on_epoch_end", on_epoch_end)


def resume(output: Path) -> Path:
    (staging,) = [p for p in output.iterdir() if (p / CHECKPOINT).is_file()]
    config = ExperimentConfig.from_dict(read_toml(staging / "config.toml"))
    return run_experiment(config, progress=False, resume_dir=staging)


def test_a_resumed_run_logs_every_epoch_once(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    with monkeypatch.context() as patch:
        interrupt_at(patch, 3)  # epoch 3 reaches TensorBoard, its checkpoint does not
        with pytest.raises(Interrupted):
            run_experiment(tiny(tmp_path, tensorboard=True), progress=False)
    run = resume(tmp_path)
    scalars = read_scalars(run / "tensorboard")
    expected = drop_nan(history_values(run))
    for tag in ("loss", "valid/ndcg@10"):
        assert [step for step, _ in scalars[tag]] == sorted(expected[tag])
        for step, value in scalars[tag]:
            assert value == pytest.approx(expected[tag][step], rel=1e-6)


def test_missing_tensorboard_names_the_key(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"logging\.tensorboard.*negrec\[tensorboard\]"):
        run_experiment(tiny(tmp_path, tensorboard=True), progress=False)
    assert not list(tmp_path.iterdir())  # no run, no staging directory left


# ---------------------------------------------------------------------------------- MLflow
class FakeStore:
    """What the fake MLflow client recorded, shared by every client instance."""

    def __init__(self) -> None:
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.uris: list[str | None] = []


def fake_mlflow(store: FakeStore) -> dict[str, types.ModuleType]:
    """``mlflow``, ``mlflow.entities`` and ``mlflow.tracking`` with the few names the
    tracker uses, recording into ``store``."""

    class Metric:
        def __init__(self, key: str, value: float, timestamp: int, step: int):
            self.key, self.value, self.timestamp, self.step = key, value, timestamp, step

    class Param:
        def __init__(self, key: str, value: str):
            self.key, self.value = key, value

    class MlflowClient:
        def __init__(self, tracking_uri: str | None = None):
            store.uris.append(tracking_uri)

        def get_experiment_by_name(self, name: str) -> Any:
            found = store.experiments.get(name)
            return None if found is None else types.SimpleNamespace(experiment_id=found)

        def create_experiment(self, name: str) -> str:
            store.experiments[name] = str(len(store.experiments) + 1)
            return store.experiments[name]

        def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> Any:
            run_id = f"run-{len(store.runs) + 1}"
            store.runs[run_id] = {
                "experiment": experiment_id,
                "name": run_name,
                "tags": tags,
                "params": {},
                "metrics": {},
                "texts": {},
                "status": ["RUNNING"],
            }
            return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id))

        def log_batch(self, run_id: str, metrics: Any = (), params: Any = ()) -> None:
            run = store.runs[run_id]
            for p in params:
                assert p.key not in run["params"], f"param {p.key} logged twice"
                run["params"][p.key] = p.value
            for m in metrics:
                run["metrics"].setdefault(m.key, []).append((m.step, m.value))

        def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
            store.runs[run_id]["texts"][artifact_file] = text

        def update_run(self, run_id: str, status: str) -> None:
            store.runs[run_id]["status"].append(status)

        def set_terminated(self, run_id: str, status: str) -> None:
            store.runs[run_id]["status"].append(status)

    root = types.ModuleType("mlflow")
    entities = types.ModuleType("mlflow.entities")
    tracking = types.ModuleType("mlflow.tracking")
    entities.Metric, entities.Param = Metric, Param  # type: ignore[attr-defined]
    tracking.MlflowClient = MlflowClient  # type: ignore[attr-defined]
    root.entities, root.tracking = entities, tracking  # type: ignore[attr-defined]
    return {"mlflow": root, "mlflow.entities": entities, "mlflow.tracking": tracking}


@pytest.fixture
def fake_store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    store = FakeStore()
    for name, module in fake_mlflow(store).items():
        monkeypatch.setitem(sys.modules, name, module)
    return store


def test_mlflow_logs_params_config_history_and_test_metrics(tmp_path, fake_store):
    config = tiny(tmp_path, mlflow=True, mlflow_uri="file:/nowhere", mlflow_experiment="exp")
    run = run_experiment(config, progress=False)
    assert set(fake_store.uris) == {"file:/nowhere"}
    assert fake_store.experiments == {"exp": "1"}
    ((_, logged),) = fake_store.runs.items()
    assert logged["name"] == "tracked" and logged["status"] == ["RUNNING", "FINISHED"]
    assert logged["params"]["loss.name"] == "bpr" and logged["params"]["eval.ks"] == "[10]"
    assert logged["texts"]["config.toml"] == (run / "config.toml").read_text()

    expected = drop_nan(history_values(run))
    for column, by_epoch in expected.items():
        assert logged["metrics"][mlflow_key(column)] == sorted(by_epoch.items()), column
    summary = rundir_summary(run)
    for metric, value in summary["test"].items():
        assert logged["metrics"][mlflow_key(f"test/{metric}")] == [(summary["best_epoch"], value)]


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, fake_store, monkeypatch):
    with monkeypatch.context() as patch:
        interrupt_at(patch, 3)
        with pytest.raises(Interrupted):
            run_experiment(tiny(tmp_path, mlflow=True), progress=False)
    run = resume(tmp_path)
    ((_, logged),) = fake_store.runs.items()  # one MLflow run, not two
    assert logged["status"] == ["RUNNING", "FAILED", "RUNNING", "FINISHED"]
    # epoch 3 was logged, then its checkpoint lost: MLflow keeps both values (as it does
    # for any re-logged step); every other epoch is there once
    steps = [step for step, _ in logged["metrics"]["loss"]]
    assert steps == [1, 2, 3, 3, 4]
    assert dict(logged["metrics"]["loss"]) == drop_nan(history_values(run))["loss"]


CRASHES = [(TrainingDiverged("loss became nan"), "FAILED"), (KeyboardInterrupt(), "KILLED")]


@pytest.mark.parametrize(("error", "status"), CRASHES)
def test_a_crashed_run_does_not_stay_running_in_mlflow(
    tmp_path, fake_store, monkeypatch, error, status
):
    """Regression: a run that raised (or was interrupted with Ctrl-C) was left RUNNING."""

    def crash(self: Checkpoint, state: TrainState) -> None:
        if state.epoch == 2:
            raise error

    monkeypatch.setattr(Checkpoint, "on_epoch_end", crash)
    with pytest.raises(type(error)):
        run_experiment(tiny(tmp_path, mlflow=True), progress=False)
    ((_, logged),) = fake_store.runs.items()
    assert logged["status"] == ["RUNNING", status]


def test_mlflow_key_keeps_names_readable():
    assert mlflow_key("valid/ndcg@20") == "valid/ndcg_at_20"
    assert mlflow_key("bound/k=8/cce/holds") == "bound/k_8/cce/holds"
    assert mlflow_key("train_seconds") == "train_seconds"


def test_missing_mlflow_names_the_key(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"logging\.mlflow.*negrec\[mlflow\]"):
        run_experiment(tiny(tmp_path, mlflow=True), progress=False)


def test_real_mlflow_file_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps it behind a flag
    uri = (tmp_path / "mlruns").as_uri()
    run = run_experiment(tiny(tmp_path / "runs", mlflow=True, mlflow_uri=uri), progress=False)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("negrec")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "tracked"
    assert logged.data.params["sampler.k"] == "2"
    expected = drop_nan(history_values(run))
    for column in ("loss", "valid/ndcg@10"):
        history = client.get_metric_history(logged.info.run_id, mlflow_key(column))
        got = dict(sorted((m.step, m.value) for m in history))
        assert list(got) == sorted(expected[column])
        assert list(got.values()) == pytest.approx([expected[column][e] for e in got])
    summary = rundir_summary(run)
    assert logged.data.metrics["test/ndcg_at_10"] == pytest.approx(summary["test"]["ndcg@10"])
