"""Aggregate runs over seeds: mean +- std tables, a paired t-test, plots.

Runs are grouped by their stored config (``config.toml``) minus the run ``name``, the
``output`` folder, the device, the ``[logging]`` section (tracking, not the experiment)
and every key called ``seed`` (``train.seed``, ``split.seed``, ``monitor.seed``,
``data.synthetic.seed``): runs that differ only in seeds are repetitions of one experiment.
Per group and metric: the mean and the sample standard deviation (``ddof = 1``) over its
runs.

Significance: the groups are ranked by the mean *test* value of the selection metric
(``train.metric``, e.g. ``ndcg@20``); the best and the runner-up are compared with a
paired t-test (``scipy.stats.ttest_rel``, two-sided) on their per-seed test values,
paired by seed (the tuple of all seed keys): only seeds both groups have count.

Group labels list the config values that differ between the groups, in the grid's short
form (``loss=cce,sampler.k=32``), so a report of a sweep reads like its run names; a value
equal to negrec's default is left out of a label (plugin names are always shown).
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from negrec.atomic import save_figure
from negrec.errors import NegrecError
from negrec.experiment.config import ExperimentConfig, stored_run_config
from negrec.experiment.grid import flatten, format_value, short_key
from negrec.experiment.report import RunRecord, is_budget_bound, reported_metrics, run_metrics

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

IGNORED = ("name", "output", "train.device")  # never part of an experiment's identity
IGNORED_SECTIONS = ("logging",)  # tracking ([logging]) does not change the numbers
K_KEY = "sampler.k"


def is_seed_key(path: str) -> bool:
    """True for dotted config paths that hold a random seed (the last part is ``seed``)."""
    return path.rsplit(".", 1)[-1] == "seed"


def run_config(run: RunRecord) -> dict[str, Any]:
    """The run's stored config as dotted paths -> values, with this version's defaults
    filled in (:func:`negrec.experiment.config.stored_run_config`), so runs from before and
    after negrec gained a config key still group together. A config this version no
    longer loads is taken as stored."""
    try:
        return dict(flatten(stored_run_config(run.path)))
    except NegrecError:
        path = run.path / "config.toml"
        try:
            return dict(flatten(tomllib.loads(path.read_text(encoding="utf-8"))))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise NegrecError(f"{path}: not valid TOML ({err})") from None


@dataclass
class Group:
    """Runs of one config that differ only in their seeds."""

    config: dict[str, Any]  # dotted paths -> values, seeds and IGNORED keys removed
    runs: list[RunRecord] = field(default_factory=list)
    seeds: list[tuple[Any, ...]] = field(default_factory=list)  # per run: all seed values
    label: str = ""

    @property
    def n(self) -> int:
        return len(self.runs)

    def values(self, metric: str, split: str = "test") -> np.ndarray:
        """Per-run values of ``metric`` in ``split`` (``test`` or ``valid``), NaN if absent."""
        return np.array([float(r.summary.get(split, {}).get(metric, math.nan)) for r in self.runs])

    def by_seed(self, metric: str, split: str = "test") -> dict[tuple[Any, ...], float]:
        return dict(zip(self.seeds, self.values(metric, split), strict=True))


def group_runs(runs: Sequence[RunRecord]) -> list[Group]:
    """Group runs by config minus seeds, in order of first appearance; label each group."""
    groups: dict[str, Group] = {}
    for run in runs:
        flat = run_config(run)
        seed_keys = sorted(k for k in flat if is_seed_key(k))
        identity = {
            k: v
            for k, v in flat.items()
            if k not in IGNORED and k.split(".")[0] not in IGNORED_SECTIONS and not is_seed_key(k)
        }
        key = repr(sorted((k, repr(v)) for k, v in identity.items()))
        group = groups.setdefault(key, Group(identity))
        group.runs.append(run)
        group.seeds.append(tuple((k, flat[k]) for k in seed_keys))
    result = list(groups.values())
    for group in result:  # runs in seed order
        order = sorted(range(group.n), key=lambda i: repr(group.seeds[i]))
        group.runs = [group.runs[i] for i in order]
        group.seeds = [group.seeds[i] for i in order]
        _reject_repeated_seeds(group)
    _label(result)
    return result


def _reject_repeated_seeds(group: Group) -> None:
    """Two runs of one config with the same seeds are one replicate run twice (a rerun
    saved as ``NAME-2``, or a folder passed twice): counted twice they would shrink the
    std and pair wrongly, so the report stops and names both."""
    for i in range(1, group.n):
        if group.seeds[i] == group.seeds[i - 1]:
            seeds = ", ".join(f"{k} = {v}" for k, v in group.seeds[i]) or "no seed keys"
            raise NegrecError(
                f"{group.runs[i - 1].path} and {group.runs[i].path} are the same experiment "
                f"with the same seeds ({seeds}); one replicate would count twice in mean ± std "
                "and the t-test: report one of them"
            )


def varying_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Dotted paths whose value (or presence) differs between the configs, in first-seen
    order with the plugin names first."""
    order: dict[str, None] = {}
    for config in configs:
        order.update(dict.fromkeys(config))
    missing = object()
    keys = [k for k in order if len({repr(c.get(k, missing)) for c in configs}) > 1]
    names = [k for k in keys if k in ("model.name", "loss.name", "sampler.name")]
    return names + [k for k in keys if k not in names]


