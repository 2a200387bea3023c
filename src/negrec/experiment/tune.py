"""Validation-based hyperparameter search (``negrec tune``), then a confirm stage.

The plan (a config with a ``[tune]`` table) is parsed by :mod:`negrec.experiment.tune_plan`:
studies (one per family, e.g. per loss), each with fixed values and a search space.
Everything goes to ``{output}/tune-{name}/`` of the config (or ``--output``).

Stage 1, tuning: Optuna's TPE sampler (seeded) proposes values; each trial trains with
validation early stopping and reports the validation metric every evaluation, so the
median pruner stops trials that fall below the median of earlier trials at the same
epoch. Trials see a copy of the split whose test part is empty: nothing in tuning can
read the test split. The studies live in ``{folder}/study.db`` (SQLite): a killed tuning
resumes where it stopped, finished and pruned trials are kept, and a trial killed
mid-way is redone with the same values.

Stage 2, confirm: each study's best trial is trained again once per ``tune.seeds`` as
normal run directories in ``{folder}/confirm/`` (a resumable sweep) and evaluated on test
once each; the report aggregates them (mean ± std over seeds, paired t-test of the best
family against the runner-up), written to ``{folder}/tune.md``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from negrec.data.interactions import Interactions
from negrec.data.splits import Split
from negrec.errors import ConfigError, NegrecError
from negrec.experiment.grid import GRID, Grid, expand_grid
from negrec.experiment.tune_plan import (
    STUDY_FILE,
    Study,
    TunePlan,
    check_overrides,
    load_plan,
    parse_plan,
    rounded,
)

if TYPE_CHECKING:
    import optuna

    from negrec.experiment.config import ExperimentConfig
    from negrec.experiment.sweep import PlannedRun, SweepResult

__all__ = ["check_overrides", "load_plan", "parse_plan", "run_tune", "tune_studies"]

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------ trials
def hide_test(split: Split) -> Split:
    """``split`` with an empty test part (same users and items): what tuning trains and
    validates on, so no trial can read the test interactions."""
    test = split.test
    empty = np.zeros(0, dtype=np.int64)
    hidden = Interactions.from_arrays(
        empty,
        empty,
        n_users=test.n_users,
        n_items=test.n_items,
        user_ids=test.user_ids,
        item_ids=test.item_ids,
    )
    return Split(split.train, split.valid, hidden)


def _pruning_callback(trial: optuna.Trial, metric: str, warmup: int) -> Any:
    """A training callback reporting ``valid/<metric>`` per evaluation to the trial and
    raising ``optuna.TrialPruned`` when the pruner says so."""
    import optuna

    from negrec.train import Callback, TrainState

    key = f"valid/{metric}"

    class Prune(Callback):
        def on_epoch_end(self, state: TrainState) -> None:
            if key not in state.log:
                return
            trial.report(float(state.log[key]), step=state.epoch)
            if state.epoch >= warmup and trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", state.epoch)
                raise optuna.TrialPruned()

    return Prune()


def train_trial(
    config: ExperimentConfig, split: Split, trial: optuna.Trial | None = None, warmup: int = 0
) -> dict[str, Any]:
    """Train ``config`` on ``split`` selecting on validation; never reads test. Returns
    the best validation value, its epoch, the last epoch and whether it was budget-bound."""
    from negrec.experiment.runner import build_components, check_split, schedule_callbacks
    from negrec.models.sequential import contexts_for
    from negrec.train import Callback, EarlyStopping, ValidationEval, fit

    split = hide_test(split)
    check_split(config, split)
    parts = build_components(config, split)
    stopper = EarlyStopping(config.train.metric, config.train.patience)
    callbacks: list[Callback] = [
        ValidationEval(config.eval, config.train.eval_every),
        *schedule_callbacks(config),
    ]
    if trial is not None:
        callbacks.append(_pruning_callback(trial, config.train.metric, warmup))
    callbacks.append(stopper)
    start = time.perf_counter()
    state = fit(
        parts.model,
        parts.sampler,
        parts.loss,
        split,
        config.train,
        callbacks=callbacks,
        contexts=contexts_for(parts.model, split, "valid"),
    )
    return {
        "value": stopper.best_value,
        "best_epoch": stopper.best_epoch,
        "last_epoch": state.epoch,
        "budget_bound": stopper.budget_bound,
        "seconds": time.perf_counter() - start,
    }


# ------------------------------------------------------------------------------ studies
def _storage(folder: Path) -> optuna.storages.RDBStorage:
    import optuna

    folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{(folder / STUDY_FILE).resolve()}")


def _open_study(plan: TunePlan, study: Study, index: int, storage: Any) -> optuna.Study:
    """Create or reopen ``study`` in ``storage``; refuse one made from another config.
    Trials left RUNNING by a killed tuning are marked failed, and each failed trial's
    values are queued once to be tried again."""
    import optuna
    from optuna.trial import TrialState

    fingerprint = study.fingerprint(plan.base, plan.metric)
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    n_before = existing.get(study.name, 0)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=plan.startup_trials, n_warmup_steps=0)
        if plan.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    # seeded by the plan's seed, the study and the trials already run: a resumed tuning
    # does not replay the proposals of its first session
    sampler = optuna.samplers.TPESampler(
        seed=plan.seed * 1_000_003 + index * 10_007 + n_before,
        n_startup_trials=plan.startup_trials,
    )
    opened = optuna.create_study(
        storage=storage,
        study_name=study.name,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    stored = opened.user_attrs.get("fingerprint")
    if stored is None:
        opened.set_user_attr("fingerprint", fingerprint)
    elif stored != fingerprint:
        raise NegrecError(
            f"{plan.folder / STUDY_FILE}: study '{study.name}' was made with another config, "
            "data or search space; tune into another --output, or delete the folder to start over"
        )
    trials = opened.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING:  # a killed session: nobody runs it now
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    trials = opened.get_trials(deepcopy=False)
    for trial in trials:
        retried = any(  # (a queued retry has no params until it runs: its retry_of says)
            t.number > trial.number
            and (t.params == trial.params or t.user_attrs.get("retry_of") == trial.number)
            for t in trials
        )
        if trial.state == TrialState.FAIL and not retried:
            opened.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return opened


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Complete and pruned trials (what ``tune.trials`` counts)."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _objective(
    plan: TunePlan, study: Study, split: Split, log: Log
) -> Callable[[optuna.Trial], float]:
    import optuna

    from negrec.train import TrainingDiverged

    def objective(trial: optuna.Trial) -> float:
        params = {path: param.suggest(trial) for path, param in study.space.items()}
        try:
            config = plan.config(study, params, f"{study.name}-trial{trial.number}")
            result = train_trial(config, split, trial, plan.warmup_epochs)
        except ConfigError as err:  # values this dataset cannot take (K above the catalogue)
            trial.set_user_attr("infeasible", str(err))
            log(f"tune {study.name}: trial {trial.number} infeasible ({err}); counted as pruned")
            raise optuna.TrialPruned() from None
        except TrainingDiverged as err:
            trial.set_user_attr("diverged", str(err))
            log(f"tune {study.name}: trial {trial.number} diverged ({err}); counted as pruned")
            raise optuna.TrialPruned() from None
        except optuna.TrialPruned:
            epoch = trial.user_attrs.get("pruned_at_epoch")
            log(f"tune {study.name}: trial {trial.number} pruned at epoch {epoch} {_show(params)}")
            raise
        for key in ("best_epoch", "last_epoch", "budget_bound", "seconds"):
            trial.set_user_attr(key, result[key])
        bound = " (budget-bound: raise train.epochs)" if result["budget_bound"] else ""
        log(
            f"tune {study.name}: trial {trial.number} valid {plan.metric} {result['value']:.4f}, "
            f"best epoch {result['best_epoch']} of {result['last_epoch']}, "
            f"{result['seconds']:.1f} s {_show(params)}{bound}"
        )
        return float(result["value"])

    return objective


def _show(params: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={_fmt_value(v)}" for k, v in params.items()) + "}"


def _fmt_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@dataclass
class StudyResult:
    """A study after tuning: its best trial (None if every trial was pruned)."""

    study: Study
    best_params: dict[str, Any] | None
    best_value: float
    best_number: int | None
    trials: int  # finished (complete + pruned)
    pruned: int
    budget_bound: int  # complete trials that ended on the epoch budget while improving
    best_budget_bound: bool


def _value(trial: optuna.trial.FrozenTrial) -> float:
    return -math.inf if trial.value is None else float(trial.value)


def tune_studies(
    plan: TunePlan, split: Split | None = None, *, log: Log = _print
) -> list[StudyResult]:
    """Stage 1: run each study up to ``plan.trials`` finished trials (resuming what
    ``{folder}/study.db`` holds). Never evaluates on test."""
    import optuna
    from optuna.trial import TrialState

    from negrec.experiment.runner import load_split
    from negrec.experiment.sweep import sweep_lock

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # (trials log through `log`)
    if split is None:
        split = load_split(plan.config(plan.studies[0], {}, "data"))
    results = []
    with sweep_lock(plan.folder):
        storage = _storage(plan.folder)
        for index, study in enumerate(plan.studies):
            opened = _open_study(plan, study, index, storage)
            done = len(finished_trials(opened))
            left = max(plan.trials - done, 0)
            log(
                f"tune {study.name}: {done} trial(s) finished before ({plan.trials} wanted), "
                f"{left} to run ({plan.folder / STUDY_FILE})"
            )
            for _ in range(left):  # one at a time: a trial that fails (not pruned) stops here
                opened.optimize(_objective(plan, study, split, log), n_trials=1, catch=())
            finished = finished_trials(opened)
            complete = [t for t in finished if t.state == TrialState.COMPLETE]
            best = max(complete, key=_value) if complete else None
            results.append(
                StudyResult(
                    study,
                    dict(best.params) if best else None,
                    float(best.value) if best and best.value is not None else math.nan,
                    best.number if best else None,
                    len(finished),
                    len(finished) - len(complete),
                    sum(bool(t.user_attrs.get("budget_bound")) for t in complete),
                    bool(best and best.user_attrs.get("budget_bound")),
                )
            )
    return results


# ------------------------------------------------------------------------------ confirm
def confirm_grid(plan: TunePlan, results: list[StudyResult]) -> Grid:
    """Each study's best trial once per ``plan.seeds``, as a grid in ``{folder}/confirm``:
    run names ``{study},trial={n},seed={s}`` (a later, better trial gets new names)."""
    entries = []
    for result in results:
        if result.best_params is None:
            continue
        entries.append(
            {
                "name": f"{result.study.name},trial={result.best_number}",
                **result.study.values,
                **_trained_values(result.study, result.best_params),
            }
        )
    if not entries:
        raise NegrecError("no study has a finished trial to confirm (all pruned or diverged)")
    raw = copy.deepcopy(plan.base)
    raw.setdefault("train", {})["metric"] = plan.metric
    raw["name"] = plan.name
    raw[GRID] = {"seeds": list(plan.seeds), "runs": entries}
    return expand_grid(raw, folder=plan.folder / "confirm")


@dataclass
class InProcessExecutor:
    """Trains a sweep's runs one after the other in this process, on a split loaded once."""

    split: Split

    def describe(self, todo: int) -> str:
        return "in this process"

    def execute(self, todo: list[PlannedRun], result: SweepResult, log: Log) -> None:
        from negrec.experiment.runner import run_experiment
        from negrec.experiment.sweep import record_done

        for i, plan in enumerate(todo, start=1):
            start = time.perf_counter()
            path = run_experiment(plan.run.config, split=self.split, progress=False)
            record_done(
                plan, path, time.perf_counter() - start, result, log, prefix=f"[{i}/{len(todo)}] "
            )


