"""Validation-based hyperparameter search (``negrec tune``), then a confirm stage.

A tuning plan is an ordinary experiment config (the *base*) with a ``[tune]`` table::

    [tune]
    trials = 20              # finished trials per study (a rerun adds only the missing ones)
    metric = "ndcg@20"       # validation metric to maximise (default: train.metric)
    seeds = [0, 1, 2]        # confirm stage: the best trial of each study, once per seed
    pruner = "median"        # or "none": Optuna's MedianPruner on the per-epoch metric
    startup_trials = 5       # random trials before TPE models the space and pruning starts
    warmup_epochs = 20       # no trial is pruned before this epoch
    seed = 0                 # the TPE sampler's seed

    [tune.space]             # dotted config path = a range or a list of choices
    "train.lr" = { low = 1e-4, high = 1e-2, log = true }
    "model.dim" = { low = 16, high = 128, step = 16 }     # integers: int bounds
    "sampler.k" = { choices = [1, 4, 16] }

    [tune.grid]              # optional: one study per combination (e.g. per loss)
    "loss.name" = ["bpr", "cce"]

    [[tune.studies]]         # optional: explicit studies with their own values and space
    name = "simce"
    set = { "loss.name" = "simce" }
    space = { "loss.margin" = { choices = [1.0, 5.0, 10.0] } }

Studies = (product of the ``tune.grid`` axes) x (each ``tune.studies`` entry, or one
study when there are none); each searches ``tune.space`` plus its own ``space``. They
compare families (BPR against SimCE) each tuned as hard as the other.

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
import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from negrec.data.interactions import Interactions
from negrec.data.splits import Split
from negrec.errors import ConfigError, NegrecError
from negrec.experiment.config import ExperimentConfig, apply_overrides
from negrec.experiment.grid import (
    GRID,
    Grid,
    expand_grid,
    flatten,
    read_source,
    run_name,
    sanitize,
)

if TYPE_CHECKING:
    import optuna

    from negrec.experiment.sweep import PlannedRun, SweepResult

TUNE = "tune"
STUDY_FILE = "study.db"
TUNE_KEYS = (
    "trials",
    "metric",
    "direction",
    "seeds",
    "pruner",
    "startup_trials",
    "warmup_epochs",
    "seed",
    "space",
    "grid",
    "studies",
)
PARAM_KEYS = ("low", "high", "log", "step", "choices")
Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Param:
    """One dimension of a search space: a range (float, or int when both bounds are
    integers) with an optional log scale or step, or a list of choices."""

    path: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))

    def first(self) -> Any:
        """A value inside the space (to check the path names a real config key)."""
        return self.choices[0] if self.choices else self.low

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.path, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.is_int:
            whole = int(self.step) if self.step is not None else 1
            return trial.suggest_int(
                self.path, int(self.low), int(self.high), step=whole, log=self.log
            )
        step = None if self.step is None else float(self.step)
        value = trial.suggest_float(
            self.path, float(self.low), float(self.high), step=step, log=self.log
        )
        return value if step is not None else rounded(value)


def rounded(value: float) -> float:
    """``value`` to 3 significant digits: what a trial trains with (readable configs and
    run names; finer differences than 0.1% of a learning rate do not matter)."""
    return float(f"{value:.3g}")


def parse_param(path: str, raw: Any) -> Param:
    """A ``[tune.space]`` entry; errors name ``tune.space.<path>``."""
    where = f"tune.space.{path}"
    if not isinstance(raw, dict):
        raise ConfigError(
            where, f"expected {{low = .., high = ..}} or {{choices = [..]}}, got {raw!r}"
        )
    unknown = set(raw) - set(PARAM_KEYS)
    if unknown:
        raise ConfigError(
            where, f"unknown key(s) {sorted(unknown)} (expected: {', '.join(PARAM_KEYS)})"
        )
    if "choices" in raw:
        choices = raw["choices"]
        if set(raw) != {"choices"}:
            raise ConfigError(where, "choices go alone (no low, high, log or step)")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(where, "choices must be a non-empty list")
        if any(isinstance(c, (dict, list)) for c in choices):
            raise ConfigError(where, "choices must be plain values (numbers, strings, booleans)")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise ConfigError(where, "choices must be distinct")
        return Param(path, choices=tuple(choices))
    if "low" not in raw or "high" not in raw:
        raise ConfigError(where, "a range needs low and high (or give choices = [...])")
    low, high, log, step = raw["low"], raw["high"], raw.get("log", False), raw.get("step")
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{where}.{name}", f"expected a finite number, got {value!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log", f"expected true or false, got {log!r}")
    if not low < high:
        raise ConfigError(where, f"low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}.low", "a log scale needs low > 0")
    if log and step is not None:
        raise ConfigError(where, "log and step do not go together")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}.step", "must be > 0")
    param = Param(path, low=low, high=high, log=log, step=step)
    if step is not None and isinstance(step, float) and param.is_int:
        raise ConfigError(f"{where}.step", "integer bounds need an integer step")
    return param


def parse_space(raw: Any, where: str) -> dict[str, Param]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(where, f"expected a table, got {raw!r}")
    space = {}
    for path, value in _space_items(raw):
        if path.rsplit(".", 1)[-1] == "seed":
            raise ConfigError(
                f"{where}.{path}",
                "seeds are not hyperparameters (tune.seeds sets the confirm seeds)",
            )
        space[path] = parse_param(path, value)
    return space


def _space_items(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted paths of a space table: a nested table stops at a parameter (a table with
    one of the parameter keys), so ``train = {lr = {low=..}}`` and ``"train.lr"`` agree."""
    items = []
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value and not set(value) & set(PARAM_KEYS):
            items += _space_items(value, path)
        else:
            items.append((path, value))
    return items


