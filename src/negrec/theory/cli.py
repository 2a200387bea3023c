"""The ``negrec theory`` command: bounds tables, the OPAUC simulation, Monte-Carlo checks.

``add_commands(subparsers)`` registers ``theory`` with three subcommands; each sets
``func`` to a handler ``handler(args) -> int`` returning the exit status. Bad arguments
raise :class:`negrec.errors.NegrecError`, which the main CLI prints on one line and turns
into exit status 2.

- ``theory bounds``: thresholds and probabilities of Theorem 1 of paper (a) (Di Teodoro
  et al., arXiv 2411.07770; DERIVED integer form) for NDCG and MRR, as markdown tables.
- ``theory simulate-opauc``: the OPAUC vs Top-K correlation study of paper (b) (Shi et al.,
  WWW 2023; docs/theory.md#opauc-simulation), written as CSV and PNG.
- ``theory check``: every Monte-Carlo / numerical check of the closed forms; exit 1 if any
  fails.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from negrec.argtypes import seed as seed_type
from negrec.atomic import atomic_write
from negrec.errors import NegrecError
from negrec.theory import bounds as B
from negrec.theory import simulate as S

DEFAULT_KS = "5,10,20,50,100"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def default_ranks(n_items: int) -> list[int]:
    """Ranks 1, 2, 3, 5, 10, 16, 20, 50, 100, 200, 500, ... up to and including ``n_items``."""
    ranks = {1, 2, 3, 5, 10, 16, n_items}
    scale = 10
    while scale <= n_items:
        ranks.update(m * scale for m in (1, 2, 5))
        scale *= 10
    return sorted(r for r in ranks if 1 <= r <= n_items)


def parse_ks(text: str) -> list[int]:
    """Parse ``"5,10,20"`` into ``[5, 10, 20]``; a NegrecError names a bad entry."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise NegrecError(f"--ks must be comma-separated integers, got '{part}'") from None
    if not out:
        raise NegrecError("--ks must list at least one K")
    return sorted(set(out))


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# theory bounds
# --------------------------------------------------------------------------------------


def run_bounds(args: argparse.Namespace) -> int:
    """Print Theorem-1 thresholds and probabilities per loss, for NDCG and MRR."""
    n_items = int(args.items)
    k = int(args.negatives)
    if n_items < 2:
        raise NegrecError(
            f"--items must be >= 2 (one positive and at least one negative), got {n_items}"
        )
    if not 1 <= k <= n_items - 1:
        raise NegrecError(f"--negatives K must lie in [1, items - 1 = {n_items - 1}], got {k}")
    ranks = sorted(set(args.rank)) if args.rank else default_ranks(n_items)
    bad = [r for r in ranks if not 1 <= r <= n_items]
    if bad:
        raise NegrecError(f"--rank must lie in [1, items = {n_items}], got {bad[0]}")
    s_pos = args.pos_score
    if s_pos is not None and not math.isfinite(s_pos):
        raise NegrecError(f"--pos-score must be finite, got {s_pos}")
    n0 = args.n0
    if n0 is not None:
        if not 0 <= n0 <= n_items - 1:
            raise NegrecError(f"--n0 must lie in [0, items - 1 = {n_items - 1}], got {n0}")
        if s_pos is None or s_pos >= 0:
            bad = [r for r in ranks if n0 < r - 1]
            if bad:
                raise NegrecError(
                    f"--n0 {n0} < r+ - 1 = {bad[0] - 1} for --rank {bad[0]}: with s+ >= 0 every "
                    "negative above the positive has a non-negative score"
                )
        else:
            bad = [r for r in ranks if n0 > r - 1]
            if bad:
                raise NegrecError(
                    f"--n0 {n0} > r+ - 1 = {bad[0] - 1} for --rank {bad[0]}: with s+ < 0 every "
                    "non-negative score is above the positive"
                )

    n0_text = "n0 = r+ - 1 (worst case)" if n0 is None else f"n0 = {n0}"
    print("Probability that the sampled loss upper-bounds -ln metric(r+) of the full ranking")
    print(
        "(Theorem 1 of Di Teodoro et al., arXiv 2411.07770, DERIVED integer form; "
        "docs/theory.md#theorem-1, docs/theory.md#mrr)."
    )
    print(
        f"N = {n_items} items (N- = {n_items - 1} negatives), K = {k} sampled without "
        f"replacement; BCE: {n0_text}."
    )
    print(
        "m = smallest count of sampled negatives at or above the positive (|Gamma_K|; "
        "|Gamma_K^0| for BCE) at which the bound holds; p = P(count >= m)."
    )
    for metric in B.METRICS:
        table = B.bound_table(n_items, k, ranks, metric=metric, s_pos=s_pos, n0=n0)
        headers = ["r+", f"-ln {metric.upper()}", "m CCE", "p CCE", "m BPR", "p BPR"]
        keys = [("m_cce", "p_cce"), ("m_bpr", "p_bpr")]
        if "m_bce_worst" in table:
            headers += ["m BCE (s+→∞)", "p BCE (s+→∞)"]
            keys.append(("m_bce_worst", "p_bce_worst"))
        if "m_bce" in table:
            headers += [f"m BCE (s+={s_pos:g})", f"p BCE (s+={s_pos:g})"]
            keys.append(("m_bce", "p_bce"))
        rows = []
        for i, r in enumerate(table["rank"]):
            row = [str(int(r)), _fmt(float(table["neg_log_metric"][i]))]
            for mk, pk in keys:
                row += [str(int(table[mk][i])), _fmt(float(table[pk][i]))]
            rows.append(row)
        print()
        print(f"### {metric.upper()}: P(-ln {metric.upper()}(r+) <= L) >= p")
        print()
        print(_markdown(headers, rows))
    return 0


