"""The floor of an MF+BPR epoch with Adam against `implicit`'s SGD iteration: how fast can
any Adam step be, on this CPU with one thread, before sampling and glue?

Issue 20 asks the default MF+BPR epoch (Adam) to take at most 1.5x `implicit`'s BPR
iteration (SGD). This script times, interleaved round by round over the same whole epoch
(one thread, ``--rounds`` rounds after a warm-up):

- ``implicit``: one `implicit` BPR iteration (factors 64, its own sampling and SGD);
- ``negrec default``: one default negrec epoch (``fit``: RowwiseAdam, blocked steps);
- ``floor sgd``, ``floor adam`` and ``floor rowwise``: one compiled call over the whole
  epoch's batches of 1,024 pairs, negatives drawn beforehand (not timed), that per step
  scores each pair's positive and negative, adds BPR's gradient into per-row buffers, then
  updates each touched row once: with SGD; with Adam on the touched rows only (LazyAdam:
  the least work any Adam does per step); or with dense Adam's exact trajectory as the
  default (RowwiseAdam) keeps it: the LazyAdam work plus, when a row is first read in a
  step, the steps it skipped applied in closed form by negrec's own catch-up
  (``negrec._fast.kernels._catch_up_row``, the same arithmetic as the default path). Rows
  are prefetched a few pairs ahead, as the default path's kernels do. No
  loss value, no finite checks, no threads, no Python per step: what remains is the pair's
  arithmetic and the optimizer's.

If ``floor adam`` alone is above 1.5x ``implicit``, no Adam default can reach the goal on
this machine; ``floor rowwise`` is the same bound for an Adam that keeps dense Adam's
trajectory (what the default does, and why it needs no more epochs than dense Adam);
``floor sgd`` shows what batching the same SGD costs against `implicit`'s per-sample
(Hogwild) updates.

    python benchmarks/adam_floor.py --data ../shared/data [--datasets ml-1m gowalla]

Writes ``benchmarks/out/YYYY-MM-DD-HHMM-adam-floor.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from negrec._fast.kernels import PREFETCH_AHEAD, _catch_up_row, _fetch_row, catch_up_powers

HERE = Path(__file__).resolve().parent
DIM = 64
BATCH = 1024
SGD, ADAM, ROWWISE = 0, 1, 2


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def floor_epoch(
    user_p: np.ndarray,  # float32 [n_users, d], updated in place
    item_p: np.ndarray,  # float32 [n_items, d], updated in place
    states: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],  # user m, v; item m, v
    buffers: tuple[np.ndarray, np.ndarray],  # float32 [n, d] zero: gradient per row
    touched: tuple[np.ndarray, np.ndarray],  # bool [n] False
    users: np.ndarray,  # int64 [N]: the epoch's pairs, batch after batch
    pos: np.ndarray,  # int64 [N]
    neg: np.ndarray,  # int64 [N]: one negative per pair, drawn beforehand
    bounds: np.ndarray,  # int64 [S + 1]: batch s is pairs [bounds[s], bounds[s + 1])
    kind: int,  # SGD, ADAM or ROWWISE
    lr: float,
    lasts: tuple[np.ndarray, np.ndarray],  # int64 [n]: ROWWISE: the step each row is current at
    history: tuple[np.ndarray, np.ndarray, np.ndarray],  # ROWWISE: hist_a, hist_sc2, powers
    first_step: int,  # the number of the epoch's first step (1 in the first epoch)
) -> float:
    """Every step of one epoch (module doc); returns a checksum (so nothing is elided).

    ROWWISE: ``history`` holds, for every step ``u`` of the run (index ``u - 1``),
    ``lr sqrt(c2_u) / c1_u`` and ``sqrt(c2_u)``, as RowwiseAdam records them."""
    dim = user_p.shape[1]
    user_last, item_last = lasts
    hist_a, hist_sc2, powers = history
    user_m, user_v, item_m, item_v = states
    user_buf, item_buf = buffers
    user_touched, item_touched = touched
    beta1, beta2, eps = np.float32(0.9), np.float32(0.999), np.float32(1e-8)
    one = np.float32(1.0)
    c1 = 0.9 ** (first_step - 1)  # beta1^(u - 1), beta2^(u - 1) before step u
    c2 = 0.999 ** (first_step - 1)
    rate = np.float32(lr)
    for s in range(bounds.shape[0] - 1):
        lo, hi = bounds[s], bounds[s + 1]
        scale = np.float32(1.0 / (hi - lo))
        step_no = first_step + s  # this step's number u (1-based, as in Adam's c1_u)
        for t in range(lo, hi):  # scores and BPR's gradient into the row buffers
            if t + PREFETCH_AHEAD < hi:  # random rows miss the cache: fetch them ahead
                ahead = t + PREFETCH_AHEAD
                for table, row in ((0, users[ahead]), (1, pos[ahead]), (1, neg[ahead])):
                    _fetch_row(user_p if table == 0 else item_p, row)
                    _fetch_row(user_buf if table == 0 else item_buf, row)
                    last = user_last if table == 0 else item_last
                    if kind == ROWWISE and last[row] < step_no - 1:
                        _fetch_row(user_m if table == 0 else item_m, row)
                        _fetch_row(user_v if table == 0 else item_v, row)
            if kind == ROWWISE:  # a row's first read this step: its skipped steps first
                for table, row in ((0, users[t]), (1, pos[t]), (1, neg[t])):
                    last = user_last if table == 0 else item_last
                    if last[row] < step_no - 1:
                        param = user_p if table == 0 else item_p
                        m_all = user_m if table == 0 else item_m
                        v_all = user_v if table == 0 else item_v
                        _catch_up_row(
                            param[row], m_all[row], v_all[row], last[row], step_no - 1,
                            hist_a, hist_sc2, 0, powers, 0.9, 0.999, 1e-8,
                        )  # fmt: skip
                        last[row] = step_no - 1
            p, qp, qn = user_p[users[t]], item_p[pos[t]], item_p[neg[t]]
            x = np.float32(0.0)
            for j in range(dim):
                x += p[j] * (qn[j] - qp[j])  # s- - s+
            g = scale / (one + np.exp(-x))  # d softplus(s- - s+) / d s-, batch mean
            gp, gpos, gneg = user_buf[users[t]], item_buf[pos[t]], item_buf[neg[t]]
            for j in range(dim):
                gp[j] += g * (qn[j] - qp[j])
                gpos[j] -= g * p[j]
                gneg[j] += g * p[j]
        c1 *= 0.9
        c2 *= 0.999
        step = np.float32(lr / (1.0 - c1))
        inv_c2 = np.float32(1.0 / (1.0 - c2))
        for table, rows in ((0, users), (1, pos), (1, neg)):  # each touched row once
            param = user_p if table == 0 else item_p
            buf = user_buf if table == 0 else item_buf
            m_all = user_m if table == 0 else item_m
            v_all = user_v if table == 0 else item_v
            flags = user_touched if table == 0 else item_touched
            for t in range(lo, hi):
                if kind != SGD and t + PREFETCH_AHEAD < hi:  # (SGD: p and buffer still cached)
                    _fetch_row(m_all, rows[t + PREFETCH_AHEAD])
                    _fetch_row(v_all, rows[t + PREFETCH_AHEAD])
                row = rows[t]
                if flags[row]:  # (a row already updated this step, or the other list's)
                    continue
                flags[row] = True
                w, gr = param[row], buf[row]
                if kind == SGD:
                    for j in range(dim):
                        w[j] -= rate * gr[j]
                        gr[j] = 0.0
                else:
                    if kind == ROWWISE:
                        (user_last if table == 0 else item_last)[row] = step_no
                    m, v = m_all[row], v_all[row]
                    for j in range(dim):
                        mj = beta1 * m[j] + (one - beta1) * gr[j]
                        vj = beta2 * v[j] + (one - beta2) * gr[j] * gr[j]
                        m[j], v[j] = mj, vj
                        w[j] -= step * mj / (np.sqrt(vj * inv_c2) + eps)
                        gr[j] = 0.0
        for t in range(lo, hi):  # the flags back to False for the next step
            user_touched[users[t]] = False
            item_touched[pos[t]] = False
            item_touched[neg[t]] = False
    return float(user_p[0, 0] + item_p[0, 0])


class Floor:
    """One optimizer's tables and state, and the epoch's pairs (negatives drawn once)."""

    def __init__(self, split: Any, kind: int, lr: float):
        rng = np.random.default_rng(0)
        self.kind, self.lr = kind, lr
        self.user = (rng.standard_normal((split.n_users, DIM)) * 0.1).astype(np.float32)
        self.item = (rng.standard_normal((split.n_items, DIM)) * 0.1).astype(np.float32)
        self.states = (
            np.zeros_like(self.user), np.zeros_like(self.user),
            np.zeros_like(self.item), np.zeros_like(self.item),
        )  # fmt: skip
        self.buffers = (np.zeros_like(self.user), np.zeros_like(self.item))
        self.touched = (np.zeros(split.n_users, np.bool_), np.zeros(split.n_items, np.bool_))
        self.lasts = (np.zeros(split.n_users, np.int64), np.zeros(split.n_items, np.int64))
        self.steps_done = 0

    def history(self, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RowwiseAdam's per-step scalars for steps 1..``steps`` (module doc), float64."""
        u = np.arange(1, steps + 1, dtype=np.float64)
        root = np.sqrt(1.0 - 0.999**u)
        return self.lr * root / (1.0 - 0.9**u), root, catch_up_powers(0.9, 0.999)

    def epoch(self, pairs: tuple[np.ndarray, ...]) -> float:
        n_steps = pairs[-1].shape[0] - 1
        history = self.history(self.steps_done + n_steps)  # (not timed; rebuilt each epoch)
        tick = time.perf_counter()
        floor_epoch(
            self.user, self.item, self.states, self.buffers, self.touched, *pairs,
            self.kind, self.lr, self.lasts, history, self.steps_done + 1,
        )  # fmt: skip
        seconds = time.perf_counter() - tick
        self.steps_done += n_steps
        return seconds


