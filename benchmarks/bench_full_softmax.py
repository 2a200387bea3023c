"""Full-catalogue softmax training step: the (pos, neg) form vs the direct form, one run.

With the ``full`` sampler (``negatives.ids is None``) a training step used to go through
``score_batch`` (gather the positive's column, ``masked_fill`` the [B, n_items] matrix) and
``cce`` (``cat([pos, neg])``, ``logsumexp``), each with its own [B, n_items] copies and
gradients. Now the trainer calls ``score_and_loss``, whose ``Loss.catalogue`` computes CCE
from the score matrix in one buffer (``negrec.losses.cce_catalogue``). This script times
both on the same model, batches and thread count, steps interleaved (ABAB..., the order
swapped every step), as ``fit`` takes them: draw the negatives, score, loss, backward,
Adam step. It also checks that both give the same loss and gradients on the first batch.

Rows: SASRec on Amazon-Beauty (dim 64, max_len 50, 2 blocks, 1 head, dropout 0.2, batch
1024 positions: the speed suite's SASRec row), with the sampler's own-positive mask
(``exclude_positives = false``, as in the suite, = RecBole's CE) and with all training
positives masked (the default); MF full softmax on ML-1M (dim 64, batch 1024, default
sampler).

Usage:  python benchmarks/bench_full_softmax.py [--data ../shared/data] [--threads 1]
        [--steps 15] [--warmup 2] [--out benchmarks/out/full_softmax]
Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from negrec.data.batches import Batch
from negrec.data.prepare import prepare_presplit
from negrec.data.splits import Split, carve_validation
from negrec.losses import Loss, LossConfig
from negrec.models import MF, ModelConfig
from negrec.models.base import Model
from negrec.models.sasrec import SASRec, SASRecConfig
from negrec.samplers.base import Sampler
from negrec.samplers.full import FullCatalogue, FullConfig
from negrec.train import (
    TrainConfig,
    make_optimizer,
    score_and_loss,
    score_batch,
)

HERE = Path(__file__).resolve().parent


def before(model: Model, loss: Loss, batch: Batch, negatives: Any) -> torch.Tensor:
    """The previous step: (pos [B], neg [B, n_items]) from score_batch, then the loss."""
    pos, neg, _ = score_batch(model, batch, negatives)
    return loss(pos, neg, log_q=negatives.log_q, weights=negatives.weights)


def after(model: Model, loss: Loss, batch: Batch, negatives: Any) -> torch.Tensor:
    """The trainer's step now."""
    return score_and_loss(model, loss, batch, negatives)[0]


PATHS: dict[str, Callable[..., torch.Tensor]] = {"before": before, "after": after}


def step(path, model, sampler, loss, optimizer, batch, generator) -> float:
    """One training step as ``fit`` takes it; returns its wall time in seconds."""
    start = time.perf_counter()
    negatives = sampler.sample(batch.users, batch.pos, 1, generator=generator)
    optimizer.zero_grad(set_to_none=True)
    value = PATHS[path](model, loss, batch, negatives)
    value.backward()
    if not bool(torch.isfinite(value.detach())):
        raise RuntimeError(f"{path}: loss {value.item()}")
    optimizer.step()
    return time.perf_counter() - start


def same_numbers(model: Model, sampler: Sampler, loss: Loss, batch: Batch) -> dict[str, float]:
    """Loss and gradients of both forms on one batch and the same weights (dropout replayed)."""
    negatives = sampler.sample(batch.users, batch.pos, 1, generator=torch.Generator())
    dropout = model.dropout_generator(torch.device("cpu")) if isinstance(model, SASRec) else None
    state = dropout.get_state() if dropout is not None else None
    results = {}
    for path, fn in PATHS.items():
        if dropout is not None:
            dropout.set_state(state)
        model.zero_grad(set_to_none=True)
        value = fn(model, loss, batch, negatives)
        value.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results[path] = (value.item(), grads)
    model.zero_grad(set_to_none=True)
    (v0, g0), (v1, g1) = results["before"], results["after"]
    pairs = zip(g0, g1, strict=True)
    rel = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-30)) for a, b in pairs)
    return {"loss_before": v0, "loss_after": v1, "max_rel_grad_diff": rel}


