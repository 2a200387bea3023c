"""Grids: one config file that expands into many runs.

A grid is an ordinary experiment config (the *base*) with a ``[grid]`` table that says
what to vary. Three parts, all optional, combine as a product::

    name = "loss-k"            # the sweep folder: {output}/{name}/

    [loss]
    name = "bpr"               # the base; the grid overrides it

    [grid]
    seeds = [0, 1, 2]          # each point once per seed (sets train.seed)
    loss.name = ["bpr", "cce"] # axes: dotted config path = list of values to try
    "sampler.k" = [1, 8]       # (bare or quoted dotted keys are the same thing)

    [[grid.runs]]              # explicit entries: a dotted path = ONE value each
    model.name = "mf"
    [[grid.runs]]
    name = "lgcn-2"            # optional label, replaces this entry's part of run names
    model.name = "lightgcn"
    model.layers = 2

runs = (cartesian product of the axes) x (each explicit entry, or one empty entry when
there are none) x (each seed, or the base seed when there are none). Here: 2 x 2 x 2 x 3 =
24 runs, e.g. ``loss=cce,sampler.k=8,model=mf,seed=1`` and
``loss=bpr,sampler.k=1,lgcn-2,seed=0``.

Run names are derived from the values the grid sets, in declaration order (axes, then the
entry, then the seed), as ``key=value`` joined by commas, with the common keys shortened
(``loss.name`` -> ``loss``, ``model.name`` -> ``model``, ``sampler.name`` -> ``sampler``,
the seed -> ``seed``) and sanitised for file names. A name depends only on the run's own
values, never on the other runs, so adding a value or a seed to a grid never renames
the runs already finished: a resumed sweep still finds them. Two runs whose sanitised
names collide get a short hash of their values appended.

Every expanded run is validated as a normal config before anything runs, so a typo in a
dotted key fails at once, naming the key (``config key 'loss.nmae': unknown key``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from itertools import product
from pathlib import Path
from typing import Any

from negrec.errors import ConfigError
from negrec.experiment.config import (
    ExperimentConfig,
    apply_overrides,
    parse_override,
    preset_names,
    read_toml,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GRID = "grid"
RESERVED = ("seeds", "seed_keys", "runs")  # keys of [grid] that are not axes
DEFAULT_SEED_KEYS = ("train.seed",)
SHORT_KEYS = {"loss.name": "loss", "model.name": "model", "sampler.name": "sampler"}
MAX_NAME = 120  # characters of a run name (file systems allow 255 bytes)
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+@-]")


@dataclass(frozen=True)
class GridRun:
    """One expanded run: its derived name, the values the grid set, and the typed config.

    ``values`` maps dotted config paths to the values this run got from the grid (axes,
    explicit entry and seed keys), in name order; ``config`` has ``name`` = the run name
    and ``output`` = the sweep folder.
    """

    name: str
    values: dict[str, Any]
    config: ExperimentConfig


@dataclass
class Grid:
    """A grid expanded: the sweep folder, what varies, and the runs in a fixed order."""

    name: str  # the base config's name
    folder: Path  # where the run directories go
    axes: dict[str, list[Any]] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    seed_keys: tuple[str, ...] = DEFAULT_SEED_KEYS
    runs: list[GridRun] = field(default_factory=list)

    def varied_keys(self) -> set[str]:
        """Dotted paths the grid sets (axes, explicit entries, seed keys)."""
        keys = set(self.axes)
        for entry in self.entries:
            keys.update(entry)
        if self.seeds:
            keys.update(self.seed_keys)
        return keys


# ------------------------------------------------------------------------------ parsing
def flatten(table: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``("a.b", 1)``: nested tables become dotted paths (a later
    duplicate of the same path, e.g. from ``--set``, comes later and wins when collected
    into a dict)."""
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            yield from flatten(value, path)
        else:
            yield path, value


def _check_path(path: str, where: str) -> None:
    top = path.split(".", 1)[0]
    if top in ("name", "output", GRID):
        raise ConfigError(
            where,
            f"a grid cannot vary '{top}' (run names and the sweep folder "
            "are derived from the grid)",
        )


def _parse_axes(table: dict[str, Any]) -> dict[str, list[Any]]:
    axes: dict[str, list[Any]] = {}
    for path, values in flatten({k: v for k, v in table.items() if k not in RESERVED}):
        where = f"grid.{path}"
        _check_path(path, where)
        if not isinstance(values, list) or not values:
            raise ConfigError(where, f"expected a non-empty list of values to try, got {values!r}")
        _check_distinct(values, where)
        axes[path] = values
    return axes


def _check_distinct(values: list[Any], where: str) -> None:
    seen: set[str] = set()
    for value in values:
        canonical = _canonical(value)
        if canonical in seen:
            raise ConfigError(where, f"value {value!r} is listed twice")
        seen.add(canonical)


