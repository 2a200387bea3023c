"""The experiment config: one TOML file (plus ``--set key=value`` overrides), typed.

Sections: ``[data]``, ``[split]``, ``[model]``, ``[sampler]``, ``[loss]``, ``[train]``,
``[eval]``, ``[monitor]``, ``[logging]``. The ``model``, ``sampler`` and ``loss`` sections
are validated by the chosen plugin's own Config class, so each plugin rejects keys it does not
know. Impossible combinations fail here, before any data is read or any run directory
exists, naming the fields involved.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from negrec.config_base import from_dict, require, to_dict
from negrec.data.loaders import parse_separator
from negrec.errors import ConfigError
from negrec.evaluation import EvalConfig
from negrec.losses import LOSSES, LossConfig
from negrec.metrics import metric_names
from negrec.models import MODELS, ModelConfig
from negrec.samplers import SAMPLERS, SamplerConfig
from negrec.train import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class SyntheticConfig:
    """Parameters of the built-in synthetic dataset (see negrec.data.synthetic)."""

    n_users: int = 943
    n_items: int = 1682
    mean_degree: float = 106.0
    n_clusters: int = 12
    affinity: float = 6.0
    popularity_exponent: float = 0.7
    seed: int = 0

    def validate(self, prefix: str) -> None:
        require(self.n_users >= 1, f"{prefix}.n_users", "must be >= 1")
        require(self.n_items >= 2, f"{prefix}.n_items", "must be >= 2 (a positive and a negative)")
        require(
            0 < self.mean_degree < self.n_items,
            f"{prefix}.mean_degree",
            f"must lie in (0, n_items = {self.n_items})",
        )
        require(self.n_clusters >= 1, f"{prefix}.n_clusters", "must be >= 1")
        require(self.affinity >= 0, f"{prefix}.affinity", "must be >= 0")


@dataclass
class ColumnsConfig:
    """Which column of a delimited file holds what (``[data.columns]``).

    Each value is a column name from the file's header (a TOML string) or a 0-based
    position (a TOML integer); ``user`` and ``item`` are required, ``rating`` and
    ``timestamp`` (a number, e.g. Unix seconds) are read only when given.
    """

    user: str | int | None = None
    item: str | int | None = None
    rating: str | int | None = None
    timestamp: str | int | None = None

    def validate(self, prefix: str) -> None:
        for role in ("user", "item"):
            require(
                getattr(self, role) is not None,
                f"{prefix}.{role}",
                f'the column of the {role} ids is required: a header name ("{role}") or a '
                "0-based position",
            )
        seen: dict[str | int, str] = {}
        for role, column in self.mapping().items():
            if isinstance(column, int):
                require(column >= 0, f"{prefix}.{role}", f"a position must be >= 0, got {column}")
            else:
                require(bool(column.strip()), f"{prefix}.{role}", "a column name must not be empty")
            require(
                column not in seen,
                f"{prefix}.{role}",
                f"column {column!r} is already the {seen.get(column)} column",
            )
            seen[column] = role

    def mapping(self) -> dict[str, str | int]:
        """role -> column, for the roles that are given."""
        return {
            role: column
            for role in ("user", "item", "rating", "timestamp")
            if (column := getattr(self, role)) is not None
        }


@dataclass
class DataConfig:
    """Where the interactions come from and how they are prepared."""

    source: Literal["synthetic", "file", "presplit", "cached"] = "synthetic"
    name: str | None = None  # source = "cached": a dataset prepared by `negrec data fetch/import`
    root: str = "."  # base directory for relative paths
    path: str | None = None  # source = "file": one file of events
    train: str | None = None  # source = "presplit": the given train file
    test: str | None = None  # source = "presplit": the given test file
    format: str | None = None  # loader format; None guesses from the file name
    min_rating: float | None = None  # keep ratings >= this
    k_core: int | None = None  # iterative k-core on users and items
    # presplit: a test user or item absent from train is an error, dropped, or kept
    # (kept items stay in the catalogue untrained, as the LightGCN/SimCE code does)
    on_unseen: Literal["error", "drop", "keep"] = "error"
    # format = "delimited" only: the separator ("," default; "\t" or "tab", "whitespace"
    # for runs of blanks), whether the first line is a header (default true when a column
    # is given by name; columns all given by position need it said), the columns
    sep: str | None = None
    header: bool | None = None
    columns: ColumnsConfig | None = None
    # presplit: a test row repeating a training (user, item) pair -- an easy hit the model
    # was trained on, inflating every metric -- is dropped (counted), an error, or kept
    on_overlap: Literal["drop", "error", "keep"] = "drop"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self, prefix: str) -> None:
        self._validate_delimited(prefix)
        if self.source == "file":
            split_files = self.train is not None or self.test is not None
            require(
                self.path is not None,
                f"{prefix}.path",
                "source 'file' needs a path"
                + (" (train and test files are for source = 'presplit')" if split_files else ""),
            )
        if self.source == "cached":
            require(self.name is not None, f"{prefix}.name", "source 'cached' needs a dataset name")
        if self.source == "presplit":
            for key in ("train", "test"):
                require(
                    getattr(self, key) is not None,
                    f"{prefix}.{key}",
                    "source 'presplit' needs train and test files",
                )
        if self.k_core is not None:
            require(self.k_core >= 1, f"{prefix}.k_core", "must be >= 1")

    def _validate_delimited(self, prefix: str) -> None:
        """``sep``, ``header`` and ``columns`` describe a delimited file and nothing else."""
        if self.format != "delimited":
            for key in ("sep", "header", "columns"):
                require(
                    getattr(self, key) is None,
                    f"{prefix}.{key}",
                    f"only read with {prefix}.format = 'delimited'"
                    + ("" if self.format is None else f", not '{self.format}'"),
                )
            return
        require(
            self.columns is not None,
            f"{prefix}.columns",
            "format 'delimited' needs the column mapping, e.g. "
            f'{prefix}.columns = {{user = "user", item = "item", rating = "rating"}} '
            "(header names) or {user = 0, item = 1} (0-based positions)",
        )
        if self.sep is not None:
            try:
                parse_separator(self.sep)
            except ValueError as err:
                raise ConfigError(f"{prefix}.sep", str(err)) from None
        if self.header is None and self.columns is not None:
            # by position alone nothing tells whether line 1 is a header: guessing true
            # silently dropped the first row of a headerless file
            require(
                not all(isinstance(c, int) for c in self.columns.mapping().values()),
                f"{prefix}.header",
                "the columns are 0-based positions, so say whether the file's first line "
                f"is a header: {prefix}.header = true (skip it) or false (it is data)",
            )
        if self.header is False and self.columns is not None:
            for role, column in self.columns.mapping().items():
                require(
                    isinstance(column, int),
                    f"{prefix}.columns.{role}",
                    f"column name {column!r} needs a header line ({prefix}.header = true); "
                    "without one give a 0-based position",
                )

    def loader_options(self) -> dict[str, Any]:
        """Keyword arguments of the format's loader (the column mapping of a delimited
        file; nothing for the other formats)."""
        if self.format != "delimited" or self.columns is None:
            return {}
        return {
            **self.columns.mapping(),
            "delimiter": parse_separator("," if self.sep is None else self.sep),
            "header": True if self.header is None else self.header,
        }

    def to_toml_dict(self) -> dict[str, Any]:
        """The keys the active source reads: no ``[data.synthetic]`` block for file data,
        no pre-split policy at its default for data that is not pre-split."""
        out = to_dict(self)
        if self.source != "synthetic":
            del out["synthetic"]
        if self.source != "presplit":
            default = DataConfig()
            for key in ("on_unseen", "on_overlap"):
                if out[key] == getattr(default, key):
                    del out[key]
        return out

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else Path(self.root).expanduser() / candidate

    def absolute(self) -> tuple[DataConfig, dict[str, str]]:
        """This config with ``root`` and the file paths made absolute (from the working
        directory), so a run's stored config finds its data from anywhere; and the keys
        it changed, as given (``{"root": ".", "path": "events.inter"}``). Sources that name
        no file (synthetic, cached) come back unchanged."""
        if self.source not in ("file", "presplit"):
            return self, {}
        changes: dict[str, str] = {}
        root = Path(os.path.abspath(Path(self.root).expanduser()))  # "a/../b" -> "/cwd/b"
        if str(root) != self.root:
            changes["root"] = str(root)
        for key in ("path", "train", "test"):
            value = getattr(self, key)
            if value is not None:
                resolved = os.path.abspath(root / Path(value).expanduser())
                if resolved != value:
                    changes[key] = resolved
        given = {key: getattr(self, key) for key in changes}
        return dataclasses.replace(self, **changes), given  # type: ignore[arg-type]


@dataclass
class SplitConfig:
    """How train / validation / test are formed (validation always comes out of train)."""

    method: Literal["random", "leave_one_out", "given"] = "random"
    test_fraction: float = 0.2  # random: share of each user's items held out for test
    valid: float | str = 0.1  # share of each user's train items, or "last"
    seed: int = 0

    def validate(self, prefix: str) -> None:
        require(0 < self.test_fraction < 1, f"{prefix}.test_fraction", "must lie in (0, 1)")
        if isinstance(self.valid, str):
            require(self.valid == "last", f"{prefix}.valid", "expected a fraction or 'last'")
        else:
            require(0 < self.valid < 1, f"{prefix}.valid", "must lie in (0, 1) or be 'last'")
        # Keys a method does not read are refused rather than stored: a config that says
        # test_fraction = 0.3 must not produce a split that ignored it (and two runs that
        # differ only in an ignored value would land in different report groups).
        default = SplitConfig()
        if self.method != "random":
            require(
                self.test_fraction == default.test_fraction,
                f"{prefix}.test_fraction",
                f"split.method = '{self.method}' does not read it (the test split is "
                + ("each user's last item" if self.method == "leave_one_out" else "given")
                + "); remove it",
            )
        if self.method == "leave_one_out":
            require(
                self.valid in (default.valid, "last"),
                f"{prefix}.valid",
                "split.method = 'leave_one_out' validates on each user's second-last item; "
                "remove it (or set 'last')",
            )
        uses_seed = self.method == "random" or (self.method == "given" and self.valid != "last")
        require(
            uses_seed or self.seed == default.seed,
            f"{prefix}.seed",
            "this split draws nothing at random (leave-one-out, or validation = 'last'); remove it",
        )


@dataclass
class MonitorConfig:
    """The bound monitor (:class:`negrec.monitor.BoundMonitor`), off by default.

    On every validation epoch it records, for ``users`` sampled validation users, how often
    each sampled loss (CCE, BPR, BCE) upper-bounds ``-ln NDCG`` of the full ranking, next to
    the theory's predicted probability (Di Teodoro et al., arXiv 2411.07770).
    """

    enabled: bool = False
    users: int = 256  # validation users monitored (a fixed, seeded sample)
    k: list[int] = field(default_factory=list)  # sample sizes K; empty: the sampler's k
    seed: int = 0  # users, positives and draws of S_K (never the training generator)

    def validate(self, prefix: str) -> None:
        require(self.users >= 1, f"{prefix}.users", "must be >= 1")
        require(all(k >= 1 for k in self.k), f"{prefix}.k", "K values must be >= 1")

    def sample_sizes(self, sampler_k: int) -> list[int]:
        """The K values to monitor: ``k`` if given, else the training sampler's K."""
        return sorted(set(self.k)) if self.k else [sampler_k]


