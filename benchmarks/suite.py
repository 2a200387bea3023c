"""The speed suite: negrec against `implicit`, same work only.

Every comparison runs the two sides in one process, interleaved (A B A B ...) over at least
five rounds after a warm-up round, and reports the median of the per-round ratios with
their min-max: on a shared machine whose load drifts by 2x within minutes, separate runs
are not comparable. Whole epochs only, never extrapolated from a few batches. Each run
writes a dated markdown file under ``benchmarks/out/`` (``YYYY-MM-DD-HHMM-suite-<part>.md``);
``benchmarks/RESULTS.md`` keeps only the current figures.

    python benchmarks/suite.py bpr --data ../shared/data [--threads 1] [--rounds 5]
    python benchmarks/suite.py threads --data ../shared/data
    python benchmarks/suite.py cce --data ../shared/data
    python benchmarks/suite.py memory --data ../shared/data
    python benchmarks/suite.py recbole --data ../shared/data
    python benchmarks/suite.py recbole-memory --data ../shared/data

Parts:

- ``bpr``: MF+BPR, d = 64, one uniform negative per positive, batch 1024, one epoch = one
  pass over the training pairs, against `implicit`'s BPR (its own SGD, factors 64, one
  negative per positive, one iteration = one pass), both at ``--threads``. negrec paths:
  ``adam`` (the default: RowwiseAdam in the fused MF step), ``adam-dense`` (torch's fused
  dense Adam through autograd, ``train.fused = false``: the default before RowwiseAdam),
  ``lazy_adam``, ``sgd``. `implicit` uses SGD, so the same-optimizer pair is ``sgd``;
  ``adam`` is what a user gets by default.
- ``threads``: negrec's default MF+BPR epoch and `implicit`'s iteration at 1 and N threads
  (``--threads``, at least 2: default 2), alternating thread counts round by round in one
  process; negrec's fused step splits its rows over numba's threads (same bits as one).
- ``cce``: the default path's MF+CCE epoch with K = 100 negatives against K = 1,
  alternating.
- ``memory``: peak RSS (``/usr/bin/time -v``, maximum resident set size) of a Gowalla MF+BPR
  run, ``--epochs`` epochs plus one full evaluation, one child process per optimizer path;
  the child also prints its peak RSS after each epoch, so growth after epoch 1 shows.
- ``recbole`` and ``recbole-memory``: against RecBole 1.2.1 (its own venv, a warm worker
  process), the same work: MF+BPR and LightGCN epochs, full-ranking evaluation at an equal
  batch and at each library's default, and peak RSS; see ``benchmarks/suite_recbole.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PATHS = {  # name -> TrainConfig overrides
    "adam": {},
    "adam-dense": {"fused": False},
    "lazy_adam": {"optimizer": "lazy_adam"},
    "sgd": {"optimizer": "sgd", "lr": 10.0},
}


def set_threads(threads: int) -> None:
    """The same thread count for torch's intra-op pool and numba's kernels."""
    import numba
    import torch

    # negrec picks numba's threading layer (workqueue) on import; set_num_threads starts
    # numba's pool, which keeps the layer it started with (OpenMP had been measured here)
    import negrec._fast.kernels  # noqa: F401

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def load(root: Path, name: str) -> Any:
    """The LightGCN-format split of ``name`` with 10% of train carved out for validation
    (as the presets do); training reads ``split.train``."""
    from negrec.data.prepare import prepare_presplit
    from negrec.data.splits import carve_validation

    train, test, _ = prepare_presplit(
        root / name / "train.txt", root / name / "test.txt", format="lightgcn", on_unseen="keep"
    )
    return carve_validation(train, test, 0.1, 0)


def implicit_matrix(split: Any) -> Any:
    import scipy.sparse as sp

    users, items = split.train.to_coo()
    return sp.csr_matrix(
        (np.ones(users.size, dtype=np.float32), (users, items)),
        shape=(split.n_users, split.n_items),
    )


def implicit_iteration(matrix: Any, threads: int, seed: int) -> float:
    """Seconds of one `implicit` BPR iteration (factors 64, one negative per positive)."""
    import implicit

    bpr = implicit.cpu.bpr.BayesianPersonalizedRanking(
        factors=64, iterations=1, random_state=seed, num_threads=threads
    )
    start = time.perf_counter()
    bpr.fit(matrix, show_progress=False)
    return time.perf_counter() - start


def negrec_rounds(
    split: Any,
    rounds: int,
    between: Callable[[int], None],
    *,
    loss: str = "bpr",
    k: int = 1,
    **train: Any,
) -> list[float]:
    """negrec epoch seconds of ``rounds`` epochs after a warm-up epoch; ``between(epoch)``
    runs after every epoch (outside its timing): the other side of each round."""
    import torch

    from negrec.losses import Loss, LossConfig
    from negrec.models import MF, ModelConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler
    from negrec.train import Callback, TrainConfig, fit

    class Between(Callback):
        def on_epoch_end(self, state: Any) -> None:
            between(state.epoch)

    model = MF(ModelConfig(dim=64), split.train, torch.Generator().manual_seed(0))
    sampler = UniformSampler(UniformConfig(k=k), split.train)
    config = TrainConfig(epochs=1 + rounds, batch_size=1024, eval_every=10**6, **train)
    state = fit(model, sampler, Loss(LossConfig(name=loss)), split, config, callbacks=[Between()])
    return [h["train_seconds"] for h in state.history]


# ------------------------------------------------- helpers other benchmark scripts import
# (``from suite import ...`` works there: a script's own folder is on sys.path)


def load_splits(root: Path) -> dict[str, Any]:
    """The negrec splits every comparison uses (validation carved as the presets do)."""
    from negrec.data.loaders import load, load_split
    from negrec.data.prepare import prepare, prepare_split
    from negrec.data.splits import carve_validation, random_split

    splits = {}
    for name in ("ml-1m", "gowalla"):
        table = load_split(root / name / "train.txt", root / name / "test.txt", "lightgcn")
        train, test, _ = prepare_split(table, on_unseen="keep")
        splits[name] = carve_validation(train, test, 0.1, 0)
    events, _ = prepare(load(root / "ml-100k" / "ml-100k.inter"))  # all 100k ratings
    splits["ml-100k"] = random_split(events, 0.1, 0.1, 0)  # ~ RecBole's RS 0.8/0.1/0.1
    table = load_split(root / "amazon-beauty" / "train.txt", root / "amazon-beauty" / "test.txt")
    train, test, _ = prepare_split(table, on_unseen="keep")
    splits["amazon-beauty"] = carve_validation(train, test, "last", 0)  # leave-one-out
    return splits


class FirstBatches:
    """A negrec batch factory cut to its first ``n`` batches (partial-epoch timing)."""

    def __init__(self, batches: Any, n: int):
        self.batches, self.n = batches, n

    def __len__(self) -> int:
        return min(self.n, len(self.batches))

    def epoch(self, generator: Any):
        for i, batch in enumerate(self.batches.epoch(generator)):
            if i >= self.n:
                break
            yield batch


def negrec_epochs(
    model: Any,
    sampler: Any,
    loss: str,
    split: Any,
    *,
    epochs: int,
    max_steps: int = 0,
    batch_size: int = 1024,
    l2: float = 0.0,
    optimizer: str = "adam",
) -> dict[str, Any]:
    """Per-epoch training seconds (warm-up epoch dropped), scaled to a full epoch when only
    the first ``max_steps`` batches are timed; also the batch count of a full epoch."""
    import torch

    from negrec.losses import Loss, LossConfig
    from negrec.train import TrainConfig, fit

    full = model.make_batches(split.train, batch_size, torch.device("cpu"))
    steps = len(full)
    timed = min(max_steps or steps, steps)
    if timed < steps:  # fit asks the model for its batches: hand it the cut ones
        model.make_batches = lambda *_: FirstBatches(full, timed)
    config = TrainConfig(epochs=1 + epochs, batch_size=batch_size, l2=l2, optimizer=optimizer)
    state = fit(model, sampler, Loss(LossConfig(name=loss)), split, config)
    seconds = [h["train_seconds"] * steps / timed for h in state.history]
    if "make_batches" in vars(model):
        del model.make_batches
    return {"warmup": seconds[0], "seconds": seconds[1:], "steps": steps, "timed": timed}


def ratio_line(ours: list[float], theirs: list[float]) -> str:
    """median (min-max) of the per-round ratios ours / theirs."""
    ratios = np.asarray(ours) / np.asarray(theirs)
    return f"{np.median(ratios):.2f}x ({ratios.min():.2f}-{ratios.max():.2f})"


def part_bpr(args: argparse.Namespace) -> list[str]:
    lines = [
        f"MF+BPR epoch (d = 64, K = 1, batch 1024) vs `implicit` BPR iteration, "
        f"{args.threads} thread(s) each, {args.rounds} interleaved rounds after a warm-up.",
        "",
        "| data | negrec path | negrec epoch (median) | implicit iteration (median) "
        "| per-round ratio: median (min-max) |",
        "|---|---|---:|---:|---|",
    ]
    set_threads(args.threads)
    for name in args.datasets:
        split = load(args.data, name)
        matrix = implicit_matrix(split)
        for path in args.paths:
            theirs: list[float] = []

            def peer(epoch: int, theirs: list[float] = theirs, matrix: Any = matrix) -> None:
                theirs.append(implicit_iteration(matrix, args.threads, epoch))

            ours = negrec_rounds(split, args.rounds, peer, **PATHS[path])
            ours, theirs = ours[1:], theirs[1:]  # the warm-up round (numba compiles)
            lines.append(
                f"| {name} ({len(split.train):,} pairs) | `{path}` | {np.median(ours):.3f} s "
                f"| {np.median(theirs):.3f} s | {ratio_line(ours, theirs)} |"
            )
            print(lines[-1], flush=True)
    return lines


def part_threads(args: argparse.Namespace) -> list[str]:
    """Alternate 1 and N threads epoch by epoch (negrec), and the same for `implicit`.

    negrec's default path is the fused MF step with RowwiseAdam: at N threads its row
    passes split the rows by owner over numba's N threads (the same bits as on one), the
    sampler and the loss's torch ops run as before."""
    import numba

    from negrec._fast import owned

    many = max(2, args.threads)
    available = numba.config.NUMBA_NUM_THREADS
    if available < many:
        raise SystemExit(f"threads: numba has {available} (NUMBA_NUM_THREADS), not {many}")
    set_threads(many)  # starts numba's pool (after importing negrec): its layer is known
    lines = [
        f"negrec default MF+BPR epoch (d = 64, K = 1, batch 1024; RowwiseAdam in the fused "
        f"step) and `implicit` BPR iteration at 1 and {many} threads (torch and numba "
        f"threads for negrec, `num_threads` for implicit); the thread count alternates "
        f"round by round ({args.rounds} rounds of 1 then {many}, after a warm-up). numba "
        f"threading layer `{numba.threading_layer()}` (the one running); negrec's step "
        f"splits its rows over numba's threads when a batch has >= "
        f"{owned.MF_PARALLEL_MIN_WORK} ids x d.",
        "",
        f"| data | negrec 1 thr | negrec {many} thr | negrec scaling | implicit 1 thr "
        f"| implicit {many} thr | implicit scaling | negrec / implicit at 1 thr "
        f"| negrec / implicit at {many} thr |",
        "|---|---:|---:|---|---:|---:|---|---|---|",
    ]
    for name in args.datasets:
        split = load(args.data, name)
        matrix = implicit_matrix(split)
        theirs: dict[int, list[float]] = {1: [], many: []}

        def between(
            epoch: int, theirs: dict[int, list[float]] = theirs, matrix: Any = matrix
        ) -> None:
            # epoch e ran at threads(e); time implicit at the same count, then switch
            threads = 1 if epoch % 2 else many
            theirs[threads].append(implicit_iteration(matrix, threads, epoch))
            set_threads(many if epoch % 2 else 1)

        set_threads(1)
        ours = negrec_rounds(split, 2 * args.rounds + 1, between)
        one, two = ours[2::2], ours[3::2]  # epochs 3, 5, ... at 1 thread; 4, 6, ... at N
        i_one, i_two = theirs[1][1:], theirs[many][1:]
        n = min(len(one), len(two), len(i_one), len(i_two))
        one, two, i_one, i_two = one[:n], two[:n], i_one[:n], i_two[:n]
        lines.append(
            f"| {name} | {np.median(one):.3f} s | {np.median(two):.3f} s "
            f"| {ratio_line(one, two)} | {np.median(i_one):.3f} s | {np.median(i_two):.3f} s "
            f"| {ratio_line(i_one, i_two)} | {ratio_line(one, i_one)} "
            f"| {ratio_line(two, i_two)} |"
        )
        print(lines[-1], flush=True)
    return lines


