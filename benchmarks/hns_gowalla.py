"""Issue 3 on shared Gowalla: do DNS(M, N) and Softmax-v(rho, N), with M and rho chosen on
validation, beat BPR with uniform negatives (its L2 tuned on validation too) on test
NDCG@50 and Recall@50, mean of 3 seeds? And the paper's guideline: which M does best for
NDCG@5, @20 and @50?

Two stages over the ``hns`` preset (14 settings: BPR x 6 L2 weights, DNS x 5 values of M,
Softmax-v x 3 values of rho), then the tables:

1. ``select``: every setting with seed 0 (``negrec sweep hns --set 'grid.seeds=[0]'``).
2. ``confirm``: each family's best setting on validation NDCG@50 (the selected epoch's
   value) with seeds 0, 1, 2: a config holding only those three entries, same sweep name
   and folder, so the seed-0 runs are found finished and skipped; running the whole preset
   afterwards would skip all nine as well.
3. ``analyse``: the test table (mean +- std over seeds, relative gain over BPR, paired t-test)
   and the M guideline (best validation NDCG@K over epochs, per M, seed 0), as markdown in
   ``OUTPUT/hns_gowalla.md`` with a plot ``OUTPUT/dns_m_guideline.png``; the run
   directories are in ``OUTPUT/runs``.

    python benchmarks/hns_gowalla.py --data ../shared/data --output benchmarks/out/hns \\
        [--workers 12] [--set train.device=cuda] [--stage all|select|confirm|analyse]

The same two-stage protocol on any dataset, with M, rho, the lr and L2 searched by Optuna
instead of this fixed grid: ``negrec reproduce hns --dataset NAME`` (see the README).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from negrec.experiment.config import read_toml
from negrec.experiment.rundir import is_run_dir

FAMILIES = ("bpr-uniform", "dns", "softmax_v")
SELECT = "ndcg@50"
KS = (5, 20, 50)


def family(label: str) -> str:
    return next(f for f in FAMILIES if label.startswith(f))


def sweep(config: str, args: argparse.Namespace, extra: list[str]) -> None:
    command = [
        sys.executable, "-m", "negrec.cli", "sweep", config,
        "--set", f"data.root={args.data}",
        "--output", str(args.output / "runs"),
        "--workers", str(args.workers),
    ]  # fmt: skip
    for override in [*args.set, *extra]:
        command += ["--set", override]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def runs(folder: Path) -> list[dict[str, Any]]:
    """Summary of every finished run: label, seed, valid / test metrics, run folder."""
    found = []
    for run in sorted(p for p in folder.iterdir() if is_run_dir(p)):
        summary = json.loads((run / "summary.json").read_text())
        label = summary["name"].rsplit(",seed=", 1)[0]
        found.append({**summary, "label": label, "dir": run})
    return found


def _setting_order(run: dict[str, Any]) -> tuple[str, float]:
    """Family, then the numeric value in the label (l2, M or rho)."""
    label = run["label"]
    number = re.search(r"(?:l2=|-m|-rho)([0-9.e-]+?)(?:-n200)?$", label)
    return family(label), float(number.group(1)) if number else 0.0


def winners(found: list[dict[str, Any]]) -> dict[str, str]:
    """Each family's setting with the best seed-0 validation NDCG@50."""
    best: dict[str, tuple[float, str]] = {}
    for run in found:
        if run["seed"] != 0:
            continue
        value, fam = run["valid"][SELECT], family(run["label"])
        if fam not in best or value > best[fam][0]:
            best[fam] = (value, run["label"])
    return {fam: label for fam, (_, label) in best.items()}


def confirm_config(chosen: dict[str, str], path: Path) -> None:
    """The preset restricted to the chosen entries, seeds 0-2 (written as TOML)."""
    from importlib import resources

    import tomli_w

    raw = read_toml(Path(str(resources.files("negrec.presets") / "hns.toml")))
    keep = set(chosen.values())
    raw["grid"]["runs"] = [e for e in raw["grid"]["runs"] if e["name"] in keep]
    raw["grid"]["seeds"] = [0, 1, 2]
    path.write_text(tomli_w.dumps(raw))