def epoch_pairs(split: Any, seed: int) -> tuple[np.ndarray, ...]:
    """One epoch's shuffled batches of 1,024 pairs with a uniform negative each (the
    default sampler, training positives excluded), flattened: users, pos, neg, bounds."""
    import torch

    from negrec.models import MF, ModelConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler

    model = MF(ModelConfig(dim=DIM), split.train, torch.Generator().manual_seed(0))
    sampler = UniformSampler(UniformConfig(k=1), split.train)
    generator = torch.Generator().manual_seed(seed)
    users, pos, neg, bounds = [], [], [], [0]
    for batch in model.make_batches(split.train, BATCH, torch.device("cpu")).epoch(generator):
        ids = sampler.sample(batch.users, batch.pos, 1, generator=generator).ids
        assert ids is not None
        users.append(batch.users.numpy())
        pos.append(batch.pos.numpy())
        neg.append(ids[:, 0].numpy())
        bounds.append(bounds[-1] + len(batch.users))
    flat = [np.ascontiguousarray(np.concatenate(a), dtype=np.int64) for a in (users, pos, neg)]
    return (*flat, np.asarray(bounds, dtype=np.int64))


def cpu_model() -> str:
    """The CPU's model name (the ratios differ between the AMD and Intel hosts seen)."""
    for line in (
        Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    ):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def dataset_row(args: argparse.Namespace, name: str) -> str:
    """The table row of one dataset: every side timed in each of the interleaved rounds."""
    from suite import implicit_iteration, implicit_matrix, load, negrec_rounds

    split = load(args.data, name)
    matrix = implicit_matrix(split)
    pairs = epoch_pairs(split, 0)
    floors = {
        "floor sgd": Floor(split, SGD, 10.0),
        "floor adam": Floor(split, ADAM, 1e-3),
        "floor rowwise": Floor(split, ROWWISE, 1e-3),
    }
    times: dict[str, list[float]] = {"implicit": [], **{key: [] for key in floors}}

    def between(epoch: int) -> None:  # the other sides of round ``epoch``
        times["implicit"].append(implicit_iteration(matrix, 1, epoch))
        for key, floor in floors.items():
            times[key].append(floor.epoch(pairs))

    times["negrec default"] = negrec_rounds(split, args.rounds, between)
    kept = {key: values[1:] for key, values in times.items()}  # warm-up round dropped

    def ratio(key: str) -> str:
        per_round = [a / b for a, b in zip(kept[key], kept["implicit"], strict=True)]
        return f"{statistics.median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f})"

    med = {key: statistics.median(values) for key, values in kept.items()}
    return (
        f"| {name} | {med['implicit']:.3f} s | {med['negrec default']:.3f} s | "
        f"{med['floor sgd']:.3f} s | {med['floor adam']:.3f} s | {med['floor rowwise']:.3f} s | "
        f"{ratio('negrec default')} | {ratio('floor sgd')} | {ratio('floor adam')} | "
        f"{ratio('floor rowwise')} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=["ml-1m", "gowalla"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from suite import set_threads

    set_threads(1)
    load_avg = os.getloadavg()
    lines = [
        f"# MF+BPR with Adam against `implicit`: the floor "
        f"({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `python benchmarks/adam_floor.py --datasets {' '.join(args.datasets)} "
        f"--rounds {args.rounds}`; one thread each; {platform.machine()}, "
        f"{cpu_model()}; load average at start {load_avg[0]:.2f}. "
        f"Seconds per whole epoch, median of {args.rounds} interleaved rounds after a "
        "warm-up; ratios: median (min-max) of the per-round ratios to `implicit`.",
        "",
        "| data | implicit | negrec default | floor sgd | floor adam | floor rowwise "
        "| default / implicit | floor sgd / implicit | floor adam / implicit "
        "| floor rowwise / implicit |",
        "|---|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for name in args.datasets:
        lines.append(dataset_row(args, name))
        print(lines[-1], flush=True)
    text = "\n".join([*lines, ""])
    print(text)
    if not args.no_write:
        target = HERE / "out" / f"{dt.datetime.now(dt.UTC):%Y-%m-%d-%H%M}-adam-floor.md"
        target.write_text(text)
        print(f"written: {target}")


if __name__ == "__main__":
    main()
