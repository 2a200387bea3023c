"""Tuning plans: the ``[tune]`` table of a config, parsed and checked (``negrec tune``).

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

    [tune.grid]              # optional: one study per combination (e.g. per model)
    "model.name" = ["mf", "lightgcn"]

    [[tune.studies]]         # optional: explicit studies with their own values and space
    name = "simce"
    set = { "loss.name" = "simce" }
    space = { "loss.margin" = { choices = [1.0, 5.0, 10.0] } }

Studies = (product of the ``tune.grid`` axes) x (each ``tune.studies`` entry, or one
study when there are none); each searches ``tune.space`` plus its own ``space``. A key
is fixed by the grid or by the entries' ``set``, never both (refused, naming the key). They
compare families (BPR against SimCE) each tuned as hard as the other.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

from negrec.errors import ConfigError
from negrec.experiment.config import ExperimentConfig, apply_overrides, parse_override
from negrec.experiment.grid import GRID, flatten, read_source, run_name, sanitize

if TYPE_CHECKING:
    import optuna

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
    if "metric" in table:  # checked as train.metric is, but named as the key the user wrote
        with_metric = copy.deepcopy(base)
        with_metric.setdefault("train", {})["metric"] = metric
        try:
            ExperimentConfig.from_dict(with_metric)
        except ConfigError as err:
            if err.key != "train.metric":
                raise
            raise ConfigError("tune.metric", err.detail) from None
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
            overridden = set(point) & set(values)
            if overridden:  # the study would train its own value under the grid's name
                key = sorted(overridden)[0]
                raise ConfigError(
                    f"tune.grid.{key}", "is also fixed by a [[tune.studies]] entry's set"
                )
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
    taken = {path for s in plan.studies for path in (*s.space, *s.values)}
    for text in overrides:
        path = ".".join(parse_override(text)[0])
        if path in taken:
            raise ConfigError(
                path,
                f"is searched or fixed by the [tune] studies, so --set {path}=... would be "
                "replaced in every trial; change tune.space or the study instead",
            )