def _parse_entries(raw: Any, axes: dict[str, list[Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Explicit ``[[grid.runs]]`` entries as dotted paths -> values, and their labels."""
    if raw is None:
        return [], []
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ConfigError("grid.runs", "expected a list of tables ([[grid.runs]] entries)")
    entries, labels = [], []
    for i, entry in enumerate(raw):
        label = entry.get("name")
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise ConfigError(f"grid.runs[{i}].name", f"expected a non-empty label, got {label!r}")
        values = dict(flatten({k: v for k, v in entry.items() if k != "name"}))
        if not values:
            raise ConfigError(f"grid.runs[{i}]", "an entry must set at least one config value")
        for path in values:
            _check_path(path, f"grid.runs[{i}].{path}")
            if path in axes:
                raise ConfigError(
                    f"grid.runs[{i}].{path}",
                    f"is also a grid axis (grid.{path}); set it in one place only",
                )
        entries.append(values)
        labels.append(label or "")
    seen: dict[str, int] = {}
    for i, values in enumerate(entries):
        canonical = _canonical([labels[i], values])
        if canonical in seen:
            raise ConfigError(f"grid.runs[{i}]", f"repeats grid.runs[{seen[canonical]}]")
        seen[canonical] = i
    return entries, labels


def _parse_seeds(table: dict[str, Any], taken: set[str]) -> tuple[list[int], tuple[str, ...]]:
    seeds = table.get("seeds", [])
    if "seeds" in table and seeds == []:
        raise ConfigError("grid.seeds", "an empty list runs nothing: list seeds, or leave it out")
    if not isinstance(seeds, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise ConfigError("grid.seeds", f"expected a list of integers >= 0, got {seeds!r}")
    _check_distinct(seeds, "grid.seeds")
    keys = table.get("seed_keys", list(DEFAULT_SEED_KEYS))
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise ConfigError("grid.seed_keys", f"expected a list of dotted config paths, got {keys!r}")
    if seeds:
        for key in keys:
            _check_path(key, "grid.seed_keys")
            if key in taken:
                raise ConfigError(
                    "grid.seeds", f"'{key}' is set by grid.seeds and elsewhere in the grid"
                )
    return seeds, tuple(keys)


# ------------------------------------------------------------------------------- naming
def short_key(path: str, seed_keys: tuple[str, ...] = DEFAULT_SEED_KEYS) -> str:
    """The name of a dotted path in run names: ``loss.name`` -> ``loss``, the first seed
    key -> ``seed``, anything else unchanged."""
    if seed_keys and path == seed_keys[0]:
        return "seed"
    return SHORT_KEYS.get(path, path)


def format_value(value: Any) -> str:
    """A config value as it appears in a run name (before sanitising)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "+".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return "+".join(f"{k}={format_value(v)}" for k, v in value.items())
    return str(value)


def sanitize(text: str) -> str:
    """Keep ``A-Z a-z 0-9 . _ , = + @ -``, replace anything else by ``_``; never hidden."""
    text = _UNSAFE.sub("_", text)
    if text.startswith((".", "-")) or not text:
        text = "_" + text
    return text


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha1(_canonical(values).encode()).hexdigest()[:8]


def run_name(
    values: dict[str, Any],
    label: str = "",
    entry_keys: tuple[str, ...] = (),
    *,
    seed_keys: tuple[str, ...] = DEFAULT_SEED_KEYS,
) -> str:
    """The run name for the grid values ``values`` (dotted path -> value, in order).

    Keys in ``entry_keys`` are shown as ``label`` instead when a label is given; of the
    seed keys only the first is shown (they all hold the same seed).
    """
    parts: list[str] = []
    labelled = False
    for path, value in values.items():
        if path in seed_keys[1:]:
            continue
        if label and path in entry_keys:
            if not labelled:
                parts.append(label)
                labelled = True
            continue
        parts.append(f"{short_key(path, seed_keys)}={format_value(value)}")
    name = sanitize(",".join(parts))
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - 9]}-{_digest(values)}"
    return name


# ----------------------------------------------------------------------------- expansion
def _set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    node = raw
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[: i + 1]), "is a value, not a table")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


#: tables of a preset that ``negrec tune`` / ``negrec reproduce`` read, never part of a run
PLAN_TABLES = ("tune", "reproduce")


