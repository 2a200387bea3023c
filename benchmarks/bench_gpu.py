"""GPU path (issue 7, part 1): epoch and evaluation times on one CUDA device, eager float32
against bfloat16 autocast (``train.precision = "bf16"``) and ``torch.compile``
(``train.compile = true``), on the suite's workloads and data:

    python benchmarks/bench_gpu.py --data ../shared/data [--device cuda] [--repeats 3]

1. MF+BPR epoch, ML-1M, K = 1, batch 1024 (dim 64, uniform negatives).
2. MF+CCE epoch, K = 100, ML-100K, batch 1024.
3. LightGCN epoch (3 layers, BPR, L2 1e-5, batch 1024), Gowalla (every batch).
4. SASRec epoch, Amazon-Beauty, full-softmax CE (max length 50, 2 blocks, d = 64).
5. Full-ranking evaluation of ML-1M's test users (Recall + NDCG @10/20) at 512 and 4096
   users per batch.
6. The device's copy bandwidth (torch, 1 GiB, read + write) and the embedding bytes per
   second the MF epochs move.

Each training figure is the median of ``--repeats`` epochs after one warm-up epoch (which
holds the compilation). A variant that fails is reported with its error, the others go on.
Prints a markdown table and writes it, with the raw numbers, to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from suite import load_splits  # (beside this script: its folder is on sys.path)

from negrec.evaluation import EvalConfig, evaluate
from negrec.losses import Loss, LossConfig
from negrec.models import MF, ModelConfig
from negrec.models.lightgcn import LightGCN, LightGCNConfig
from negrec.models.sasrec import SASRec, SASRecConfig
from negrec.samplers.full import FullCatalogue, FullConfig
from negrec.samplers.uniform import UniformConfig, UniformSampler
from negrec.train import TrainConfig, fit

HERE = Path(__file__).resolve().parent

VARIANTS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "compile": {"compile": True},
    "bf16+compile": {"precision": "bf16", "compile": True},
}


def epoch_seconds(
    make_model: Any, sampler: Any, loss: str, split: Any, device: str, repeats: int, **train: Any
) -> dict[str, Any]:
    """Warm-up epoch, then ``repeats`` timed epochs (fit's own per-epoch clock)."""
    model = make_model()
    config = TrainConfig(epochs=1 + repeats, device=device, **train)
    state = fit(model, sampler, Loss(LossConfig(name=loss)), split, config)
    seconds = [h["train_seconds"] for h in state.history]
    return {"warmup": seconds[0], "seconds": seconds[1:], "median": statistics.median(seconds[1:])}


def eval_seconds(model: Any, split: Any, batch: int, repeats: int) -> float:
    config = EvalConfig(ks=[10, 20], auc=False, batch_size=batch)
    times = []
    for _ in range(repeats + 1):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        evaluate(model, split, "test", config)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def copy_bandwidth(device: str) -> float:
    """GB/s counting bytes read + written, torch copy of 1 GiB on ``device``."""
    src = torch.randn(1 << 28, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(7):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        dst.copy_(src)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 4 / statistics.median(times[2:]) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=HERE.parent.parent / "shared" / "data", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--only", nargs="*", help="subset of mf_bpr k100 lgcn sasrec eval")
    parser.add_argument("--out", default=HERE / "out" / "bench_gpu.json", type=Path)
    args = parser.parse_args()
    splits = load_splits(args.data)
    device, reps = args.device, args.repeats

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    ml1m, ml100k, gowalla, beauty = (
        splits[n] for n in ("ml-1m", "ml-100k", "gowalla", "amazon-beauty")
    )
    workloads: dict[str, tuple[str, Any, Any, str, Any, dict[str, Any]]] = {
        "mf_bpr": (
            f"MF+BPR epoch, ML-1M, K = 1, batch 1024 ({ml1m.train.nnz:,} pairs)",
            lambda: MF(ModelConfig(dim=64), ml1m.train, gen()),
            UniformSampler(UniformConfig(k=1), ml1m.train),
            "bpr",
            ml1m,
            {"batch_size": 1024},
        ),
        "k100": (
            f"MF+CCE epoch, ML-100K, K = 100, batch 1024 ({ml100k.train.nnz:,} pairs)",
            lambda: MF(ModelConfig(dim=64), ml100k.train, gen()),
            UniformSampler(UniformConfig(k=100), ml100k.train),
            "cce",
            ml100k,
            {"batch_size": 1024},
        ),
        "lgcn": (
            f"LightGCN epoch, Gowalla, 3 layers, BPR, batch 1024 ({gowalla.train.nnz:,} pairs)",
            lambda: LightGCN(LightGCNConfig(dim=64, layers=3), gowalla.train, gen()),
            UniformSampler(UniformConfig(k=1), gowalla.train),
            "bpr",
            gowalla,
            {"batch_size": 1024, "l2": 1e-5},
        ),
        "sasrec": (
            "SASRec epoch, Amazon-Beauty, full-softmax CE, batch 1024 positions",
            lambda: SASRec(
                SASRecConfig(dim=64, max_len=50, blocks=2, heads=1, dropout=0.2),
                beauty.train,
                gen(),
            ),
            FullCatalogue(FullConfig(exclude_positives=False), beauty.train),
            "cce",
            beauty,
            {"batch_size": 1024},
        ),
    }
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": {},
    }
    for key, (title, make_model, sampler, loss, split, train) in workloads.items():
        if args.only and key not in args.only:
            continue
        for variant in args.variants:
            print(f"{key} / {variant} ...", flush=True)
            try:
                row = epoch_seconds(
                    make_model, sampler, loss, split, device, reps, **train, **VARIANTS[variant]
                )
            except Exception as error:  # report and go on with the other variants
                traceback.print_exc()
                row = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
            results["rows"].setdefault(key, {"title": title})[variant] = row
    if not args.only or "eval" in args.only:
        model = MF(ModelConfig(dim=64), ml1m.train, gen()).to(device)
        results["eval"] = {f"batch {b}": eval_seconds(model, ml1m, b, reps) for b in (512, 4096)}
    results["copy_gbs"] = copy_bandwidth(device)
    if "mf_bpr" in results["rows"] and "median" in results["rows"]["mf_bpr"]["fp32"]:
        # per pair: user row + positive row + negative row read, their gradients written
        pairs = ml1m.train.nnz
        moved = pairs * 3 * 64 * 4 * 2
        results["mf_embedding_gbs"] = moved / results["rows"]["mf_bpr"]["fp32"]["median"] / 1e9

    lines = [
        f"device: {results['device']}, torch {results['torch']}, {results['date']}",
        "",
        "| workload | " + " | ".join(args.variants) + " |",
        "|---|" + "---|" * len(args.variants),
    ]
    for row in results["rows"].values():
        cells = []
        for variant in args.variants:
            r = row.get(variant, {})
            cells.append(
                f"{r['median']:.3f} s (warm-up {r['warmup']:.1f} s)"
                if "median" in r
                else f"failed: {r.get('error', '?')}"
            )
        lines.append(f"| {row['title']} | " + " | ".join(cells) + " |")
    if "eval" in results:
        lines.append("")
        evals = ", ".join(f"{k}: {v:.3f} s" for k, v in results["eval"].items())
        lines.append(f"Full-ranking evaluation, ML-1M test: {evals}")
    lines.append(f"Copy bandwidth: {results['copy_gbs']:.0f} GB/s")
    if "mf_embedding_gbs" in results:
        lines.append(f"MF+BPR epoch moves embedding rows at {results['mf_embedding_gbs']:.1f} GB/s")
    results["table"] = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(results["table"])


if __name__ == "__main__":
    main()
