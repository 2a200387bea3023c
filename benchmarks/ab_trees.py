"""A/B of two source trees on one training epoch: does a code change make the epoch faster?

Two worker processes, one per tree (``PYTHONPATH`` set to it), each load the data and build
MF + the uniform sampler once, run a warm-up epoch, then one epoch per round on command; the
parent alternates them (A B A B ...) and prints the median of the per-round ratios B / A
with their min-max. On a shared machine whose load drifts within minutes, only such
interleaved ratios compare two versions. Snapshot the old tree first, e.g.
``git archive HEAD src | tar -x -C /tmp/old``.

    python benchmarks/ab_trees.py /tmp/old/src src --loss bpr --k 1 --rounds 9
    python benchmarks/ab_trees.py /tmp/old/src src --loss cce --k 100 --rounds 7
    python benchmarks/ab_trees.py /tmp/old/src src --cpu   # CPU time: a loaded machine

One thread each (numba and torch), so ``--cpu`` (the training thread's CPU time) is all of
an epoch's work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(args: argparse.Namespace) -> None:
    """Build the run, warm up, then one epoch per line read from stdin (prints seconds)."""
    import torch
    from suite import load, set_threads

    from negrec.losses import Loss, LossConfig
    from negrec.models import MF, ModelConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler
    from negrec.train import TrainConfig, fit

    set_threads(1)
    split = load(Path(args.data), args.dataset)
    model = MF(ModelConfig(dim=64), split.train, torch.Generator().manual_seed(0))
    sampler = UniformSampler(UniformConfig(k=args.k), split.train)
    config = TrainConfig(epochs=1, batch_size=1024, eval_every=10**6, **json.loads(args.train))
    loss = Loss(LossConfig(name=args.loss))
    fit(model, sampler, loss, split, config)
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.thread_time()
        state = fit(model, sampler, loss, split, config)
        cpu = time.thread_time() - start  # (the whole fit call: the epoch and its setup)
        print(cpu if args.cpu else state.history[0]["train_seconds"], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="the first source tree (the old code)")
    parser.add_argument("b", help="the second source tree (the new code)")
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--loss", default="bpr")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--train", default="{}", help="TrainConfig overrides as JSON")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="compare the epoch's CPU time (the training thread's) instead of wall time: "
        "on a loaded machine it leaves out the time the process waited for a core",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.rounds < 5:
        parser.error("--rounds must be >= 5")
    procs = []
    for tree in (args.a, args.b):
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OMP_NUM_THREADS="1")
        command = [sys.executable, __file__, *sys.argv[1:], "--worker"]
        proc = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            sys.exit(f"worker for {tree} failed to start")
        procs.append((proc, proc.stdin, proc.stdout))
    times: list[list[float]] = [[], []]
    for _ in range(args.rounds):
        for side, (_, stdin, stdout) in enumerate(procs):
            stdin.write("go\n")
            stdin.flush()
            times[side].append(float(stdout.readline()))
    for proc, stdin, _ in procs:
        stdin.close()
        proc.wait()
    ratios = [b / a for a, b in zip(*times, strict=True)]
    run = f"{args.dataset} {args.loss} K={args.k} {args.train}{' (CPU time)' if args.cpu else ''}"
    a, b = statistics.median(times[0]), statistics.median(times[1])
    spread = f"({min(ratios):.3f}-{max(ratios):.3f})"
    print(
        f"{run}: A {a:.3f} s, B {b:.3f} s, B / A {statistics.median(ratios):.3f} {spread}, "
        f"{args.rounds} rounds"
    )


if __name__ == "__main__":
    main()