@dataclass
class LoggingConfig:
    """Experiment tracking of every run (:mod:`negrec.experiment.tracking`), off by default.

    Per epoch the history row (loss, validation metrics, timings, bound monitor); at the
    start the resolved config; at the end the test metrics. Tracking never changes the
    numbers, so it is not part of an experiment's identity (aggregation and sweeps ignore
    it), and a config with tracking off stores no ``[logging]`` table.
    """

    tensorboard: bool = False  # needs the tensorboard package (pip install 'negrec[tensorboard]')
    mlflow: bool = False  # needs the mlflow package (pip install 'negrec[mlflow]')
    dir: str | None = None  # TensorBoard: <dir>/<run name>; None: the run directory's tensorboard/
    mlflow_uri: str | None = None  # MLflow tracking URI; None: MLflow's default
    mlflow_experiment: str = "negrec"  # MLflow experiment the runs are logged under

    def validate(self, prefix: str) -> None:
        require(bool(self.mlflow_experiment), f"{prefix}.mlflow_experiment", "must not be empty")
        require(self.dir != "", f"{prefix}.dir", "must not be empty (leave it out for the default)")


SECTIONS = (
    "name",
    "output",
    "data",
    "split",
    "model",
    "sampler",
    "loss",
    "train",
    "eval",
    "monitor",
    "logging",
)