# --------------------------------------------------------------------------------------
# theory simulate-opauc
# --------------------------------------------------------------------------------------


def _plot(result: S.OpaucCorrelation, path: Path) -> None:
    """Correlation curves, one panel per metric, one line per K; markers at beta = K/N-."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = list(result.corr)
    fig = Figure(figsize=(5.0 * len(metrics), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    betas = result.betas
    for ax, metric in zip(axes, metrics, strict=True):
        for i, k in enumerate(result.ks):
            (line,) = ax.plot(betas, result.corr[metric][i], label=f"K={k}", lw=1.2)
            ax.axvline(k / result.n_neg, color=line.get_color(), ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("beta = n_beta / N-  (dotted: K / N-)")
        ax.set_title(f"{metric}@K vs OPAUC(beta)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Pearson correlation")
    axes[-1].legend(loc="lower left", fontsize="small")
    fig.suptitle(f"N+={result.n_pos}, N-={result.n_neg}, {result.permutations} random permutations")
    fig.savefig(path, format="png", dpi=120)


def run_simulate_opauc(args: argparse.Namespace) -> int:
    """Correlate Top-K metrics with OPAUC(beta) over random permutations; write CSV + PNG."""
    ks = parse_ks(args.ks)
    n_pos, n_neg, perms = int(args.positives), int(args.negatives), int(args.permutations)
    if n_pos < 1 or n_neg < 1:
        raise NegrecError(f"--positives and --negatives must be >= 1, got {n_pos}, {n_neg}")
    if perms < 2:
        raise NegrecError(f"--permutations must be >= 2, got {perms}")
    bad = [k for k in ks if not 1 <= k <= n_neg]
    if bad:
        raise NegrecError(f"every K in --ks must lie in [1, --negatives = {n_neg}], got {bad[0]}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NegrecError(f"--out {out} exists and is not a directory")

    start = time.perf_counter()
    result = S.opauc_topk_correlation(
        n_pos=n_pos,
        n_neg=n_neg,
        ks=ks,
        permutations=perms,
        seed=int(args.seed),
        progress=sys.stderr.isatty(),
    )
    elapsed = time.perf_counter() - start

    frames = []
    for metric, corr in result.corr.items():
        for i, k in enumerate(result.ks):
            frames.append(
                pd.DataFrame(
                    {
                        "metric": metric,
                        "k": k,
                        "n_beta": result.n_betas,
                        "beta": result.betas,
                        "corr": corr[i],
                    }
                )
            )
    curves = pd.concat(frames, ignore_index=True)
    summary = pd.DataFrame(result.summary_rows())
    curves_path = out / "opauc_correlation.csv"
    summary_path = out / "opauc_summary.csv"
    plot_path = out / "opauc_correlation.png"
    atomic_write(curves_path, lambda p: curves.to_csv(p, index=False))
    atomic_write(summary_path, lambda p: summary.to_csv(p, index=False))
    atomic_write(plot_path, lambda p: _plot(result, p))

    print(
        f"Pearson correlation of Top-K metrics with OPAUC(beta), N+={n_pos}, N-={n_neg}, "
        f"{perms} random permutations, seed {args.seed} ({elapsed:.1f} s)."
    )
    print("(Shi et al., WWW 2023; protocol of docs/theory.md#opauc-simulation.)")
    print()
    rows = [
        [
            str(r["metric"]),
            str(r["k"]),
            str(r["best_n_beta"]),
            f"{r['best_beta']:.4g}",
            f"{r['best_corr']:.4f}",
            f"{r['corr_at_k']:.4f}",
            f"{r['auc_corr']:.4f}",
        ]
        for r in summary.to_dict("records")
    ]
    print(
        _markdown(
            [
                "metric",
                "K",
                "best n_beta",
                "best beta",
                "best corr",
                "corr at beta=K/N-",
                "corr with AUC",
            ],
            rows,
        )
    )
    print()
    for p in (curves_path, summary_path, plot_path):
        print(f"wrote {p}")
    return 0


# --------------------------------------------------------------------------------------
# theory check
# --------------------------------------------------------------------------------------


def iter_checks(draws: int, seed: int) -> Iterator[tuple[bool, str]]:
    """Run every check of docs/theory.md#checks that needs sampling or optimisation; yield results.

    Each item is ``(passed, line)``. ``draws`` sets the Monte-Carlo size of the paper (a)
    checks; paper (b) checks use at most 50,000 permutations.
    """
    seeds = iter(np.random.SeedSequence(seed).spawn(64))

    def rng() -> np.random.Generator:
        return np.random.default_rng(next(seeds))

    # paper (a), docs/theory.md#worst-case: worst case makes Theorem 1 exact
    for k, rank in ((10, 10), (10, 50), (100, 10), (100, 50)):
        for c in S.check_worst_case(999, k, rank, draws=draws, seed=rng()):
            yield c.passed, "worst case   " + c.describe()
    # paper (a): Theorem 1 is a lower bound on other scores
    for k, s_pos in ((10, 2.0), (100, 2.5)):
        for c in S.check_random_scores(999, k, s_pos=s_pos, draws=draws, seed=rng()):
            yield c.passed, "normal s_j   " + c.describe()
    # paper (a), docs/theory.md#loss-chain: with all negatives and with sampled subsets
    trials = max(1000, draws // 10)
    for k_chain in (None, 5):
        v = S.loss_chain_violations(trials, rng(), n_neg=20, k=k_chain)
        what = "all negatives" if k_chain is None else f"K={k_chain} of 20"
        yield (
            sum(v.values()) == 0,
            f"loss chain   -ln NDCG <= ln r+ <= CCE <= BPR <= BCE, s+ >= 0, {what}, "
            f"{trials} trials: violations {v}",
        )
    # paper (a), docs/theory.md#bounded-minimum: shared minimiser on [-S, S]
    for bound, k in ((3.0, 4), (1.0, 10)):
        for m in S.check_bounded_minimum(bound, k, seed=rng()):
            yield m.passed, "bounded min  " + m.describe()
    # paper (b), docs/theory.md#opauc: expectation of OPAUC
    perms = min(draws, 50_000)
    e = S.check_expected_opauc(n_beta=50, permutations=perms, seed=rng())
    yield e.passed, "expectation  " + e.describe()
    # paper (b), docs/theory.md#theorem-3: the sandwich on random permutations and by brute force
    for k in (5, 50):
        v = S.sandwich_violations(
            n_pos=200, n_neg=800, k=k, permutations=min(draws, 20_000), seed=rng()
        )
        yield (
            sum(v.values()) == 0,
            f"sandwich     t^2 <= N+N-·OPAUC(K/N-) <= t(N+ + K - t) and Recall/Precision "
            f"bounds, N+=200 N-=800 K={k}: violations {v}",
        )
    brute = S.brute_force_sandwich(4, 6, 3)
    lo_hi = {t: (t * t, t * (4 + 3 - t)) for t in brute}
    yield (
        brute == lo_hi,
        f"sandwich     brute force N+=4 N-=6 K=3, (min, max) per t: {brute}, theory {lo_hi}",
    )
    # paper (b), docs/theory.md#opauc-normalisation: correlations do not depend on the normalisation
    labels = S.label_permutations(200, 800, 2000, rng())
    recall = B.recall_at_k(labels, 20)
    raw = B.opauc(labels, n_beta=20)
    diffs = []
    for norm in (B.normalize_opauc_minmax(raw, 20, 800), B.normalize_opauc_mcclish(raw, 20, 800)):
        diffs.append(abs(np.corrcoef(recall, norm)[0, 1] - np.corrcoef(recall, raw)[0, 1]))
        diffs.append(abs(stats.spearmanr(recall, norm)[0] - stats.spearmanr(recall, raw)[0]))
    yield (
        max(diffs) < 1e-12,
        f"normalise    Pearson/Spearman of Recall@20 vs raw, min/max, McClish OPAUC: "
        f"max difference {max(diffs):.2g}",
    )
    # paper (b), docs/theory.md#opauc-simulation: correlation peaks near beta = K/N-, lower at AUC
    res = S.opauc_topk_correlation(ks=(5, 20, 100), permutations=min(draws, 20_000), seed=rng())
    for i, k in enumerate(res.ks):
        arg = int(res.argmax_n_beta("recall")[i])
        at, au = float(res.at_k("recall")[i]), float(res.auc_corr("recall")[i])
        ok = k / 2 <= arg <= 2 * k and at > au + 0.2
        yield (
            ok,
            f"OPAUC corr   Recall@{k}: argmax n_beta {arg} in [K/2, 2K], corr at K "
            f"{at:.3f} > AUC corr {au:.3f} + 0.2",
        )


def run_check(args: argparse.Namespace) -> int:
    """Run all checks, print PASS/FAIL lines, return 1 if any failed."""
    draws = int(args.draws)
    if draws < 100:
        raise NegrecError(f"--draws must be >= 100, got {draws}")
    start = time.perf_counter()
    total = failed = 0
    for passed, line in iter_checks(draws, int(args.seed)):
        total += 1
        failed += not passed
        print(("PASS  " if passed else "FAIL  ") + line, flush=True)
    elapsed = time.perf_counter() - start
    print(f"{total - failed}/{total} checks passed ({elapsed:.1f} s).")
    return 1 if failed else 0


# --------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``theory`` and its subcommands on the main CLI's subparsers."""
    theory = subparsers.add_parser(
        "theory",
        help="bounds and simulations of the theory behind sampled losses and OPAUC",
        description="Closed-form bounds linking sampled losses to ranking metrics (Di Teodoro "
        "et al., arXiv 2411.07770), the OPAUC vs Top-K study (Shi et al., WWW 2023), and "
        "Monte-Carlo checks of both. See docs/theory.md.",
    )
    sub = theory.add_subparsers(dest="theory_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser(
        "bounds",
        help="probability that a sampled loss upper-bounds -ln NDCG / -ln MRR, per loss",
        description="Thresholds m and probabilities p_L = P(count >= m) of Theorem 1 for CCE, "
        "BPR and BCE, for NDCG and MRR, as markdown tables.",
    )
    p.add_argument(
        "--items",
        "-N",
        type=int,
        required=True,
        help="number of items N (one positive and N-1 negatives)",
    )
    p.add_argument(
        "--negatives", "-K", type=int, required=True, help="sampled negatives K, 1 <= K <= N-1"
    )
    p.add_argument(
        "--rank",
        "-r",
        type=int,
        nargs="+",
        action="extend",
        metavar="R",
        help="rank(s) r+ of the positive in the full ranking, 1..N "
        "(default: 1, 2, 3, 5, 10, 16, 20, 50, ... up to N)",
    )
    p.add_argument(
        "--pos-score",
        type=float,
        default=None,
        metavar="S",
        help="positive score s+ for BCE (adds a BCE(s+) column; default: only the "
        "worst case s+ -> inf)",
    )
    p.add_argument(
        "--n0",
        type=int,
        default=None,
        help="negatives with score >= 0, for BCE (default: r+ - 1, the worst case)",
    )
    p.set_defaults(func=run_bounds)

    p = sub.add_parser(
        "simulate-opauc",
        help="correlation of Recall/Precision/NDCG@K with OPAUC(beta) over random rankings",
        description="Draw random permutations of N+ positives and N- negatives, correlate "
        "Top-K metrics with OPAUC(n/N-) for every n, write CSVs and a PNG, and print where "
        "each correlation peaks.",
    )
    p.add_argument(
        "--permutations",
        "-R",
        type=int,
        default=100_000,
        help="number of random permutations (default 100000)",
    )
    p.add_argument("--positives", type=int, default=200, help="N+ (default 200)")
    p.add_argument("--negatives", type=int, default=800, help="N- (default 800)")
    p.add_argument(
        "--ks", default=DEFAULT_KS, help=f"comma-separated cut-offs K <= N- (default {DEFAULT_KS})"
    )
    p.add_argument("--seed", type=seed_type, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out", default="runs/theory/opauc", help="output directory (default runs/theory/opauc)"
    )
    p.set_defaults(func=run_simulate_opauc)

    p = sub.add_parser(
        "check",
        help="run every Monte-Carlo and numerical check of the bounds (exit 1 on failure)",
        description="Worst-case and random-score Monte Carlo of Theorem 1, the loss chain, "
        "bounded-score minima, E[OPAUC], the Theorem 3 sandwich, normalisation invariance "
        "and the OPAUC correlation peak. Prints PASS/FAIL lines.",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=200_000,
        help="Monte-Carlo draws per paper (a) check (default 200000)",
    )
    p.add_argument("--seed", type=seed_type, default=0, help="random seed (default 0)")
    p.set_defaults(func=run_check)
