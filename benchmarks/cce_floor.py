"""The floor of an MF+CCE epoch with K = 100 negatives against K = 1: the work the epoch
must do per positive, counted, and the compiled pieces that do it, timed over whole epochs.

Per positive, K negatives mean 1 + K scores (a d-dim dot product each), 1 + K item-row
gradients and 1 + K terms of the user-row gradient (a d-dim multiply-add each), and K draws;
per step, the Adam update of every distinct row the batch touched. This script runs, for
K = 1 and K = 100 alternately (same batches, one thread, ``--rounds`` rounds after a
warm-up), each piece of the default fused step on its own over one whole epoch:

- ``draw``: the uniform sampler's ``sample`` (K negatives per positive);
- ``scores``: :func:`negrec._fast.kernels.gather_dot_forward` over the [B, 1 + K] ids;
- ``loss grad``: CCE's value and gradient over the [B, 1 + K] scores;
- ``row step``: :func:`negrec._fast.owned.mf_row_step` (row gradients + LazyAdam update of
  the touched rows: the default RowwiseAdam adds its catch-up on top);
- ``epoch``: for reference, one default training epoch of MF+CCE (``fit``: RowwiseAdam,
  fused step) at the same K, in the same round;
- ``arithmetic``: per batch row, the 1 + K dot products, then the two gradient
  multiply-adds per pair into [n, d] buffers (no update, no sampler, no loss): what no
  exact step can avoid, in a plain loop order (a local accumulator for the user row).

    python benchmarks/cce_floor.py --data ../shared/data [--datasets ml-1m gowalla]

Writes ``benchmarks/out/YYYY-MM-DD-HHMM-cce-floor.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

HERE = Path(__file__).resolve().parent
DIM = 64
BATCH = 1024


@njit(cache=True, nogil=True, fastmath=True)
def arithmetic_pass(
    user_table: np.ndarray,  # float32 [n_users, d]
    item_table: np.ndarray,  # float32 [n_items, d]
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]
    user_buf: np.ndarray,  # float32 [n_users, d] += sum_w g_w q_w
    item_buf: np.ndarray,  # float32 [n_items, d] += g_w p
) -> float:
    """Per batch row: the W scores ``s_w = <p, q_w>``, a stand-in gradient ``g_w = 1e-6 s_w``
    (the loss needs all W scores first), then ``gp += sum_w g_w q_w`` (in a local
    accumulator) and ``gq_w += g_w p``: 3d multiply-adds per pair, the pair's irreducible
    arithmetic, with each loop on its own so that it vectorises."""
    n_rows, width = items.shape
    dim = user_table.shape[1]
    scores = np.empty(width, np.float32)
    acc = np.empty(dim, np.float32)
    total = 0.0
    for b in range(n_rows):
        p = user_table[users[b]]
        for w in range(width):
            q = item_table[items[b, w]]
            s = np.float32(0.0)
            for j in range(dim):
                s += p[j] * q[j]
            scores[w] = np.float32(1e-6) * s
        for j in range(dim):
            acc[j] = 0.0
        for w in range(width):
            q = item_table[items[b, w]]
            g = scores[w]
            for j in range(dim):
                acc[j] += g * q[j]
            gq = item_buf[items[b, w]]
            for j in range(dim):
                gq[j] += g * p[j]
        gp = user_buf[users[b]]
        for j in range(dim):
            gp[j] += acc[j]
        total += scores[0]
    return total


class Pieces:
    """One K's model tables, sampler, LazyAdam-style row state and per-piece timers."""

    def __init__(self, split: Any, k: int):
        import torch

        from negrec.losses import Loss, LossConfig
        from negrec.samplers.uniform import UniformConfig, UniformSampler

        rng = np.random.default_rng(0)
        self.k = k
        self.user = (rng.standard_normal((split.n_users, DIM)) * 0.1).astype(np.float32)
        self.item = (rng.standard_normal((split.n_items, DIM)) * 0.1).astype(np.float32)
        self.states = [
            (np.zeros_like(t), np.zeros_like(t), np.zeros_like(t), np.zeros(len(t), np.bool_))
            for t in (self.user, self.item)
        ]
        self.sampler = UniformSampler(UniformConfig(k=k), split.train)
        self.loss = Loss(LossConfig(name="cce"))
        self.bufs = (np.zeros_like(self.user), np.zeros_like(self.item))
        self.torch = torch

    def epoch(self, batches: Any, seed: int) -> dict[str, float]:
        """Seconds of each piece over one whole epoch, plus counts."""
        from negrec._fast.kernels import gather_dot_forward
        from negrec._fast.owned import mf_row_step

        torch = self.torch
        gen = torch.Generator().manual_seed(seed)
        times = dict.fromkeys(("draw", "scores", "loss grad", "row step", "arithmetic"), 0.0)
        distinct_items = 0
        steps = 0
        for batch in batches.epoch(gen):
            tick = time.perf_counter()
            negatives = self.sampler.sample(batch.users, batch.pos, self.k, generator=gen)
            times["draw"] += time.perf_counter() - tick
            assert negatives.ids is not None
            items = torch.cat([batch.pos.unsqueeze(1), negatives.ids], dim=1).numpy()
            users = batch.users.numpy()
            scores = np.empty(items.shape, np.float32)
            tick = time.perf_counter()
            gather_dot_forward(self.user, self.item, items, scores, users)
            times["scores"] += time.perf_counter() - tick
            tick = time.perf_counter()
            _, grad = self.loss.value_and_grad(torch.from_numpy(scores))
            times["loss grad"] += time.perf_counter() - tick
            tick = time.perf_counter()
            mf_row_step(
                self.user, self.item, users, items, grad.numpy(), 0.0,
                self.states[0], self.states[1], True, 1e-3, 0.9, 0.999, 1e-8, 0.0,
                (0.1, 0.001), (0.1, 0.001),
            )  # fmt: skip
            times["row step"] += time.perf_counter() - tick
            tick = time.perf_counter()
            arithmetic_pass(self.user, self.item, users, items, *self.bufs)
            times["arithmetic"] += time.perf_counter() - tick
            distinct_items += len(np.unique(items))
            steps += 1
        for buf in self.bufs:
            buf.fill(0.0)
        times["distinct item rows per step"] = distinct_items / steps
        times["steps"] = steps
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=["ml-1m", "gowalla"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import torch
    from suite import load, set_threads

    from negrec.models import MF, ModelConfig
    from negrec.train import TrainConfig, fit

    set_threads(1)
    load_avg = os.getloadavg()
    lines = [
        f"# CCE K = 100 vs K = 1: the floor ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        "Command: `python benchmarks/cce_floor.py "
        f"--datasets {' '.join(args.datasets)} --rounds {args.rounds}`; one thread; load "
        f"average at start {load_avg[0]:.2f}. Seconds per whole epoch, median of "
        f"{args.rounds} rounds (K = 1 and K = 100 alternating) after a warm-up.",
        "",
        "| data | K | steps | distinct item rows / step | epoch | draw | scores | loss grad "
        "| row step | arithmetic floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    floors: list[str] = []
    for name in args.datasets:
        split = load(args.data, name)
        model = MF(ModelConfig(dim=DIM), split.train, torch.Generator().manual_seed(0))
        batches = model.make_batches(split.train, BATCH, torch.device("cpu"))
        pieces = {k: Pieces(split, k) for k in (1, 100)}
        models = {
            k: MF(ModelConfig(dim=DIM), split.train, torch.Generator().manual_seed(0))
            for k in pieces
        }
        config = TrainConfig(epochs=1, batch_size=BATCH, eval_every=10**6)
        runs: dict[int, list[dict[str, float]]] = {1: [], 100: []}
        for round_ in range(args.rounds + 1):
            for k, piece in pieces.items():
                runs[k].append(piece.epoch(batches, round_))
                state = fit(models[k], piece.sampler, piece.loss, split, config)
                runs[k][-1]["epoch"] = state.history[0]["train_seconds"]
        for k in (1, 100):
            kept = runs[k][1:]

            def med(key: str, kept: list[dict[str, float]] = kept) -> float:
                return statistics.median(r[key] for r in kept)

            lines.append(
                f"| {name} | {k} | {int(med('steps'))} | "
                f"{med('distinct item rows per step'):.0f} | {med('epoch'):.3f} | "
                f"{med('draw'):.3f} | "
                f"{med('scores'):.3f} | {med('loss grad'):.3f} | {med('row step'):.3f} | "
                f"{med('arithmetic'):.3f} |"
            )
            print(lines[-1], flush=True)
        ratios = [
            hundred["arithmetic"] / one["epoch"]
            for one, hundred in zip(runs[1][1:], runs[100][1:], strict=True)
        ]
        floors.append(
            f"- {name}: the arithmetic floor of K = 100 / the default K = 1 epoch, per round: "
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        )
    lines += ["", *floors]
    text = "\n".join([*lines, ""])
    print(text)
    if not args.no_write:
        target = HERE / "out" / f"{dt.datetime.now(dt.UTC):%Y-%m-%d-%H%M}-cce-floor.md"
        target.write_text(text)
        print(f"written: {target}")


if __name__ == "__main__":
    main()