@dataclass
class ExperimentConfig:
    """Everything one run needs; ``to_toml_dict`` is what the run directory stores."""

    name: str = "run"
    output: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExperimentConfig:
        if "grid" in raw:  # expanded by negrec.experiment.grid, never one run
            raise ConfigError("grid", "this config is a grid of runs: run it with `negrec sweep`")
        if "tune" in raw:  # read by negrec.experiment.tune
            raise ConfigError("tune", "this config is a search space: run it with `negrec tune`")
        for key in raw:
            if key not in SECTIONS:
                raise ConfigError(key, f"unknown key (expected one of: {', '.join(SECTIONS)})")
        for key in SECTIONS[2:]:
            if key in raw and not isinstance(raw[key], dict):
                raise ConfigError(key, f"expected a table, got {raw[key]!r}")
        model = dict(raw.get("model", {}))
        sampler = dict(raw.get("sampler", {}))
        loss = dict(raw.get("loss", {}))
        model.setdefault("name", "mf")
        sampler.setdefault("name", "uniform")
        loss.setdefault("name", "bpr")
        config = cls(
            name=_string(raw.get("name", "run"), "name"),
            output=_string(raw.get("output", "runs"), "output"),
            data=from_dict(DataConfig, raw.get("data", {}), prefix="data"),
            split=from_dict(SplitConfig, raw.get("split", {}), prefix="split"),
            model=MODELS.config(model["name"], model, "model"),
            sampler=SAMPLERS.config(sampler["name"], sampler, "sampler"),
            loss=LOSSES.config(loss["name"], loss, "loss"),
            train=from_dict(TrainConfig, raw.get("train", {}), prefix="train"),
            eval=from_dict(EvalConfig, raw.get("eval", {}), prefix="eval"),
            monitor=from_dict(MonitorConfig, raw.get("monitor", {}), prefix="monitor"),
            logging=from_dict(LoggingConfig, raw.get("logging", {}), prefix="logging"),
        )
        require(
            config.name not in ("", ".", "..") and not set(config.name) & set("/\\\0"),
            "name",
            f"{config.name!r} names the run's folder: it must be non-empty, not '.' or '..', "
            "without '/' or '\\'",
        )
        config.check_combinations()
        return config

    def check_combinations(self) -> None:
        """Reject combinations no run can satisfy, naming both fields."""
        needed = LOSSES.get(self.loss.name, "loss.name").requires_sampler
        if needed is not None:  # e.g. softmax, the loss over the whole catalogue
            require(
                self.sampler.name == needed,
                "loss.name",
                f"loss '{self.loss.name}' works with one sampler only: it needs "
                f"sampler.name = '{needed}', not '{self.sampler.name}'",
            )
        if self.split.method == "given":
            require(
                self.data.source in ("presplit", "cached"),
                "split.method",
                "'given' needs data.source = 'presplit' (train and test files) or a cached "
                "pre-split dataset",
            )
        if self.data.source == "presplit":
            require(
                self.split.method == "given",
                "split.method",
                "data.source = 'presplit' comes with its test split: use split.method = 'given'",
            )
        self._check_sequential()
        names = metric_names(self.eval.ks, self.eval.betas, self.eval.auc)
        require(
            self.train.metric in names,
            "train.metric",
            f"'{self.train.metric}' is not computed with these eval settings "
            f"(eval.ks = {self.eval.ks}); choose one of: {', '.join(names)}",
        )

    def _check_sequential(self) -> None:
        """Sequential models read each user's history in time order and are evaluated on
        the next item: leave-one-out by time, or a given test split with the validation
        item carved as each user's last training item; and the data needs timestamps."""
        if MODELS.get(self.model.name, "model.name").input_kind != "sequence":
            return
        model = f"model.name = '{self.model.name}' is a sequential model"
        require(
            self.split.method in ("leave_one_out", "given"),
            "split.method",
            f"{model}: it needs split.method = 'leave_one_out' (last item test, second-last "
            f"validation) or 'given' (a pre-split test set), not '{self.split.method}'",
        )
        if self.split.method == "given":
            require(
                self.split.valid == "last",
                "split.valid",
                f"{model}: with split.method = 'given' it needs split.valid = 'last' "
                f"(the item before the test split), not {self.split.valid!r}",
            )
        require(
            self.data.format != "lightgcn",
            "data.format",
            f"{model}: it needs timestamps, and data.format = 'lightgcn' has none",
        )
        if self.data.format == "delimited" and self.data.columns is not None:
            require(
                self.data.columns.timestamp is not None,
                "data.columns.timestamp",
                f"{model}: it needs timestamps; name the time column of the file",
            )

    def to_toml_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "output": self.output,
            **{s: to_dict(getattr(self, s)) for s in SECTIONS[2:]},
            "data": self.data.to_toml_dict(),  # only the active source's keys
        }
        if self.logging == LoggingConfig():  # tracking off: stored as before it existed
            del out["logging"]
        return out

    def replace(self, **changes: Any) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)

    def with_absolute_data(self) -> tuple[ExperimentConfig, dict[str, str]]:
        """This config with absolute data paths, and the ``data.*`` keys as given
        (:meth:`DataConfig.absolute`): what a run directory stores."""
        data, given = self.data.absolute()
        return self.replace(data=data), {f"data.{k}": v for k, v in given.items()}


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {value!r}")
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value); the value is read as TOML, else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(text, "an override must look like section.key=value")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return [part.strip() for part in key.strip().split(".")], parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to the raw TOML dict (validation happens afterwards)."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(path[: i + 1]), "is a value, not a table")
            node = child
        node[path[-1]] = value
    return raw


