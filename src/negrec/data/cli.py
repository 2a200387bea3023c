"""``negrec data ...`` commands: look at a data set before training on it; get public ones.

``negrec data stats PATH [--test PATH2]`` loads a file (or a pre-split pair), prepares it
as training would (threshold, de-duplication, k-core, id encoding) and prints what was
dropped, the size and density of the matrix and the quantiles of user and item degrees;
any delimited file reads with ``--format delimited --columns user=...,item=...`` (plus
``--sep`` and ``--header`` / ``--no-header``).
``negrec data list`` shows the public datasets negrec knows (source, licence, size,
recipe); ``negrec data fetch NAME`` downloads, verifies, prepares and caches one;
``negrec data import NAME PATH`` does the same from files the user already has.
The main CLI calls :func:`add_commands` to mount these commands.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from negrec.argtypes import positive_int, positive_seconds
from negrec.data.cache import cache_root, load_prepared, prepared_names
from negrec.data.datasets import REGISTRY, DatasetSpec, get_spec
from negrec.data.fetch import fetch_dataset, import_dataset
from negrec.data.interactions import Interactions
from negrec.data.loaders import FORMATS, detect_format, load, load_split, parse_separator
from negrec.data.prepare import PrepareReport, prepare, prepare_split
from negrec.errors import ConfigError, NegrecError

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


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``data`` command and its subcommands to the main CLI's subparsers."""
    data = subparsers.add_parser(
        "data",
        help="inspect data files; list, fetch and import public datasets",
        description="Inspect interaction data files in any format negrec can load, and "
        "list, download (fetch) or prepare from local files (import) the public datasets "
        "negrec knows.",
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
        choices=list(FORMATS),
        default=None,
        help="file format (default: detected from the file name: *.inter, u.data, "
        "ratings.dat, ratings.csv, *.txt; 'delimited' when --columns is given)",
    )
    _delimited_arguments(stats)
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
        type=positive_int,
        default=None,
        help="keep the K-core: every user and item with at least K interactions",
    )
    stats.add_argument(
        "--unseen",
        choices=("error", "drop", "keep"),
        default="error",
        help="with --test: what to do with test users/items absent from train (default: error)",
    )
    stats.add_argument(
        "--overlap",
        choices=("drop", "error", "keep"),
        default="drop",
        help="with --test: what to do with test rows that repeat a training (user, item) "
        "pair, easy hits that inflate every metric (default: drop, and count them)",
    )
    stats.set_defaults(func=stats_command)
    _add_registry_commands(commands)


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


ROLES = ("user", "item", "rating", "timestamp")


def _option_error(option: str, message: str) -> NegrecError:
    return NegrecError(f"{option}: {message}")


