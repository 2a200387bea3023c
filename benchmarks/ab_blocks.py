"""A/B of the compiled MF+BPR block (``block_one_thread``) of two source trees, replayed.

Whole-epoch A/Bs (``ab_inprocess.py``) carry the sampler, the Python loop and the host's
noise (on the 2026-12-05 Intel host a control run, the same tree on both sides, read
0.75-1.36x per round). This script times only the compiled blocks: it trains ``--warm``
epochs of the default path (RowwiseAdam, one thread; ``--train`` for others), records
every block of the next epoch (a deep copy of each block's arguments: tables, moments,
row marks, the block's batches and corrections), then replays that epoch's blocks in
order from the recorded start, once with the old tree's ``block_one_thread`` and once
with the working tree's, alternating round by round (A B, then B A, ...). Both sides start
every round from the same state and see the same batches, so they do the same work; the
script says whether both ended with the same tables (``same bits``).

Both sides are renamed copies compiled afresh in a temporary folder: in control runs the
installed package's kernels, loaded from a ``__pycache__`` grown over many versions, ran
~8% slower than a fresh copy of the same code (1.07-1.10x; 0.99-1.00x once that cache was
cleared). Time is the thread's CPU time (``time.thread_time``), not wall time.

    python benchmarks/ab_blocks.py /tmp/old/src --dataset ml-1m --rounds 16

Old tree: ``git archive REV src | tar -x -C /tmp/old``; a control: the working tree's
``src`` as the old one. Ratio: median (min-max) of the per-round B / A seconds of the
epoch's blocks, the first round dropped.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from ab_inprocess import ab_summary, renamed_copy

HERE = Path(__file__).resolve().parent
#: positions in block_one_thread's arguments of the state a block changes and the next one
#: reads: user table, item table (p, m, v, buffer, touched), user marks, item marks
STATE = (2, 3, 4, 5)


def record_epoch(args: argparse.Namespace) -> list[tuple[Any, ...]]:
    """Deep copies of the arguments of every block of epoch ``args.warm + 1`` (the suite's
    MF+BPR run, :func:`suite.negrec_rounds`, with ``args.warm`` rounds after its first)."""
    from suite import load, negrec_rounds

    from negrec._fast import fused

    recorded: list[tuple[Any, ...]] = []
    recording = [False]
    original = fused.run_block

    def spy(chunks: int, *block: Any) -> int:
        if recording[0]:
            recorded.append(copy.deepcopy(block))
        return original(chunks, *block)

    def between(epoch: int) -> None:  # (epochs count from 1)
        recording[0] = epoch == args.warm

    fused.run_block = spy
    try:
        negrec_rounds(load(args.data, args.dataset), args.warm, between, **json.loads(args.train))
    finally:
        fused.run_block = original
    if not recorded:
        raise SystemExit("no block ran: the path chosen does not use blocked steps")
    return recorded


def replay(function: Any, blocks: list[tuple[Any, ...]]) -> tuple[float, list[np.ndarray]]:
    """Seconds of ``function`` over the blocks in order, from the first block's state; the
    final tables."""
    state = copy.deepcopy([blocks[0][at] for at in STATE])
    elapsed = 0.0
    for block in blocks:
        arguments = list(block)
        for at, value in zip(STATE, state, strict=True):
            arguments[at] = value
        arguments[-2] = arguments[-2].copy()  # row_loss, and its bits view
        arguments[-1] = arguments[-2].view(np.int64)
        tick = time.thread_time()
        function(*arguments)
        elapsed += time.thread_time() - tick
    return elapsed, [state[0][0], state[1][0], state[0][1], state[1][1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the old tree's src folder (A)")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--warm", type=int, default=3, help="epochs trained before recording")
    parser.add_argument("--train", default="{}", help="TrainConfig fields as JSON")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        # both sides as fresh renamed copies: the installed package's cached kernels ran
        # ~8% slower than a fresh copy of the same code in control runs (code placement)
        renamed_copy(args.old, Path(folder), "negrec_old")
        renamed_copy(HERE.parent / "src", Path(folder), "negrec_new")
        sys.path.insert(0, folder)
        from suite import set_threads

        set_threads(1)
        blocks = record_epoch(args)
        old = importlib.import_module("negrec_old._fast.blocked").block_one_thread
        new = importlib.import_module("negrec_new._fast.blocked").block_one_thread
        seconds: tuple[list[float], list[float]] = ([], [])
        finals: list[list[np.ndarray]] = [[], []]
        for round_ in range(1 + args.rounds):
            order = (0, 1) if round_ % 2 else (1, 0)  # A B, then B A: neither always second
            for side in order:
                elapsed, finals[side] = replay((old, new)[side], blocks)
                seconds[side].append(elapsed)
    gap = max(float(np.abs(a - b).max()) for a, b in zip(*finals, strict=True))
    tables = "same bits" if gap == 0 else f"differ by up to {gap:.3g} (p and m)"
    print(
        f"{args.dataset} blocks of epoch {args.warm + 1} ({len(blocks)} blocks) {args.train}: "
        f"{ab_summary(seconds, 4)}; final tables: {tables}"
    )


if __name__ == "__main__":
    main()