@dataclass
class Study:
    """One study: the values it fixes (e.g. ``loss.name = "simce"``) and its space."""

    name: str
    values: dict[str, Any]
    space: dict[str, Param]

    def fingerprint(self, base: dict[str, Any], metric: str) -> str:
        """What a resumed study must share with the one on disk: the base config (less
        its name, output, device and seeds), the fixed values, the space and the metric."""
        kept = {
            k: v
            for k, v in flatten(base)
            if k not in ("name", "output", "train.device") and k.rsplit(".", 1)[-1] != "seed"
        }
        payload = {
            "base": kept,
            "values": self.values,
            "space": {p: dataclasses.asdict(v) for p, v in self.space.items()},
            "metric": metric,
        }
        return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class TunePlan:
    """A parsed tuning plan: the base config, the studies and the search settings."""

    name: str
    folder: Path
    base: dict[str, Any]  # raw config without [tune] / [grid] / [reproduce]
    metric: str
    trials: int = 20
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pruner: str = "median"
    startup_trials: int = 5
    warmup_epochs: int = 20
    seed: int = 0
    studies: list[Study] = field(default_factory=list)

    def config(self, study: Study, params: dict[str, Any], name: str) -> ExperimentConfig:
        """The experiment config of ``study`` with ``params`` (a trial's values)."""
        raw = copy.deepcopy(self.base)
        for path, value in {**study.values, **params}.items():
            _set(raw, path, value)
        raw["name"] = name
        raw.setdefault("train", {})["metric"] = self.metric
        return ExperimentConfig.from_dict(raw)


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(path, f"'{part}' is a value, not a table")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _int(table: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"tune.{key}", f"expected a whole number >= {minimum}, got {value!r}")
    return value


