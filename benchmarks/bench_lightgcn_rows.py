"""LightGCN training step: the last layer for the step's rows only, against the full
propagation (issues 4 and 7).

A LightGCN step runs 2L sparse products over the whole graph (L forward, L backward).
The loss reads only the batch's users and items, so negrec computes the last forward
product for those rows and the first backward product from them
(``negrec.models.lightgcn``, ``ROW_SUBSET_MAX_SHARE``). This script times BPR epochs
(3 layers, dim 64, batch 1024, K = 1, explicit L2 1e-5: the speed suite's LightGCN rows)
with the row subset on (the default) and off, in interleaved rounds on the same data and
process, and prints the per-round ratio:

    OMP_NUM_THREADS=1 python benchmarks/bench_lightgcn_rows.py --data ../shared/data

Partial epochs as in the suite: the first ``--steps`` batches of each epoch, scaled to a
full epoch. Also prints the share of Â's non-zeros a batch's rows hold (the subset is
used at most ``ROW_SUBSET_MAX_SHARE`` = 25%).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--datasets", nargs="+", default=["gowalla", "ml-1m"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="batches timed per epoch")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from suite import load_splits, negrec_epochs

    import negrec.models.lightgcn as lightgcn
    from negrec.models.lightgcn import LightGCN, LightGCNConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler

    torch.set_num_threads(args.threads)
    splits = load_splits(args.data)
    default_share = lightgcn.ROW_SUBSET_MAX_SHARE
    for name in args.datasets:
        split = splits[name]
        users, items = split.train.to_coo()
        pick = np.random.default_rng(0).integers(0, users.size, 1024)
        model = LightGCN(LightGCNConfig(dim=64, layers=3), split.train, torch.Generator())
        nodes = np.unique(np.concatenate([users[pick], items[pick] + split.train.n_users]))
        crow = model.adj_crow.numpy()
        share = (crow[nodes + 1] - crow[nodes]).sum() / model.adj_col.numel()
        print(f"{name}: a batch's users and positives hold {share:.1%} of Â's non-zeros")
        ratios = []
        for round_ in range(1, args.rounds + 1):
            seconds = {}
            for label, max_share in (("rows", default_share), ("full", -1.0)):
                lightgcn.ROW_SUBSET_MAX_SHARE = max_share
                model = LightGCN(LightGCNConfig(dim=64, layers=3), split.train, torch.Generator())
                sampler = UniformSampler(UniformConfig(k=1), split.train)
                timing = negrec_epochs(
                    model, sampler, "bpr", split, epochs=2, max_steps=args.steps, l2=1e-5
                )
                seconds[label] = float(np.median(timing["seconds"]))
            lightgcn.ROW_SUBSET_MAX_SHARE = default_share
            ratios.append(seconds["full"] / seconds["rows"])
            print(
                f"  round {round_}: epoch {seconds['rows']:.1f} s with the row subset, "
                f"{seconds['full']:.1f} s full: {ratios[-1]:.2f}x",
                flush=True,
            )
        print(f"  median {np.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
