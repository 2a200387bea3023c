"""Scale benchmark (issue 7): 1M users x 200k items x 20M interactions on one CPU core.

Generates a seeded synthetic dataset of that size (power-law item popularity, log-normal
user activity), builds the CSR ``Interactions``, a random per-user hold-out split, the
uniform sampler's complement index, trains ONE MF epoch (dim 64, uniform K = 10, BPR) with
``negrec.train.fit`` and evaluates a sample of test users with ``negrec.evaluation``. Records
wall time and peak resident memory of every phase.

Usage:  python benchmarks/scale.py [--scale 1.0] [--threads 1] [--optimizers lazy_adam adam]
        [--batch-size 8192] [--eval-users 10000] [--max-batches N] [--out FILE.json]

``--scale 0.01`` runs a miniature (10k users, 2k items, 200k interactions) in seconds.
Peak memory per phase is the kernel's exact high-water mark of resident memory (``VmHWM``
after resetting it through ``/proc/self/clear_refs``), so it includes torch's and numba's
allocations, which ``tracemalloc`` would miss.

The generator lives here rather than in ``negrec.data.synthetic``: that one scores every
(user, item) pair with a dense [n_users, n_items] float64 matrix (plus Gumbel keys and an
argsort of the same shape), ~1.6 TB each at this size. This one draws each user's items
i.i.d. from the popularity law and redraws the few repeated (user, item) pairs, so it costs
O(nnz log nnz) time and a few nnz-sized arrays of memory. It plants no latent structure:
it measures cost, not accuracy.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path


def _threads_from_argv() -> int:
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--threads", type=int, default=1)
    return early.parse_known_args()[0].threads


# one thread unless asked otherwise; set before torch and numba start their thread pools
os.environ["OMP_NUM_THREADS"] = os.environ["NUMBA_NUM_THREADS"] = str(_threads_from_argv())

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from negrec.data.batches import PairBatches  # noqa: E402
from negrec.data.interactions import Interactions  # noqa: E402
from negrec.data.splits import random_split  # noqa: E402
from negrec.evaluation import EvalConfig, evaluate  # noqa: E402
from negrec.losses import Loss, LossConfig  # noqa: E402
from negrec.models import MF, ModelConfig  # noqa: E402
from negrec.samplers.uniform import UniformConfig, UniformSampler  # noqa: E402
from negrec.train import TrainConfig, fit  # noqa: E402

GIB = 1024**3


def _git_state() -> dict:
    """HEAD and the locally modified files under src/ at start (the tree is shared)."""

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(
                ["git", *cmd], capture_output=True, text=True, check=False, timeout=30
            ).stdout.strip()
        except OSError:
            return ""

    return {"head": git("rev-parse", "HEAD"), "modified_src": git("status", "--short", "src")}


# ---------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the kernel's resident high-water mark (VmHWM); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Phases:
    """Wall time and peak RSS of named phases, plus the peak over the whole run."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.can_reset = _reset_peak()
        self.run_peak_kib = 0

    @contextmanager
    def phase(self, name: str, **extra):
        gc.collect()
        _reset_peak()
        rss_before = _status_kib("VmRSS")
        start = time.perf_counter()
        record = {"phase": name, **extra}
        yield record
        seconds = time.perf_counter() - start
        peak = _status_kib("VmHWM")
        self.run_peak_kib = max(self.run_peak_kib, peak)
        record.update(
            seconds=round(seconds, 3),
            rss_before_gib=round(rss_before / 1024**2, 3),
            peak_rss_gib=round(peak / 1024**2, 3),
            rss_after_gib=round(_status_kib("VmRSS") / 1024**2, 3),
            loadavg_1m=round(os.getloadavg()[0], 2),  # the machine is shared: context
        )
        self.records.append(record)
        print(
            f"[{name}] {seconds:9.2f} s  peak RSS {peak / 1024**2:6.2f} GiB  "
            f"(before {rss_before / 1024**2:.2f}, after {record['rss_after_gib']:.2f})  "
            f"load {record['loadavg_1m']}" + "".join(f"  {k}={v}" for k, v in extra.items()),
            flush=True,
        )


