"""Issue 4, loss-theory findings on Amazon-Beauty: reads a `beauty_loss_theory.toml` sweep
folder and prints the test table (NDCG@10 and MRR, mean ± std over the seeds found) and the
validation NDCG@10 per epoch; plots one panel per (model, K) with a curve per loss.

Runs still in progress (the sweep's hidden ``.NAME.tmp-*`` staging folders) are read with
``--partial``: their curves are drawn dashed and they are left out of the test table.

    python benchmarks/loss_theory_curves.py benchmarks/out/beauty-loss-theory/beauty-loss-theory \\
        [--partial] [--figure benchmarks/figures/beauty_loss_theory_valid_ndcg10.png]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from hns_gowalla import spread  # beside this script: "mean ± std" over seeds

NAME = re.compile(r"model=(\w+),sampler\.k=(\d+),loss=(\w+),seed=(\d+)")


def read(folder: Path, partial: bool) -> list[dict]:
    runs = []
    for path in sorted(folder.iterdir()):
        match = NAME.search(path.name)
        if match is None or not (path / "history.csv").exists():
            continue
        finished = (path / "summary.json").exists() and not path.name.startswith(".")
        if not finished and not partial:
            continue
        model, k, loss, seed = match.groups()
        run = {"model": model, "k": int(k), "loss": loss, "seed": int(seed), "finished": finished}
        run["curve"] = pd.read_csv(path / "history.csv")["valid/ndcg@10"].dropna().to_numpy()
        if finished:
            summary = json.loads((path / "summary.json").read_text())
            run.update(test=summary["test"], best_epoch=summary["best_epoch"])
        runs.append(run)
    return runs


def table(runs: list[dict]) -> str:
    lines = [
        "| model | K | loss | seeds | test NDCG@10 | test MRR | best epoch(s) |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        if run["finished"]:
            groups.setdefault((run["model"], run["k"], run["loss"]), []).append(run)
    for (model, k, loss), group in sorted(groups.items()):
        ndcg = np.array([r["test"]["ndcg@10"] for r in group])
        mrr = np.array([r["test"]["mrr"] for r in group])
        epochs = ", ".join(str(r["best_epoch"]) for r in group)
        lines.append(
            f"| {model} | {k} | {loss.upper()} | {len(group)} | {spread(ndcg)} | {spread(mrr)} | "
            f"{epochs} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from negrec.atomic import save_figure

    panels = sorted({(r["model"], r["k"]) for r in runs})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    colours = {"bpr": "tab:blue", "bce": "tab:orange", "cce": "tab:green"}
    for ax, (model, k) in zip(axes[0], panels, strict=True):
        for run in runs:
            if (run["model"], run["k"]) != (model, k):
                continue
            epochs = np.arange(1, len(run["curve"]) + 1)
            ax.plot(
                epochs,
                run["curve"],
                color=colours[run["loss"]],
                linestyle="-" if run["finished"] else "--",
                alpha=0.9 if run["seed"] == 0 else 0.4,
                label=f"{run['loss'].upper()} (seed {run['seed']})",
            )
        ax.set_title(f"{model}, K = {k}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    print(f"figure: {save_figure(fig, figure)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--partial", action="store_true", help="also unfinished runs")
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    runs = read(args.sweep, args.partial)
    print(table(runs))
    print("\nvalidation NDCG@10, every 3rd epoch from epoch 1:")
    for run in runs:
        state = "" if run["finished"] else f" (unfinished, {len(run['curve'])} epochs)"
        values = " ".join(f"{v:.4f}" for v in run["curve"][::3])
        print(f"{run['model']} K={run['k']} {run['loss']} seed {run['seed']}{state}: {values}")
    if args.figure is not None:
        plot(runs, args.figure)


if __name__ == "__main__":
    main()