def part_cce(args: argparse.Namespace) -> list[str]:
    """CCE K = 100 vs K = 1 on the default path: one epoch of each per round."""
    import torch

    from negrec.losses import Loss, LossConfig
    from negrec.models import MF, ModelConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler
    from negrec.train import TrainConfig, fit

    set_threads(args.threads)
    lines = [
        f"MF+CCE epoch on the default path (Adam, fused step), K = 100 vs K = 1, batch 1024, "
        f"{args.threads} thread(s), {args.rounds} alternating rounds after a warm-up.",
        "",
        "| data | K = 1 epoch | K = 100 epoch | per-round ratio: median (min-max) |",
        "|---|---:|---:|---|",
    ]
    for name in args.datasets:
        split = load(args.data, name)
        runs = {}
        for k in (1, 100):
            model = MF(ModelConfig(dim=64), split.train, torch.Generator().manual_seed(0))
            sampler = UniformSampler(UniformConfig(k=k), split.train)
            runs[k] = (model, sampler)
        times: dict[int, list[float]] = {1: [], 100: []}
        for _ in range(args.rounds + 1):
            for k, (model, sampler) in runs.items():
                config = TrainConfig(epochs=1, batch_size=1024, eval_every=10**6)
                state = fit(model, sampler, Loss(LossConfig(name="cce")), split, config)
                times[k].append(state.history[0]["train_seconds"])
        one, hundred = times[1][1:], times[100][1:]
        lines.append(
            f"| {name} | {np.median(one):.3f} s | {np.median(hundred):.3f} s "
            f"| {ratio_line(hundred, one)} |"
        )
        print(lines[-1], flush=True)
    return lines


