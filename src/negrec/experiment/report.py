"""Tables and plots from run directories (``report`` reads nothing else)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

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


def load_runs(paths: list[str | Path]) -> list[RunRecord]:
    """Runs at ``paths``; a directory holding run directories stands for all of them."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if is_run_dir(path):
            found.append(path)
        elif path.is_dir() and (children := sorted(p for p in path.iterdir() if is_run_dir(p))):
            found.extend(children)
        else:
            raise NegrecError(f"{path}: not a run directory (no config.toml, summary.json...)")
    runs = []
    for path in found:
        summary = json.loads((path / "summary.json").read_text())
        runs.append(RunRecord(path, summary, pd.read_csv(path / "history.csv")))
    return runs


def comparison_table(runs: list[RunRecord], metrics: tuple[str, ...] = DEFAULT_METRICS) -> str:
    """Markdown table: one row per run, test metrics at the epoch selected on validation."""
    selection = runs[0].summary.get("selection_metric", "ndcg@20") if runs else "ndcg@20"
    header = ["run", "model", "loss", "sampler", "K", "best epoch", f"valid {selection}"]
    header += [f"test {m}" for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        s = run.summary
        cells = [
            run.name,
            s.get("model", ""),
            s.get("loss", ""),
            s.get("sampler", ""),
            str(s.get("k", "")),
            str(s.get("best_epoch", "")),
            _fmt(s.get("valid", {}).get(selection)),
        ]
        cells += [_fmt(s.get("test", {}).get(m)) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
            ax.plot(rows["epoch"], rows[column], marker="o", markersize=3, label=run.name)
            best = run.summary.get("best_epoch")
            if best in set(rows["epoch"]):
                ax.scatter([best], rows.loc[rows["epoch"] == best, column], s=60, zorder=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"Validation {metric} per epoch (dots: selected epoch)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
