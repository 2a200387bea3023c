"""The fused MF step's compiled kernel (``mf_row_step``, in ``negrec._fast.owned`` since
the threaded step, in ``negrec._fast.kernels`` before) against the same kernel at an earlier
git revision, and the fused step against the autograd path, for K
negatives per positive (issues 2 and 7).

It loads ``src/negrec/_fast/kernels.py`` as it was at ``REV`` beside the
working tree's and times one ``mf_row_step`` call (LazyAdam update included) on random
batches shaped like the suite's rows: batch 1024, dim 64, tables of ML-100K, ML-1M,
Gowalla and the scale benchmark, K in {1, 100}. The two kernels alternate, 3 rounds, and
the medians and their ratio are printed, so the ratio is measured under one load.

Whole epochs of the fused step against other paths: ``benchmarks/suite.py`` (``bpr``,
``cce``).

    OMP_NUM_THREADS=1 python benchmarks/bench_row_step.py --against 21d8894
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: (label, n_users, n_items, batch, width = 1 + K)
SHAPES = [
    ("ML-100K, K = 100", 943, 1682, 1024, 101),
    ("ML-1M, K = 1", 6040, 3706, 1024, 2),
    ("ML-1M, K = 100", 6040, 3706, 1024, 101),
    ("Gowalla, K = 1", 29858, 40981, 1024, 2),
    ("Gowalla, K = 100", 29858, 40981, 1024, 101),
    ("scale (1M x 200k), K = 10, batch 8192", 1_000_000, 200_000, 8192, 11),
]


def kernels_at(revision: str) -> ModuleType:
    """The module holding ``mf_row_step`` as it was at ``revision`` (``owned.py``, whose
    helpers come from the working tree's kernels, or before it ``kernels.py``), imported
    from a temporary file."""
    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", revision, "src/negrec/_fast/"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    name = "owned" if "src/negrec/_fast/owned.py" in listed else "kernels"
    source = subprocess.run(
        ["git", "show", f"{revision}:src/negrec/_fast/{name}.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"kernels_{revision}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_step(kernels: ModuleType, batch: tuple, repeats: int) -> float:
    """Median ms of one ``mf_row_step`` call (a warm-up call compiles it first)."""
    args = (*batch, True, 1e-3, 0.9, 0.999, 1e-8, 0.0, (0.1, 0.001), (0.1, 0.001))
    kernels.mf_row_step(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        kernels.mf_row_step(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def random_batch(n_users: int, n_items: int, size: int, width: int, dim: int = 64) -> tuple:
    rng = np.random.default_rng(0)
    users_t = rng.normal(size=(n_users, dim)).astype(np.float32)
    items_t = rng.normal(size=(n_items, dim)).astype(np.float32)

    def state(table: np.ndarray) -> tuple:
        blank = [np.zeros_like(table) for _ in range(3)]
        return (*blank, np.zeros(table.shape[0], dtype=bool))

    users = rng.integers(n_users, size=size)
    items = rng.integers(n_items, size=(size, width))
    grad = (rng.normal(size=(size, width)) * 1e-3).astype(np.float32)
    return (users_t, items_t, users, items, grad, 0.0, state(users_t), state(items_t))


def kernel_ab(revision: str, rounds: int, repeats: int) -> None:
    from negrec._fast import owned as current

    before = kernels_at(revision)
    print(f"mf_row_step, one call (ms): {revision} vs working tree, median of {rounds} rounds")
    print(f"| batch shape | {revision} | now | speed-up |\n|---|---:|---:|---:|")
    for label, n_users, n_items, size, width in SHAPES:
        batch = random_batch(n_users, n_items, size, width)
        old, new = [], []
        for _ in range(rounds):
            old.append(time_step(before, batch, repeats))
            new.append(time_step(current, batch, repeats))
        a, b = float(np.median(old)), float(np.median(new))
        print(f"| {label} | {a:.2f} | {b:.2f} | {a / b:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="a git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15, help="calls timed per round")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    kernel_ab(args.against, args.rounds, args.repeats)


if __name__ == "__main__":
    main()
