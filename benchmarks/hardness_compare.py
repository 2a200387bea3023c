"""Several `negrec hardness` results on one model, side by side (issue 3): a table of P(r),
the probability that a drawn negative is among the user's top-r negatives, with the
implied beta of OPAUC(beta) (theory and measured), and one plot of the P(r) curves.

Each argument is ``LABEL=CSV``, a CSV written by ``negrec hardness RUN_DIR ... --out DIR``:

    python benchmarks/hardness_compare.py "DNS(1)=out/h/dns1/hardness-dns-k1-pool200.csv" \\
        "Softmax-v(10)=out/h/sv/hardness-softmax_v.csv" --figure hardness.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def read(specs: list[str]) -> dict[str, pd.DataFrame]:
    tables = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"{spec!r}: expected LABEL=CSV")
        tables[label] = pd.read_csv(Path(path))
    return tables


def table(tables: dict[str, pd.DataFrame], ranks: list[int]) -> str:
    head = " | ".join(f"P({r})" for r in ranks)
    lines = [
        f"| sampler | {head} | beta (theory) | beta (measured) |",
        "|---|" + "---:|" * (len(ranks) + 2),
    ]
    for label, frame in tables.items():
        by_rank = dict(zip(frame["r"], frame["sampler"], strict=True))
        cells = " | ".join(f"{by_rank[r]:.3g}" if r in by_rank else "" for r in ranks)
        theory, measured = frame["beta_theory"].iloc[0], frame["beta_measured"].iloc[0]
        lines.append(f"| {label} | {cells} | {theory:.3g} | {measured:.3g} |")
    return "\n".join(lines)


def plot(tables: dict[str, pd.DataFrame], figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from negrec.atomic import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, frame in tables.items():
        style = "--" if label.lower().startswith("dns") else "-"
        ax.plot(frame["r"], frame["sampler"], style, marker="o", markersize=3, label=label)
    first = next(iter(tables.values()))
    ax.plot(first["r"], first["uniform"], ":", color="grey", label="uniform")
    ax.set_xscale("log")
    ax.set_xlabel("r (top-r negatives of the user, by the model's scores)")
    ax.set_ylabel("P(drawn negative in the top r)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    print(f"figure: {save_figure(fig, figure)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="LABEL=CSV from negrec hardness")
    parser.add_argument("--ranks", default="1,10,100,1000", help="r columns of the table")
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    tables = read(args.results)
    print(table(tables, [int(r) for r in args.ranks.split(",")]))
    if args.figure is not None:
        plot(tables, args.figure)


if __name__ == "__main__":
    main()