def spread(values: np.ndarray) -> str:
    """``mean ± std`` over seeds (the mean alone for one seed)."""
    if len(values) < 2:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def analyse(folder: Path, out: Path) -> str:
    found = runs(folder)
    chosen = winners(found)
    lines = ["### Selection on validation (seed 0): best validation NDCG@50 per setting", ""]
    lines += [
        "| setting | valid NDCG@50 | best epoch | epochs run | s / epoch |",
        "|---|---|---|---|---|",
    ]
    for run in sorted((r for r in found if r["seed"] == 0), key=_setting_order):
        mark = " (chosen)" if run["label"] in chosen.values() else ""
        lines.append(
            f"| {run['label']}{mark} | {run['valid'][SELECT]:.4f} | {run['best_epoch']} | "
            f"{run['epochs_run']} | {run['mean_epoch_seconds']:.2f} |"
        )
    lines += ["", "### Test, each family's chosen setting, seeds 0-2 (mean ± std)", ""]
    lines += [
        "| family | setting | seeds | test NDCG@50 | test Recall@50 | NDCG@50 vs BPR | "
        "Recall@50 vs BPR | paired t-test vs BPR (NDCG@50) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_seed: dict[str, dict[int, dict[str, float]]] = {}
    for run in found:
        if run["label"] in chosen.values():
            by_seed.setdefault(run["label"], {})[run["seed"]] = run["test"]
    base = by_seed.get(chosen.get("bpr-uniform", ""), {})
    for fam in FAMILIES:
        if fam not in chosen:
            continue
        label = chosen[fam]
        seeds = sorted(by_seed[label])
        ndcg = np.array([by_seed[label][s]["ndcg@50"] for s in seeds])
        recall = np.array([by_seed[label][s]["recall@50"] for s in seeds])
        gain_n = gain_r = test = "—"
        shared = [s for s in seeds if s in base]
        if fam != "bpr-uniform" and shared:
            b_n = np.array([base[s]["ndcg@50"] for s in shared])
            b_r = np.array([base[s]["recall@50"] for s in shared])
            gain_n = f"{100 * (ndcg.mean() / b_n.mean() - 1):+.1f}%"
            gain_r = f"{100 * (recall.mean() / b_r.mean() - 1):+.1f}%"
            if len(shared) >= 2:
                ours = np.array([by_seed[label][s]["ndcg@50"] for s in shared])
                t = stats.ttest_rel(ours, b_n)
                test = f"t = {t.statistic:.1f}, p = {t.pvalue:.3g}"
        lines.append(
            f"| {fam} | {label} | {len(seeds)} | {spread(ndcg)} | {spread(recall)} | "
            f"{gain_n} | {gain_r} | {test} |"
        )
    lines += ["", guideline(found, out / "dns_m_guideline.png")]
    text = "\n".join(lines) + "\n"
    (out / "hns_gowalla.md").write_text(text)
    return text


def guideline(found: list[dict[str, Any]], figure: Path) -> str:
    """Best validation NDCG@K over epochs for each M (DNS runs, seed 0), and the winning M."""
    import pandas as pd

    rows = {}
    for run in found:
        if run["seed"] != 0 or run["sampler"] != "dns":
            continue
        history = pd.read_csv(run["dir"] / "history.csv")
        rows[int(run["k"])] = {k: float(history[f"valid/ndcg@{k}"].max()) for k in KS}
    if not rows:
        return ""
    ms = sorted(rows)
    lines = ["### DNS(M, 200): best validation NDCG@K over epochs, per M (seed 0)", ""]
    lines += ["| M | " + " | ".join(f"NDCG@{k}" for k in KS) + " |", "|---|" + "---|" * len(KS)]
    for m in ms:
        lines.append(f"| {m} | " + " | ".join(f"{rows[m][k]:.4f}" for k in KS) + " |")
    best = {k: max(ms, key=lambda m, k=k: rows[m][k]) for k in KS}
    order = [best[k] for k in KS]
    holds = all(a <= b for a, b in pairwise(order))
    lines += [
        "",
        "best M: "
        + ", ".join(f"NDCG@{k}: M = {best[k]}" for k in KS)
        + f"; the best M does not grow as K shrinks: {'yes' if holds else 'no'}",
    ]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from negrec.atomic import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for k in KS:
        values = np.array([rows[m][k] for m in ms])
        ax.plot(ms, values / values.max(), marker="o", label=f"NDCG@{k}")
    ax.set_xscale("log")
    ax.set_xlabel("M (kept hardest of N = 200 uniform candidates)")
    ax.set_ylabel("best validation NDCG@K / its best over M")
    ax.set_title("DNS(M, 200), MF on Gowalla: which M suits which K")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, figure)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--output", default=Path("benchmarks/out/hns"), type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="extra config override")
    parser.add_argument("--stage", choices=["all", "select", "confirm", "analyse"], default="all")
    args = parser.parse_args()
    folder = args.output / "runs"
    if args.stage in ("all", "select"):
        sweep("hns", args, ["grid.seeds=[0]"])
    if args.stage in ("all", "confirm"):
        chosen = winners(runs(folder))
        print("chosen on validation:", chosen, flush=True)
        config = args.output / "hns_confirm.toml"
        confirm_config(chosen, config)
        sweep(str(config), args, [])
    if args.stage in ("all", "analyse"):
        print(analyse(folder, args.output))


if __name__ == "__main__":
    main()
