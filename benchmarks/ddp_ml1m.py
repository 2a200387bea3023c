"""DDP: the ML-1M MF preset trained by 2 CPU ranks (torchrun, gloo) vs one process.

Runs ``negrec run ml1m-mf-bpr`` once in one process and once under
``torchrun --standalone --nproc-per-node 2 ... --distributed`` with the same global batch,
seed and epoch budget, one thread per process, and prints a markdown table of the selected
epoch, test metrics and wall time. Outputs go to ``benchmarks/out/ddp_ml1m/`` (gitignored);
a finished run is reused when the script is run again.

    OMP_NUM_THREADS=1 python benchmarks/ddp_ml1m.py --data-root /work/shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "ddp_ml1m"


def run(ranks: int, args: argparse.Namespace) -> tuple[Path, float]:
    """Train the preset with ``ranks`` processes; returns the run directory and wall seconds."""
    output = OUT / f"ranks-{ranks}"
    done = sorted(p for p in output.glob(f"{args.preset}*") if (p / "summary.json").is_file())
    if done:
        return done[-1], json.loads((output / "wall.json").read_text())["seconds"]
    sets = [f"data.root={args.data_root}", f"train.seed={args.seed}"]
    if args.epochs is not None:
        sets.append(f"train.epochs={args.epochs}")
    cli = ["run", args.preset, "--output", str(output), "--quiet"]
    cli += [item for s in sets for item in ("--set", s)]
    if ranks == 1:
        command = [sys.executable, "-m", "negrec.cli", *cli]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc-per-node", str(ranks), "-m", "negrec.cli", *cli, "--distributed"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    print("$", " ".join(command), file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    (output / "wall.json").write_text(json.dumps({"seconds": seconds}))
    (path,) = [p for p in output.glob(f"{args.preset}*") if (p / "summary.json").is_file()]
    return path, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="folder holding ml-1m/")
    parser.add_argument("--preset", default="ml1m-mf-bpr")
    parser.add_argument("--epochs", type=int, help="cut train.epochs (same for both runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = []
    for ranks in (1, 2):
        path, seconds = run(ranks, args)
        summary = json.loads((path / "summary.json").read_text())
        rows.append((ranks, summary, seconds))
    base = rows[0][1]["test"]["ndcg@20"]
    lines = [
        "| ranks | best epoch | epochs run | test recall@20 | test ndcg@20 | rel. diff "
        "ndcg@20 | valid ndcg@20 | mean epoch (s) | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ranks, summary, seconds in rows:
        test, valid = summary["test"], summary["valid"]
        lines.append(
            f"| {ranks} | {summary['best_epoch']} | {summary['epochs_run']} "
            f"| {test['recall@20']:.4f} | {test['ndcg@20']:.4f} "
            f"| {(test['ndcg@20'] - base) / base:+.3%} | {valid['ndcg@20']:.4f} "
            f"| {summary['mean_epoch_seconds']:.2f} | {seconds:.0f} |"
        )
    table = "\n".join(lines)
    (OUT / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