def split_grid(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The base config (without ``grid``, ``tune`` and ``reproduce``) and the ``grid``
    table (None if absent)."""
    base = {k: v for k, v in raw.items() if k != GRID and k not in PLAN_TABLES}
    table = raw.get(GRID)
    if table is not None and not isinstance(table, dict):
        raise ConfigError(GRID, f"expected a table, got {table!r}")
    return base, table


RESERVED_RUN = ("name", "output")  # differ between runs by construction


def expand_grid(raw: dict[str, Any], *, folder: str | Path | None = None) -> Grid:
    """Expand a raw config dict (TOML as parsed, overrides applied) into its runs.

    The base is validated first, then every run; errors name the offending key. Runs go
    to ``folder`` (default ``{output}/{name}`` of the base).
    """
    base_raw, table = split_grid(raw)
    base = ExperimentConfig.from_dict(base_raw)
    table = table or {}
    axes = _parse_axes(table)
    entries, labels = _parse_entries(table.get("runs"), axes)
    taken = set(axes).union(*entries) if entries else set(axes)
    seeds, seed_keys = _parse_seeds(table, taken)
    out = Path(folder) if folder is not None else Path(base.output) / base.name
    grid = Grid(base.name, out, axes, entries, seeds, seed_keys)

    points = [dict(zip(axes, combo, strict=True)) for combo in product(*axes.values())]
    entry_items = list(zip(entries, labels, strict=True)) or [({}, "")]
    seed_values: list[int | None] = list(seeds) or [None]
    names: dict[str, list[int]] = {}
    expanded: list[tuple[dict[str, Any], str]] = []
    for point in points:
        for entry, label in entry_items:
            for seed in seed_values:
                values = {**point, **entry}
                if seed is not None:
                    values.update({key: seed for key in seed_keys})
                name = run_name(values, label, tuple(entry), seed_keys=seed_keys)
                if not values:
                    name = sanitize(base.name)
                names.setdefault(name, []).append(len(expanded))
                expanded.append((values, name))
    final_names = [name for _, name in expanded]
    for name, indices in names.items():
        if len(indices) > 1:  # sanitising or labels made names collide: disambiguate
            for i in indices:
                final_names[i] = f"{name[: MAX_NAME - 9]}-{_digest(expanded[i][0])}"
    if len(set(final_names)) != len(final_names):  # pragma: no cover - sha1 collision
        raise ConfigError(GRID, "two runs of the grid get the same name")

    for (values, _), name in zip(expanded, final_names, strict=True):
        run_raw = copy.deepcopy(base_raw)
        for path, value in values.items():
            _set_path(run_raw, path, value)
        run_raw["name"] = name
        run_raw["output"] = str(out)
        try:
            config = ExperimentConfig.from_dict(run_raw)
        except ConfigError as err:
            message = str(err).removeprefix(f"config key '{err.key}': ")
            raise ConfigError(err.key, f"{message} (in grid run '{name}')") from None
        grid.runs.append(GridRun(name, values, config))
    _reject_identical_runs(grid.runs)
    return grid


def _reject_identical_runs(runs: list[GridRun]) -> None:
    """Two grid points that resolve to one config (``margin = [1, 1.0]``, or two labelled
    entries that both leave the base unchanged) would train the same run twice and count
    it twice in the report: refuse them, naming both."""
    first: dict[str, str] = {}
    for run in runs:
        identity = {k: v for k, v in run.config.to_toml_dict().items() if k not in RESERVED_RUN}
        key = repr(sorted(flatten(identity)))
        if key in first:
            raise ConfigError(
                GRID,
                f"runs '{first[key]}' and '{run.name}' resolve to the same config; "
                "list each value (or entry) once",
            )
        first[key] = run.name


def read_source(source: str | Path) -> dict[str, Any]:
    """The raw TOML of a config file, or of a preset by name."""
    path = Path(source)
    if not path.exists() and str(source) in preset_names():
        preset = resources.files("negrec") / "presets" / f"{source}.toml"
        return tomllib.loads(preset.read_text(encoding="utf-8"))
    return read_toml(path)


def is_grid(source: str | Path) -> bool:
    """True when the config file or preset has a ``[grid]`` table."""
    return GRID in read_source(source)


def load_grid(
    source: str | Path | None,
    overrides: list[str] | None = None,
    *,
    folder: str | Path | None = None,
) -> Grid:
    """Load a config file or preset, apply ``--set`` overrides, expand its grid.

    An override may change the grid itself (``--set 'grid.seeds=[0, 1]'``), but not a
    value the grid varies: that would be silently replaced in every run, so it is an
    error that says how to change the grid's values instead.
    """
    raw = read_source(source) if source is not None else {}
    overrides = overrides or []
    raw = apply_overrides(raw, overrides)
    grid = expand_grid(raw, folder=folder)
    varied = grid.varied_keys()
    for text in overrides:
        parts, _ = parse_override(text)
        path = ".".join(parts)
        if path in varied:
            raise ConfigError(
                path,
                f"is varied by the grid, so --set {path}=... would be replaced in every run; "
                f"change the grid instead, e.g. --set 'grid.{path}=[...]' for an axis",
            )
    return grid
