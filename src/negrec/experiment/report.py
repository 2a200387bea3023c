"""Tables and plots from run directories (``report`` reads nothing else)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from negrec.atomic import save_figure
from negrec.errors import NegrecError
from negrec.experiment.rundir import is_run_dir

DEFAULT_METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr", "auc")


@dataclass
class RunRecord:
    """A finished run as stored on disk."""

    path: Path
    summary: dict[str, Any]
    history: pd.DataFrame

    @property
    def name(self) -> str:
        return str(self.summary.get("name", self.path.name))


def _deeper(path: Path) -> str:
    """A hint naming the folders of runs one level further down (``negrec tune`` and
    ``negrec reproduce`` keep theirs in ``confirm/``), or nothing."""
    if not path.is_dir():
        return ""
    folders = sorted({str(p.parent) for p in path.glob("*/*") if p.is_dir() and is_run_dir(p)})
    if not folders:
        return ""
    return f"; the runs below it are in {', '.join(folders)}: report that folder"


def load_runs(paths: Sequence[str | Path]) -> list[RunRecord]:
    """Runs at ``paths``; a directory holding run directories stands for all of them. The
    same run directory reached twice (``runs/`` and ``runs/x``) is read once."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if is_run_dir(path):
            found.append(path)
        elif path.is_dir() and (children := sorted(p for p in path.iterdir() if is_run_dir(p))):
            found.extend(children)
        else:
            raise NegrecError(
                f"{path}: not a run directory (no config.toml, summary.json...)" + _deeper(path)
            )
    runs, seen = [], set()
    for path in found:
        key = path.resolve()
        if key in seen:  # a folder named twice is read once
            continue
        seen.add(key)
        runs.append(_read_run(path))
    return runs


def _read_run(path: Path) -> RunRecord:
    """One run's summary and history; a damaged file is an error naming it."""
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise NegrecError(f"{path / 'summary.json'}: not valid JSON ({err})") from None
    if not isinstance(summary, dict):
        raise NegrecError(f"{path / 'summary.json'}: expected a JSON object")
    try:
        history = pd.read_csv(path / "history.csv", encoding="utf-8")
    except (ValueError, UnicodeDecodeError) as err:  # pandas' parse errors are ValueErrors
        raise NegrecError(f"{path / 'history.csv'}: not a readable CSV table ({err})") from None
    return RunRecord(path, summary, history)


def reported_metrics(runs: Sequence[RunRecord]) -> set[str]:
    """The names of the test metrics any of ``runs`` reports."""
    return set().union(*(r.summary.get("test", {}) for r in runs))


def run_metrics(runs: Sequence[RunRecord]) -> tuple[str, ...]:
    """The test metrics to tabulate for ``runs``: recall and NDCG at every cut-off they
    report (``eval.ks``), ascending, then MRR and AUC where present; ``DEFAULT_METRICS``
    when they report none of these."""
    present = reported_metrics(runs)
    cutoffs = sorted({int(m.split("@")[1]) for m in present if m.startswith(("recall@", "ndcg@"))})
    ordered = [f"{name}@{k}" for k in cutoffs for name in ("recall", "ndcg")] + ["mrr", "auc"]
    return tuple(m for m in ordered if m in present) or DEFAULT_METRICS


def comparison_table(runs: list[RunRecord], metrics: tuple[str, ...] | None = None) -> str:
    """Markdown table: one row per run, test metrics at the epoch selected on validation
    (``metrics``: those of :func:`run_metrics` unless given)."""
    header, rows = comparison_rows(runs, metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def comparison_rows(
    runs: list[RunRecord], metrics: tuple[str, ...] | None = None
) -> tuple[list[str], list[list[str]]]:
    """The cells of :func:`comparison_table` (header, one row per run), for any format."""
    metrics = run_metrics(runs) if metrics is None else metrics
    selection = runs[0].summary.get("selection_metric", "ndcg@20") if runs else "ndcg@20"
    header = ["run", "model", "loss", "sampler", "K", "best epoch", "stop", f"valid {selection}"]
    header += [f"test {m}" for m in metrics]
    rows = []
    for run in runs:
        s = run.summary
        cells = [
            run.name,
            s.get("model", ""),
            s.get("loss", ""),
            s.get("sampler", ""),
            str(s.get("k", "")),
            str(s.get("best_epoch", "")),
            stop_reason(s),
            _fmt(s.get("valid", {}).get(selection)),
        ]
        cells += [_fmt(s.get("test", {}).get(m)) for m in metrics]
        rows.append(cells)
    return header, rows


def stop_reason(summary: dict[str, Any]) -> str:
    """How a run ended: ``patience`` (early stopping: converged on validation),
    ``budget-bound`` (ended on ``train.epochs`` while its best epoch was among the last
    ``patience`` evaluations: raise train.epochs), ``budget`` (ended on the budget long
    after its best epoch, patience 0); empty for runs made before negrec recorded it."""
    if "budget_bound" not in summary:
        return ""
    if summary["budget_bound"]:
        return "budget-bound"
    return "patience" if summary.get("stopped_early") else "budget"


def is_budget_bound(run: RunRecord) -> bool:
    """True when the run's summary flags it budget-bound (see :func:`stop_reason`)."""
    return bool(run.summary.get("budget_bound", False))


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}"