def parse_columns(text: str) -> dict[str, str | int]:
    """``--columns user=user_id,item=1`` -> {"user": "user_id", "item": 1}.

    A value of ASCII digits is a 0-based position, anything else a header name. Raises
    :class:`NegrecError` naming ``--columns`` for a malformed or incomplete mapping.
    """
    mapping: dict[str, str | int] = {}
    for part in text.split(","):
        role, equals, column = (piece.strip() for piece in part.partition("="))
        if not equals or not role or not column:
            raise _option_error(
                "--columns", f"{part.strip()!r} is not ROLE=COLUMN (e.g. user=user_id,item=1)"
            )
        if role not in ROLES:
            raise _option_error("--columns", f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if role in mapping:
            raise _option_error("--columns", f"{role} is given twice")
        value: str | int = int(column) if column.isascii() and column.isdigit() else column
        twin = next((other for other, used in mapping.items() if used == value), None)
        if twin is not None:
            raise _option_error("--columns", f"{role} and {twin} are both column {column!r}")
        mapping[role] = value
    for role in ("user", "item"):
        if role not in mapping:
            raise _option_error("--columns", f"the {role} column is required (e.g. {role}=0)")
    return mapping


def delimited_options(
    fmt: str, columns: str | None, sep: str | None, header: bool | None
) -> dict[str, Any]:
    """The loader options ``--columns``, ``--sep`` and ``--header`` / ``--no-header`` give
    (format 'delimited' only; elsewhere they are refused). ``header`` None (neither flag)
    means a header line when a column is given by name; columns all given by position
    need one of the flags."""
    if fmt != "delimited":
        flag = "--header" if header else "--no-header"
        given = [
            name
            for name, value in (("--columns", columns), ("--sep", sep), (flag, header is not None))
            if value
        ]
        if given:
            raise _option_error(given[0], f"only read with --format delimited, not {fmt!r}")
        return {}
    if columns is None:
        raise _option_error(
            "--columns",
            "--format delimited needs the column mapping, e.g. --columns "
            "user=user,item=item,rating=rating (header names) or user=0,item=1 (positions)",
        )
    mapping = parse_columns(columns)
    names = [f"{role}={column}" for role, column in mapping.items() if isinstance(column, str)]
    if header is None:
        if not names:  # positions alone: line 1 could be a header or data
            raise _option_error(
                "--columns",
                "the columns are 0-based positions, so say whether the file's first line is "
                "a header: --header (skip it) or --no-header (it is data)",
            )
        header = True
    if not header and names:
        raise _option_error(
            "--columns",
            f"{names[0]} names a column, but --no-header says the file has no header "
            "line: give 0-based positions",
        )
    try:
        delimiter = parse_separator("," if sep is None else sep)
    except ValueError as err:
        raise _option_error("--sep", str(err)) from None
    return {**mapping, "delimiter": delimiter, "header": header}


def stats_command(args: argparse.Namespace) -> int:
    """Handler of ``negrec data stats``: prints the report and the table; returns 0.

    Errors a user can fix (bad file, bad option) are printed as one line on stderr and
    give the error's exit code (2) rather than a traceback.
    """
    try:
        fmt = args.format or ("delimited" if args.columns is not None else None)
        fmt = fmt or detect_format(args.path)
        options = delimited_options(fmt, args.columns, args.sep, args.header)
        test: Interactions | None = None
        if args.test is None:
            data, report = prepare(
                load(args.path, fmt, **options), min_rating=args.min_rating, k_core=args.k_core
            )
            source = f"{args.path} ({fmt})"
        else:
            data, test, report = prepare_split(
                load_split(args.path, args.test, fmt, **options),
                min_rating=args.min_rating,
                k_core=args.k_core,
                on_unseen=args.unseen,
                on_overlap=args.overlap,
            )
            source = f"{args.path} + {args.test} ({fmt})"
    except NegrecError as err:
        return _report_error("stats", err, args)
    print(source)
    print(report)
    print()
    print(format_stats(data, report, test))
    return 0


def _delimited_arguments(parser: argparse.ArgumentParser) -> None:
    """``--columns``, ``--sep`` and ``--header`` / ``--no-header``: how to read a
    'delimited' file."""
    parser.add_argument(
        "--columns",
        metavar="ROLE=COL,...",
        default=None,
        help="format 'delimited': which column is user, item and optionally rating and "
        "timestamp, by header name or 0-based position, e.g. "
        "user=user_id,item=movie,rating=stars or user=0,item=1 (a value of digits is a "
        "position)",
    )
    parser.add_argument(
        "--sep",
        metavar="SEP",
        default=None,
        help="format 'delimited': the field separator (default ','; 'tab' or '\\t' for a "
        "tab, 'whitespace' for runs of blanks)",
    )
    header = parser.add_mutually_exclusive_group()
    header.add_argument(
        "--header",
        dest="header",
        action="store_true",
        default=None,
        help="format 'delimited': the first line is a header, skipped (the default when "
        "--columns names a column; columns all by position need --header or --no-header)",
    )
    header.add_argument(
        "--no-header",
        dest="header",
        action="store_false",
        default=None,
        help="format 'delimited': the file has no header line (columns by position)",
    )


# ------------------------------------------------------------- the dataset registry
def _cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=None,
        help="cache folder (default: $NEGREC_CACHE, else negrec/ in the user cache folder)",
    )


def _recipe_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-rating",
        metavar="T",
        type=float,
        default=None,
        help="override the recipe: keep only interactions with rating >= T",
    )
    parser.add_argument(
        "--k-core",
        metavar="K",
        type=positive_int,
        default=None,
        help="override the recipe: keep the K-core (users and items with >= K interactions)",
    )
    parser.add_argument(
        "--unseen",
        choices=("error", "drop", "keep"),
        default=None,
        help="override the recipe of a pre-split dataset: what to do with test users/items "
        "absent from train",
    )
    parser.add_argument(
        "--overlap",
        choices=("drop", "error", "keep"),
        default=None,
        help="override the recipe of a pre-split dataset: what to do with test rows that "
        "repeat a training (user, item) pair (recipe default: drop)",
    )


