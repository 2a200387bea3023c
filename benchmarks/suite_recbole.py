"""The suite's RecBole parts: negrec against RecBole 1.2.1, the same work on both sides.

``python benchmarks/suite.py recbole`` and ``python benchmarks/suite.py recbole-memory``
call :func:`part_recbole` and :func:`part_recbole_memory`. RecBole runs in its own venv
(``benchmarks/recbole_timing.py`` says how to make it) as one warm worker process per
(model, dataset); negrec runs in the suite's own process. Only one side computes at a time:
a round is one negrec epoch (or evaluation), then one RecBole epoch (or evaluations) while
negrec waits, A B A B, one thread each. Both sides read the same training pairs: the negrec
split is written as RecBole atomic files (``benchmark_filename`` train / valid / test), so
RecBole neither filters nor re-splits.

What is the same on both sides:

- MF+BPR: d = 64, Adam (lr 1e-3, no weight decay, no L2), one uniform negative per
  positive drawn from the user's non-positives, batch 1024 positives (RecBole's pairwise
  loader: ``train_batch_size`` 1024 with one negative is 1024 positive rows), one epoch =
  one pass over every training pair. negrec's ``adam`` (the default: dense Adam's update
  computed per row) and ``adam-dense`` (torch's Adam through autograd) are both Adam;
  RecBole's is torch's Adam through autograd.
- LightGCN: 3 layers, d = 64, BPR, one uniform negative, Adam lr 1e-3, L2 1e-5 on the
  batch's layer-0 embeddings (RecBole's ``reg_weight``, negrec's ``train.l2``), batch 2048
  (RecBole's default), whole epochs; every step propagates over the whole graph on both
  sides, so ML-100K keeps a whole epoch short.
- Evaluation: full ranking of every item for every test user, training and validation
  items masked, Recall and NDCG at 10 and 20 (negrec without its AUC / OPAUC, but with the
  Precision, HitRate and MRR it always computes alongside), at an equal batch of 512 users
  (RecBole ``eval_batch_size`` = 512 x its item count) and RecBole at its default
  ``eval_batch_size`` of 4096 rows (4096 // items users per batch: one on ML-1M) against
  negrec at its default of 512 users. A floor row times negrec's score product alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
from suite import HERE, PATHS, load, set_threads

SCRIPT = HERE / "recbole_timing.py"
WORK = Path(tempfile.gettempdir()) / "negrec-recbole"  # atomic files, RecBole's log dirs
EVAL_USERS = 512  # the equal evaluation batch, users


def split_for(root: Path, name: str) -> Any:
    """The negrec split of ``name``: the LightGCN-format files with 10% of train carved for
    validation (as the presets), or for ML-100K (one ratings file) a random 0.8 / 0.1 / 0.1
    split of all 100k ratings (RecBole's own default split ratios)."""
    if name != "ml-100k":
        return load(root, name)
    from negrec.data.loaders import load as load_table
    from negrec.data.prepare import prepare
    from negrec.data.splits import random_split

    events, _ = prepare(load_table(root / "ml-100k" / "ml-100k.inter"))
    return random_split(events, 0.1, 0.1, 0)


def write_atomic(split: Any, name: str) -> str:
    """The split as RecBole atomic files ``<dataset>.{train,valid,test}.inter`` under
    :data:`WORK`; returns the RecBole dataset name (prefixed: RecBole swaps its bundled
    copy in for a dataset called ``ml-100k``)."""
    dataset = f"negrec-{name}"
    folder = WORK / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("train", "valid", "test"):
        users, items = getattr(split, part).to_coo()
        table = np.stack([users, items], axis=1)  # [nnz, 2]
        target = folder / f"{dataset}.{part}.inter"
        temporary = target.with_suffix(".tmp")
        np.savetxt(temporary, table, fmt="%d", delimiter="\t", comments="",
                   header="user_id:token\titem_id:token")  # fmt: skip
        temporary.replace(target)
    return dataset


def recbole_config(batch: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """RecBole overrides: the benchmark files as they are, one uniform negative per positive
    excluding the user's positives, ``batch`` positive rows per step."""
    return {
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "train_batch_size": batch,
        "train_neg_sample_args": {
            "distribution": "uniform",
            "sample_num": 1,
            "alpha": 1.0,
            "dynamic": False,
            "candidate_num": 0,
        },
        **(extra or {}),
    }


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


class RecBole:
    """A warm RecBole worker (``recbole_timing.py``) in the benchmark venv; ``command``
    sends one JSON command and returns its JSON answer. ``timed``: run it under
    ``/usr/bin/time -v`` (:attr:`max_rss_mb` after :meth:`close`)."""

    def __init__(self, python: Path, job: dict[str, Any], threads: int, timed: bool = False):
        if not python.exists():
            raise SystemExit(
                f"{python}: no RecBole venv; benchmarks/recbole_timing.py says how to make it"
            )
        WORK.mkdir(parents=True, exist_ok=True)
        # RecBole's stderr (a file: a full pipe would block it); closed in close()
        self.log = tempfile.TemporaryFile(mode="w+", dir=WORK)  # noqa: SIM115
        job = {**job, "data_path": str(WORK), "threads": threads,
               "checkpoint_dir": str(WORK / "saved")}  # fmt: skip
        # absolute (it runs in WORK), not resolved (a venv's python is a link into its base)
        command = [str(python.absolute()), str(SCRIPT), "--job", json.dumps(job)]
        command = ["/usr/bin/time", "-v", *command] if timed else command
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True, cwd=WORK, env=thread_env(threads),
        )  # fmt: skip
        self.info = self.read()
        self.max_rss_mb: float | None = None

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.log.seek(0)
            raise SystemExit(f"the RecBole worker stopped:\n{self.log.read()[-3000:]}")
        return json.loads(line)

    def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        self.process.stdin.close()
        self.process.wait(timeout=600)
        self.log.seek(0)
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", self.log.read())
        self.max_rss_mb = int(peak.group(1)) / 1024 if peak else None
        self.log.close()


def negrec_fit_rounds(
    model: Any, split: Any, rounds: int, batch: int, between: Callable[[], None], **train: Any
) -> list[float]:
    """negrec's epoch seconds of 1 + ``rounds`` BPR epochs (one uniform negative) of
    ``model`` in one ``fit``; ``between()`` runs after every epoch, outside its timing."""
    from negrec.losses import Loss, LossConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler
    from negrec.train import Callback, TrainConfig, fit

    class Between(Callback):
        def on_epoch_end(self, state: Any) -> None:
            between()

    sampler = UniformSampler(UniformConfig(k=1), split.train)
    config = TrainConfig(epochs=1 + rounds, batch_size=batch, eval_every=10**6, **train)
    state = fit(model, sampler, Loss(LossConfig(name="bpr")), split, config, callbacks=[Between()])
    return [h["train_seconds"] for h in state.history]


def score_product_seconds(model: Any, split: Any) -> float:
    """Seconds of an MF evaluation's score product alone: every test user's scores for every
    item, :data:`EVAL_USERS` users per batch, nothing masked or ranked -- the floor under
    any full-ranking evaluation of the model at that batch, on either side."""
    import torch

    users = torch.from_numpy(np.flatnonzero(split.test.user_degrees > 0))  # [U_test]
    start = time.perf_counter()
    with torch.no_grad():
        for chunk in users.split(EVAL_USERS):
            model.score_all(chunk)  # [B, n_items]
    return time.perf_counter() - start


def recbole_epoch(worker: RecBole, into: list[float]) -> Callable[[], None]:
    """One RecBole epoch, its seconds appended to ``into``: the B of a round."""
    return lambda: into.append(worker.command("epoch")["seconds"])


def speedup(ours: list[float], theirs: list[float]) -> str:
    """RecBole / negrec: median (min-max) of the per-round ratios."""
    ratios = np.asarray(theirs) / np.asarray(ours)
    return f"**{np.median(ratios):.2f}x** ({ratios.min():.2f}-{ratios.max():.2f})"


def seconds_list(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def row(label: str, ours: list[float], theirs: list[float]) -> tuple[str, str]:
    """A table row (medians and the speed-up) and a raw line (every round's seconds)."""
    ours, theirs = ours[1:], theirs[1:]  # round 0 is the warm-up (numba compiles)
    table = (
        f"| {label} | {np.median(ours):.3f} s | {np.median(theirs):.3f} s "
        f"| {speedup(ours, theirs)} |"
    )
    raw = f"- {label}: negrec [{seconds_list(ours)}] s; RecBole [{seconds_list(theirs)}] s"
    print(table, flush=True)
    return table, raw


def part_recbole(args: argparse.Namespace) -> list[str]:
    """MF+BPR epochs and full-ranking evaluation on each of ``args.datasets``, LightGCN
    epochs on each of ``args.lightgcn_datasets``, interleaved with RecBole."""
    import torch

    from negrec.evaluation import EvalConfig, evaluate
    from negrec.models import MF, ModelConfig
    from negrec.models.lightgcn import LightGCN, LightGCNConfig

    set_threads(args.threads)
    rounds = args.rounds
    table = [
        "| measure | negrec (median) | RecBole 1.2.1 (median) "
        "| speed-up RecBole / negrec: median of per-round ratios (min-max) |",
        "|---|---:|---:|---|",
    ]
    raw: list[str] = []
    notes: list[str] = []
    versions: dict[str, Any] = {}

    def add(label: str, ours: list[float], theirs: list[float]) -> None:
        line, detail = row(label, ours, theirs)
        table.append(line)
        raw.append(detail)

    for name in args.datasets:  # MF+BPR epochs, then evaluation
        split = split_for(args.data, name)
        dataset = write_atomic(split, name)
        job = {"model": "BPR", "dataset": dataset, "config": recbole_config(1024)}
        worker = RecBole(args.recbole_python, job, args.threads)
        info, versions = worker.info, worker.info["versions"]
        notes.append(
            f"{name}: {len(split.train):,} training pairs on both sides (RecBole "
            f"{info['n_train_rows']:,}), {split.n_users:,} users x {split.n_items:,} items "
            f"(RecBole {info['n_users']:,} x {info['n_items']:,}); batch 1024: negrec "
            f"{-(-len(split.train) // 1024)} steps, RecBole {info['train_batches']} steps of "
            f"{info['train_batch_rows']} rows"
        )
        model = None
        for path in args.paths:
            theirs: list[float] = []
            model = MF(ModelConfig(dim=64), split.train, torch.Generator().manual_seed(0))
            between = recbole_epoch(worker, theirs)
            train = cast(dict[str, Any], PATHS[path])
            ours = negrec_fit_rounds(model, split, rounds, 1024, between, lr=1e-3, **train)
            add(f"MF+BPR epoch, {name}, negrec `{path}` vs RecBole `BPR`", ours, theirs)

        equal_rows = EVAL_USERS * (info["n_items"] + 1)  # RecBole's item count has padding
        ours, floor, equal, default = [], [], [], []
        answers: dict[str, Any] = {}
        config = EvalConfig(ks=[10, 20], auc=False, batch_size=EVAL_USERS)
        for _ in range(1 + rounds):
            start = time.perf_counter()
            result = evaluate(model, split, "test", config)
            ours.append(time.perf_counter() - start)
            floor.append(score_product_seconds(model, split))
            answers["equal"] = worker.command("eval", eval_batch_size=equal_rows)
            equal.append(answers["equal"]["seconds"])
            answers["default"] = worker.command("eval")  # its default eval_batch_size
            default.append(answers["default"]["seconds"])
        worker.close()
        summary = result.summary
        n_test = int((split.test.user_degrees > 0).sum())
        add(
            f"evaluation, {name} test ({n_test:,} users), equal batch: both "
            f"{answers['equal']['users_per_batch']} users",
            ours,
            equal,
        )
        add(
            f"evaluation, {name} test, each at its default batch: negrec {EVAL_USERS} users, "
            f"RecBole `eval_batch_size` {info['eval_batch_size']} rows = "
            f"{answers['default']['users_per_batch']} user(s)",
            ours,
            default,
        )
        add(
            f"floor: the score product alone ({EVAL_USERS} users per batch, nothing masked or "
            f"ranked) vs RecBole's equal-batch evaluation, {name}: the most any evaluation "
            "could gain",
            floor,
            equal,
        )
        notes.append(
            f"{name} test after the MF rounds (negrec's last path: {1 + rounds} epochs; "
            f"RecBole's model: {len(args.paths) * (1 + rounds)} epochs): negrec NDCG@20 "
            f"{summary['ndcg@20']:.4f}, "
            f"Recall@20 {summary['recall@20']:.4f}; RecBole NDCG@20 "
            f"{answers['equal']['result']['ndcg@20']:.4f}, Recall@20 "
            f"{answers['equal']['result']['recall@20']:.4f} (the same at its default batch: "
            f"{answers['default']['result']['ndcg@20']:.4f})"
        )

    for name in args.lightgcn_datasets:
        split = split_for(args.data, name)
        dataset = write_atomic(split, name)
        job = {
            "model": "LightGCN",
            "dataset": dataset,
            "config": recbole_config(2048, {"n_layers": 3, "reg_weight": 1e-5}),
        }
        worker = RecBole(args.recbole_python, job, args.threads)
        info, versions = worker.info, worker.info["versions"]
        theirs = []
        gcn = LightGCN(
            LightGCNConfig(dim=64, layers=3), split.train, torch.Generator().manual_seed(0)
        )
        between = recbole_epoch(worker, theirs)
        ours = negrec_fit_rounds(gcn, split, rounds, 2048, between, lr=1e-3, l2=1e-5)
        worker.close()
        add(f"LightGCN epoch (3 layers, batch 2048), {name}", ours, theirs)
        notes.append(
            f"{name}: {len(split.train):,} training pairs (RecBole {info['n_train_rows']:,}), "
            f"batch 2048: negrec {-(-len(split.train) // 2048)} steps, RecBole "
            f"{info['train_batches']} steps"
        )

    v = versions
    return [
        f"negrec against RecBole 1.2.1, the same work (see `benchmarks/suite_recbole.py`): "
        f"{args.threads} thread(s) each, {rounds} interleaved rounds (negrec, then RecBole) "
        "after a warm-up round, whole epochs. MF+BPR: Adam lr 1e-3, one uniform negative "
        "per positive, batch 1024. LightGCN: the same with 3 layers, L2 1e-5, batch 2048. "
        "Evaluation: full ranking, Recall + NDCG @10/20, train and valid items masked.",
        f"RecBole venv: recbole {v.get('recbole')}, torch {v.get('torch')}, numpy "
        f"{v.get('numpy')}, Python {v.get('python')}.",
        "",
        *table,
        "",
        *(f"- {note}" for note in notes),
        "",
        "Per-round seconds (after the warm-up round):",
        "",
        *raw,
    ]


def part_recbole_memory(args: argparse.Namespace) -> list[str]:
    """Peak RSS (``/usr/bin/time -v``) of a RecBole process doing what ``suite.py memory``
    times for negrec: load ``args.datasets[0]``, ``args.epochs`` MF+BPR epochs (batch 1024,
    Adam), one full test evaluation; at the equal batch of 512 users and at RecBole's
    default ``eval_batch_size``. negrec's default path runs the same way, in its own
    process, for the figure next to it."""
    import subprocess as sp
    import sys

    name = args.datasets[0]
    split = split_for(args.data, name)
    dataset = write_atomic(split, name)
    lines = [
        f"Peak RSS of one process: load {name}, {args.epochs} MF+BPR epochs (d = 64, one "
        "uniform negative, batch 1024, Adam lr 1e-3), one full test evaluation "
        f"(`/usr/bin/time -v`, maximum resident set size), {args.threads} thread(s). Per-epoch "
        "columns: the process's peak so far (`ru_maxrss`) after that step.",
        "",
        "| side | evaluation batch | peak RSS (time -v) | after load | "
        + " | ".join(f"after epoch {e}" for e in range(1, args.epochs + 1))
        + " | after evaluation |",
        f"|---|---|---:|---:|{'---:|' * args.epochs}---:|",
    ]
    for label in ("equal", "default"):
        job = {"model": "BPR", "dataset": dataset, "config": recbole_config(1024)}
        worker = RecBole(args.recbole_python, job, args.threads, timed=True)
        records = [worker.info]
        records += [worker.command("epoch") for _ in range(args.epochs)]
        rows = EVAL_USERS * (worker.info["n_items"] + 1) if label == "equal" else None
        records.append(worker.command("eval", eval_batch_size=rows))
        worker.close()
        cells = " | ".join(f"{r['peak_mb']:.0f} MB" for r in records)
        batch = f"{records[-1]['users_per_batch']} user(s)"
        batch += " (equal)" if label == "equal" else " (RecBole's default 4096 rows)"
        lines.append(f"| RecBole 1.2.1 | {batch} | **{worker.max_rss_mb:.0f} MB** | {cells} |")
        print(lines[-1], flush=True)
    for path in args.paths:
        command = [
            "/usr/bin/time", "-v", sys.executable, str(HERE / "suite.py"), "memory-child",
            "--data", str(args.data), "--datasets", name, "--path", path,
            "--epochs", str(args.epochs), "--threads", str(args.threads),
        ]  # fmt: skip
        done = sp.run(command, capture_output=True, text=True, env=thread_env(args.threads))
        if done.returncode:
            raise SystemExit(f"negrec memory child failed:\n{done.stderr[-3000:]}")
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        assert peak is not None, done.stderr[-2000:]
        records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        cells = " | ".join(f"{r['peak_mb']:.0f} MB" for r in records)
        lines.append(
            f"| negrec `{path}` | {EVAL_USERS} users (its default) "
            f"| **{int(peak.group(1)) / 1024:.0f} MB** | {cells} |"
        )
        print(lines[-1], flush=True)
    return lines