def memory_child(args: argparse.Namespace) -> None:
    """One Gowalla MF+BPR run on one path: epochs, then a full test evaluation; prints the
    peak RSS so far after each (``ru_maxrss``, KiB on Linux) as JSON lines."""
    import torch

    from negrec.evaluation import EvalConfig, evaluate
    from negrec.losses import Loss, LossConfig
    from negrec.models import MF, ModelConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler
    from negrec.train import Callback, TrainConfig, fit

    set_threads(args.threads)
    split = load(args.data, args.datasets[0])

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def rss_mb() -> float:  # resident now (/proc/self/statm: pages)
        return (
            int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGESIZE") / 2**20
        )

    print(json.dumps({"after": "load", "peak_mb": peak_mb(), "rss_mb": rss_mb()}), flush=True)

    class Peak(Callback):
        def on_epoch_end(self, state: Any) -> None:
            record = {"after": f"epoch {state.epoch}", "peak_mb": peak_mb(), "rss_mb": rss_mb()}
            print(json.dumps(record), flush=True)

    model = MF(ModelConfig(dim=64), split.train, torch.Generator().manual_seed(0))
    sampler = UniformSampler(UniformConfig(k=1), split.train)
    config = TrainConfig(epochs=args.epochs, batch_size=1024, eval_every=10**6, patience=0)
    config = TrainConfig(**{**vars(config), **PATHS[args.path]})
    fit(model, sampler, Loss(LossConfig(name="bpr")), split, config, callbacks=[Peak()])
    evaluate(model, split, "test", EvalConfig(ks=(20,)))
    print(json.dumps({"after": "evaluation", "peak_mb": peak_mb(), "rss_mb": rss_mb()}), flush=True)