def parse_plan(raw: dict[str, Any], *, folder: str | Path | None = None) -> TunePlan:
    """A raw config dict (TOML as parsed, overrides applied) with a ``[tune]`` table."""
    table = raw.get(TUNE)
    if not isinstance(table, dict):
        raise ConfigError(TUNE, "this config has no [tune] table (see `negrec tune --help`)")
    unknown = set(table) - set(TUNE_KEYS)
    if unknown:
        raise ConfigError(
            f"tune.{sorted(unknown)[0]}", f"unknown key (expected one of: {', '.join(TUNE_KEYS)})"
        )
    base = {k: v for k, v in raw.items() if k not in (TUNE, GRID, "reproduce")}
    config = ExperimentConfig.from_dict(base)
    metric = table.get("metric", config.train.metric)
    if table.get("direction", "maximize") != "maximize":
        raise ConfigError("tune.direction", "every negrec metric is higher-is-better: 'maximize'")
    seeds = table.get("seeds", [0, 1, 2])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ConfigError("tune.seeds", f"expected a non-empty list of seeds >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError("tune.seeds", "seeds must be distinct")
    pruner = table.get("pruner", "median")
    if pruner not in ("median", "none"):
        raise ConfigError("tune.pruner", f"expected 'median' or 'none', got {pruner!r}")
    plan = TunePlan(
        name=config.name,
        folder=Path(folder) if folder is not None else Path(config.output) / f"tune-{config.name}",
        base=base,
        metric=str(metric),
        trials=_int(table, "trials", 20, 1),
        seeds=list(seeds),
        pruner=pruner,
        startup_trials=_int(table, "startup_trials", 5, 0),
        warmup_epochs=_int(table, "warmup_epochs", 20, 0),
        seed=_int(table, "seed", 0, 0),
    )
    plan.studies = _parse_studies(table, config.name)
    for study in plan.studies:  # every path and value checked now, naming the study
        first = {p: v.first() for p, v in study.space.items()}
        try:
            plan.config(study, first, "check")
        except ConfigError as err:
            message = str(err).removeprefix(f"config key '{err.key}': ")
            raise ConfigError(err.key, f"{message} (in study '{study.name}')") from None
    return plan


def _parse_studies(table: dict[str, Any], default_name: str) -> list[Study]:
    space = parse_space(table.get("space"), "tune.space")
    axes_raw = table.get("grid", {})
    if not isinstance(axes_raw, dict):
        raise ConfigError("tune.grid", f"expected a table, got {axes_raw!r}")
    axes = dict(flatten(axes_raw))
    for path, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"tune.grid.{path}", "expected a non-empty list of values")
    entries_raw = table.get("studies", [])
    if not isinstance(entries_raw, list):
        raise ConfigError("tune.studies", "expected [[tune.studies]] entries")
    entries: list[tuple[str, dict[str, Any], dict[str, Param]]] = []
    for i, entry in enumerate(entries_raw):
        where = f"tune.studies[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"name", "set", "space"}:
            raise ConfigError(where, "an entry holds name, set = {...} and space = {...}")
        values = dict(flatten(entry.get("set", {})))
        own = parse_space(entry.get("space"), f"{where}.space")
        label = entry.get("name") or run_name(values)
        entries.append((sanitize(str(label)), values, own))
    studies = []
    for combo in product(*axes.values()):
        point = dict(zip(axes, combo, strict=True))
        for label, values, own in entries or [("", {}, {})]:
            both = {**point, **values}
            clash = set(both) & (set(space) | set(own))
            if clash:
                raise ConfigError(sorted(clash)[0], "is both fixed by a study and searched")
            parts = (run_name(point) if point else "", label)
            name = ",".join(p for p in parts if p) or sanitize(default_name)
            studies.append(Study(name, both, {**space, **own}))
    names = [s.name for s in studies]
    if len(set(names)) != len(names):
        raise ConfigError("tune.studies", f"two studies share a name: {names}")
    return studies


def load_plan(
    source: str | Path, overrides: list[str] | None = None, *, folder: str | Path | None = None
) -> TunePlan:
    """A config file or preset with a ``[tune]`` table, ``--set`` overrides applied. An
    override of a value the studies search or fix would be replaced in every trial: it
    is an error that says so."""
    raw = apply_overrides(read_source(source), overrides or [])
    plan = parse_plan(raw, folder=folder)
    check_overrides(plan, overrides or [])
    return plan


def check_overrides(plan: TunePlan, overrides: list[str]) -> None:
    """Refuse ``--set`` of a path some study searches or fixes (it would be ignored)."""
    from negrec.experiment.config import parse_override

    taken = {path for s in plan.studies for path in (*s.space, *s.values)}
    for text in overrides:
        path = ".".join(parse_override(text)[0])
        if path in taken:
            raise ConfigError(
                path,
                f"is searched or fixed by the [tune] studies, so --set {path}=... would be "
                "replaced in every trial; change tune.space or the study instead",
            )


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
        retried = any(t.number > trial.number and t.params == trial.params for t in trials)
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


def tune_studies(
    plan: TunePlan, split: Split | None = None, *, log: Log = _print
) -> list[StudyResult]:
    """Stage 1: run each study up to ``plan.trials`` finished trials (resuming what
    ``{folder}/study.db`` holds). Never evaluates on test."""
    import optuna
    from optuna.trial import TrialState

    from negrec.experiment.runner import load_split
    from negrec.experiment.sweep import sweep_lock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
                f"tune {study.name}: {done} of {plan.trials} trials finished before, {left} to run"
                f" ({plan.folder / STUDY_FILE})"
            )
            for _ in range(left):  # one at a time: a trial that fails (not pruned) stops here
                opened.optimize(_objective(plan, study, split, log), n_trials=1, catch=())
            finished = finished_trials(opened)
            complete = [t for t in finished if t.state == TrialState.COMPLETE]
            best = max(complete, key=lambda t: t.value or -math.inf) if complete else None
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


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