def confirm_stage(
    plan: TunePlan,
    results: list[StudyResult],
    split: Split | None = None,
    *,
    workers: int = 1,
    log: Log = _print,
) -> list[Path]:
    """Stage 2: train the best trials with every confirm seed (skipping runs finished
    before); returns the run directories. The only stage that evaluates on test."""
    from negrec.experiment.runner import load_split
    from negrec.experiment.sweep import LocalExecutor, run_sweep

    grid = confirm_grid(plan, results)
    if workers == 1:
        split = split if split is not None else load_split(grid.runs[0].config)
        executor: Any = InProcessExecutor(split)
    else:
        executor = LocalExecutor(workers)
    outcome = run_sweep(grid, workers, log=log, executor=executor)
    if outcome.failed:
        names = ", ".join(outcome.failed)
        raise NegrecError(f"confirm runs failed: {names}; rerun the same command to retry them")
    return outcome.complete


# ------------------------------------------------------------------------------ report
def _trained_values(study: Study, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's stored parameters as the trial trained with them (floats rounded)."""
    out = {}
    for path, value in params.items():
        param = study.space.get(path)
        free = param is not None and not param.choices and not param.is_int and param.step is None
        out[path] = rounded(value) if free else value
    return out


def studies_table(plan: TunePlan, results: list[StudyResult]) -> str:
    """Markdown: per study, trials run and pruned, the best validation value and values."""
    lines = [
        f"| study | trials | pruned | budget-bound | best trial | valid {plan.metric} | values |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        best = "—" if r.best_number is None else str(r.best_number)
        if r.best_budget_bound:
            best += " (budget-bound)"
        value = "—" if math.isnan(r.best_value) else f"{r.best_value:.4f}"
        values = _show(_trained_values(r.study, r.best_params)) if r.best_params else "—"
        lines.append(
            f"| {r.study.name} | {r.trials} | {r.pruned} | {r.budget_bound} | {best} | {value} "
            f"| {values} |"
        )
    return "\n".join(lines)


def write_tune_report(
    plan: TunePlan, results: list[StudyResult], runs: list[Path], extra: str = ""
) -> tuple[str, list[Path]]:
    """The studies table, the confirm stage aggregated over seeds (``negrec report``'s
    tables and paired t-test) and ``extra``, written to ``{folder}/tune.md``."""
    from negrec.atomic import atomic_write_text
    from negrec.experiment.aggregate import write_report
    from negrec.experiment.report import load_runs

    report = write_report(load_runs(runs), plan.folder / "confirm")
    text = (
        f"# Tuning {plan.name}: {len(plan.studies)} studies, up to {plan.trials} trials each, "
        f"on validation {plan.metric}\n\n{studies_table(plan, results)}\n\n"
        f"## Confirm: each study's best trial, seeds {plan.seeds} (test, mean ± std)\n\n"
        f"{report.markdown}"
    )
    if extra:
        text += f"\n{extra}"
    path = plan.folder / "tune.md"
    atomic_write_text(path, text)
    return text, [path, *report.files]


def run_tune(
    plan: TunePlan,
    *,
    confirm: bool = True,
    workers: int = 1,
    log: Log = _print,
) -> tuple[str, list[Path]]:
    """``negrec tune``: both stages and the report; returns its text and files."""
    from negrec.experiment.runner import load_split

    split = load_split(plan.config(plan.studies[0], {}, "data"))
    results = tune_studies(plan, split, log=log)
    if not confirm:
        text = studies_table(plan, results)
        return text, []
    runs = confirm_stage(plan, results, split, workers=workers, log=log)
    return write_tune_report(plan, results, runs)
