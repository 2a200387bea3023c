"""Which M in DNS(M, N) does best for each Top-K? Reads a finished `negrec sweep` over
`sampler.k` (= M) and prints, for NDCG@5/@20/@50, each run's best validation value over
epochs and the winning M; writes a plot of validation NDCG@K (relative to its best M)
against M. Shi et al. (WWW 2023) predict the best M does not grow as K shrinks.

Usage:  python benchmarks/dns_m_guideline.py benchmarks/out/dns-m-sweep \\
            --figure benchmarks/figures/dns_m_guideline.png
"""

from __future__ import annotations

import argparse
import json
from itertools import pairwise
from pathlib import Path

import pandas as pd

from negrec.atomic import save_figure
from negrec.experiment.rundir import is_run_dir

KS = (5, 20, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for run in sorted(p for p in args.sweep.iterdir() if is_run_dir(p)):
        history = pd.read_csv(run / "history.csv")
        summary = json.loads((run / "summary.json").read_text())
        row = {"M": int(summary["k"])}
        for k in KS:
            row[f"ndcg@{k}"] = history[f"valid/ndcg@{k}"].max()
            row[f"test ndcg@{k}"] = summary["test"][f"ndcg@{k}"]
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("M").reset_index(drop=True)
    print("| M | " + " | ".join(f"valid NDCG@{k}" for k in KS) + " |")
    print("|---|" + "---|" * len(KS))
    for _, r in table.iterrows():
        print(f"| {int(r['M'])} | " + " | ".join(f"{r[f'ndcg@{k}']:.4f}" for k in KS) + " |")
    best = {k: int(table.loc[table[f"ndcg@{k}"].idxmax(), "M"]) for k in KS}
    print("\nbest M on validation: " + ", ".join(f"NDCG@{k}: M = {m}" for k, m in best.items()))
    ordered = [best[k] for k in KS]
    holds = all(a <= b for a, b in pairwise(ordered))
    print(f"best M non-decreasing in K (the guideline): {'yes' if holds else 'no'}")
    if args.figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for k in KS:
            column = table[f"ndcg@{k}"]
            ax.plot(table["M"], column / column.max(), marker="o", label=f"NDCG@{k}")
        ax.set_xscale("log")
        ax.set_xlabel("M (kept hardest of N = 200 uniform candidates)")
        ax.set_ylabel("best validation value / best over M")
        ax.set_title("DNS(M, 200) on ML-1M: which M suits which K")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        print(f"figure: {save_figure(fig, args.figure)}")


if __name__ == "__main__":
    main()