def _add_registry_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``data list``, ``data fetch`` and ``data import``."""
    listing = commands.add_parser(
        "list",
        help="show the public datasets negrec can fetch or import",
        description="Show each registered dataset with its source URL and checksum, licence "
        "terms, size and preparation recipe (rating threshold, k-core, split), and whether "
        "it is prepared in the cache.",
    )
    listing.add_argument(
        "names", nargs="*", metavar="NAME", help="show only these datasets (default: all)"
    )
    listing.add_argument(
        "--short", action="store_true", help="one line per dataset: name, cached, title"
    )
    _cache_option(listing)
    listing.set_defaults(func=list_command)

    fetch = commands.add_parser(
        "fetch",
        help="download, verify, prepare and cache a public dataset",
        description="Download the dataset's files over HTTP(S) (an interrupted download "
        "resumes), verify their checksums, unpack, prepare with the dataset's recipe and "
        "store the result in the cache, where negrec.data.cache.load_prepared(NAME) finds "
        "it. "
        "Offline? Use `negrec data import NAME PATH` with files you already have.",
    )
    fetch.add_argument("name", metavar="NAME", help="a dataset from `negrec data list`")
    fetch.add_argument(
        "--force",
        action="store_true",
        help="prepare again even if the dataset is cached (verified downloads are reused)",
    )
    fetch.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=60.0,
        help="give up on a connection or read that stalls this long (default: 60)",
    )
    fetch.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar or progress messages (notes about checksums still show)",
    )
    fetch.add_argument(
        "--rerecord-checksum",
        action="store_true",
        help="for a source with no pinned checksum: ignore the sha256 recorded when it was "
        "first prepared, download it again and record the new file's sha256 once it "
        "prepares (when the file changed upstream, or a damaged download was recorded)",
    )
    _recipe_options(fetch)
    _cache_option(fetch)
    fetch.set_defaults(func=fetch_command)

    imp = commands.add_parser(
        "import",
        usage="negrec data import [-h] [NAME] PATH [--as NEWNAME] [options]",
        help="prepare and cache a public dataset (or your own data) from local files",
        description="Prepare a registered dataset from a local copy (the offline path): "
        "PATH is the data file, the folder holding the file(s) (searched recursively; for "
        "a pre-split dataset the folder with both train and test files), or the archive "
        "as downloaded. Files that are the dataset's downloads (the archive, or e.g. the "
        "train.txt / test.txt of a LightGCN split) must match its pinned checksums: "
        "another dataset's files are refused. Your own data goes in under a name of your "
        "own with --as NEWNAME: with NAME, in NAME's format and recipe; without NAME, PATH "
        "is one events file or a folder with one *train* and one *test* file (a pre-split "
        "pair); --format when the name does not tell it (a CSV / TSV of your own: "
        "--columns, as for `negrec data stats`). Use it in a config as "
        "[data] source = 'cached', name = NEWNAME. Prints what preparation did and the "
        "dataset statistics.",
    )
    imp.add_argument("name", metavar="NAME", nargs="?", help="a dataset from `negrec data list`")
    imp.add_argument("path", metavar="PATH", help="data file, folder or downloaded archive")
    imp.add_argument(
        "--as",
        dest="as_name",
        metavar="NEWNAME",
        default=None,
        help="cache the data under this name of your own (letters, digits, '.', '_', '-'; "
        "not a registered name), unverified",
    )
    imp.add_argument(
        "--force", action="store_true", help="replace an entry already prepared under the name"
    )
    imp.add_argument(
        "--format",
        choices=sorted(FORMATS),
        metavar="FORMAT",
        default=None,
        help="read the file(s) in this format, one of: "
        + ", ".join(sorted(FORMATS))
        + " (default: the dataset's own format, or the one the file name implies, "
        "e.g. *.inter; 'delimited' when --columns is given, with --as only)",
    )
    _delimited_arguments(imp)
    _recipe_options(imp)
    _cache_option(imp)
    imp.set_defaults(func=import_command)


def describe_dataset(spec: DatasetSpec, cached: bool) -> str:
    """The ``data list`` block of one dataset."""
    lines = [f"{spec.name}  {spec.title}{'  [prepared]' if cached else ''}"]
    if spec.sources:
        for source in spec.sources:
            lines.append(f"  source   {source.url}")
            lines.append(f"           {source.pinned}")
    else:
        lines.append(f"  source   no direct download: get it from {spec.homepage}")
    lines.append(f"  licence  {spec.licence}")
    size = spec.size
    if spec.download_size is not None:
        size += f"; download {spec.download_size / 1e6:,.1f} MB"
    lines.append(f"  size     {size}")
    files = " + ".join(spec.files)
    lines.append(f"  recipe   {spec.recipe.describe()}  [{spec.format}: {files}]")
    if spec.notes:
        lines.append(f"  note     {spec.notes}")
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _quiet_log(message: str) -> None:
    if message.startswith("note:"):  # e.g. a checksum recorded on first download
        _log(message)


#: the option of `negrec data` that sets each preparation key (attribute, flag)
_FLAGS = {
    "min_rating": ("min_rating", "--min-rating"),
    "k_core": ("k_core", "--k-core"),
    "format": ("format", "--format"),
    "on_unseen": ("unseen", "--unseen"),
    "on_overlap": ("overlap", "--overlap"),
}


def _report_error(command: str, err: NegrecError, args: argparse.Namespace | None = None) -> int:
    """Print ``err`` as one line; a preparation key the user set by a flag (and the
    format, which ``--format`` names) is named as that flag (``--min-rating: ...``), not
    as a config key they never wrote."""
    text = str(err)
    if isinstance(err, ConfigError) and err.key in _FLAGS and args is not None:
        attribute, flag = _FLAGS[err.key]
        if err.key == "format" or getattr(args, attribute, None) is not None:
            text = f"{flag}: {err.detail}"
    print(f"negrec data {command}: error: {text}", file=sys.stderr)
    return err.exit_code


def list_command(args: argparse.Namespace) -> int:
    """Handler of ``negrec data list``."""
    try:
        specs = [get_spec(name) for name in args.names] or list(REGISTRY.values())
        cached = set(prepared_names(args.cache_dir))
    except NegrecError as err:
        return _report_error("list", err)
    if args.short:
        width = max(len(spec.name) for spec in specs)
        for spec in specs:
            mark = "*" if spec.name in cached else " "
            print(f"{spec.name:<{width}} {mark} {spec.title}")
        return 0
    print("\n\n".join(describe_dataset(spec, spec.name in cached) for spec in specs))
    own = sorted(cached - set(REGISTRY))
    if own and not args.names:  # imported with --as NEWNAME
        print(f"\nyour own datasets (negrec data import --as): {', '.join(own)}")
    print(f"\ncache: {cache_root(args.cache_dir)}")
    return 0


def fetch_command(args: argparse.Namespace) -> int:
    """Handler of ``negrec data fetch``."""
    try:
        entry = fetch_dataset(
            args.name,
            cache_dir=args.cache_dir,
            force=args.force,
            min_rating=args.min_rating,
            k_core=args.k_core,
            on_unseen=args.unseen,
            on_overlap=args.overlap,
            timeout=args.timeout,
            progress=not args.quiet,
            rerecord_checksum=args.rerecord_checksum,
            log=_quiet_log if args.quiet else _log,
        )
        train, test, report = load_prepared(args.name, args.cache_dir)
    except NegrecError as err:
        return _report_error("fetch", err, args)
    print(f"{args.name}: prepared in {entry}")
    print(report)
    print()
    print(format_stats(train, report, test))
    return 0


def import_command(args: argparse.Namespace) -> int:
    """Handler of ``negrec data import``."""
    notes: list[str] = []
    try:
        fmt = args.format or ("delimited" if args.columns is not None else None)
        options = None
        if fmt == "delimited" or args.columns or args.sep or args.header is not None:
            if args.as_name is None:
                raise _option_error(
                    "--format" if args.columns is None else "--columns",
                    "a delimited file with a column mapping is your own data: import it "
                    "under a name of your own with --as NEWNAME",
                )
            options = delimited_options(fmt or "auto", args.columns, args.sep, args.header)
        entry, report = import_dataset(
            args.name,
            args.path,
            cache_dir=args.cache_dir,
            format=fmt,
            read_options=options,
            min_rating=args.min_rating,
            k_core=args.k_core,
            on_unseen=args.unseen,
            on_overlap=args.overlap,
            force=args.force,
            as_name=args.as_name,
            log=notes.append,
        )
        train, test, report = load_prepared(entry.name, args.cache_dir)
    except NegrecError as err:
        return _report_error("import", err, args)
    for note in notes:
        if note.startswith("note:"):
            print(note, file=sys.stderr)
    print(f"{entry.name}: prepared from {args.path} in {entry}")
    print(report)
    print()
    print(format_stats(train, report, test))
    return 0
