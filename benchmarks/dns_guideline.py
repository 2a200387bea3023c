"""Issue 19, item 5: does the hard-negative paper's guideline hold on shared Gowalla?

Shi et al. (WWW 2023), Theorem 3 and Section 5: DNS(M, N) optimises OPAUC(beta = M / N), and
a smaller Top-K cut-off calls for harder negatives, i.e. a smaller M of N. So the best M for
NDCG@5 should be no larger than the best M for NDCG@20, and that no larger than for NDCG@50.
Their Figure 9 varies the pool N at a fixed M.

Runs the grid of ``benchmarks/configs/dns_guideline_gowalla.toml`` (DNS(M, 200) for
M in {1, 2, 3, 5, 10, 20} and DNS(5, N) for N in {50, 100, 200, 500}, 3 seeds, the ``hns``
preset's protocol), then writes the tables and a figure:

    python benchmarks/dns_guideline.py run --data ../shared/data \\
        --output benchmarks/out/dns-guideline [--workers 14] [--set train.device=cuda]
    python benchmarks/dns_guideline.py pack --output benchmarks/out/dns-guideline
    python benchmarks/dns_guideline.py analyse --output benchmarks/out/dns-guideline

``pack`` keeps what ``analyse`` reads (summary.json, history.csv, config.toml and
test_per_user.csv of every run) in ``OUTPUT/runs-light.tar.gz``; ``analyse`` reads
``OUTPUT/runs`` or, if absent, that archive.

Uncertainty, two ways: over seeds (mean and a 95% t interval from the 3 seeds' test
figures), and over users (per-user test NDCG@K averaged over the seeds, then 2,000 paired
bootstrap resamples of the users: the 95% interval of each setting's difference to the
best, and how often each setting is the best). Test is read once per run, at the epoch
chosen on validation NDCG@50; the validation view (each M's best validation NDCG@K over its
epochs) is given beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tarfile
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CONFIG = Path(__file__).resolve().parent / "configs" / "dns_guideline_gowalla.toml"
KS = (5, 20, 50)
KEEP = ("summary.json", "history.csv", "config.toml", "test_per_user.csv")
RESAMPLES = 2000


def run(args: argparse.Namespace) -> None:
    command = [
        sys.executable, "-m", "negrec.cli", "sweep", str(CONFIG),
        "--set", f"data.root={args.data}",
        "--output", str(args.output / "runs"),
        "--workers", str(args.workers),
    ]  # fmt: skip
    for override in args.set:
        command += ["--set", override]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def pack(output: Path) -> Path:
    """The files ``analyse`` reads, of every finished run, in one archive."""
    archive = output / "runs-light.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for run_dir in sorted((output / "runs").iterdir()):
            for name in KEEP:
                path = run_dir / name
                if not path.is_file():
                    continue
                if name != "test_per_user.csv":
                    tar.add(path, arcname=f"{run_dir.name}/{name}")
                    continue
                # only the columns analyse reads: a third of the archive's size
                columns = ["user_index", *(f"ndcg@{k}" for k in KS)]
                data = pd.read_csv(path, usecols=columns).to_csv(index=False).encode()
                info = tarfile.TarInfo(f"{run_dir.name}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return archive


def load_runs(output: Path) -> list[dict[str, Any]]:
    """Every finished run: M, N, seed, summary, history and per-user test NDCG@K."""
    files: dict[str, dict[str, bytes]] = {}
    folder = output / "runs"
    if folder.is_dir():
        for run_dir in folder.iterdir():
            for name in KEEP:
                if (run_dir / name).is_file():
                    files.setdefault(run_dir.name, {})[name] = (run_dir / name).read_bytes()
    else:
        with tarfile.open(output / "runs-light.tar.gz") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    run_name, name = member.name.split("/", 1)
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    files.setdefault(run_name, {})[name] = extracted.read()
    runs = []
    for run_name, found in sorted(files.items()):
        if "summary.json" not in found:
            continue  # a run killed before it finished
        match = re.fullmatch(r"dns-m(\d+)-n(\d+),seed=(\d+)", run_name)
        if match is None:
            continue
        per_user = pd.read_csv(io.BytesIO(found["test_per_user.csv"])).sort_values("user_index")
        runs.append(
            {
                "m": int(match[1]),
                "n": int(match[2]),
                "seed": int(match[3]),
                "summary": json.loads(found["summary.json"]),
                "history": pd.read_csv(io.BytesIO(found["history.csv"])),
                # [n_test_users] per K, in user_index order
                "per_user": {k: per_user[f"ndcg@{k}"].to_numpy() for k in KS},
            }
        )
    return runs


def t_interval(values: np.ndarray) -> str:
    """``mean ± half-width`` of the 95% t interval over seeds (mean alone for one seed)."""
    if len(values) < 2:
        return f"{values.mean():.4f}"
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.4f} ± {half:.4f}"


def bootstrap(
    per_user: dict[Any, np.ndarray], rng: np.random.Generator
) -> tuple[Any, dict[Any, tuple[float, float]], dict[Any, float]]:
    """Paired user bootstrap over settings (each [n_users], averaged over seeds): the best
    setting on the full sample, the 95% interval of each setting minus the best, and the
    share of resamples in which each setting is the best."""
    keys = list(per_user)
    table = np.stack([per_user[key] for key in keys])  # [settings, users]
    best = keys[int(table.mean(axis=1).argmax())]
    n_users = table.shape[1]
    means = np.empty((RESAMPLES, len(keys)))
    for start in range(0, RESAMPLES, 200):  # 200 resamples at a time: [200, users] indices
        draws = rng.integers(0, n_users, size=(min(200, RESAMPLES - start), n_users))
        means[start : start + len(draws)] = table[:, draws].mean(axis=2).T
    diffs = means - means[:, [keys.index(best)]]  # [resamples, settings]
    low, high = np.percentile(diffs, [2.5, 97.5], axis=0)
    wins = np.bincount(means.argmax(axis=1), minlength=len(keys)) / RESAMPLES
    return (
        best,
        {key: (float(low[i]), float(high[i])) for i, key in enumerate(keys)},
        {key: float(wins[i]) for i, key in enumerate(keys)},
    )


def sweep_table(runs: list[dict[str, Any]], axis: str, fixed: dict[str, int]) -> list[str]:
    """One row per value of ``axis`` (m or n): cost, epochs, test NDCG@K over seeds."""
    chosen = [r for r in runs if all(r[key] == value for key, value in fixed.items())]
    lines = [
        f"| {axis.upper()} | seeds | best epoch (range) | epochs run | s / epoch | "
        "budget-bound | valid NDCG@50 | " + " | ".join(f"test NDCG@{k}" for k in KS) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(KS),
    ]
    for value in sorted({r[axis] for r in chosen}):
        group = [r["summary"] for r in chosen if r[axis] == value]
        best = [s["best_epoch"] for s in group]
        lines.append(
            f"| {value} | {len(group)} | {min(best)}-{max(best)} | "
            f"{min(s['epochs_run'] for s in group)}-{max(s['epochs_run'] for s in group)} | "
            f"{np.mean([s['mean_epoch_seconds'] for s in group]):.2f} | "
            f"{sum(bool(s.get('budget_bound')) for s in group)} | "
            f"{t_interval(np.array([s['valid']['ndcg@50'] for s in group]))} | "
            + " | ".join(t_interval(np.array([s["test"][f"ndcg@{k}"] for s in group])) for k in KS)
            + " |"
        )
    return lines


def best_per_k(
    runs: list[dict[str, Any]], axis: str, fixed: dict[str, int], rng: np.random.Generator
) -> tuple[list[str], dict[int, Any]]:
    """Per K: the best setting on test (user bootstrap) and on validation (over seeds)."""
    chosen = [r for r in runs if all(r[key] == value for key, value in fixed.items())]
    values = sorted({r[axis] for r in chosen})
    lines = [
        f"| K | best {axis.upper()} on test | share of user resamples won, per {axis.upper()} | "
        f"test NDCG@K minus the best's, 95% user-bootstrap interval | best {axis.upper()} on "
        "validation (seed mean of each run's best valid NDCG@K) |",
        "|---|---|---|---|---|",
    ]
    best_of: dict[int, Any] = {}
    for k in KS:
        per_user = {
            v: np.mean([r["per_user"][k] for r in chosen if r[axis] == v], axis=0) for v in values
        }
        best, intervals, wins = bootstrap(per_user, rng)
        best_of[k] = best
        valid = {
            v: np.mean(
                [float(r["history"][f"valid/ndcg@{k}"].max()) for r in chosen if r[axis] == v]
            )
            for v in values
        }
        valid_best = max(values, key=lambda v: valid[v])
        lines.append(
            f"| {k} | **{best}** | "
            + ", ".join(f"{v}: {wins[v]:.0%}" for v in values)
            + " | "
            + ", ".join(
                f"{v}: [{intervals[v][0]:+.4f}, {intervals[v][1]:+.4f}]"
                for v in values
                if v != best
            )
            + f" | {valid_best} |"
        )
    return lines, best_of


def tilt(runs: list[dict[str, Any]], reference: int, rng: np.random.Generator) -> list[str]:
    """The guideline's direction without relying on the arg-max: for each M of N = 200, its
    relative gap to ``reference`` (the best M for NDCG@50) at K = 5 and at K = 50, and the
    95% user-bootstrap interval of (gap at 5) - (gap at 50). The guideline predicts a
    positive tilt for M < reference (smaller M relatively better at a small cut-off) and a
    negative one for M > reference."""
    chosen = [r for r in runs if r["n"] == 200]
    values = sorted({r["m"] for r in chosen})
    # per_user[K][M]: [n_users], averaged over seeds
    per_user = {
        k: {v: np.mean([r["per_user"][k] for r in chosen if r["m"] == v], axis=0) for v in values}
        for k in (KS[0], KS[-1])
    }
    n_users = len(per_user[KS[0]][reference])
    lines = [
        f"| M | gap to M = {reference} at NDCG@{KS[0]} | gap at NDCG@{KS[-1]} | "
        f"tilt = gap@{KS[0]} - gap@{KS[-1]}, 95% user-bootstrap interval | "
        "guideline's sign |",
        "|---|---|---|---|---|",
    ]
    draws = rng.integers(0, n_users, size=(RESAMPLES, n_users))  # [resamples, users]
    for v in values:
        if v == reference:
            continue
        gaps, boot = [], []
        for k in (KS[0], KS[-1]):
            ours, ref = per_user[k][v], per_user[k][reference]
            gaps.append(ours.mean() / ref.mean() - 1)
            boot.append(ours[draws].mean(axis=1) / ref[draws].mean(axis=1) - 1)
        low, high = np.percentile(boot[0] - boot[1], [2.5, 97.5])
        want = "+" if v < reference else "-"
        agrees = (low > 0) if want == "+" else (high < 0)
        lines.append(
            f"| {v} | {100 * gaps[0]:+.2f}% | {100 * gaps[1]:+.2f}% | "
            f"{100 * (gaps[0] - gaps[1]):+.2f} pts [{100 * low:+.2f}, {100 * high:+.2f}] | "
            f"{want}: {'agrees' if agrees else 'not shown'} |"
        )
    return lines


def figure(runs: list[dict[str, Any]], path: Path) -> None:
    """Test NDCG@K (mean over seeds, relative to its best over the axis) against M and N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from negrec.atomic import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, axis, fixed, label in (
        (axes[0], "m", {"n": 200}, "M (hardest kept of N = 200 uniform candidates)"),
        (axes[1], "n", {"m": 5}, "N (pool size), M = 5"),
    ):
        chosen = [r for r in runs if all(r[key] == value for key, value in fixed.items())]
        values = sorted({r[axis] for r in chosen})
        if not values:
            continue
        for k in KS:
            seeds = [
                np.array([r["summary"]["test"][f"ndcg@{k}"] for r in chosen if r[axis] == v])
                for v in values
            ]
            means = np.array([s.mean() for s in seeds])
            spread = np.array([s.std(ddof=1) if len(s) > 1 else 0.0 for s in seeds])
            top = means.max()
            ax.errorbar(values, means / top, yerr=spread / top, marker="o", capsize=3,
                        label=f"NDCG@{k}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(values, [str(v) for v in values])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("test NDCG@K / its best (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("DNS(M, N), MF on Gowalla: which M suits which Top-K cut-off")
    fig.tight_layout()
    save_figure(fig, path)


def analyse(output: Path, seed: int = 0) -> str:
    runs = load_runs(output)
    if not runs:
        raise SystemExit(f"no finished runs under {output}/runs or {output}/runs-light.tar.gz")
    rng = np.random.default_rng(seed)
    lines = ["## DNS(M, 200): M sweep", ""]
    lines += sweep_table(runs, "m", {"n": 200})
    lines += ["", "Best M per Top-K cut-off:", ""]
    table, best_m = best_per_k(runs, "m", {"n": 200}, rng)
    lines += table
    order = [best_m[k] for k in KS]
    if len(set(order)) == 1:
        verdict = "not shown: the same M is best at every cut-off"
    elif all(a <= b for a, b in pairwise(order)):
        verdict = "holds: the best M shrinks with the cut-off"
    else:
        verdict = "contradicted: the best M grows as the cut-off shrinks"
    lines += [
        "",
        f"Guideline (best M for NDCG@5 <= for NDCG@20 <= for NDCG@50, not all equal): best M "
        f"on test = {', '.join(f'@{k}: {best_m[k]}' for k in KS)} -> **{verdict}**.",
        "",
        f"Its direction, around the best M for NDCG@{KS[-1]}:",
        "",
        *tilt(runs, best_m[KS[-1]], rng),
        "",
        "## DNS(5, N): pool sweep (the paper's Figure 9)",
        "",
    ]
    lines += sweep_table(runs, "n", {"m": 5})
    lines += ["", "Best N per Top-K cut-off:", ""]
    lines += best_per_k(runs, "n", {"m": 5}, rng)[0]
    figure(runs, output / "dns_guideline.png")
    lines += ["", f"Figure: `{output / 'dns_guideline.png'}`."]
    text = "\n".join(lines) + "\n"
    (output / "dns_guideline.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=["run", "pack", "analyse"])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--output", default=Path("benchmarks/out/dns-guideline"), type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="extra config override")
    args = parser.parse_args()
    if args.stage == "run":
        run(args)
    elif args.stage == "pack":
        print(pack(args.output))
    else:
        print(analyse(args.output))


if __name__ == "__main__":
    main()
