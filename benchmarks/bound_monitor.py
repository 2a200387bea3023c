"""Bound monitor on MovieLens-1M: how often does each sampled loss bound -ln NDCG?

Paper (a), Di Teodoro et al., "A Theoretical Analysis of Recommendation Loss Functions under
Negative Sampling" (arXiv 2411.07770), proves that with K sampled negatives the loss bounds
``-ln NDCG`` of the full ranking with probability at least ``p_L`` and that
``p_BCE >= p_BPR >= p_CCE``; it claims BCE's bound holds most often, especially late in
training. This script trains MF on the shared ML-1M split (preset ``ml1m-mf-bpr``) with
BPR, BCE and CCE at K = 1 and K = 100 (same seed, epochs and optimiser for all six runs),
with :class:`negrec.monitor.BoundMonitor` on (monitor K = 1 and 100 for every run), then
writes the figure and a markdown table of holds-fractions at the first and last monitored
epoch.

Usage (from the repository root; resumable: finished runs are kept and skipped)::

    nice -n 10 python benchmarks/bound_monitor.py --data-root ../shared/data
    python benchmarks/bound_monitor.py --plot-only      # figure + table from finished runs
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# one thread each for numba and torch: on busy shared cores, two threads mostly spin
# (measured: 61 ms vs 277 ms of CPU per K = 100 batch). Set before numba is imported.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import pandas as pd
import torch

from negrec.experiment.config import load_config
from negrec.experiment.data import build_split
from negrec.experiment.report import RunRecord, load_runs, plot_bound_monitor
from negrec.experiment.rundir import is_run_dir
from negrec.experiment.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ("bpr", "bce", "cce")


def run_name(loss: str, k: int) -> str:
    return f"ml1m-mf-{loss}-k{k}"


def overrides(args: argparse.Namespace, loss: str, k: int) -> list[str]:
    """``--set`` overrides shared by every run, plus this run's loss and K."""
    return [
        f"data.root={args.data_root}",
        f'name="{run_name(loss, k)}"',
        f'output="{args.output}"',
        f'loss.name="{loss}"',
        f"sampler.k={k}",
        f"train.epochs={args.epochs}",
        f"train.eval_every={args.eval_every}",
        f"train.lr={args.lr}",
        f"train.seed={args.seed}",
        f'train.optimizer="{args.optimizer}"',
        "train.patience=0",  # never stop early: every run gets the same epochs
        "monitor.enabled=true",
        f"monitor.users={args.users}",
        f"monitor.k=[{', '.join(str(k) for k in args.monitor_ks)}]",
        f"monitor.seed={args.seed}",
    ]


def train_all(args: argparse.Namespace) -> None:
    """Train the six runs in order (K = 1 first: cheap), skipping finished ones."""
    split = None
    for k in args.ks:
        for loss in args.losses:
            target = Path(args.output) / run_name(loss, k)
            if is_run_dir(target):
                print(f"skip {target} (finished)", flush=True)
                continue
            config = load_config("ml1m-mf-bpr", overrides(args, loss, k))
            if split is None:  # identical data and split sections for all runs
                split = build_split(config.data, config.split)
            wall, cpu = time.perf_counter(), time.process_time()
            path = run_experiment(config, split=split, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"done {path}: wall {wall:.0f}s, cpu {cpu:.0f}s", flush=True)
            timing = Path(path) / "bench_timing.json"
            timing.write_text(json.dumps({"wall_seconds": wall, "cpu_seconds": cpu}))


def _cell(history: pd.DataFrame, column: str, row: int) -> str:
    rows = history.dropna(subset=[column])
    return f"{rows[column].iloc[row]:.3f}"


def table(runs: list[RunRecord], monitor_k: int | None) -> str:
    """Markdown: per run, every loss's holds (predicted) at first -> last monitored epoch.

    ``monitor_k=None`` uses each run's training K; otherwise that monitor K for all runs.
    """
    head = ["trained", "K", "bound K", "epochs", "rank median"]
    head += [f"{loss.upper()} holds (pred.)" for loss in LOSSES]
    head += ["valid ndcg@20"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in sorted(runs, key=lambda r: (r.summary["k"], LOSSES.index(r.summary["loss"]))):
        h = run.history
        k = int(run.summary["k"])
        mk = k if monitor_k is None else monitor_k
        holds = [f"bound/k={mk}/{loss}/holds" for loss in LOSSES]
        monitored = h.dropna(subset=holds)
        first, last = int(monitored["epoch"].iloc[0]), int(monitored["epoch"].iloc[-1])
        cells = [
            run.summary["loss"].upper(),
            str(k),
            str(mk),
            f"{first} → {last}",
            f"{_cell(h, 'bound/rank_median', 0)} → {_cell(h, 'bound/rank_median', -1)}",
        ]
        for loss in LOSSES:
            col, pred = f"bound/k={mk}/{loss}/holds", f"bound/k={mk}/{loss}/predicted"
            cells.append(
                f"{_cell(h, col, 0)} ({_cell(h, pred, 0)}) → "
                f"{_cell(h, col, -1)} ({_cell(h, pred, -1)})"
            )
        ndcg = h.dropna(subset=["valid/ndcg@20"])["valid/ndcg@20"]
        cells.append(f"{ndcg.iloc[0]:.4f} → {ndcg.iloc[-1]:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(args: argparse.Namespace) -> None:
    runs = load_runs([args.output])
    figure = plot_bound_monitor(runs, args.figure)
    text = [
        "Own K (bound monitored at the training K):",
        "",
        table(runs, None),
        "",
        "All runs at monitor K = 100:",
        "",
        table(runs, 100),
        "",
    ]
    for run in runs:
        timing = run.path / "bench_timing.json"
        if timing.exists():
            t = json.loads(timing.read_text())
            text.append(
                f"- {run.name}: wall {t['wall_seconds']:.0f}s, cpu {t['cpu_seconds']:.0f}s, "
                f"mean epoch {run.summary['mean_epoch_seconds']:.1f}s"
            )
    out = Path(args.output) / "table.md"
    out.write_text("\n".join(text) + "\n")
    print("\n".join(text))
    print(f"\nfigure: {figure}\ntable: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ml-1m/")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/out/bound_monitor"))
    parser.add_argument("--figure", default=str(ROOT / "benchmarks/figures/bound_monitor_ml1m.png"))
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 100], help="training K")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--monitor-ks", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "lazy_adam"])
    parser.add_argument("--users", type=int, default=256, help="validation users monitored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-only", action="store_true", help="skip training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.plot_only:
        train_all(args)
    report(args)


if __name__ == "__main__":
    main()