class ConfigFileError(ConfigError):
    """A config file that cannot be read: missing, not UTF-8, or not TOML. The message
    names the file (and the line), not a config key."""

    def __init__(self, path: Path, message: str, line: int | None = None):
        self.key = str(path)
        where = f"{path}:{line}" if line is not None else str(path)
        Exception.__init__(self, f"{where}: {message}")


_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; syntax errors name the file and line. A UTF-8 byte-order mark
    (which some editors write) is skipped, as the data loaders skip it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigFileError(path, "no such config file or preset") from None
    except UnicodeDecodeError as err:
        raise ConfigFileError(path, f"not UTF-8 text ({err.reason})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        where = _TOML_WHERE.search(message)
        if where is None:
            raise ConfigFileError(path, f"invalid TOML: {message}") from None
        reason = message[: where.start()]
        raise ConfigFileError(
            path, f"invalid TOML: {reason} (column {where.group(2)})", int(where.group(1))
        ) from None


def stored_run_config(run_dir: Path, *, absolute: bool = False) -> dict[str, Any]:
    """A run directory's ``config.toml`` as this version reads it: keys added to negrec
    after the run was made take their defaults, so runs from before and after such an
    upgrade compare equal (sweeps resume, reports group them). ``absolute``: data paths
    made absolute (:meth:`DataConfig.absolute`; runs made before negrec stored them so
    are read from the working directory). Raises :class:`ConfigError` when this version
    no longer loads it."""
    config = ExperimentConfig.from_dict(read_toml(run_dir / "config.toml"))
    return (config.with_absolute_data()[0] if absolute else config).to_toml_dict()


def preset_names() -> list[str]:
    """Names of the configs shipped with negrec (``negrec run NAME``)."""
    folder = resources.files("negrec") / "presets"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_config(source: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a config file or a preset by name, apply overrides, validate."""
    raw: dict[str, Any] = {}
    if source is not None:
        path = Path(source)
        if not path.exists() and str(source) in preset_names():
            preset = resources.files("negrec") / "presets" / f"{source}.toml"
            raw = tomllib.loads(preset.read_text(encoding="utf-8"))
        else:
            raw = read_toml(path)
    raw = apply_overrides(raw, overrides or [])
    return ExperimentConfig.from_dict(raw)