PLUGIN_NAMES = ("model.name", "loss.name", "sampler.name")


def _label(groups: list[Group]) -> None:
    """Label each group by the keys that vary between groups, leaving out a key where the
    group holds negrec's default for it (plugin names excepted): a BPR group next to
    SimCE groups is ``loss=bpr``, not ``loss=bpr,loss.margin=1.0``. Labels stay distinct:
    two groups differ in some key, and at least one of them holds a non-default value
    there."""
    keys = varying_keys([g.config for g in groups])
    for group in groups:
        group.label = describe(group.config, keys) or _common_name(group)


def describe(config: dict[str, Any], keys: Sequence[str]) -> str:
    """``key=value`` of ``keys`` in ``config``, comma-joined in the grid's short form,
    leaving out values equal to the defaults of the run's own model, sampler and loss
    (so LightGCN's ``layers = 3`` is a default, MF has none; plugin names are always
    shown)."""
    defaults = _default_config(tuple(config.get(k) for k in PLUGIN_NAMES))
    return ",".join(
        f"{short_key(k)}={format_value(config[k])}"
        for k in keys
        if k in config and (k in PLUGIN_NAMES or k not in defaults or defaults[k] != config[k])
    )


@functools.cache
def _default_config(plugins: tuple[Any, ...]) -> dict[str, Any]:
    """The default config of the given (model, loss, sampler) names as dotted paths ->
    values (negrec's defaults for a name that is missing or unknown; built once per
    combination, not to be mutated)."""
    sections = {}
    for key, name in zip(PLUGIN_NAMES, plugins, strict=True):
        if isinstance(name, str):
            sections[key.split(".")[0]] = {"name": name}
    try:
        config = ExperimentConfig.from_dict(sections)
    except NegrecError:  # a plugin this negrec does not know: its labels keep every value
        config = ExperimentConfig.from_dict({})
    return dict(flatten(config.to_toml_dict()))


def legend_text(label: str, width: int = 45) -> str:
    """A label wrapped at its commas into lines of about ``width`` characters, so long
    group labels stay inside a plot's legend."""
    lines: list[str] = []
    for part in label.split(","):
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += "," + part
        else:
            lines.append(part)
    return "\n".join(lines)


def _common_name(group: Group) -> str:
    """A label for a lone group: its runs' name without the seed part, else the name of
    the folder holding them (a sweep's name)."""
    name = group.runs[0].name
    kept = ",".join(p for p in name.split(",") if not p.startswith("seed="))
    return kept or group.runs[0].path.resolve().parent.name or name


