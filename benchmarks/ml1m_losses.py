"""MF with BPR / CCE (SSM) / SimCE on shared ML-1M, 3 seeds: test NDCG@20 vs the SimCE paper.

Runs the shipped presets ml1m-mf-{bpr,cce,simce} for each seed (epoch selected on a
validation split carved from train; test read once), then prints a markdown table of test
metrics (mean +- std over seeds) beside the paper's Table 2 values.

Usage:  python benchmarks/ml1m_losses.py [--data ../shared/data] [--seeds 0 1 2]
            [--output benchmarks/out/ml1m-losses] [--set KEY=VALUE ...]
Finished runs are reused (the run directory name carries the seed), so an interrupted
invocation continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from negrec.experiment.config import load_config
from negrec.experiment.rundir import is_run_dir
from negrec.experiment.runner import run_experiment

PAPER_NDCG20 = {"bpr": 0.2570, "cce": 0.2723, "simce": 0.3170}
METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", default="benchmarks/out/ml1m-losses", type=Path)
    parser.add_argument("--set", action="append", default=[], help="extra overrides")
    args = parser.parse_args()

    results: dict[str, list[dict]] = {}
    for loss in PAPER_NDCG20:
        for seed in args.seeds:
            name = f"ml1m-mf-{loss}-seed{seed}"
            path = args.output / name
            if not is_run_dir(path):
                config = load_config(
                    f"ml1m-mf-{loss}",
                    [
                        f"data.root={args.data}",
                        f"train.seed={seed}",
                        f"name={name}",
                        f"output={args.output}",
                        *args.set,
                    ],
                )
                path = run_experiment(config, progress=False)
            summary = json.loads((path / "summary.json").read_text())
            results.setdefault(loss, []).append(summary)
            print(
                f"{name}: best epoch {summary['best_epoch']}, "
                f"test ndcg@20 {summary['test']['ndcg@20']:.4f}",
                flush=True,
            )

    print(
        "\n| loss | K | "
        + " | ".join(f"test {m}" for m in METRICS)
        + " | paper NDCG@20 | rel. diff | best epochs |"
    )
    print("|---|---|" + "---|" * (len(METRICS) + 3))
    for loss, runs in results.items():
        cells = []
        for m in METRICS:
            values = np.array([r["test"][m] for r in runs])
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            cells.append(f"{values.mean():.4f} ± {spread:.4f}")
        mean20 = np.mean([r["test"]["ndcg@20"] for r in runs])
        diff = (mean20 - PAPER_NDCG20[loss]) / PAPER_NDCG20[loss]
        epochs = ", ".join(str(r["best_epoch"]) for r in runs)
        print(
            f"| {loss} | {runs[0]['k']} | "
            + " | ".join(cells)
            + f" | {PAPER_NDCG20[loss]:.4f} | {diff:+.1%} | {epochs} |"
        )


if __name__ == "__main__":
    main()
