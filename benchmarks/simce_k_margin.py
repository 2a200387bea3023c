"""SimCE on ML-1M MF: validation NDCG@20 over K (negatives) and the margin (issue 2).

Reads the probe runs (one ``negrec run ml1m-mf-simce --set sampler.k=K --set
loss.margin=M --set train.seed=0`` each; the command list is in benchmarks/RESULTS.md),
prints the markdown table of validation NDCG@20 and the selected epoch, and plots
validation NDCG@20 against the margin, one line per K. Selection reads validation only.

Usage:  python benchmarks/simce_k_margin.py RUN_DIR... --figure simce_k_margin.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
import tomllib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read_runs(folders: list[Path]) -> list[dict]:
    """K, margin, validation NDCG@20, best epoch, and whether the epoch budget ran out
    before early stopping, of every SimCE run among ``folders``."""
    rows = []
    for folder in folders:
        config = tomllib.loads((folder / "config.toml").read_text())
        if config["loss"]["name"] != "simce":
            continue
        summary = json.loads((folder / "summary.json").read_text())
        rows.append(
            {
                "k": config["sampler"]["k"],
                "margin": config["loss"]["margin"],
                "valid": summary["valid"]["ndcg@20"],
                "epoch": summary["best_epoch"],
                "ran_out": summary["epochs_run"] == config["train"]["epochs"],
            }
        )
    return sorted(rows, key=lambda r: (r["k"], r["margin"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--figure", type=Path, default=Path("simce_k_margin.png"))
    args = parser.parse_args()
    rows = read_runs(args.runs)
    print("| K | margin | valid NDCG@20 | best epoch |")
    print("|---|---|---|---|")
    best = max(rows, key=lambda r: r["valid"])
    for r in rows:
        value = f"{r['valid']:.4f}"
        value = f"**{value}**" if r is best else value
        note = " (epoch budget reached before patience)" if r["ran_out"] else ""
        print(f"| {r['k']} | {r['margin']:g} | {value} | {r['epoch']}{note} |")
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in sorted({r["k"] for r in rows}):
        line = [r for r in rows if r["k"] == k]
        ax.plot([r["margin"] for r in line], [r["valid"] for r in line], "o-", label=f"K = {k}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("margin")
    ax.set_ylabel("validation NDCG@20 (seed 0)")
    ax.set_title("SimCE, MF on ML-1M: K negatives and margin")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.figure, dpi=120)
    print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
