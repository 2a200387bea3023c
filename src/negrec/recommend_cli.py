"""The ``negrec recommend`` and ``negrec export`` commands over :mod:`negrec.recommend`.

``negrec recommend RUN [--users FILE|ID ...] [-n 10] [--output recs.csv] [--include-seen]``
writes the top-N items of each user (CSV ``user,rank,item,score``, raw ids);
``negrec export RUN --format npz|csv|parquet [--output PATH]`` writes the model's user and
item embeddings with their raw ids. Files are written atomically (csv / parquet: the
users and items files both or neither); bad input is one line.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from negrec.atomic import atomic_write, atomic_write_files
from negrec.errors import NegrecError

_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")


def add_commands(subparsers: Any) -> None:
    """Register ``recommend`` and ``export`` on the ``negrec`` sub-command parser."""
    rec = subparsers.add_parser(
        "recommend",
        help="top-N items per user from a trained run, in the data's own ids",
        description="Load a run directory (no training data needed) and write each user's "
        "top-N items as CSV user,rank,item,score: score descending, ties by the item's place "
        "in the run's sorted item ids; items the user has seen are left out unless "
        "--include-seen.",
    )
    rec.add_argument("run", metavar="RUN_DIR", help="a finished run directory (negrec run)")
    rec.add_argument(
        "--users",
        nargs="+",
        metavar="FILE|ID",
        help="user ids, or one file of ids (one per line); default: every user of the run",
    )
    rec.add_argument("-n", type=int, default=10, metavar="N", help="items per user (default 10)")
    rec.add_argument("--output", metavar="CSV", help="write the CSV here (default: stdout)")
    rec.add_argument(
        "--include-seen",
        action="store_true",
        help="also recommend items the user already has (default: leave them out)",
    )
    rec.add_argument(
        "--items",
        nargs="+",
        metavar="FILE|ID",
        help="only recommend among these item ids (or one file of them); default: all items",
    )
    rec.add_argument(
        "--unknown",
        choices=("error", "popular"),
        default="error",
        help="a user id the run does not know: an error (default), or the most popular "
        "training items (their score column then holds interaction counts)",
    )
    rec.add_argument(
        "--history",
        choices=("all", "train"),
        default="all",
        help="what a user has seen: every interaction of the run's data (default) or the "
        "training part only",
    )
    rec.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    rec.set_defaults(func=run_recommend)

    exp = subparsers.add_parser(
        "export",
        help="a trained run's user and item embeddings, with raw ids",
        description="Write the run's embeddings (LightGCN: propagated; sequential models: "
        "the item table only) with the data's ids. npz: one file with user_ids, users, "
        "item_ids, items (and item_bias where the model has one). csv / parquet: a folder "
        "with users.EXT and items.EXT (an id column, then f0, f1, ...).",
    )
    exp.add_argument("run", metavar="RUN_DIR", help="a finished run directory (negrec run)")
    exp.add_argument(
        "--format",
        choices=("npz", "csv", "parquet"),
        default="npz",
        help="npz (default), csv, or parquet (needs pyarrow: pip install 'negrec[parquet]')",
    )
    exp.add_argument(
        "--output",
        metavar="PATH",
        help="npz: the file (default RUN_DIR/embeddings.npz); csv / parquet: the folder "
        "(default RUN_DIR/embeddings)",
    )
    exp.set_defaults(func=run_export)


def _ids(values: list[str] | None, vocabulary: np.ndarray, what: str) -> list[Any] | None:
    """Ids from the command line (or the one file they name), typed like the run's ids:
    integers where the run's ids are integers (``"7"`` -> 7; ``"007"`` stays text, so it
    is reported unknown rather than read as 7)."""
    if values is None:
        return None
    if len(values) == 1 and Path(values[0]).is_file():
        path = Path(values[0])
        try:
            text = path.read_text(encoding="utf-8-sig")  # a BOM is not part of the id
        except UnicodeDecodeError:
            raise NegrecError(f"{path}: {what} ids must be UTF-8 text, one per line") from None
        values = [line.strip() for line in text.splitlines() if line.strip()]
        if not values:
            raise NegrecError(f"{path}: no {what} ids in the file")
    if vocabulary.dtype.kind in "iu":
        return [int(v) if _CANONICAL_INT.match(v) else v for v in values]
    return list(values)


def _csv_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        frame.to_csv(tmp, index=False, float_format="%.9g")

    return write


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, _csv_writer(frame))


def run_recommend(args: argparse.Namespace) -> int:
    """Handler of ``negrec recommend``; returns the exit status."""
    from negrec.recommend import load

    if args.n < 1:
        raise NegrecError(f"-n must be >= 1, got {args.n}")
    rec = load(args.run, history=args.history, device=args.device)
    users = _ids(args.users, rec.user_ids, "user")
    items = _ids(args.items, rec.item_ids, "item")
    table = rec.recommend(
        users, args.n, exclude_seen=not args.include_seen, items=items, unknown=args.unknown
    )
    if args.output:
        _write_csv(table, Path(args.output))
        print(f"negrec: {len(table):,} recommendations written to {args.output}", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, index=False, float_format="%.9g")
    return 0


def _table(frame: pd.DataFrame, key: str, bias: pd.Series | None = None) -> pd.DataFrame:
    out = pd.DataFrame(frame.to_numpy(), columns=[f"f{j}" for j in range(frame.shape[1])])
    out.insert(0, key, frame.index.to_numpy())
    if bias is not None:
        out["bias"] = bias.to_numpy()
    return out


def _parquet_writer(table: pd.DataFrame) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        table.to_parquet(tmp, engine="pyarrow", index=False)

    return write


def run_export(args: argparse.Namespace) -> int:
    """Handler of ``negrec export``; returns the exit status."""
    from negrec.recommend import load

    if args.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise NegrecError(
                "--format parquet needs pyarrow: pip install 'negrec[parquet]' "
                "(or use --format npz or csv)"
            ) from None
    emb = load(args.run).embeddings()
    run = Path(args.run)
    if args.format == "npz":
        out = Path(args.output) if args.output else run / "embeddings.npz"
        arrays = {"item_ids": emb.items.index.to_numpy(), "items": emb.items.to_numpy()}
        if emb.users is not None:
            arrays |= {"user_ids": emb.users.index.to_numpy(), "users": emb.users.to_numpy()}
        if emb.item_bias is not None:
            arrays["item_bias"] = emb.item_bias.to_numpy()
        from negrec.experiment.artifacts import id_array

        for key in ("item_ids", "user_ids"):
            if key in arrays:
                arrays[key] = id_array(arrays[key])

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write(out, write)
        written = [out]
    else:
        folder = Path(args.output) if args.output else run / "embeddings"
        if folder.exists() and not folder.is_dir():
            raise NegrecError(
                f"{folder}: --output for {args.format} is a folder, and this is a file"
            )
        tables = {"items": _table(emb.items, "item", emb.item_bias)}
        if emb.users is not None:
            tables["users"] = _table(emb.users, "user")
        writer = _csv_writer if args.format == "csv" else _parquet_writer
        # both files or neither: an earlier export's files stay until both new ones are whole
        written = atomic_write_files(
            folder, {f"{name}.{args.format}": writer(table) for name, table in tables.items()}
        )
    if emb.users is None:
        print("negrec: a sequential model has no user table: items only", file=sys.stderr)
    print("negrec: wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0
