"""Top-10 for every user of Gowalla, seen items excluded: negrec's Recommender vs `implicit`.

Both sides get the same factors (random, dim 64, float32: timing does not depend on how
they were trained) and the same seen items (Gowalla's train.txt, LightGCN format, read
with negrec's loader): negrec wraps them in an MF model and calls
``Recommender.recommend(None, n=10)`` (raw ids in, a DataFrame of raw ids out);
`implicit` sets ``user_factors`` / ``item_factors`` of an ``AlternatingLeastSquares`` and
calls its batched ``recommend(all users, user_items, N=10,
filter_already_liked_items=True)`` (internal ids out). One thread each (torch, numba,
implicit's ``num_threads`` and BLAS through threadpoolctl), interleaved A B over
``--rounds`` rounds; the ratio is per round, reported as median (min-max). The lists are
compared: identical, or equal up to items whose scores tie (within float rounding).

Usage:  python benchmarks/recommend_vs_implicit.py [--data ../shared/data] [--rounds 5]
Needs `implicit` and `threadpoolctl` (not dependencies of negrec). Writes
benchmarks/out/YYYY-MM-DD-recommend-vs-implicit.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp
import torch

from negrec.data.loaders import load
from negrec.data.prepare import prepare
from negrec.models import MF, ModelConfig
from negrec.recommend import Recommender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder holding gowalla/")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved A B rounds (>= 5)")
    parser.add_argument("--dim", type=int, default=64, help="factor size")
    args = parser.parse_args()

    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    path = Path(args.data) / "gowalla" / "train.txt"
    train, _ = prepare(load(path, format="lightgcn"))
    rng = np.random.default_rng(0)
    users = rng.normal(0, 0.1, (train.n_users, args.dim)).astype(np.float32)
    items = rng.normal(0, 0.1, (train.n_items, args.dim)).astype(np.float32)

    model = MF(ModelConfig(dim=args.dim), train, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.user.weight.copy_(torch.from_numpy(users))
        model.item.weight.copy_(torch.from_numpy(items))
    rec = Recommender(model, train)

    als = AlternatingLeastSquares(factors=args.dim, num_threads=1, random_state=0)
    als.user_factors, als.item_factors = users, items
    user_items = sp.csr_matrix(
        (np.ones(train.nnz, dtype=np.float32), train.indices, train.indptr),
        shape=(train.n_users, train.n_items),
    )
    all_users = np.arange(train.n_users)

    def run_negrec():
        return rec.recommend(None, n=10)

    def run_implicit():
        return als.recommend(all_users, user_items, N=10, filter_already_liked_items=True)

    timings = []
    with threadpool_limits(limits=1):
        run_negrec(), run_implicit()  # warm-up: numba compile, BLAS, caches
        for _ in range(args.rounds):
            start, cpu_start = time.perf_counter(), time.process_time()
            ours = run_negrec()
            mid, cpu_mid = time.perf_counter(), time.process_time()
            ids, scores = run_implicit()
            end, cpu_end = time.perf_counter(), time.process_time()
            timings.append((mid - start, end - mid, cpu_mid - cpu_start, cpu_end - cpu_mid))

    # compare: negrec's raw ids are Gowalla's integer ids; map back to internal ids
    ours_ids = np.searchsorted(train.item_ids, ours["item"].to_numpy()).reshape(-1, 10)
    ours_scores = ours["score"].to_numpy().reshape(-1, 10)
    identical = (ours_ids == ids).all(axis=1)
    same_scores = np.isclose(ours_scores, scores, rtol=1e-5, atol=1e-6).all(axis=1)
    seen_hit = sum(
        np.isin(ours_ids[u], train.indices[train.indptr[u] : train.indptr[u + 1]]).any()
        for u in range(0, train.n_users, 97)  # a sample: any seen item returned?
    )

    ratio = np.array([a / b for a, b, _, _ in timings])
    cpu_ratio = np.array([c / d for _, _, c, d in timings])
    lines = [
        "# Top-10 for all Gowalla users, seen excluded: negrec vs implicit "
        f"({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/recommend_vs_implicit.py --data {args.data} "
        f"--rounds {args.rounds}`",
        f"Machine: {platform.processor() or platform.machine()}, one thread each "
        f"(torch {torch.__version__}, numba {numba.__version__}); "
        f"{train.n_users:,} users x {train.n_items:,} items, {train.nnz:,} seen; dim {args.dim}.",
        "",
        "Wall and CPU (process) seconds per call; on a shared machine the CPU time of each",
        "single-threaded side is the steadier measure.",
        "",
        "| round | negrec wall | implicit wall | ratio | negrec CPU | implicit CPU | ratio |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {i + 1} | {a:.3f} | {b:.3f} | {a / b:.2f} | {c:.3f} | {d:.3f} | {c / d:.2f} |"
            for i, (a, b, c, d) in enumerate(timings)
        ),
        "",
        f"Ratio negrec / implicit, wall: median {np.median(ratio):.2f} "
        f"(min {ratio.min():.2f}, max {ratio.max():.2f}); CPU: median "
        f"{np.median(cpu_ratio):.2f} (min {cpu_ratio.min():.2f}, max {cpu_ratio.max():.2f}).",
        f"Lists identical for {identical.sum():,} of {identical.size:,} users; the others' "
        f"10 scores equal within float rounding for {(same_scores & ~identical).sum()} of "
        f"{(~identical).sum()} (different items only where scores tie); "
        f"users whose list has a seen item (sample of {len(range(0, train.n_users, 97))}): "
        f"{seen_hit}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "out" / f"{time.strftime('%Y-%m-%d')}-recommend-vs-implicit.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
