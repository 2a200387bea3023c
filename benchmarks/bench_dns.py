"""DNS(5, 200) epoch cost against a uniform K = 5 epoch (issue 3), MF + BPR on shared ML-1M.

Usage:  python benchmarks/bench_dns.py [--data ../shared/data] [--threads 1] [--repeats 3]
Both runs use the same data, model, batch size and loss; medians of ``repeats`` epochs after
a warm-up epoch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from negrec.data.prepare import prepare_presplit
from negrec.data.splits import carve_validation
from negrec.losses import Loss, LossConfig
from negrec.models import MF, ModelConfig
from negrec.samplers import SAMPLERS
from negrec.train import TrainConfig, fit


def epoch_seconds(split, name: str, repeats: int, **options) -> float:
    cls = SAMPLERS.get(name, "sampler.name")
    sampler = cls(cls.Config(name=name, **options), split.train)
    model = MF(ModelConfig(dim=64), split.train, torch.Generator().manual_seed(0))
    config = TrainConfig(epochs=1 + repeats, batch_size=1024)
    state = fit(model, sampler, Loss(LossConfig(name="bpr")), split, config)
    return float(np.median([h["train_seconds"] for h in state.history[1:]]))


def draw_ns(split, repeats: int = 30) -> float:
    """The pool draw alone: ns per candidate mapping 1,024 users x 200 uniform ranks to
    non-positive items (``ComplementIndex.items_at_cpu``), median of ``repeats`` calls."""
    from negrec.samplers.uniform import ComplementIndex

    index = ComplementIndex(split.train, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    users = torch.randint(0, split.train.n_users, (1024,), generator=gen)
    avail = index.available[users].unsqueeze(1)
    ranks = torch.minimum((torch.rand(1024, 200, generator=gen) * avail).long(), avail - 1)
    index.items_at_cpu(users, ranks)  # compile / load the kernel
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        index.items_at_cpu(users, ranks)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / ranks.numel() * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, test, _ = prepare_presplit(
        args.data / "ml-1m" / "train.txt",
        args.data / "ml-1m" / "test.txt",
        format="lightgcn",
        on_unseen="keep",
    )
    split = carve_validation(train, test, 0.1, 0)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {args.threads} thread(s)")
    uniform = epoch_seconds(split, "uniform", args.repeats, k=5)
    dns = epoch_seconds(split, "dns", args.repeats, k=5, pool=200)
    print(
        f"ML-1M MF+BPR epoch: uniform K=5 {uniform:.2f}s, DNS(5,200) {dns:.2f}s -> "
        f"ratio {dns / uniform:.2f}x (goal <= 4x); pool draw {draw_ns(split):.1f} ns/candidate"
    )


if __name__ == "__main__":
    main()
