"""Run one experiment config end to end, and compare several.

Order matters for crash safety: the data is loaded, split and every plugin is built
*before* the run directory is staged, so bad input fails with nothing on disk; training
then writes into a staging directory that is renamed into place only when complete.
The test split is evaluated exactly once, after training, with the weights selected on
validation.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from negrec.data.interactions import NoTimeOrder
from negrec.data.splits import Split
from negrec.distributed import LOCAL, World
from negrec.errors import ConfigError, NegrecError, first_line
from negrec.evaluation import evaluate
from negrec.experiment import artifacts, rundir
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.data import build_split, describe_data
from negrec.losses import Loss
from negrec.models import MODELS, Model
from negrec.models.sequential import contexts_for
from negrec.samplers import SAMPLERS, Sampler
from negrec.train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    PlateauSchedule,
    ProgressBar,
    TrainState,
    ValidationEval,
    fit,
    resolve_device,
    set_learning_rate,
)

if TYPE_CHECKING:
    from negrec.experiment.tracking import Tracker


#: The settings ``negrec run --resume DIR --set KEY=VALUE`` may change: the learning rate
#: and its schedule, the number of epochs and the early-stopping patience. They change how
#: training goes on from the checkpoint, not what was trained so far (the data, the model,
#: the sampler, the loss and the seed stay those of the interrupted run).
RESUME_KEYS = (
    "train.lr",
    "train.lr_decay",
    "train.lr_decay_every",
    "train.epochs",
    "train.patience",
)


@contextmanager
def _staging(
    world: World, output: Path, name: str, existing: Path | None, lr: float
) -> Iterator[Path | None]:
    """Rank 0's (or the only process's) staging directory; None on the other ranks of a
    distributed run, which write nothing. ``lr``: a divergence advises a tenth of it."""
    if not world.is_main:
        yield None
        return
    with rundir.staging_dir(output, name, existing=existing, lower_lr=lr / 10) as tmp:
        yield tmp


def _only_main(world: World, callbacks: list[Callback] | tuple[Callback, ...]) -> list[Callback]:
    """``callbacks`` on rank 0; on other ranks no-op stand-ins in the same places, so the
    callback states of a checkpoint still line up when they resume from it."""
    return list(callbacks) if world.is_main else [Callback() for _ in callbacks]


class HistoryWriter(Callback):
    """Rewrites ``history.csv`` after every epoch, so a long run can be watched."""

    def __init__(self, path: Path):
        self.path = path

    def on_epoch_end(self, state: TrainState) -> None:
        rundir.write_history(self.path, [*state.history, state.log])


class ResumedLearningRate(Callback):
    """Sets the learning rate a resume asked for (``--set train.lr=...``) once training
    starts. Placed after the checkpoint's callbacks: restoring the optimizer's state puts
    back the lr it had reached, and on ``lr_schedule = "plateau"`` nothing sets it again,
    so without this the override was recorded but never used. The plateau schedule goes
    on lowering from the new rate."""

    def __init__(self, lr: float):
        self.lr = lr

    def on_train_start(self, state: TrainState) -> None:
        assert state.optimizer is not None
        set_learning_rate(state.optimizer, self.lr)


@dataclass
class Components:
    """The independent parts the trainer combines."""

    model: Model
    sampler: Sampler
    loss: Loss


def build_components(config: ExperimentConfig, split: Split) -> Components:
    """Model, sampler and loss from their configs (the model's init uses the train seed)."""
    if config.sampler.k > split.n_items:
        raise ConfigError(
            "sampler.k",
            f"{config.sampler.k} negatives per positive, but the catalogue has only "
            f"{split.n_items} items",
        )
    generator = torch.Generator().manual_seed(config.train.seed)
    model_cls = MODELS.get(config.model.name, "model.name")
    sampler_cls = SAMPLERS.get(config.sampler.name, "sampler.name")
    return Components(
        model=model_cls(config.model, split.train, generator),
        sampler=sampler_cls(config.sampler, split.train),
        loss=Loss(config.loss),
    )


def load_split(config: ExperimentConfig) -> Split:
    """``build_split``, with a split that needs a time order on data without timestamps
    reported against the config fields (a ConfigError, before any run directory exists)."""
    try:
        return build_split(config.data, config.split)
    except NoTimeOrder:
        raise ConfigError(
            "split.method",
            f"split.method = '{config.split.method}' (split.valid = {config.split.valid!r}) "
            f"orders each user's items by time, but the data ({_describe_data(config)}) "
            "has no timestamps",
        ) from None


def check_split(config: ExperimentConfig, split: Split) -> None:
    """Build-time checks of the model against the loaded data: a sequential model needs
    timestamps on the training split."""
    model_cls = MODELS.get(config.model.name, "model.name")
    if model_cls.input_kind == "sequence" and split.train.timestamps is None:
        raise ConfigError(
            "model.name",
            f"model.name = '{config.model.name}' reads histories in time order, but the data "
            f"({_describe_data(config)}) has no timestamps",
        )


def _describe_data(config: ExperimentConfig) -> str:
    data = config.data
    if data.source == "file":
        return f"data.path = '{data.path}', data.format = {data.format!r}"
    if data.source == "presplit":
        return f"data.train = '{data.train}', data.format = {data.format!r}"
    return f"data.source = '{data.source}'"


def schedule_callbacks(config: ExperimentConfig) -> list[Callback]:
    """The learning-rate scheduler callback of ``train.lr_schedule`` (none by default)."""
    return [PlateauSchedule(config.train)] if config.train.lr_schedule == "plateau" else []


def budget_warning(summary: dict[str, Any]) -> str:
    """The console line for a run that ended on its epoch budget while still improving."""
    return (
        f"negrec: {summary.get('name', 'run')}: best epoch {summary.get('best_epoch')} of "
        f"{summary.get('last_epoch', summary.get('epochs_run'))}, not stopped by patience: "
        "budget-bound: raise train.epochs"
    )


def _monitor_callbacks(config: ExperimentConfig) -> list[Callback]:
    """The bound monitor when ``[monitor] enabled = true`` (else nothing)."""
    if not config.monitor.enabled:
        return []
    from negrec.monitor import BoundMonitor

    return [
        BoundMonitor(
            config.monitor.sample_sizes(config.sampler.k),
            users=config.monitor.users,
            seed=config.monitor.seed,
        )
    ]


def _tracking_callbacks(config: ExperimentConfig, run_dir: Path | None) -> list[Tracker]:
    """TensorBoard / MLflow trackers when ``[logging]`` enables them (else nothing).

    ``run_dir`` None (the other ranks of a distributed run): inert stand-ins in the same
    places, so the callback states of a checkpoint still line up."""
    if not (config.logging.tensorboard or config.logging.mlflow):
        return []
    from negrec.experiment.tracking import Tracker, tracking_callbacks

    if run_dir is None:
        return [Tracker() for _ in range(config.logging.tensorboard + config.logging.mlflow)]
    return tracking_callbacks(config, run_dir)


def run_experiment(
    config: ExperimentConfig,
    *,
    split: Split | None = None,
    progress: bool = True,
    extra_callbacks: tuple[Callback, ...] = (),
    resume_dir: Path | None = None,
    resumed_with: dict[str, Any] | None = None,
    world: World = LOCAL,
) -> Path:
    """Train, select on validation, test once, write the run directory; returns its path.

    ``resume_dir`` is the staging directory of an interrupted run (see
    :func:`rundir.find_resumable`); training continues from its last checkpoint.
    ``resumed_with``: the overrides (dotted key -> value) ``config`` applies to the
    interrupted run's own config (see ``RESUME_KEYS``); they are recorded in the run's
    ``environment.json`` and ``summary.json`` (``resumed``) and in ``history.csv``
    (``resumed_with``, on the first epoch trained with them).
    ``world``: the ranks of a distributed run (:mod:`negrec.distributed`), every one
    calling this with the same config: all train and evaluate, rank 0 alone writes the
    run directory and prints (``extra_callbacks`` and the bound monitor run there only);
    every rank returns the path.
    """
    # data paths stored absolute, so the run finds its data from any working directory
    config, given = config.with_absolute_data()
    split = split if split is not None else load_split(config)
    check_split(config, split)
    parts = build_components(config, split)
    valid_contexts = contexts_for(parts.model, split, "valid")  # None for user-id models
    output = Path(config.output) if resume_dir is None else resume_dir.parent
    resume = None
    if resume_dir is not None:
        path = resume_dir / rundir.CHECKPOINT
        try:
            resume = torch.load(path, weights_only=True)
        except Exception as err:  # cut short, empty or not a checkpoint: say which file
            raise NegrecError(
                f"{path}: cannot read the checkpoint ({first_line(err)}); "
                "delete the interrupted run's folder to start it over"
            ) from None
    data = None if split.report is None else dataclasses.asdict(split.report)
    with _staging(world, output, config.name, resume_dir, config.train.lr) as tmp:
        if tmp is not None and progress:
            print(f"negrec: training into {tmp}", file=sys.stderr)
            if split.report is not None:
                print(f"negrec: data: {describe_data(split.report)}", file=sys.stderr)
        if tmp is not None and resume is None:
            rundir.write_toml(tmp / "config.toml", config.to_toml_dict())
            env = rundir.environment()
            env["device"] = str(world.place(resolve_device(config.train.device)))
            if given:  # the data paths as the config gave them, and where they were read from
                env["data_given"] = {"cwd": str(Path.cwd()), **given}
            if world.backend is not None:
                env["distributed"] = {"world_size": world.size, "backend": world.backend}
            if data is not None:
                env["data"] = data
            rundir.write_json(tmp / "environment.json", env)
        resumes: list[dict[str, Any]] = []
        if tmp is not None and resume is not None:
            rundir.remove_leftovers(tmp)  # writes the interruption cut short
            resumes = _record_resume(tmp, config, resume["epoch"], resumed_with)
        stopper = EarlyStopping(
            config.train.metric, config.train.patience, None if tmp is None else tmp / "best.pt"
        )
        trackers = _tracking_callbacks(config, tmp)
        callbacks: list[Callback] = [
            ValidationEval(config.eval, config.train.eval_every),
            *schedule_callbacks(config),  # reads the validation value, before the checkpoint
            *_only_main(world, _monitor_callbacks(config)),  # right after validation
            *_only_main(world, extra_callbacks),
            stopper,
            Callback() if tmp is None else HistoryWriter(tmp / "history.csv"),
            *trackers,  # after every callback that fills the epoch's row
        ]
        callbacks.append(Checkpoint(None if tmp is None else tmp / rundir.CHECKPOINT, callbacks[:]))
        if resume is not None and "train.lr" in (resumed_with or {}):  # after the restore
            callbacks.append(ResumedLearningRate(config.train.lr))
        if progress and tmp is not None:
            callbacks.append(ProgressBar(config.train.metric, config.name))
        start = time.perf_counter()
        try:
            state = fit(
                parts.model,
                parts.sampler,
                parts.loss,
                split,
                config.train,
                callbacks=callbacks,
                contexts=valid_contexts,
                resume=resume,
                world=world,
                progress=False,  # the bar above, when asked for (not with --quiet)
            )
            train_seconds = time.perf_counter() - start
            test_contexts = contexts_for(parts.model, split, "test")
            test = evaluate(
                parts.model, split, "test", config.eval, contexts=test_contexts, world=world
            )
        except BaseException as error:  # diverged, interrupted, out of memory, ...
            for tracker in trackers:
                tracker.on_run_failed(error)
            raise
        if tmp is None:  # another rank: rank 0 writes the run, and tells where
            return Path(world.share(None))

        rundir.write_history(tmp / "history.csv", _mark_resumes(state.history, resumes))
        rundir.write_per_user(
            tmp / "test_per_user.csv", test.users, test.per_user, split.test.user_ids
        )
        # ids and each user's items: the run is a model usable without the data (negrec.load)
        sequential = parts.model.input_kind == "sequence"
        artifacts.write_split(tmp / artifacts.INTERACTIONS, split, times=sequential)
        best = next((h for h in state.history if h["epoch"] == stopper.best_epoch), {})
        summary: dict[str, Any] = {
            "name": config.name,
            "model": config.model.name,
            "loss": config.loss.name,
            "sampler": config.sampler.name,
            "k": config.sampler.k,
            "seed": config.train.seed,
            "selection_metric": config.train.metric,
            "best_epoch": stopper.best_epoch,
            "epochs_run": state.epoch,
            "last_epoch": state.epoch,
            "epoch_budget": config.train.epochs,
            "stopped_early": stopper.stopped,
            "budget_bound": stopper.budget_bound,
            "train_seconds": train_seconds,
            "mean_epoch_seconds": sum(h["train_seconds"] for h in state.history) / state.epoch,
            "valid": {
                k.removeprefix("valid/"): v for k, v in best.items() if k.startswith("valid/")
            },
            "test": test.summary,
            "n_test_users": int(test.users.size),
        }
        if data is not None:
            summary["data"] = data  # what preparing the data dropped and kept
        if resumes:
            summary["resumed"] = resumes
        rundir.write_json(tmp / "summary.json", summary)
        if stopper.budget_bound:
            print(budget_warning(summary), file=sys.stderr)
        for tracker in trackers:
            tracker.on_run_end(summary)
        (tmp / rundir.CHECKPOINT).unlink()  # resumable state is not part of a finished run
        final = rundir.unique_path(output, config.name)
        path = rundir.publish(tmp, final)
    return Path(world.share(str(path)))


def _record_resume(
    tmp: Path, config: ExperimentConfig, epoch: int, resumed_with: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Note a resume with overrides in the staging directory: ``config.toml`` becomes the
    config the run continues with, and ``environment.json``'s ``resumed`` list gains
    ``{"after_epoch": epoch, "set": resumed_with}``. Returns that list (all resumes)."""
    path = tmp / "environment.json"
    try:
        env = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):  # (written at the start; a damaged one is rewritten)
        env = rundir.environment()
    resumes: list[dict[str, Any]] = list(env.get("resumed", []))
    if resumed_with:
        resumes.append({"after_epoch": int(epoch), "set": dict(resumed_with)})
        env["resumed"] = resumes
        rundir.write_toml(tmp / "config.toml", config.to_toml_dict())
        rundir.write_json(path, env)
    return resumes


def _mark_resumes(
    history: list[dict[str, Any]], resumes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``history`` with a ``resumed_with`` note (``train.lr=0.001``) on the first epoch
    trained after each resume with overrides."""
    if not resumes:
        return history
    notes = {
        entry["after_epoch"] + 1: ", ".join(f"{k}={v}" for k, v in entry["set"].items())
        for entry in resumes
    }
    return [
        {**row, "resumed_with": notes[row["epoch"]]} if row["epoch"] in notes else row
        for row in history
    ]


def default_comparison(output: str = "runs", seed: int = 0) -> list[ExperimentConfig]:
    """MF with BPR, BCE, CCE and SimCE on the built-in synthetic data: the same sampler,
    K, seed, epochs and selection rule for every loss, so only the loss differs."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    configs = []
    for loss in ("bpr", "bce", "cce", "simce"):
        raw: dict[str, Any] = {
            "name": f"mf-{loss}",
            "output": f"{output}/compare-{stamp}",
            "model": {"name": "mf", "dim": 64},
            "sampler": {"name": "uniform", "k": 8},
            "loss": {"name": loss, **({"margin": 0.5} if loss == "simce" else {})},
            "train": {"epochs": 30, "lr": 5e-3, "batch_size": 1024, "patience": 5, "seed": seed},
        }
        configs.append(ExperimentConfig.from_dict(raw))
    return configs