def bench(
    name: str,
    model: Model,
    sampler: Sampler,
    split: Split,
    *,
    steps: int,
    warmup: int,
    batch_size: int = 1024,
    lr: float = 1e-3,
) -> dict[str, Any]:
    loss = Loss(LossConfig(name="softmax"))
    model.train()
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    batches = []
    for batch in model.make_batches(split.train, batch_size, device).epoch(generator):
        batches.append(batch)
        if len(batches) == warmup + steps:
            break
    check = same_numbers(model, sampler, loss, batches[0])
    optimizer = make_optimizer(model, TrainConfig(lr=lr))
    times: dict[str, list[float]] = {"before": [], "after": []}
    for i, batch in enumerate(batches):
        order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
        for path in order:
            seconds = step(path, model, sampler, loss, optimizer, batch, generator)
            if i >= warmup:
                times[path].append(seconds)
    row = {
        "name": name,
        "n_items": split.train.n_items,
        "batch_rows": len(batches[0].users),
        "steps": steps,
        **check,
    }
    for path, values in times.items():
        row[f"{path}_median_ms"] = 1e3 * statistics.median(values)
        row[f"{path}_min_ms"] = 1e3 * min(values)
        row[f"{path}_ms"] = [round(1e3 * v, 1) for v in values]
    row["speedup"] = row["before_median_ms"] / row["after_median_ms"]
    print(
        f"{name}: before {row['before_median_ms']:.1f} ms, after {row['after_median_ms']:.1f} ms "
        f"(median of {steps}; x{row['speedup']:.2f}); loss {check['loss_before']:.6f} vs "
        f"{check['loss_after']:.6f}, max rel grad diff {check['max_rel_grad_diff']:.1e}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "full_softmax")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    train, test, _ = prepare_presplit(
        args.data / "amazon-beauty" / "train.txt",
        args.data / "amazon-beauty" / "test.txt",
        format="sequence",
        on_unseen="keep",
    )
    beauty = carve_validation(train, test, "last", 0)  # leave-one-out, as the suite
    config = SASRecConfig(dim=64, max_len=50, blocks=2, heads=1, dropout=0.2)
    for exclude in (False, True):
        model = SASRec(config, beauty.train, torch.Generator().manual_seed(0))
        sampler = FullCatalogue(FullConfig(name="full", exclude_positives=exclude), beauty.train)
        label = "all training positives masked" if exclude else "own positive masked (suite)"
        rows.append(
            bench(
                f"SASRec, Amazon-Beauty, {label}",
                model,
                sampler,
                beauty,
                steps=args.steps,
                warmup=args.warmup,
            )
        )

    train, test, _ = prepare_presplit(
        args.data / "ml-1m" / "train.txt",
        args.data / "ml-1m" / "test.txt",
        format="lightgcn",
        on_unseen="keep",
    )
    ml1m = carve_validation(train, test, 0.1, 0)
    model = MF(ModelConfig(dim=64), ml1m.train, torch.Generator().manual_seed(0))
    sampler = FullCatalogue(FullConfig(name="full"), ml1m.train)
    rows.append(
        bench(
            "MF, ML-1M, all training positives masked",
            model,
            sampler,
            ml1m,
            steps=args.steps,
            warmup=args.warmup,
        )
    )

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"Full-softmax training step, median of {args.steps} interleaved steps, "
        f"{args.threads} thread(s), torch {torch.__version__}",
        "",
        "| row | items | batch rows | before ms: median (min) | after ms: median (min) "
        "| speed-up | loss before / after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['n_items']:,} | {r['batch_rows']} | "
            f"{r['before_median_ms']:.1f} ({r['before_min_ms']:.1f}) | "
            f"{r['after_median_ms']:.1f} ({r['after_min_ms']:.1f}) | "
            f"x{r['speedup']:.2f} | {r['loss_before']:.6f} / {r['loss_after']:.6f} |"
        )
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
