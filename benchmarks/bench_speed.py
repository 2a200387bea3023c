"""Speed benchmarks of the foundation issue, as ratios measured in one run.

1. MF+BPR epoch (K = 1, batch 1024) on shared ML-1M vs the `implicit` library's CPU BPR
   (factors 64, one iteration = one pass over the training interactions), interleaved:
   each negrec epoch is followed by one `implicit` iteration, and the ratio is taken per
   round (``--bpr-rounds``), for negrec's LazyAdam and SGD (both the fused MF step) and Adam.
2. MF+CCE epoch with K = 100 per-positive negatives vs our own K = 1 epoch.
3. Full-ranking evaluation on shared Gowalla (all test users): top-K metrics + MRR, and with
   AUC + OPAUC added, vs a bare ``torch.topk(users @ items.T)`` pass over the same users.

Usage:  python benchmarks/bench_speed.py [--data ../shared/data] [--repeats 3] [--only-bpr]
Needs `implicit` (pip install implicit) for (1); not a dependency of negrec itself.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from negrec.data.prepare import prepare_presplit
from negrec.data.splits import carve_validation
from negrec.evaluation import EvalConfig, evaluate
from negrec.losses import Loss, LossConfig
from negrec.models import MF, ModelConfig
from negrec.samplers.uniform import UniformConfig, UniformSampler
from negrec.train import TrainConfig, fit


def load(root: Path, name: str):
    train, test, _ = prepare_presplit(
        root / name / "train.txt", root / name / "test.txt", format="lightgcn", on_unseen="keep"
    )
    return carve_validation(train, test, 0.1, 0)


def epoch_seconds(split, loss: str, k: int, optimizer: str, repeats: int) -> float:
    """Median wall time of one training epoch (after one warm-up epoch)."""
    model = MF(ModelConfig(dim=64), split.train, torch.Generator().manual_seed(0))
    sampler = UniformSampler(UniformConfig(k=k), split.train)
    config = TrainConfig(epochs=1 + repeats, batch_size=1024, optimizer=optimizer)
    state = fit(model, sampler, Loss(LossConfig(name=loss)), split, config)
    return float(np.median([h["train_seconds"] for h in state.history[1:]]))


def interleaved_bpr_rounds(split, optimizer: str, rounds: int, threads: int) -> list[tuple]:
    """(negrec epoch, implicit iteration) seconds per round, measured back to back: one
    negrec MF+BPR epoch, then (in an epoch-end callback, outside the epoch's timing) one
    `implicit` BPR iteration on the same data. On a shared machine whose load drifts by
    2x within minutes, per-round ratios are stable where separate runs are not."""
    import implicit
    import scipy.sparse as sp

    from negrec.train import Callback

    users, items = split.train.to_coo()
    matrix = sp.csr_matrix(
        (np.ones(users.size, dtype=np.float32), (users, items)),
        shape=(split.n_users, split.n_items),
    )
    theirs: list[float] = []  # implicit's iteration seconds, one per round

    class ImplicitIteration(Callback):
        def on_epoch_end(self, state) -> None:  # type: ignore[no-untyped-def]
            bpr = implicit.cpu.bpr.BayesianPersonalizedRanking(
                factors=64, iterations=1, random_state=state.epoch, num_threads=threads
            )
            start = time.perf_counter()
            bpr.fit(matrix, show_progress=False)
            theirs.append(time.perf_counter() - start)

    model = MF(ModelConfig(dim=64), split.train, torch.Generator().manual_seed(0))
    sampler = UniformSampler(UniformConfig(k=1), split.train)
    config = TrainConfig(epochs=1 + rounds, batch_size=1024, optimizer=optimizer)
    state = fit(model, sampler, Loss(LossConfig(name="bpr")), split, config,
                callbacks=[ImplicitIteration()])  # fmt: skip
    ours = [h["train_seconds"] for h in state.history]
    return list(zip(ours, theirs, strict=True))[1:]  # round 0 warms both up


def implicit_times(split, repeats: int, threads: int) -> list[float]:
    """Wall times of ``repeats`` one-iteration `implicit` BPR fits, after a warm-up fit
    (factors 64, one pass over the training interactions)."""
    import implicit
    import scipy.sparse as sp

    users, items = split.train.to_coo()
    matrix = sp.csr_matrix(
        (np.ones(users.size, dtype=np.float32), (users, items)),
        shape=(split.n_users, split.n_items),
    )
    times = []
    for i in range(repeats + 1):
        bpr = implicit.cpu.bpr.BayesianPersonalizedRanking(
            factors=64, iterations=1, random_state=i, num_threads=threads
        )
        start = time.perf_counter()
        bpr.fit(matrix, show_progress=False)
        times.append(time.perf_counter() - start)
    return times[1:]


def bare_topk_seconds(model: MF, users: np.ndarray, k: int, batch: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, users.size, batch):
            u = torch.from_numpy(users[s : s + batch])
            torch.topk(model.user(u) @ model.item.weight.T, k, dim=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="threads for torch and implicit")
    parser.add_argument("--bpr-rounds", type=int, default=10, help="interleaved BPR rounds")
    parser.add_argument("--only-bpr", action="store_true", help="only the MF+BPR comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    ml1m = load(args.data, "ml-1m")
    for optimizer in ("lazy_adam", "sgd", "adam"):
        rounds = interleaved_bpr_rounds(ml1m, optimizer, args.bpr_rounds, args.threads)
        ratios = [ours / theirs for ours, theirs in rounds]
        print(
            f"ML-1M MF+BPR K=1, {optimizer}, {len(rounds)} interleaved rounds: negrec epoch "
            f"median {np.median([r[0] for r in rounds]):.3f}s, implicit iteration median "
            f"{np.median([r[1] for r in rounds]):.3f}s; per-round ratio median "
            f"{np.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}; "
            "goal <= 3x)"
        )
    if args.only_bpr:
        return
    cce1 = epoch_seconds(ml1m, "cce", 1, "adam", args.repeats)
    cce100 = epoch_seconds(ml1m, "cce", 100, "adam", args.repeats)
    print(
        f"ML-1M MF+CCE epoch: K=1 {cce1:.3f}s, K=100 {cce100:.3f}s -> ratio "
        f"{cce100 / cce1:.1f}x (goal <= 6x)"
    )

    gowalla = load(args.data, "gowalla")
    model = MF(ModelConfig(dim=64), gowalla.train, torch.Generator().manual_seed(0))
    users = np.flatnonzero(gowalla.test.user_degrees > 0)
    evaluate(model, gowalla, "test", EvalConfig(), users=users[:64])  # JIT warm-up
    for k in (20, 50):
        bare = bare_topk_seconds(model, users, k, 512)
        start = time.perf_counter()
        evaluate(model, gowalla, "test", EvalConfig(ks=[10, k], auc=False))
        topk = time.perf_counter() - start
        start = time.perf_counter()
        evaluate(model, gowalla, "test", EvalConfig(ks=[10, k], auc=True))
        full = time.perf_counter() - start
        print(
            f"Gowalla eval, {users.size} users, K up to {k}: bare topk {bare:.2f}s, "
            f"top-K+MRR {topk:.2f}s ({topk / bare:.2f}x, goal <= 2x), "
            f"+AUC/OPAUC {full:.2f}s ({full / bare:.2f}x, goal <= 6x)"
        )


if __name__ == "__main__":
    main()
