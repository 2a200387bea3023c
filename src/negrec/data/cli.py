"""``negrec data ...`` commands: look at a data set before training on it.

``negrec data stats PATH [--test PATH2]`` loads a file (or a pre-split pair), prepares it
as training would (threshold, de-duplication, k-core, id encoding) and prints what was
dropped, the size and density of the matrix and the quantiles of user and item degrees.
The main CLI calls :func:`add_commands` to mount these commands.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from negrec.data.interactions import Interactions
from negrec.data.loaders import FORMATS, detect_format, load, load_split
from negrec.data.prepare import PrepareReport, prepare, prepare_split
from negrec.errors import NegrecError

#: Degree quantiles shown by ``data stats``, with their column labels.
QUANTILES: tuple[tuple[str, float], ...] = (
    ("min", 0.0),
    ("25%", 0.25),
    ("50%", 0.5),
    ("75%", 0.75),
    ("90%", 0.9),
    ("99%", 0.99),
    ("max", 1.0),
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``data`` command and its subcommands to the main CLI's subparsers."""
    data = subparsers.add_parser(
        "data",
        help="inspect interaction data files",
        description="Inspect interaction data files in any format negrec can load.",
    )
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    stats = commands.add_parser(
        "stats",
        help="print users, items, density and degree quantiles of a data set",
        description=(
            "Load a data file (or a pre-split train/test pair), prepare it as training "
            "would (rating threshold, de-duplication, k-core, id encoding) and print what "
            "was dropped, the matrix size and density, and user/item degree quantiles."
        ),
    )
    stats.add_argument("path", metavar="PATH", help="the data file (the train file of a split)")
    stats.add_argument(
        "--format",
        choices=[name for name in FORMATS if name != "delimited"],
        default=None,
        help="file format (default: detected from the file name: *.inter, u.data, "
        "ratings.dat, ratings.csv, *.txt)",
    )
    stats.add_argument(
        "--test",
        metavar="PATH2",
        default=None,
        help="the test file of a pre-split pair, in the same format as PATH",
    )
    stats.add_argument(
        "--min-rating",
        metavar="T",
        type=float,
        default=None,
        help="keep only interactions with rating >= T (needs a rating column)",
    )
    stats.add_argument(
        "--k-core",
        metavar="K",
        type=_positive_int,
        default=None,
        help="keep the K-core: every user and item with at least K interactions",
    )
    stats.add_argument(
        "--unseen",
        choices=("error", "drop", "keep"),
        default="error",
        help="with --test: what to do with test users/items absent from train (default: error)",
    )
    stats.set_defaults(func=stats_command)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def format_stats(
    data: Interactions, report: PrepareReport, test: Interactions | None = None
) -> str:
    """The ``data stats`` table for ``data`` (plus ``test``, same id space, if given)."""
    user_degrees = data.user_degrees
    item_degrees = data.item_degrees
    if test is not None:
        user_degrees = user_degrees + test.user_degrees
        item_degrees = item_degrees + test.item_degrees
    interactions = f"{report.n_interactions:,}"
    if report.parts:
        interactions += "  (" + ", ".join(f"{p} {n:,}" for p, n in report.parts.items()) + ")"
    rows = [
        ("users", f"{report.n_users:,}"),
        ("items", f"{report.n_items:,}"),
        ("interactions", interactions),
        ("density", f"{report.density:.6f}"),
    ]
    lines = [f"{name:<14}{value}" for name, value in rows]
    probabilities = [q for _, q in QUANTILES]
    table = [["degree", *(label for label, _ in QUANTILES)]]
    for name, degrees in (("user", user_degrees), ("item", item_degrees)):
        values = np.quantile(degrees, probabilities) if degrees.size else [0.0] * len(QUANTILES)
        table.append([name, *(_number(v) for v in values)])
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    lines.append("")
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def stats_command(args: argparse.Namespace) -> int:
    """Handler of ``negrec data stats``: prints the report and the table; returns 0.

    Errors a user can fix (bad file, bad option) are printed as one line on stderr and
    give the error's exit code (2) rather than a traceback.
    """
    try:
        fmt = args.format or detect_format(args.path)
        test: Interactions | None = None
        if args.test is None:
            data, report = prepare(
                load(args.path, fmt), min_rating=args.min_rating, k_core=args.k_core
            )
            source = f"{args.path} ({fmt})"
        else:
            data, test, report = prepare_split(
                load_split(args.path, args.test, fmt),
                min_rating=args.min_rating,
                k_core=args.k_core,
                on_unseen=args.unseen,
            )
            source = f"{args.path} + {args.test} ({fmt})"
    except NegrecError as err:
        print(f"negrec data stats: error: {err}", file=sys.stderr)
        return err.exit_code
    print(source)
    print(report)
    print()
    print(format_stats(data, report, test))
    return 0