# ------------------------------------------------------------------------------ numbers
def runs_cell(group: Group) -> str:
    """The ``runs`` cell of a group: its count, and how many of its runs ended on the
    epoch budget while still improving (``3 (2 budget-bound)``)."""
    bound = sum(is_budget_bound(run) for run in group.runs)
    return f"{group.n} ({bound} budget-bound)" if bound else str(group.n)


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than 2 values)."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    std = float(np.std(values, ddof=1)) if values.size > 1 else math.nan
    return float(np.mean(values)), std


def selection_metric(runs: Sequence[RunRecord]) -> str:
    """The validation metric the runs were selected on (the first run's)."""
    return str(runs[0].summary.get("selection_metric", "ndcg@20")) if runs else "ndcg@20"


def table_metrics(runs: Sequence[RunRecord], selection: str) -> list[str]:
    """Test metrics to tabulate: the selection metric, then those of :func:`run_metrics`."""
    present = reported_metrics(runs)
    ordered = [selection, *(m for m in run_metrics(runs) if m != selection)]
    return [m for m in ordered if m in present]


@dataclass
class Aggregate:
    """The aggregated table: one row per group, (mean, std) per column."""

    groups: list[Group]
    selection: str
    columns: list[str]  # "valid <metric>" first, then "test <metric>" ...
    cells: list[list[tuple[float, float]]]  # [group][column] -> (mean, std)

    def best(self, column: int) -> int | None:
        """Row index of the highest mean in a column (all metrics: higher is better)."""
        means = [row[column][0] for row in self.cells]
        if all(math.isnan(m) for m in means):
            return None
        return int(np.nanargmax(means))


def aggregate(runs: Sequence[RunRecord], metrics: Sequence[str] | None = None) -> Aggregate:
    """Mean and std over seeds of every group's validation selection metric and test
    metrics."""
    groups = group_runs(runs)
    selection = selection_metric(runs)
    metrics = list(metrics) if metrics is not None else table_metrics(runs, selection)
    columns = [f"valid {selection}", *(f"test {m}" for m in metrics)]
    cells = [
        [mean_std(g.values(selection, "valid")), *(mean_std(g.values(m)) for m in metrics)]
        for g in groups
    ]
    return Aggregate(groups, selection, columns, cells)


@dataclass
class PairedTest:
    """Paired t-test of the best group against the runner-up on one test metric."""

    metric: str
    best: str
    runner_up: str
    n: int  # seeds both groups have
    mean_diff: float  # best minus runner-up, mean over paired seeds
    t: float
    p: float  # two-sided

    def describe(self) -> str:
        return (
            f"Paired t-test on test {self.metric} over {self.n} shared seeds, "
            f"best `{self.best}` vs runner-up `{self.runner_up}`: mean difference "
            f"{self.mean_diff:+.4f}, t = {_t(self.t)}, p = {_p(self.p)}"
        )


def paired_test(groups: Sequence[Group], metric: str) -> PairedTest | str:
    """The paired t-test between the two groups with the highest mean test ``metric``, or
    a sentence saying why there is none."""
    ranked = [g for g in groups if not math.isnan(mean_std(g.values(metric))[0])]
    if len(ranked) < 2:
        return f"No significance test: fewer than two groups report test {metric}."
    ranked.sort(key=lambda g: mean_std(g.values(metric))[0], reverse=True)
    best, second = ranked[0], ranked[1]
    a, b = best.by_seed(metric), second.by_seed(metric)
    shared = [s for s in a if s in b and not (math.isnan(a[s]) or math.isnan(b[s]))]
    if len(shared) < 2:
        return (
            f"No significance test: best `{best.label}` and runner-up `{second.label}` "
            f"share {len(shared)} seed(s); a paired t-test needs at least 2."
        )
    x = np.array([a[s] for s in shared])
    y = np.array([b[s] for s in shared])
    t, p = paired_t(x, y)
    return PairedTest(metric, best.label, second.label, len(shared), float(np.mean(x - y)), t, p)