def part_memory(args: argparse.Namespace) -> list[str]:
    sources = args.sources or [None]
    lines = [
        f"Peak RSS of one process: load {args.datasets[0]}, {args.epochs} MF+BPR epochs "
        "(d = 64, K = 1, batch 1024), one full test evaluation (`/usr/bin/time -v`, "
        f"maximum resident set size), {args.threads} thread(s). Per-epoch columns: the "
        "process's peak so far (`ru_maxrss`) after that epoch."
        + (f" Each path ran {args.repeat} times (one row per run)." if args.repeat > 1 else "")
        + (
            " Source trees, interleaved run by run: "
            + ", ".join(f"`{source or 'installed'}`" for source in sources)
            + "."
            if args.sources
            else ""
        ),
        "",
        "| path | "
        + ("source | " if args.sources else "")
        + "peak RSS (time -v) | after load | "
        + " | ".join(f"after epoch {e}" for e in range(1, args.epochs + 1))
        + " | after evaluation |",
        f"|---|{'---|' if args.sources else ''}---:|---:|{'---:|' * args.epochs}---:|",
    ]
    for _ in range(args.repeat):
        for path in args.paths:
            for source in sources:
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                if source is not None:  # that tree's negrec comes first on the path
                    env["PYTHONPATH"] = str(source)
                command = [
                    "/usr/bin/time", "-v", sys.executable, __file__, "memory-child",
                    "--data", str(args.data), "--datasets", args.datasets[0], "--path", path,
                    "--epochs", str(args.epochs), "--threads", str(args.threads),
                ]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
                peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
                assert peak is not None, done.stderr[-2000:]
                records = [json.loads(row) for row in done.stdout.splitlines() if row[:1] == "{"]
                cells = " | ".join(f"{r['peak_mb']:.0f} MB" for r in records)
                label = f" `{source}` |" if args.sources else ""
                lines.append(
                    f"| `{path}` |{label} **{int(peak.group(1)) / 1024:.0f} MB** | {cells} |"
                )
                print(lines[-1], flush=True)
    return lines


