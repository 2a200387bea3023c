"""A/B of two source trees in one process: two ``fit`` runs whose epochs alternate.

``ab_trees.py`` runs each tree in its own process; on the 2026-12-05 host the same code
read up to 1.4x apart from one process to the next (memory placement), which hides a 5-10%
change. Here the old tree is loaded beside the new one as a renamed package (``negrec_old``:
a copy whose ``negrec`` imports are rewritten), each side runs one ordinary ``fit`` of
``1 + rounds`` epochs on its own thread, and the two hand over at every epoch end (a
callback waits for the other side's epoch), so only one side runs at a time and the
epochs alternate A B A B. Ratio: median (min-max) of the per-round B / A epoch ratios,
warm-up epoch dropped.

    python benchmarks/ab_inprocess.py /tmp/old/src --dataset gowalla --rounds 9
    python benchmarks/ab_inprocess.py /tmp/old/src --dataset ml-1m --loss cce --k 100

Old tree: ``git archive REV src | tar -x -C /tmp/old``. One thread each (numba, torch).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def renamed_copy(source: Path, target: Path, name: str = "negrec_old") -> None:
    """Copy the package ``source/negrec`` to ``target/name``, its imports renamed."""
    shutil.copytree(source / "negrec", target / name, ignore=shutil.ignore_patterns("__pycache__"))
    pattern = re.compile(r"\bnegrec(?=[._ ]|$)", re.MULTILINE)
    for path in (target / name).rglob("*.py"):
        text = path.read_text()
        path.write_text(pattern.sub(name, text))


def ab_summary(seconds: tuple[list[float], list[float]], digits: int = 3) -> str:
    """``A .. s, B .. s, B / A median (min-max)`` of per-round seconds, warm-up dropped."""
    a, b = seconds[0][1:], seconds[1][1:]
    ratios = [y / x for x, y in zip(a, b, strict=True)]
    return (
        f"A {statistics.median(a):.{digits}f} s, B {statistics.median(b):.{digits}f} s, "
        f"B / A {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}), "
        f"{len(ratios)} rounds"
    )


def side(
    package: str,
    args: argparse.Namespace,
    turn: threading.Semaphore,
    other: threading.Semaphore,
    seconds: list[float],
) -> threading.Thread:
    """A thread that runs ``package``'s fit, waiting for ``turn`` before each epoch."""
    torch = importlib.import_module("torch")
    prepare = importlib.import_module(f"{package}.data.prepare")
    splits = importlib.import_module(f"{package}.data.splits")
    train = importlib.import_module(f"{package}.train")
    losses = importlib.import_module(f"{package}.losses")
    models = importlib.import_module(f"{package}.models")
    uniform = importlib.import_module(f"{package}.samplers.uniform")

    class HandOver(train.Callback):  # type: ignore[name-defined,misc]
        def on_epoch_end(self, state: Any) -> None:
            seconds.append(state.log["train_seconds"])
            other.release()
            turn.acquire()

    def run() -> None:
        turn.acquire()
        folder = args.data / args.dataset  # (as suite.load: 10% of train for validation)
        train_part, test, _ = prepare.prepare_presplit(
            folder / "train.txt", folder / "test.txt", format="lightgcn", on_unseen="keep"
        )
        split = splits.carve_validation(train_part, test, 0.1, 0)
        model = models.MF(models.ModelConfig(dim=64), split.train, torch.Generator().manual_seed(0))
        sampler = uniform.UniformSampler(uniform.UniformConfig(k=args.k), split.train)
        config = train.TrainConfig(
            epochs=1 + args.rounds, batch_size=1024, eval_every=10**6, **json.loads(args.train)
        )
        loss = losses.Loss(losses.LossConfig(name=args.loss))
        train.fit(model, sampler, loss, split, config, callbacks=[HandOver()], progress=False)
        other.release()

    return threading.Thread(target=run, daemon=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the old tree's src folder (A)")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--dataset", default="gowalla")
    parser.add_argument("--loss", default="bpr")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--train", default="{}", help="TrainConfig fields as JSON")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        renamed_copy(args.old, Path(folder))
        sys.path.insert(0, folder)
        from suite import set_threads

        set_threads(1)
        turns = threading.Semaphore(0), threading.Semaphore(0)
        seconds: tuple[list[float], list[float]] = ([], [])
        old = side("negrec_old", args, turns[0], turns[1], seconds[0])
        new = side("negrec", args, turns[1], turns[0], seconds[1])
        old.start()
        new.start()
        turns[0].release()  # A's first epoch
        old.join()
        new.join()
    print(f"{args.dataset} {args.loss} K={args.k} {args.train}: {ab_summary(seconds)}, one process")


if __name__ == "__main__":
    main()