def paired_t(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test of ``x`` [S] against ``y`` [S] (one value
    per seed), or (nan, nan) when the differences are all equal up to float rounding: the
    test divides by their spread, so equal differences such as 0.2 - 0.1 and 0.3 - 0.2
    would give t ~ 1e16 and p ~ 1e-16, a significance that only rounding made."""
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    scale = max(float(np.abs(x).max()), float(np.abs(y).max()), np.finfo(np.float64).tiny)
    if np.ptp(d) <= 1e-9 * scale:
        return math.nan, math.nan
    from scipy import stats

    result = stats.ttest_rel(x, y)
    return float(result.statistic), float(result.pvalue)


def _t(t: float) -> str:
    return "n/a" if math.isnan(t) else f"{t:.3f}"


def _p(p: float) -> str:
    if math.isnan(p):
        return "n/a (the differences are all equal)"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


# ------------------------------------------------------------------------------- tables
def format_cell(mean: float, std: float) -> str:
    """``mean ± std`` as the tables show it (the mean alone for one run, empty for none)."""
    if math.isnan(mean):
        return ""
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def markdown_table(agg: Aggregate) -> str:
    """Markdown: one row per group, ``mean ± std`` per column, the best mean in bold."""
    header = ["group", "runs", *agg.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = [agg.best(c) for c in range(len(agg.columns))]
    for i, (group, row) in enumerate(zip(agg.groups, agg.cells, strict=True)):
        cells = []
        for c, (mean, std) in enumerate(row):
            text = format_cell(mean, std)
            cells.append(f"**{text}**" if best[c] == i and text else text)
        lines.append("| " + " | ".join([f"`{group.label}`", runs_cell(group), *cells]) + " |")
    return "\n".join(lines)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_table(agg: Aggregate, test: PairedTest | str | None = None) -> str:
    """A booktabs ``table``: ``$mean \\pm std$`` per cell, the best mean in bold, the
    paired t-test in the caption."""
    spec = "l r " + " ".join("c" for _ in agg.columns)
    best = [agg.best(c) for c in range(len(agg.columns))]
    lines = [
        "% requires \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(["Group", "Runs", *(latex_escape(c) for c in agg.columns)]) + " \\\\",
        "\\midrule",
    ]
    for i, (group, row) in enumerate(zip(agg.groups, agg.cells, strict=True)):
        cells = []
        for c, (mean, std) in enumerate(row):
            if math.isnan(mean):
                cells.append("")
                continue
            number = f"{mean:.4f}" if best[c] != i else f"\\mathbf{{{mean:.4f}}}"
            cells.append(f"${number}$" if math.isnan(std) else f"${number} \\pm {std:.4f}$")
        lines.append(
            " & ".join(
                [f"\\texttt{{{latex_escape(group.label)}}}", latex_escape(runs_cell(group)), *cells]
            )
            + " \\\\"
        )
    caption = "Mean $\\pm$ sample standard deviation over seeds; best mean in bold."
    if isinstance(test, PairedTest):
        p = "n/a" if math.isnan(test.p) else _p(test.p)
        caption += (
            f" Paired t-test on test {latex_escape(test.metric)} ({test.n} seeds), "
            f"\\texttt{{{latex_escape(test.best)}}} vs "
            f"\\texttt{{{latex_escape(test.runner_up)}}}: "
            f"$t = {_t(test.t)}$, $p = {p}$."
        )
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        f"\\caption{{{caption}}}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------- plots
def plot_mean_curves(groups: Sequence[Group], metric: str, path: str | Path) -> Path:
    """PNG of the validation ``metric`` per epoch, mean over each group's seeds (band:
    +- one std where a group has several runs), one panel per loss when the loss varies;
    written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = f"valid/{metric}"
    losses = sorted({str(g.config.get("loss.name", "")) for g in groups})
    panels = losses if len(losses) > 1 else [None]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.0 * len(panels), 4.5), sharey=True, squeeze=False
    )
    for ax, loss in zip(axes[0], panels, strict=True):
        members = [g for g in groups if loss is None or g.config.get("loss.name") == loss]
        labels = _panel_labels(members) if loss is not None else [g.label for g in members]
        for group, label in zip(members, labels, strict=True):
            frames = [r.history[["epoch", column]] for r in group.runs if column in r.history]
            if not frames:
                continue
            stats = pd.concat(frames).dropna().groupby("epoch")[column].agg(["mean", "std"])
            (line,) = ax.plot(
                stats.index, stats["mean"], marker="o", markersize=3, label=legend_text(label)
            )
            if group.n > 1:
                std = stats["std"].fillna(0.0)
                ax.fill_between(
                    stats.index,
                    stats["mean"] - std,
                    stats["mean"] + std,
                    alpha=0.15,
                    color=line.get_color(),
                )
        ax.set_title(f"loss = {loss}" if loss is not None else f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"validation {metric}")
    fig.suptitle(f"Validation {metric} per epoch, mean over seeds (band: ± std)")
    fig.tight_layout()
    return save_figure(fig, path)