def header(args: argparse.Namespace, part: str) -> list[str]:
    import implicit
    import numba
    import torch

    import negrec

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=HERE,
    ).stdout.strip()
    load = os.getloadavg()
    return [
        f"# Suite, part `{part}` ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `python benchmarks/suite.py {' '.join(sys.argv[1:])}`  ",
        f"Code: negrec {negrec.__version__} at {commit}{' (uncommitted)' if dirty else ''}; "
        f"torch {torch.__version__}, numba {numba.__version__}, implicit "
        f"{implicit.__version__}, Python {platform.python_version()}  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; load average at start "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "part",
        choices=["bpr", "threads", "cce", "memory", "memory-child", "recbole", "recbole-memory"],
    )
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--paths", nargs="+", choices=sorted(PATHS), default=None)
    parser.add_argument("--path", choices=sorted(PATHS), default="adam")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(  # the memory part
        "--repeat", type=int, default=1, help="memory: runs per path (peaks vary run to run)"
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        type=Path,
        default=None,
        help="memory: source trees (folders holding negrec/) whose negrec the runs import, "
        "interleaved run by run; default: the installed negrec",
    )
    parser.add_argument(  # the recbole parts
        "--recbole-python", type=Path, default=HERE / ".venv-recbole" / "bin" / "python"
    )
    parser.add_argument("--lightgcn-datasets", nargs="*", default=["ml-100k"])
    args = parser.parse_args()
    if args.rounds < 5 and args.part != "memory-child":
        parser.error("--rounds: at least 5 interleaved rounds")
    default_data = ["gowalla"] if "memory" in args.part else ["ml-1m", "gowalla"]
    default_data = ["ml-1m"] if args.part == "recbole" else default_data
    args.datasets = args.datasets or default_data
    default_paths = {"cce": ["adam"], "recbole": ["adam", "adam-dense"], "recbole-memory": ["adam"]}
    args.paths = args.paths or default_paths.get(args.part, list(PATHS))
    if args.part == "memory-child":
        memory_child(args)
        return
    started = dt.datetime.now(dt.UTC)
    start = header(args, args.part)
    parts = {"bpr": part_bpr, "threads": part_threads, "cce": part_cce, "memory": part_memory}
    if args.part.startswith("recbole"):
        from suite_recbole import part_recbole, part_recbole_memory

        parts.update({"recbole": part_recbole, "recbole-memory": part_recbole_memory})
    body = parts[args.part](args)
    text = "\n".join([*start, *body, ""])
    print(text)
    if not args.no_write:
        OUT.mkdir(exist_ok=True)
        # named after the start; a run started in the same minute gets -2, -3, ...: two
        # runs of a part must never overwrite each other's figures
        stem = f"{started:%Y-%m-%d-%H%M}-suite-{args.part}"
        target = OUT / f"{stem}.md"
        suffix = 2
        while target.exists():
            target, suffix = OUT / f"{stem}-{suffix}.md", suffix + 1
        target.write_text(text)
        print(f"written: {target}")


if __name__ == "__main__":
    main()
