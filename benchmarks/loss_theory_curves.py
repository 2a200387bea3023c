"""Issue 4, loss-theory findings on Amazon-Beauty: reads one or more `beauty_loss_theory.toml`
sweep folders and prints the test table (NDCG@10 and MRR, mean ± std over the seeds found),
the validation NDCG@10 per epoch, and the two findings as numbers:

1. K = 1: per (model, seed), the largest gap between the BPR and the CCE curves (training
   loss and validation NDCG@10, epoch by epoch): the same function, so ~0 up to rounding.
2. K = 100: per model, CCE minus BCE on validation NDCG@10 early (mean of epochs 1-5) and
   late (mean of the last 5 epochs), and a paired t-test on test NDCG@10 over the seeds.

and, per (model, K), every pair of losses on test NDCG@10 over the seeds both finished:
the relative difference of the means and a paired t-test's p-value.

It plots one panel per (model, K) with a curve per loss. Runs of one grid that ran in
several folders (a GPU session, then CPU sessions) are read together; a run found twice is
an error. Runs still in progress (the sweep's hidden ``.NAME.tmp-*`` staging folders) are
read with ``--partial``: their curves are drawn dashed and they are left out of the tables.

    python benchmarks/loss_theory_curves.py benchmarks/out/beauty-loss-theory/beauty-loss-theory \\
        [MORE_FOLDERS ...] [--partial] [--figure benchmarks/figures/beauty_loss_theory.png]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from hns_gowalla import spread  # beside this script: "mean ± std" over seeds
from scipy import stats

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
        history = pd.read_csv(path / "history.csv")
        run["curve"] = history["valid/ndcg@10"].dropna().to_numpy()
        run["loss_curve"] = history["loss"].to_numpy()
        run["path"] = path
        if finished:
            summary = json.loads((path / "summary.json").read_text())
            run.update(test=summary["test"], best_epoch=summary["best_epoch"])
        runs.append(run)
    return runs


def read_all(folders: list[Path], partial: bool) -> list[dict]:
    """The runs of every folder; the same (model, K, loss, seed) twice is an error."""
    runs: list[dict] = []
    seen: dict[tuple, Path] = {}
    for folder in folders:
        for run in read(folder, partial):
            key = (run["model"], run["k"], run["loss"], run["seed"])
            if key in seen:
                raise SystemExit(f"{run['path']}: the same run as {seen[key]}; pass one of them")
            seen[key] = run["path"]
            runs.append(run)
    return runs


def finding_one(runs: list[dict]) -> list[str]:
    """K = 1: the largest BPR-vs-CCE gap per (model, seed) over the epochs both have."""
    by_key = {(r["model"], r["k"], r["loss"], r["seed"]): r for r in runs}
    lines = []
    for (model, k, loss, seed), bpr in sorted(by_key.items()):
        cce = by_key.get((model, k, "cce", seed))
        if k != 1 or loss != "bpr" or cce is None:
            continue
        n = min(len(bpr["curve"]), len(cce["curve"]))
        ndcg_gap = np.abs(bpr["curve"][:n] - cce["curve"][:n]).max()
        m = min(len(bpr["loss_curve"]), len(cce["loss_curve"]))
        loss_gap = np.abs(bpr["loss_curve"][:m] - cce["loss_curve"][:m]) / bpr["loss_curve"][:m]
        lines.append(
            f"{model} seed {seed}, {n} epochs: max |BPR - CCE| validation NDCG@10 "
            f"{ndcg_gap:.6f} (curve mean {bpr['curve'][:n].mean():.4f}); max relative "
            f"training-loss gap {loss_gap.max():.2e}"
        )
    return lines


def finding_two(runs: list[dict]) -> list[str]:
    """K = 100: CCE - BCE early and late on validation, and on test with a paired t-test."""
    lines = []
    for model in sorted({r["model"] for r in runs}):
        pairs = []
        for seed in sorted({r["seed"] for r in runs}):
            found = {
                r["loss"]: r
                for r in runs
                if (r["model"], r["k"], r["seed"]) == (model, 100, seed) and r["finished"]
            }
            if "bce" in found and "cce" in found:
                pairs.append((seed, found["cce"], found["bce"]))
        if not pairs:
            continue
        for seed, cce, bce in pairs:
            early = cce["curve"][:5].mean() - bce["curve"][:5].mean()
            late = cce["curve"][-5:].mean() - bce["curve"][-5:].mean()
            lines.append(
                f"{model} seed {seed}: CCE - BCE validation NDCG@10, epochs 1-5 {early:+.4f}, "
                f"last 5 epochs {late:+.4f}"
            )
        cce_test = np.array([c["test"]["ndcg@10"] for _, c, _ in pairs])
        bce_test = np.array([b["test"]["ndcg@10"] for _, _, b in pairs])
        diff = cce_test - bce_test
        test = ""
        if len(pairs) > 1:
            test = f", paired t-test p = {stats.ttest_rel(cce_test, bce_test).pvalue:.3f}"
        lines.append(
            f"{model}: CCE - BCE test NDCG@10 {diff.mean():+.4f} over {len(pairs)} seed(s){test}"
        )
    return lines


def paired_tests(runs: list[dict]) -> str:
    """Per (model, K): each pair of losses on test NDCG@10 over their common seeds, as the
    relative difference of the means and a paired t-test (p shown with 2 or more seeds)."""
    pairs = (("cce", "bpr"), ("bce", "bpr"), ("cce", "bce"))
    header = " | ".join(f"{a.upper()} vs {b.upper()}" for a, b in pairs)
    lines = [f"| model | K | {header} |", "|---|---|" + "---|" * len(pairs)]
    test = {
        (r["model"], r["k"], r["loss"], r["seed"]): r["test"]["ndcg@10"]
        for r in runs
        if r["finished"]
    }
    for model, k in sorted({(m, k) for m, k, _, _ in test}):
        cells = []
        for a, b in pairs:
            seeds = sorted(
                s
                for m, kk, loss, s in test
                if (m, kk, loss) == (model, k, a) and (model, k, b, s) in test
            )
            if not seeds:
                cells.append("–")
                continue
            first = np.array([test[model, k, a, s] for s in seeds])
            second = np.array([test[model, k, b, s] for s in seeds])
            plural = "s" if len(seeds) > 1 else ""
            cell = f"{first.mean() / second.mean() - 1:+.1%} ({len(seeds)} seed{plural}"
            if len(seeds) > 1:
                cell += f", p = {stats.ttest_rel(first, second).pvalue:.3f}"
            cells.append(cell + ")")
        lines.append(f"| {model} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    parser.add_argument("sweeps", type=Path, nargs="+", help="sweep folders of one grid")
    parser.add_argument("--partial", action="store_true", help="also unfinished runs")
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    runs = read_all(args.sweeps, args.partial)
    print(table(runs))
    print("\ntest NDCG@10, loss against loss (relative difference of the means, paired t-test):")
    print(paired_tests(runs))
    print("\nfinding 1 (K = 1: BPR and CCE train identically):")
    print("\n".join(finding_one(runs)) or "no K = 1 BPR / CCE pair yet")
    print("\nfinding 2 (K = 100: CCE leads early, BCE catches up late):")
    print("\n".join(finding_two(runs)) or "no finished K = 100 BCE / CCE pair yet")
    print("\nvalidation NDCG@10, every 3rd epoch from epoch 1:")
    for run in runs:
        state = "" if run["finished"] else f" (unfinished, {len(run['curve'])} epochs)"
        values = " ".join(f"{v:.4f}" for v in run["curve"][::3])
        print(f"{run['model']} K={run['k']} {run['loss']} seed {run['seed']}{state}: {values}")
    if args.figure is not None:
        plot(runs, args.figure)


if __name__ == "__main__":
    main()