# ---------------------------------------------------------------------------- data
def generate(
    n_users: int,
    n_items: int,
    nnz: int,
    *,
    popularity_exponent: float = 0.7,
    activity_sigma: float = 0.8,
    min_degree: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Unique (user, item) pairs [nnz] with Zipf item popularity (random item order) and
    log-normal user activity; returns (users, items, redraw rounds)."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, activity_sigma, size=n_users)
    extra = rng.multinomial(nnz - min_degree * n_users, activity / activity.sum())
    degrees = np.minimum(min_degree + extra, n_items // 2)
    users = np.repeat(np.arange(n_users, dtype=np.int64), degrees)

    cdf = np.cumsum((np.arange(n_items) + 1.0) ** -popularity_exponent)
    cdf /= cdf[-1]
    item_of_rank = rng.permutation(n_items).astype(np.int64)

    def draw(size: int) -> np.ndarray:
        rank = np.searchsorted(cdf, rng.random(size), side="right")
        return item_of_rank[np.minimum(rank, n_items - 1)]

    items = draw(users.size)
    for rounds in range(1, 1000):  # redraw repeated pairs until every pair is unique
        keys = users * n_items + items
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        del keys
        repeated = order[1:][sorted_keys[1:] == sorted_keys[:-1]]
        del order, sorted_keys
        if repeated.size == 0:
            return users, items, rounds
        items[repeated] = draw(repeated.size)
    raise RuntimeError("could not make the pairs unique")


# ---------------------------------------------------------------------------- training
class ProgressBatches:
    """PairBatches with a tqdm bar over the epoch's batches; stops after ``max_batches``."""

    def __init__(self, inner: PairBatches, max_batches: int | None):
        self.inner = inner
        self.max_batches = max_batches
        self.seen = 0

    def __len__(self) -> int:
        return len(self.inner)

    def epoch(self, generator: torch.Generator):
        total = len(self.inner)
        if self.max_batches is not None:
            total = min(total, self.max_batches)
        bar = tqdm(total=total, desc="epoch", unit="batch", mininterval=10.0, file=sys.stderr)
        for i, batch in enumerate(self.inner.epoch(generator)):
            if i >= total:
                break
            yield batch
            self.seen += 1
            bar.update(1)
        bar.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every size")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--interactions", type=int, default=20_000_000)
    parser.add_argument("--popularity-exponent", type=float, default=0.7)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--valid-fraction", type=float, default=0.01)
    parser.add_argument("--k", type=int, default=10, help="uniform negatives per positive")
    parser.add_argument("--loss", default="bpr")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--optimizers",
        nargs="+",
        default=["lazy_adam"],
        choices=["lazy_adam", "adam"],
        help="one epoch on a fresh model for each",
    )
    parser.add_argument(
        "--max-batches", type=int, default=None, help="stop each epoch early (extrapolate)"
    )
    parser.add_argument("--eval-users", type=int, default=10_000)
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1, help="torch and numba threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    n_users = max(1, round(args.users * args.scale))
    n_items = max(2, round(args.items * args.scale))
    nnz = max(n_users * 2, round(args.interactions * args.scale))
    device = torch.device("cpu")
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "argv": sys.argv,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "git": _git_state(),
    }
    print(f"# scale benchmark: {n_users:,} users x {n_items:,} items x {nnz:,} interactions")
    print("# " + json.dumps(env), flush=True)
    phases = Phases()
    if not phases.can_reset:
        print("# warning: cannot reset VmHWM; per-phase peaks are peaks so far", flush=True)

    with phases.phase("generate") as rec:
        users, items, rounds = generate(
            n_users,
            n_items,
            nnz,
            popularity_exponent=args.popularity_exponent,
            seed=args.seed,
        )
        rec["redraw_rounds"] = rounds
    with phases.phase("csr_build") as rec:
        data = Interactions.from_arrays(users, items, n_users=n_users, n_items=n_items)
        del users, items
        rec["nnz"] = data.nnz
        degrees = data.item_degrees
        rec["top_item_share"] = round(float(degrees.max()) / data.nnz, 5)
        rec["max_user_degree"] = int(data.user_degrees.max())
    with phases.phase("split") as rec:
        split = random_split(data, args.test_fraction, args.valid_fraction, args.seed)
        del data
        rec.update(train=split.train.nnz, valid=split.valid.nnz, test=split.test.nnz)
    with phases.phase("sampler_index"):
        sampler = UniformSampler(UniformConfig(k=args.k), split.train)
        sampler.index(device)

    test_users = np.flatnonzero(split.test.user_degrees > 0)
    rng = np.random.default_rng(args.seed + 1)
    eval_users = np.sort(
        rng.choice(test_users, size=min(args.eval_users, test_users.size), replace=False)
    )
    loss = Loss(LossConfig(name=args.loss))
    results: dict = {"env": env, "sizes": {"users": n_users, "items": n_items, "nnz": nnz}}
    for name in args.optimizers:
        with phases.phase(f"model_init[{name}]"):
            model = MF(
                ModelConfig(dim=args.dim), split.train, torch.Generator().manual_seed(args.seed)
            )
        batches = ProgressBatches(
            PairBatches(split.train, args.batch_size, device), args.max_batches
        )
        model.make_batches = lambda train, size, dev, b=batches: b  # fit() uses it
        config = TrainConfig(
            epochs=1, batch_size=args.batch_size, lr=args.lr, optimizer=name, seed=args.seed
        )
        with phases.phase(f"epoch[{name}]") as rec:
            state = fit(model, sampler, loss, split, config)
            rec["batches"] = batches.seen
            rec["of_batches"] = len(batches)
            rec["pairs"] = min(batches.seen * args.batch_size, split.train.nnz)
            rec["loss_sum_over_len"] = round(state.history[-1]["loss"], 5)
        rec["pairs_per_s"] = round(rec["pairs"] / rec["seconds"])
        rec["full_epoch_s_extrapolated"] = round(
            rec["seconds"] * split.train.nnz / max(rec["pairs"], 1), 1
        )
        del state
        eval_config = EvalConfig(ks=[10, 20], auc=True, batch_size=args.eval_batch_size)
        with phases.phase(f"eval[{name}]", users=int(eval_users.size)) as rec:
            result = evaluate(model, split, "test", eval_config, users=eval_users)
            rec["metrics"] = {k: round(v, 5) for k, v in result.summary.items()}
        rec["users_per_s"] = round(eval_users.size / rec["seconds"], 1)
        print("  " + json.dumps(rec["metrics"]), flush=True)
        del model, result, batches
        gc.collect()

    results["phases"] = phases.records
    results["peak_rss_gib"] = round(phases.run_peak_kib / 1024**2, 3)
    results["ru_maxrss_gib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3
    )  # reset by clear_refs too on Linux: a lower bound only
    results["under_24_gib"] = phases.run_peak_kib * 1024 < 24 * GIB
    print(
        f"# peak RSS over all phases: {results['peak_rss_gib']:.2f} GiB "
        f"({'under' if results['under_24_gib'] else 'OVER'} 24 GiB)",
        flush=True,
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