def _panel_labels(groups: Sequence[Group]) -> list[str]:
    """Labels of the groups within one panel: what differs between them there."""
    keys = varying_keys([g.config for g in groups])
    return [describe(g.config, keys) or g.label for g in groups]


def k_varies(groups: Sequence[Group]) -> bool:
    """True when the groups were trained with more than one sampler K."""
    return len({g.config.get(K_KEY) for g in groups if K_KEY in g.config}) > 1


def plot_metric_vs_k(groups: Sequence[Group], metric: str, path: str | Path) -> Path:
    """PNG of the mean test ``metric`` against the sampler's K (error bars: std over
    seeds), one line per configuration apart from K; log-scaled K when it spans a factor
    of 10 or more. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[Group]] = {}
    rest: dict[str, dict[str, Any]] = {}
    for group in groups:
        if K_KEY not in group.config:
            continue
        others = {k: v for k, v in group.config.items() if k != K_KEY}
        key = repr(sorted((k, repr(v)) for k, v in others.items()))
        series.setdefault(key, []).append(group)
        rest[key] = others
    keys = varying_keys(list(rest.values()))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    all_k: list[float] = []
    for key, members in series.items():
        members.sort(key=lambda g: g.config[K_KEY])
        ks = [g.config[K_KEY] for g in members]
        stats = [mean_std(g.values(metric)) for g in members]
        means = [m for m, _ in stats]
        stds = [0.0 if math.isnan(s) else s for _, s in stats]
        label = describe(rest[key], keys) or "all"
        ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=legend_text(label))
        all_k += ks
    if all_k and min(all_k) > 0 and max(all_k) / min(all_k) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel("K (negatives per positive)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"Test {metric} vs K (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------------------- report
@dataclass
class Report:
    """What :func:`write_report` produced."""

    aggregate: Aggregate
    test: PairedTest | str
    markdown: str  # the table and the test sentence, as printed
    files: list[Path]


def seeds_repeat(runs: Sequence[RunRecord]) -> bool:
    """True when some config was run with more than one seed (aggregation says more
    than the per-run table)."""
    return any(g.n > 1 for g in group_runs(runs))


def write_report(
    runs: Sequence[RunRecord], folder: str | Path, metric: str | None = None, prefix: str = ""
) -> Report:
    """Aggregate ``runs`` and write ``report.md``, ``report.tex``, the mean validation
    curves (``valid-{metric}-mean.png``) and, when K varies, ``{metric}-vs-k.png`` into
    ``folder``, each name starting with ``prefix``; ``metric`` defaults to the selection
    metric."""
    agg = aggregate(runs)
    metric = metric or agg.selection
    test = paired_test(agg.groups, agg.selection)
    sentence = test.describe() if isinstance(test, PairedTest) else test
    markdown = f"{markdown_table(agg)}\n\n{sentence}\n"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    md, tex = folder / f"{prefix}report.md", folder / f"{prefix}report.tex"
    _write_text(md, markdown)
    _write_text(tex, latex_table(agg, test))
    mean = folder / f"{prefix}valid-{metric}-mean.png"
    files = [md, tex, plot_mean_curves(agg.groups, metric, mean)]
    if k_varies(agg.groups):
        by_k = folder / f"{prefix}{agg.selection}-vs-k.png"
        files.append(plot_metric_vs_k(agg.groups, agg.selection, by_k))
    return Report(agg, test, markdown, files)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
