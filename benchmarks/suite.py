"""Speed suite: negrec vs RecBole 1.2.1 and vs `implicit`, same data, machine and threads.

One command runs every comparison, prints a markdown table and appends a dated section to
benchmarks/RESULTS.md (``--no-append`` to only print):

    python benchmarks/suite.py --data ../shared/data [--threads 1] [--quick]

RecBole runs in its own process from its own venv (``--recbole-python``, default
``benchmarks/.venv-recbole/bin/python``; see ``benchmarks/recbole_timing.py`` for how to make
it), on RecBole atomic files written under ``benchmarks/out/suite/`` from the very splits
negrec trains on. negrec and `implicit` run in this process. Every side gets the same number
of threads (torch, OpenMP, MKL, numba).

Measurements (medians after a warm-up; "partial" rows time the first N batches of each epoch
and scale to the full epoch by its number of batches, the same N for both sides):

1. MF+BPR epoch, ML-1M, K = 1, batch 1024: negrec (Adam, and LazyAdam through the fused MF
   step; each timed before and after the others) vs RecBole ``BPR`` vs implicit BPR.
2. MF, K = 100 negatives per positive, ML-100K: negrec CCE (sampled softmax) vs RecBole
   ``BPR`` with ``train_neg_sample_args.sample_num = 100`` (RecBole has no K-negative
   softmax loss; this is its closest configuration). Batch: 1024 positives per step for
   both (RecBole's batch counts rows, so ``train_batch_size = 102,400``).
3. LightGCN epoch (3 layers, BPR, K = 1, batch 1024), ML-1M and Gowalla (partial).
4. Full-ranking evaluation of the test split, ML-1M, all test users, Recall and NDCG @10/20
   (RecBole full-sort with 512 users per batch, as negrec, and with its default
   ``eval_batch_size = 4096`` rows).
5. SASRec epoch on Amazon-Beauty (partial), full-softmax cross-entropy (RecBole
   ``loss_type = CE``), max length 50, 2 blocks, 1 head, d = 64, FFN 64, ReLU, dropout 0.2.
6. Single-thread memory bandwidth (numpy copy) and the embedding bytes per second that our
   MF epoch and our evaluation move.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOALS = {"mf_bpr": 5, "k100": 20, "lgcn_ml1m": 5, "lgcn_gowalla": 3, "eval": 20, "sasrec": 3}


@dataclass
class Row:
    """One line of the results table."""

    name: str
    negrec: float
    recbole: float | None
    goal: float | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        return None if self.recbole is None else self.recbole / self.negrec


# ---------------------------------------------------------------------------- data
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


def write_atomic(split: Any, folder: Path, name: str, sequential: bool = False) -> None:
    """The split as RecBole atomic files: ``name.{train,valid,test}.inter`` (general models,
    read with ``benchmark_filename``), or one ``name.inter`` in time order with positions as
    timestamps (sequential: RecBole's leave-one-out then gives exactly our split)."""
    folder = folder / atomic_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    if not sequential:
        for part, data in parts.items():
            users, items = data.to_coo()
            pairs = zip(users.tolist(), items.tolist(), strict=True)
            lines = "".join(f"{u}\t{i}\n" for u, i in pairs)
            text = "user_id:token\titem_id:token\n" + lines
            _write_if_changed(folder / f"{atomic_name(name)}.{part}.inter", text)
        return
    from negrec.models.sequential import time_ordered

    rows = []
    for data in parts.values():
        seq, indptr = time_ordered(data), data.indptr
        for u in range(data.n_users):
            rows.extend((u, int(i)) for i in seq[indptr[u] : indptr[u + 1]])
    rows.sort(key=lambda r: r[0])  # stable: train, then valid, then test within a user
    lines = "".join(f"{u}\t{i}\t{t}\n" for t, (u, i) in enumerate(rows))
    _write_if_changed(
        folder / f"{atomic_name(name)}.inter",
        "user_id:token\titem_id:token\ttimestamp:float\n" + lines,
    )


def atomic_name(name: str) -> str:
    """Our RecBole dataset name (RecBole swaps its own bundled copy in for ``ml-100k``)."""
    return f"negrec-{name}"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# ---------------------------------------------------------------------------- negrec
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


def negrec_eval_seconds(model: Any, split: Any, repeats: int, auc: bool) -> list[float]:
    from negrec.evaluation import EvalConfig, evaluate

    config = EvalConfig(ks=[10, 20], auc=auc, batch_size=512)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        evaluate(model, split, "test", config)
        times.append(time.perf_counter() - start)
    return times[1:]


def bandwidth_gbs(repeats: int) -> float:
    """Single-thread copy bandwidth, GB/s counting read + write (512 MB source)."""
    src = np.ones(1 << 27, dtype=np.float32)
    dst = np.empty_like(src)
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / float(np.median(times[1:])) / 1e9


# ---------------------------------------------------------------------------- RecBole
def recbole(args: argparse.Namespace, job: dict[str, Any]) -> dict[str, Any] | None:
    """Run one RecBole job in the benchmark venv; None (with the reason printed) on failure."""
    job = {
        "threads": args.threads,
        "data_path": str(args.out / "atomic"),
        "checkpoint_dir": str(args.out / "saved"),
        **job,
    }
    job["dataset"] = atomic_name(job["dataset"])
    proc = subprocess.run(
        [str(args.recbole_python), str(HERE / "recbole_timing.py"), "--job", json.dumps(job)],
        cwd=args.out,
        env=thread_env(args.threads),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        print(f"RecBole job {job['model']} on {job['dataset']} failed:\n{proc.stderr[-3000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    return env


def general_config(batch_rows: int, neg: int, split: Any, extra: dict | None = None) -> dict:
    return {
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "train_batch_size": batch_rows,
        "train_neg_sample_args": {
            "distribution": "uniform",
            "sample_num": neg,
            "alpha": 1.0,
            "dynamic": False,
            "candidate_num": 0,
        },
        "eval_batch_size": 512 * (split.n_items + 1),  # 512 users per batch, as negrec
        **(extra or {}),
    }


# ---------------------------------------------------------------------------- the suite
def median(values: list[float]) -> float:
    return float(np.median(values))


def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    import torch

    from negrec.models import MF, ModelConfig
    from negrec.models.lightgcn import LightGCN, LightGCNConfig
    from negrec.models.sasrec import SASRec, SASRecConfig
    from negrec.samplers.full import FullCatalogue, FullConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler

    torch.set_num_threads(args.threads)
    reps = 1 if args.quick else args.repeats
    rows: list[Row] = []
    info: dict[str, Any] = {}
    splits = load_splits(args.data)
    for name in ("ml-1m", "gowalla", "ml-100k"):
        write_atomic(splits[name], args.out / "atomic", name)
    write_atomic(splits["amazon-beauty"], args.out / "atomic", "amazon-beauty", sequential=True)

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    def want(key: str) -> bool:
        return not args.only or key in args.only

    ml1m = splits["ml-1m"]
    mf_bpr_seconds = None
    if want("mf_bpr"):
        print("MF+BPR on ML-1M ...", flush=True)

        def mf_bpr_epochs(optimizer: str) -> dict[str, Any]:
            model = MF(ModelConfig(dim=64), ml1m.train, gen())
            sampler = UniformSampler(UniformConfig(k=1), ml1m.train)
            return negrec_epochs(model, sampler, "bpr", ml1m, epochs=reps, optimizer=optimizer)

        # negrec's epochs are timed before and after RecBole's and implicit's, and the
        # median of both is reported: the machine's load drifts within minutes
        optimizers = ("adam", "lazy_adam")  # lazy_adam: the fused MF step (negrec._fast.fused)
        before = {opt: mf_bpr_epochs(opt) for opt in optimizers}
        theirs = recbole(
            args,
            {
                "model": "BPR",
                "dataset": "ml-1m",
                "epochs": reps,
                "config": general_config(1024, 1, ml1m),
            },
        )
        from bench_speed import implicit_times  # beside this script

        imp = implicit_times(ml1m, reps, args.threads)
        after = {opt: mf_bpr_epochs(opt) for opt in optimizers}
        ours = before["adam"]
        seconds = {
            opt: median(before[opt]["seconds"] + after[opt]["seconds"]) for opt in optimizers
        }
        mf_bpr_seconds = seconds["adam"]
        recbole_seconds = median(theirs["epoch_seconds"]) if theirs else None
        for opt, label in (("adam", "Adam"), ("lazy_adam", "LazyAdam, fused step")):
            rows.append(
                Row(
                    f"MF+BPR epoch, ML-1M, K = 1, batch 1024 ({ml1m.train.nnz:,} pairs), "
                    f"negrec {label}",
                    seconds[opt],
                    recbole_seconds,
                    GOALS["mf_bpr"],
                    f"implicit BPR (1 iteration): {median(imp):.3f} s; "
                    f"negrec / implicit = {seconds[opt] / median(imp):.1f}x; negrec epochs "
                    f"timed before and after RecBole: {median(before[opt]['seconds']):.3f} / "
                    f"{median(after[opt]['seconds']):.3f} s",
                    {"recbole": theirs},
                )
            )
        info["mf_bpr_seconds"] = mf_bpr_seconds
        info["mf_pairs"] = ml1m.train.nnz
        info["mf_tables"] = (ml1m.n_users + ml1m.n_items) * 64 * 4
        info["mf_steps"] = ours["steps"]

    if want("k100"):
        print("MF, K = 100, on ML-100K ...", flush=True)
        ml100k = splits["ml-100k"]

        def k100_epochs(optimizer: str) -> dict[str, Any]:
            model = MF(ModelConfig(dim=64), ml100k.train, gen())
            sampler = UniformSampler(UniformConfig(k=100), ml100k.train)
            return negrec_epochs(model, sampler, "cce", ml100k, epochs=reps, optimizer=optimizer)

        k100_ours = {opt: k100_epochs(opt) for opt in ("adam", "lazy_adam")}
        ours = k100_ours["adam"]
        theirs = recbole(
            args,
            {
                "model": "BPR",
                "dataset": "ml-100k",
                "epochs": reps,
                "max_steps": 20 if args.quick else 0,
                "config": general_config(1024 * 100, 100, ml100k),
            },
        )
        default = recbole(
            args,
            {
                "model": "BPR",
                "dataset": "ml-100k",
                "epochs": 1,
                "max_steps": 500,
                "config": general_config(2048, 100, ml100k),
            },
        )
        note = "1024 positives x 100 negatives per step on both sides"
        if default:
            per_epoch = median(default["epoch_seconds"]) * default["steps_per_epoch"] / 500
            note += (
                f"; RecBole with its default train_batch_size 2048 rows (20 positives x 100): "
                f"{per_epoch:.1f} s (first 500 of {default['steps_per_epoch']} batches)"
            )
        recbole_seconds = (
            median(theirs["epoch_seconds"]) * theirs["steps_per_epoch"] / theirs["steps_timed"]
            if theirs
            else None
        )
        for opt, label in (("adam", "Adam"), ("lazy_adam", "LazyAdam, fused step")):
            rows.append(
                Row(
                    f"MF K = 100 epoch, ML-100K ({ml100k.train.nnz:,} pairs); negrec CCE "
                    f"({label}), RecBole BPR with 100 negatives",
                    median(k100_ours[opt]["seconds"]),
                    recbole_seconds,
                    GOALS["k100"],
                    note,
                    {"recbole": theirs, "recbole_default": default},
                )
            )
        info["k100_pairs"] = ml100k.train.nnz
        info["k100_seconds"] = median(ours["seconds"])
        info["k100_tables"] = (ml100k.n_users + ml100k.n_items) * 64 * 4
        info["k100_steps"] = ours["steps"]

    for key, name, steps in (("lgcn_ml1m", "ml-1m", 40), ("lgcn_gowalla", "gowalla", 15)):
        if not want(key):
            continue
        print(f"LightGCN on {name} ...", flush=True)
        split = splits[name]
        steps = max(5, steps // 2) if args.quick else steps
        model = LightGCN(LightGCNConfig(dim=64, layers=3), split.train, gen())
        sampler = UniformSampler(UniformConfig(k=1), split.train)
        ours = negrec_epochs(model, sampler, "bpr", split, epochs=reps, max_steps=steps, l2=1e-5)
        theirs = recbole(
            args,
            {
                "model": "LightGCN",
                "dataset": name,
                "epochs": reps,
                "max_steps": steps,
                "config": general_config(1024, 1, split, {"n_layers": 3, "reg_weight": 1e-5}),
            },
        )
        rows.append(
            Row(
                f"LightGCN epoch (3 layers, BPR, batch 1024), {name} "
                f"({split.train.nnz:,} pairs; partial: {steps} of {ours['steps']} batches)",
                median(ours["seconds"]),
                median(theirs["epoch_seconds"]) * theirs["steps_per_epoch"] / theirs["steps_timed"]
                if theirs
                else None,
                GOALS[key],
                "explicit L2 1e-5 on the batch's ego embeddings on both sides",
                {"recbole": theirs},
            )
        )

    if want("eval"):
        print("Full-ranking evaluation on ML-1M ...", flush=True)
        model = MF(ModelConfig(dim=64), ml1m.train, gen())
        ours = negrec_eval_seconds(model, ml1m, reps + 1, auc=False)
        ours_auc = negrec_eval_seconds(model, ml1m, reps + 1, auc=True)
        job = {
            "model": "BPR",
            "dataset": "ml-1m",
            "epochs": 0,
            "max_steps": 1,
            "eval_repeats": reps + 1,
            "config": general_config(1024, 1, ml1m),
        }
        theirs = recbole(args, job)
        job["config"] = general_config(1024, 1, ml1m, {"eval_batch_size": 4096})
        theirs_default = recbole(args, {**job, "eval_repeats": 1})
        n_eval = int((ml1m.test.user_degrees > 0).sum())
        note = f"negrec with AUC + OPAUC as well: {median(ours_auc):.3f} s"
        if theirs_default:
            note += (
                f"; RecBole with its default eval_batch_size 4096 (1 user per batch): "
                f"{median(theirs_default['eval_seconds']):.2f} s"
            )
        rows.append(
            Row(
                f"Full-ranking evaluation, ML-1M test, {n_eval:,} users x {ml1m.n_items:,} items, "
                "Recall + NDCG @10/20, 512 users per batch",
                median(ours),
                median(theirs["eval_seconds"]) if theirs else None,
                GOALS["eval"],
                note,
                {"recbole": theirs, "recbole_default": theirs_default},
            )
        )
        info["eval_users"] = n_eval
        info["eval_items"] = ml1m.n_items
        info["eval_seconds"] = median(ours)

    if want("sasrec"):
        print("SASRec on Amazon-Beauty ...", flush=True)
        beauty = splits["amazon-beauty"]
        steps = 6 if args.quick else 12
        config = SASRecConfig(dim=64, max_len=50, blocks=2, heads=1, dropout=0.2)
        model = SASRec(config, beauty.train, gen())
        sampler = FullCatalogue(FullConfig(exclude_positives=False), beauty.train)
        ours = negrec_epochs(model, sampler, "cce", beauty, epochs=reps, max_steps=steps)
        theirs = recbole(
            args,
            {
                "model": "SASRec",
                "dataset": "amazon-beauty",
                "epochs": reps,
                "max_steps": steps,
                "config": {
                    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
                    "MAX_ITEM_LIST_LENGTH": 50,
                    "n_layers": 2,
                    "n_heads": 1,
                    "hidden_size": 64,
                    "inner_size": 64,
                    "hidden_dropout_prob": 0.2,
                    "attn_dropout_prob": 0.2,
                    "hidden_act": "relu",
                    "loss_type": "CE",
                    "train_neg_sample_args": None,
                    "train_batch_size": 1024,
                    "eval_args": {
                        "split": {"LS": "valid_and_test"},
                        "order": "TO",
                        "group_by": "user",
                        "mode": "full",
                    },
                },
            },
        )
        rows.append(
            Row(
                f"SASRec epoch, Amazon-Beauty, full-softmax CE, batch 1024 positions "
                f"({beauty.train.nnz - beauty.n_users:,} targets; partial: {steps} of "
                f"{ours['steps']} negrec batches)",
                median(ours["seconds"]),
                median(theirs["epoch_seconds"]) * theirs["steps_per_epoch"] / theirs["steps_timed"]
                if theirs
                else None,
                GOALS["sasrec"],
                (
                    f"RecBole: {theirs['steps_per_epoch']} batches of 1024 prefixes, each "
                    "encoded on its own (50 positions)"
                    if theirs
                    else ""
                ),
                {"recbole": theirs},
            )
        )

    if want("bandwidth"):
        print("Memory bandwidth ...", flush=True)
        info["bandwidth"] = bandwidth_gbs(3 if args.quick else 5)
    return rows, info


def bandwidth_lines(info: dict[str, Any]) -> list[str]:
    """Bytes of embedding rows moved per second by our MF epochs and our evaluation."""
    if "bandwidth" not in info:
        return []
    bw = info["bandwidth"]
    lines = [
        f"- **Memory bandwidth** (single-thread `np.copyto` of a 512 MB float32 array, read + "
        f"write counted): **{bw:.1f} GB/s**.",
        "- **Byte counts.** One embedding row is d x 4 = 256 bytes. An MF step with K "
        "negatives gathers, per positive pair, the user row, the positive's row and K "
        "negative rows, and its backward pass scatters a gradient row for each: "
        "`rows = 2 x pairs x (2 + K)` per epoch. Dense Adam also reads parameter, "
        "gradient and both moments and writes three of them back for *every* row of both "
        "tables each step: `7 x (U + I) x 256` bytes per step. Evaluation: each "
        "user-item score needs the item's row, `U_eval x I x 256` bytes of row reads "
        "(a matrix product serves almost all of them from cache), and the score matrix "
        "`U_eval x I x 4` bytes is written once and read again by masking/top-K/ranking.",
    ]
    for key, k in (("mf", 1), ("k100", 100)):
        seconds = info.get("mf_bpr_seconds" if key == "mf" else "k100_seconds")
        if seconds is None:
            continue
        pairs, tables, steps = info[f"{key}_pairs"], info[f"{key}_tables"], info[f"{key}_steps"]
        row_bytes = 2 * pairs * (2 + k) * 256
        adam = 7 * tables * steps
        label = "ML-1M MF+BPR K = 1" if key == "mf" else "ML-100K MF+CCE K = 100"
        lines.append(
            f"- **{label} epoch** ({seconds:.2f} s): embedding rows "
            f"{row_bytes / 1e9:.2f} GB -> {row_bytes / seconds / 1e9:.2f} GB/s "
            f"({100 * row_bytes / seconds / 1e9 / bw:.1f}% of the copy bandwidth); with the "
            f"dense Adam traffic ({adam / 1e9:.2f} GB) {(row_bytes + adam) / seconds / 1e9:.2f} "
            f"GB/s ({100 * (row_bytes + adam) / seconds / 1e9 / bw:.0f}%)."
        )
    if "eval_seconds" in info:
        u, i, s = info["eval_users"], info["eval_items"], info["eval_seconds"]
        logical, scores = u * i * 256, 2 * u * i * 4
        lines.append(
            f"- **ML-1M evaluation** ({s:.3f} s): logical row reads {logical / 1e9:.2f} GB -> "
            f"{logical / s / 1e9:.1f} GB/s ({logical / s / 1e9 / bw:.1f}x the copy bandwidth); "
            f"score matrix written + read "
            f"{scores / 1e9:.3f} GB -> {scores / s / 1e9:.2f} GB/s "
            f"({100 * scores / s / 1e9 / bw:.0f}% of the copy bandwidth)."
        )
    return lines


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "failed"
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def table(rows: list[Row]) -> list[str]:
    out = [
        "| measurement | negrec | RecBole 1.2.1 | speed-up | goal | met? | notes |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        speedup = row.speedup
        met = "n/a" if speedup is None else ("yes" if speedup >= row.goal else "**no**")
        out.append(
            f"| {row.name} | {fmt(row.negrec)} | {fmt(row.recbole)} | "
            f"{'-' if speedup is None else f'{speedup:.1f}x'} | >= {row.goal}x | {met} | "
            f"{row.note} |"
        )
    return out


def versions(rows: list[Row]) -> str:
    import torch

    import negrec

    parts = [
        f"negrec {negrec.__version__}",
        f"torch {torch.__version__}",
        f"numpy {np.__version__}",
    ]
    try:
        import implicit

        parts.append(f"implicit {implicit.__version__}")
    except ImportError:
        pass
    for row in rows:
        theirs = row.extra.get("recbole")
        if theirs:
            v = theirs["versions"]
            parts.append(
                f"RecBole venv: recbole {v['recbole']}, torch {v['torch']}, numpy {v['numpy']}"
            )
            break
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=ROOT.parent / "shared" / "data", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs / evaluations")
    parser.add_argument("--quick", action="store_true", help="1 timed repeat, fewer batches")
    parser.add_argument("--only", nargs="*", help=f"subset of {sorted(GOALS)} + bandwidth")
    parser.add_argument("--out", default=HERE / "out" / "suite", type=Path)
    parser.add_argument(
        "--recbole-python", default=HERE / ".venv-recbole" / "bin" / "python", type=Path
    )
    parser.add_argument("--results", default=HERE / "RESULTS.md", type=Path)
    parser.add_argument("--no-append", action="store_true", help="print only")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.data = args.data.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.update(thread_env(args.threads))  # before numba / torch start their pools

    started = time.time()
    rows, info = run(args)
    command = "python benchmarks/suite.py " + " ".join(sys.argv[1:])
    lines = [
        f"## Speed suite: negrec vs RecBole and implicit ({time.strftime('%Y-%m-%d %H:%M %Z')})",
        "",
        f"**Command:** `{command}` ({time.time() - started:.0f} s wall).",
        f"Machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
        f"{args.threads} thread(s) for every library. {versions(rows)}. Medians of "
        f"{1 if args.quick else args.repeats} timed epochs/evaluations after a warm-up.",
        "",
        *table(rows),
        "",
        *bandwidth_lines(info),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "last_run.json").write_text(
        json.dumps({"rows": [row.__dict__ for row in rows], "info": info}, indent=1, default=str)
    )
    if not args.no_append:
        with args.results.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