def plot_curves(runs: list[RunRecord], metric: str, path: str | Path) -> Path:
    """PNG of validation ``metric`` per epoch, one line per run; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = f"valid/{metric}"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        if column in run.history:
            rows = run.history.dropna(subset=[column])
            (line,) = ax.plot(rows["epoch"], rows[column], marker="o", markersize=3, label=run.name)
            best = run.summary.get("best_epoch")
            if best is not None and best in set(rows["epoch"]):
                selected = rows.loc[rows["epoch"] == best, column]
                ax.scatter([best], selected, s=60, zorder=3, color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"Validation {metric} per epoch (dots: selected epoch)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------------- bound monitor
BOUND_LOSSES = ("cce", "bpr", "bce")
_BOUND_COLORS = {"cce": "tab:blue", "bpr": "tab:orange", "bce": "tab:green"}
# distinct markers, BPR's larger and hollow: at K = 1 BPR equals CCE
# (docs/theory.md#bpr-equals-cce), so the curves of same-seed BPR and CCE runs coincide and
# would otherwise hide each other
_BOUND_MARKERS = {
    "cce": ("o", 3.0, "full"),
    "bpr": ("s", 7.0, "none"),
    "bce": ("^", 4.0, "full"),
}
_BOUND_KEY = re.compile(r"^bound/k=(\d+)/")


def bound_monitor_ks(run: RunRecord) -> list[int]:
    """Sample sizes K the bound monitor recorded in a run's history (empty: monitor off)."""
    found = {int(m.group(1)) for c in run.history.columns if (m := _BOUND_KEY.match(str(c)))}
    return sorted(found)


def has_bound_monitor(runs: list[RunRecord]) -> bool:
    """True when at least one run has bound-monitor columns (``bound/k=K/...``)."""
    return any(bound_monitor_ks(run) for run in runs)


def plot_bound_monitor(runs: list[RunRecord], path: str | Path, *, k: int | None = None) -> Path:
    """PNG of how often each loss's sampled bound on ``-ln NDCG`` holds, per epoch.

    The bound monitor (:mod:`negrec.monitor`; paper: Di Teodoro et al., arXiv 2411.07770)
    stores, per validation epoch, the fraction of monitored users with
    ``-ln NDCG(r+) <= L`` and the theory's predicted lower bound ``p_L``. One panel per
    training K (``summary["k"]``); in each, every run contributes the bound of the loss it
    trains (solid: measured, dashed: predicted), coloured by loss, at monitor K = ``k`` or,
    by default, the run's training K (else its largest monitored K). A run training a loss
    without a bound (e.g. SimCE) shows all three bounds. Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monitored = [run for run in runs if bound_monitor_ks(run)]
    if not monitored:
        raise NegrecError("no run has bound-monitor columns (enable [monitor] to record them)")
    panels = sorted({int(run.summary.get("k", 0)) for run in monitored})
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 4.2), sharey=True, squeeze=False
    )
    for ax, train_k in zip(axes[0], panels, strict=True):
        group = [run for run in monitored if int(run.summary.get("k", 0)) == train_k]
        shown_ks: set[int] = set()
        for run in group:
            ks = bound_monitor_ks(run)
            mk = k if k is not None else (train_k if train_k in ks else ks[-1])
            if mk not in ks:
                continue
            shown_ks.add(mk)
            trained = str(run.summary.get("loss", ""))
            losses = [trained] if trained in BOUND_LOSSES else list(BOUND_LOSSES)
            for loss in losses:
                holds = f"bound/k={mk}/{loss}/holds"
                predicted = f"bound/k={mk}/{loss}/predicted"
                rows = run.history.dropna(subset=[holds])
                label = loss if trained in BOUND_LOSSES else f"{run.name}: {loss} bound"
                if sum(str(r.summary.get("loss")) == trained for r in group) > 1:
                    label = f"{run.name} ({loss})"
                color = _BOUND_COLORS[loss]
                marker, size, fill = _BOUND_MARKERS[loss]
                ax.plot(
                    rows["epoch"],
                    rows[holds],
                    marker=marker,
                    markersize=size,
                    fillstyle=fill,
                    color=color,
                    label=f"{label}: holds",
                )
                ax.plot(
                    rows["epoch"],
                    rows[predicted],
                    linestyle="--",
                    color=color,
                    label=f"{label}: predicted",
                )
        where = ", ".join(str(v) for v in sorted(shown_ks))
        ax.set_title(f"trained with K={train_k} (bound at K={where})")
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("share of users with -ln NDCG(r+) <= L")
    fig.suptitle("Bound monitor: measured (solid) vs theory lower bound p_L (dashed)")
    fig.tight_layout()
    return save_figure(fig, path)
