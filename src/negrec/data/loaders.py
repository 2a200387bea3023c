"""Readers for the interaction file formats negrec understands.

Every loader returns the same *raw event table*: a :class:`pandas.DataFrame` with one row
per event and the columns

* ``user``, ``item`` -- raw ids exactly as in the file: ``int64`` where every id is an
  integer (always for the LightGCN, sequence and MovieLens formats), strings otherwise;
* ``rating`` (float64) and ``timestamp`` (float64) -- only where the format has them. For
  sequence files ``timestamp`` is the position in the user's sequence, so time order is
  kept;
* ``line`` (int64) -- the 1-based line of the file the event came from, so that later
  checks (unseen test users, say) can point at the offending line.

``table.attrs["path"]`` holds the file's path (for a pre-split pair, ``attrs["paths"]``
maps ``"train"``/``"test"`` to theirs). Turning a table into :class:`Interactions`
(thresholds, de-duplication, k-core, id encoding) is the job of :mod:`negrec.data.prepare`.

Parsing is vectorised (numpy / the pandas C parser); Python only loops over lines, never
over tokens. Any malformed input raises :class:`~negrec.errors.DataError` naming the file,
the 1-based line and what was expected. Fast paths validate in bulk; the slow, exact
diagnosis only runs once something is known to be wrong.
"""

from __future__ import annotations

import csv
import inspect
import io
import math
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from negrec.errors import ConfigError, DataError

PathLike = str | Path

#: Format names accepted by :func:`load`, with what they read.
FORMATS: dict[str, str] = {
    "lightgcn": "adjacency lines 'user item item ...' (space separated, integer ids)",
    "sequence": "time-ordered sequences 'user:item item ...' (integer ids)",
    "recbole": "RecBole atomic .inter TSV with a typed header (user_id:token ...)",
    "movielens-100k": "MovieLens u.data: user TAB item TAB rating TAB timestamp",
    "movielens-dat": "MovieLens ratings.dat: user::item::rating::timestamp",
    "movielens-csv": "MovieLens ratings.csv: header userId,movieId,rating,timestamp",
    "delimited": "any delimited file, given its separator, header and which column is what",
}

_MAX_INT_DIGITS = 18  # every id of at most 18 digits fits into int64
_BLANK_BYTES = (9, 10, 13, 32)  # what the pandas C parser accepts on a line it skips as blank


# ---------------------------------------------------------------------------- file access
def read_file(path: PathLike) -> bytes:
    """The file's bytes as stored; errors name the file."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("is a directory; expected a data file", path=path) from None
    except OSError as err:
        raise DataError(f"cannot read the file: {err.strerror}", path=path) from None


def _read_bytes(path: PathLike) -> bytes:
    """The file's bytes (without a UTF-8 byte-order mark), checked to be UTF-8 text."""
    data = read_file(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    decode_utf8(data, path)
    return data


def decode_utf8(data: bytes, path: PathLike) -> str:
    """``data`` (without a byte-order mark) decoded as UTF-8; a DataError names the line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"byte 0x{data[err.start]:02x} is not valid UTF-8; expected a UTF-8 text file",
            path=path,
            line=line,
        ) from None


def _show(token: bytes | str, limit: int = 40) -> str:
    """A token quoted for an error message, shortened when long."""
    text = token.decode("utf-8", "replace") if isinstance(token, bytes) else token
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _is_int(token: str) -> bool:
    """Whether ``token`` is a plain ASCII integer (optional leading '-') that fits int64."""
    digits = token[1:] if token.startswith("-") else token
    return digits.isascii() and digits.isdigit() and len(digits) <= _MAX_INT_DIGITS


def _as_float(token: str) -> float | None:
    """``token`` as a finite float, or None where it is not one."""
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _frame(path: PathLike, columns: dict[str, Any]) -> pd.DataFrame:
    table = pd.DataFrame(columns)
    table.attrs["path"] = str(path)
    return table


# ---------------------------------------------------------------------- whitespace formats
def _token_ids(
    tokens: list[bytes], token_lines: Callable[[int], int], path: PathLike, what: str
) -> np.ndarray:
    """Convert id tokens to int64 in bulk; on failure name the line of the first bad one."""
    if not tokens:
        return np.empty(0, dtype=np.int64)
    array = np.array(tokens)
    ok = np.strings.isdigit(array) & (np.strings.str_len(array) <= _MAX_INT_DIGITS)
    if not ok.all():
        k = int(np.argmin(ok))
        raise DataError(
            f"{what} {_show(tokens[k])} is not a non-negative integer id",
            path=path,
            line=token_lines(k),
        )
    return array.astype(np.int64)


def load_lightgcn(path: PathLike) -> pd.DataFrame:
    """Read LightGCN adjacency lines ``user item item ...``: one user per line.

    Ids must be non-negative integers. A line with a user and no items means that user
    has no interactions (it contributes no rows); blank lines are skipped. Columns:
    ``user``, ``item``, ``line``.
    """
    data = _read_bytes(path)
    rows = [line.split() for line in data.split(b"\n")]
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    if not counts.any():
        raise DataError("file is empty; expected lines 'user item item ...'", path=path)
    present = np.flatnonzero(counts)  # 0-based indices of non-blank lines
    users = _token_ids(
        [rows[i][0] for i in present],
        lambda k: int(present[k]) + 1,
        path,
        "user",
    )
    n_items = counts[present] - 1
    ends = np.cumsum(n_items)  # token k belongs to the line with the first end > k
    items = _token_ids(
        list(chain.from_iterable(rows[i][1:] for i in present)),
        lambda k: int(present[np.searchsorted(ends, k, side="right")]) + 1,
        path,
        "item",
    )
    return _frame(
        path,
        {
            "user": np.repeat(users, n_items),
            "item": items,
            "line": np.repeat(present + 1, n_items),
        },
    )


def load_sequences(path: PathLike) -> pd.DataFrame:
    """Read time-ordered sequences ``user:item item ...`` (SASRec / SELFRec style).

    Ids must be non-negative integers. ``timestamp`` is the position of the event in the
    user's sequence (0, 1, ...; continued across lines that repeat a user), so time order
    survives. ``user:`` with no items is allowed and contributes no rows. Columns:
    ``user``, ``item``, ``timestamp``, ``line``.
    """
    data = _read_bytes(path)
    lines = data.split(b"\n")
    user_tokens: list[bytes] = []
    item_rows: list[list[bytes]] = []
    present: list[int] = []
    for number, line in enumerate(lines, start=1):
        head, colon, rest = line.partition(b":")
        if not colon:
            if not line.strip():
                continue
            raise DataError(
                f"no ':' in {_show(line)}; expected 'user:item item ...'", path=path, line=number
            )
        user_tokens.append(head.strip())
        item_rows.append(rest.split())
        present.append(number)
    if not present:
        raise DataError("file is empty; expected lines 'user:item item ...'", path=path)
    line_numbers = np.asarray(present, dtype=np.int64)
    users = _token_ids(user_tokens, lambda k: int(line_numbers[k]), path, "user")
    n_items = np.fromiter(map(len, item_rows), dtype=np.int64, count=len(item_rows))
    ends = np.cumsum(n_items)
    items = _token_ids(
        list(chain.from_iterable(item_rows)),
        lambda k: int(line_numbers[np.searchsorted(ends, k, side="right")]),
        path,
        "item",
    )
    event_users = np.repeat(users, n_items)
    # position within the user's events, in file order (stable sort keeps the order)
    order = np.argsort(event_users, kind="stable")
    sorted_users = event_users[order]
    first = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    group_start = np.repeat(first, np.diff(np.r_[first, sorted_users.size]))
    position = np.empty(event_users.size, dtype=np.float64)
    position[order] = np.arange(event_users.size) - group_start
    return _frame(
        path,
        {
            "user": event_users,
            "item": items,
            "timestamp": position,
            "line": np.repeat(line_numbers, n_items),
        },
    )


# ------------------------------------------------------------------------ delimited files
class _Lines:
    """Byte offsets of every line of a file, to map rows and bytes back to line numbers."""

    def __init__(self, data: bytes, delimiter: str | None):
        self.data = data
        buffer = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(buffer == 10)
        self.starts = np.r_[0, newlines + 1].astype(np.int64)
        self.ends = np.r_[newlines, buffer.size].astype(np.int64)  # exclusive, before '\n'
        # a line is blank, and skipped, when it holds only spaces, tabs and '\r' -- unless
        # the delimiter is one of them: the same rule as the pandas C parser
        blank_bytes = [b for b in _BLANK_BYTES if delimiter is None or chr(b) != delimiter]
        solid = ~np.isin(buffer, blank_bytes)
        has_solid = np.zeros(self.starts.size, dtype=bool)
        nonempty = self.ends > self.starts
        if nonempty.any():
            has_solid[nonempty] = np.logical_or.reduceat(solid, self.starts[nonempty])
        self.nonblank = np.flatnonzero(has_solid)  # 0-based line indices

    def text(self, index: int) -> str:
        """Line ``index`` (0-based), decoded, without its line break."""
        raw = self.data[self.starts[index] : self.ends[index]]
        return raw.decode("utf-8").rstrip("\r")

    def count_byte(self, byte: int) -> np.ndarray:
        """Occurrences of ``byte`` on every line, [n_lines]."""
        buffer = np.frombuffer(self.data, dtype=np.uint8)
        positions = np.flatnonzero(buffer == byte)
        line_of = np.searchsorted(self.starts, positions, side="right") - 1
        return np.bincount(line_of, minlength=self.starts.size)


def _split_fields(line: str, delimiter: str | None) -> list[str]:
    return line.split() if delimiter is None else line.split(delimiter)


def _describe_delimiter(delimiter: str | None) -> str:
    names = {None: "whitespace", "\t": "tab", ",": "comma", " ": "space", ";": "semicolon"}
    return names.get(delimiter, repr(delimiter))


def _auto_ids(values: pd.Series) -> np.ndarray:
    """Raw ids as int64 when every one is an integer written the one way ``str(int)``
    writes it, else as an array of strings. "007" keeps the file as strings: as an int it
    would merge with "7", and a pre-split partner file read as strings would no longer
    match it (:func:`load_split` turns int ids back into text)."""
    try:
        array = values.to_numpy(dtype=str).astype(np.bytes_)  # fails on non-ASCII ids
    except UnicodeEncodeError:
        return values.to_numpy(dtype=object)
    if array.size:
        negative = np.strings.startswith(array, b"-")
        digits = np.where(negative, np.strings.slice(array, 1, None), array)
        leading_zero = np.strings.startswith(digits, b"0") & ((digits != b"0") | negative)
        if (
            np.strings.isdigit(digits).all()
            and (np.strings.str_len(digits) <= _MAX_INT_DIGITS).all()
            and not leading_zero.any()  # "0" is canonical; "00", "07" and "-0" are not
        ):
            return array.astype(np.int64)
    return values.to_numpy(dtype=object)


def _read_table(
    path: PathLike,
    lines: _Lines,
    *,
    delimiter: str | None,
    shown_delimiter: str | None,
    header: bool,
    roles: dict[str, int],
    int_ids: bool,
    n_fields: int | None,
    expected: str,
) -> pd.DataFrame:
    """Parse a delimited file whose column positions per role are known.

    ``delimiter`` None means runs of whitespace. ``shown_delimiter`` is the delimiter as the
    user knows it (``'::'`` for ratings.dat, which is parsed with a one-byte stand-in).
    ``expected`` describes a valid line for error messages.
    """
    if lines.nonblank.size == 0:
        raise DataError(f"file is empty; expected {expected}", path=path)
    data_lines = lines.nonblank[1:] if header else lines.nonblank
    if data_lines.size == 0:
        raise DataError(f"file has a header but no data lines; expected {expected}", path=path)
    if n_fields is None:
        n_fields = len(_split_fields(lines.text(int(data_lines[0])), delimiter))
    width: int = n_fields
    used = sorted(set(roles.values()))
    if used[-1] >= n_fields:
        raise DataError(
            f"column {used[-1] + 1} (0-based position {used[-1]}) is needed but lines have "
            f"only {n_fields} fields; "
            f"expected {expected}",
            path=path,
            line=int(data_lines[0]) + 1,
        )

    def diagnose(reason: str) -> DataError:
        """Find the first bad line the slow, exact way (only runs when parsing failed)."""
        for index in data_lines:
            text = lines.text(int(index))
            fields = _split_fields(text, delimiter)
            if len(fields) != width:
                return DataError(
                    f"found {len(fields)} fields, expected {width} separated by "
                    f"{_describe_delimiter(shown_delimiter)} ({expected})",
                    path=path,
                    line=int(index) + 1,
                )
            for role, position in roles.items():
                value = fields[position].strip()
                if role in ("user", "item"):
                    if not value:
                        return DataError(
                            f"empty {role} id; expected {expected}", path=path, line=int(index) + 1
                        )
                    if int_ids and not _is_int(value):
                        return DataError(
                            f"{role} id {_show(value)} is not an integer",
                            path=path,
                            line=int(index) + 1,
                        )
                elif _as_float(value) is None:
                    return DataError(
                        f"{role} {_show(value)} is not a finite number",
                        path=path,
                        line=int(index) + 1,
                    )
        return DataError(f"cannot parse the file ({reason}); expected {expected}", path=path)

    if delimiter is not None and len(delimiter.encode()) == 1:
        # exact field counts for every line in one pass; lets pandas skip unused columns
        counts = lines.count_byte(delimiter.encode()[0])[data_lines] + 1
        if (counts != width).any():
            raise diagnose("field count")
        usecols: list[int] | None = used
    else:
        usecols = None
    id_type: Any = np.int64 if int_ids else str
    dtypes = {
        pos: (id_type if role in ("user", "item") else np.float64) for role, pos in roles.items()
    }
    try:
        frame = pd.read_csv(
            io.BytesIO(lines.data),
            sep=r"\s+" if delimiter is None else delimiter,
            header=None,
            names=list(range(width)),
            usecols=usecols,
            skiprows=int(lines.nonblank[0]) + 1 if header else 0,
            index_col=False,
            dtype=dtypes,
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=True,
            encoding="utf-8",
            engine="c",
        )
    except (ValueError, OverflowError, TypeError, pd.errors.ParserError) as err:
        raise diagnose(str(err).strip()) from None
    if len(frame) != data_lines.size:
        raise diagnose(f"read {len(frame)} rows from {data_lines.size} lines")
    columns: dict[str, Any] = {}
    for role, position in roles.items():
        values = frame[position]
        if role in ("user", "item"):
            if values.isna().any():
                raise diagnose(f"missing {role}")
            if int_ids:
                columns[role] = values.to_numpy(np.int64)
            else:
                values = values.str.strip()  # 'a, b' files: ids without the padding
                if (values == "").any():
                    raise diagnose(f"blank {role}")
                columns[role] = _auto_ids(values)
        else:
            floats = values.to_numpy(np.float64)
            if not np.isfinite(floats).all():
                raise diagnose(f"{role} is not a finite number")
            columns[role] = floats
    columns["line"] = data_lines + 1
    return _frame(path, {key: columns[key] for key in _ORDER if key in columns})


_ORDER = ("user", "item", "rating", "timestamp", "line")

#: Names a separator may be given by (in a config or on the command line); None stands
#: for runs of whitespace.
SEPARATOR_NAMES: dict[str, str | None] = {
    "tab": "\t",
    "\\t": "\t",  # the two characters backslash and t, as typed in a shell
    "comma": ",",
    "semicolon": ";",
    "space": " ",
    "whitespace": None,
}


def parse_separator(text: str) -> str | None:
    """The delimiter ``text`` stands for: itself, or a name from :data:`SEPARATOR_NAMES`
    (``"tab"`` or ``"\\t"`` for a tab, ``"whitespace"`` for runs of blanks -> None).
    Raises ValueError for an empty separator or one containing a line break."""
    if text in SEPARATOR_NAMES:
        return SEPARATOR_NAMES[text]
    if not text:
        raise ValueError("the separator must not be empty (for runs of blanks: 'whitespace')")
    if "\n" in text or "\r" in text:
        raise ValueError(f"the separator {text!r} contains a line break")
    return text


def load_delimited(
    path: PathLike,
    *,
    user: int | str,
    item: int | str,
    rating: int | str | None = None,
    timestamp: int | str | None = None,
    delimiter: str | None = ",",
    header: bool = True,
    int_ids: bool = False,
) -> pd.DataFrame:
    """Read any delimited interaction file, given which column holds what.

    ``user``/``item``/``rating``/``timestamp`` are 0-based column positions or, with a
    ``header``, column names. ``delimiter`` None splits on runs of whitespace; a delimiter
    of several characters (``'::'``) is supported. Fields are not quoted (``"`` is an
    ordinary character), so every line is one record. ``int_ids`` requires integer ids;
    otherwise ids are integers where all of them are, strings otherwise. Blank lines are
    skipped.
    """
    data = _read_bytes(path)
    shown = delimiter
    if delimiter is not None and len(delimiter.encode()) > 1:
        # the pandas C parser wants a one-byte separator; use a control byte as stand-in
        if b"\x1f" in data:
            raise DataError(
                "contains byte 0x1f, which cannot be read with a multi-character delimiter",
                path=path,
            )
        data = data.replace(delimiter.encode(), b"\x1f")
        delimiter = "\x1f"
    wanted = {"user": user, "item": item, "rating": rating, "timestamp": timestamp}
    names: list[str] = []
    lines = _Lines(data, delimiter)
    if header and lines.nonblank.size:
        first = int(lines.nonblank[0])
        names = [name.strip() for name in _split_fields(lines.text(first), delimiter)]
    roles: dict[str, int] = {}
    for role, column in wanted.items():
        if column is None:
            continue
        if isinstance(column, str):
            if not header:
                raise ConfigError(
                    f"columns.{role}",
                    f"column name {column!r} needs a file with a header line; "
                    "without one give a 0-based position",
                )
            if not lines.nonblank.size:
                break  # empty file: _read_table reports it
            if column not in names:
                quoted = f'"{column}"' in names
                raise DataError(
                    f"header has no column {column!r} (for {role}); columns are {names}"
                    + ("; fields are read as written, quotes included" if quoted else ""),
                    path=path,
                    line=int(lines.nonblank[0]) + 1,
                )
            roles[role] = names.index(column)
        else:
            if column < 0:
                raise ConfigError(f"columns.{role}", f"column position must be >= 0, got {column}")
            roles[role] = column
    description = ", ".join(f"{role} in column {pos + 1}" for role, pos in roles.items())
    return _read_table(
        path,
        lines,
        delimiter=delimiter,
        shown_delimiter=shown,
        header=header,
        roles=roles,
        int_ids=int_ids,
        n_fields=len(names) if header and names else None,
        expected=f"fields separated by {_describe_delimiter(shown)} with {description}",
    )


def load_recbole(
    path: PathLike,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: str = "rating",
    timestamp_field: str = "timestamp",
) -> pd.DataFrame:
    """Read a RecBole atomic ``.inter`` file (tab separated, header ``name:type``).

    Columns are found by the names in the header (``user_id:token`` maps to ``user`` and
    so on); ``rating`` and ``timestamp`` are read when present, other columns ignored.
    """
    lines = _Lines(_read_bytes(path), "\t")
    if lines.nonblank.size == 0:
        raise DataError(
            "file is empty; expected a header 'user_id:token\\titem_id:token ...'", path=path
        )
    first = int(lines.nonblank[0])
    header = lines.text(first).split("\t")
    names: list[str] = []
    for field in header:
        name, colon, kind = field.strip().partition(":")
        if not colon or not name or not kind:
            raise DataError(
                f"header field {_show(field)} is not 'name:type'; expected a RecBole header "
                "like 'user_id:token<TAB>item_id:token<TAB>rating:float'",
                path=path,
                line=first + 1,
            )
        names.append(name)
    wanted = {
        "user": user_field,
        "item": item_field,
        "rating": rating_field,
        "timestamp": timestamp_field,
    }
    roles: dict[str, int] = {}
    for role, name in wanted.items():
        if name in names:
            roles[role] = names.index(name)
        elif role in ("user", "item"):
            raise DataError(
                f"header has no field {name!r}; fields are {names}", path=path, line=first + 1
            )
    return _read_table(
        path,
        lines,
        delimiter="\t",
        shown_delimiter="\t",
        header=True,
        roles=roles,
        int_ids=False,
        n_fields=len(names),
        expected=f"{len(names)} tab-separated fields ({', '.join(header)})",
    )


def _load_movielens(path: PathLike, delimiter: str, header: bool, layout: str) -> pd.DataFrame:
    data = _read_bytes(path)
    shown = delimiter
    if delimiter == "::":
        if b"\x1f" in data:
            raise DataError("contains byte 0x1f; expected MovieLens text", path=path)
        data = data.replace(b"::", b"\x1f")
        delimiter = "\x1f"
    lines = _Lines(data, delimiter)
    if header and lines.nonblank.size:
        first = int(lines.nonblank[0])
        names = [name.strip() for name in lines.text(first).split(delimiter)]
        if names[:2] != ["userId", "movieId"]:
            raise DataError(
                f"header {names} does not start with userId,movieId; expected {layout}",
                path=path,
                line=first + 1,
            )
    return _read_table(
        path,
        lines,
        delimiter=delimiter,
        shown_delimiter=shown,
        header=header,
        roles={"user": 0, "item": 1, "rating": 2, "timestamp": 3},
        int_ids=True,
        n_fields=4,
        expected=layout,
    )


def load_movielens_100k(path: PathLike) -> pd.DataFrame:
    """Read MovieLens-100K ``u.data`` (``user TAB item TAB rating TAB timestamp``)."""
    return _load_movielens(path, "\t", False, "'user<TAB>item<TAB>rating<TAB>timestamp'")


def load_movielens_dat(path: PathLike) -> pd.DataFrame:
    """Read MovieLens-1M/10M ``ratings.dat`` (``user::item::rating::timestamp``)."""
    return _load_movielens(path, "::", False, "'user::item::rating::timestamp'")


def load_movielens_csv(path: PathLike) -> pd.DataFrame:
    """Read MovieLens ``ratings.csv`` (header ``userId,movieId,rating,timestamp``)."""
    return _load_movielens(path, ",", True, "'userId,movieId,rating,timestamp'")


# ----------------------------------------------------------------------------- dispatch
_LOADERS: dict[str, Callable[..., pd.DataFrame]] = {
    "lightgcn": load_lightgcn,
    "sequence": load_sequences,
    "recbole": load_recbole,
    "movielens-100k": load_movielens_100k,
    "movielens-dat": load_movielens_dat,
    "movielens-csv": load_movielens_csv,
    "delimited": load_delimited,
}


def register_format(name: str, loader: Callable[..., pd.DataFrame], description: str) -> None:
    """Make ``loader`` available to :func:`load` as ``format=name`` (and list it in FORMATS).

    Used by :mod:`negrec.data.raw_formats` for the raw formats of public datasets.
    """
    FORMATS[name] = description
    _LOADERS[name] = loader


def detect_format(path: PathLike) -> str:
    """Guess a file's format from its name, where the name makes it unambiguous.

    ``*.inter`` is RecBole, ``*.mat`` a MATLAB matrix (``matlab``),
    ``u.data``/``ratings.dat``/``ratings.csv`` are MovieLens. A
    ``*.txt`` file is a sequence file when its first non-blank line contains ':' and a
    LightGCN adjacency file otherwise (the two never share a line shape). Anything else
    raises :class:`ConfigError` asking for an explicit format.
    """
    if not Path(path).exists():
        raise DataError("file not found", path=path)
    name = Path(path).name.lower()
    by_name = {
        "u.data": "movielens-100k",
        "ratings.dat": "movielens-dat",
        "ratings.csv": "movielens-csv",
    }
    if name in by_name:
        return by_name[name]
    if name.endswith(".inter"):
        return "recbole"
    if name.endswith(".mat"):
        return "matlab"
    if name.endswith(".txt"):
        try:
            with open(path, "rb") as handle:
                head = handle.read(1 << 16)
        except FileNotFoundError:
            raise DataError("file not found", path=path) from None
        except OSError as err:
            raise DataError(f"cannot read the file: {err.strerror}", path=path) from None
        first = next((line for line in head.split(b"\n") if line.strip()), b"")
        return "sequence" if b":" in first else "lightgcn"
    raise ConfigError(
        "format",
        f"cannot tell the format of {str(path)!r} from its name; "
        f"choose one of {', '.join(FORMATS)}",
    )


def load(path: PathLike, format: str | None = None, **options: Any) -> pd.DataFrame:
    """Load one interaction file into a raw event table (see the module docstring).

    ``format`` is one of :data:`FORMATS`; None detects it from the file name
    (:func:`detect_format`). ``options`` go to the format's loader (``load_delimited``
    needs its column mapping).
    """
    if format is None:
        format = detect_format(path)
    if format not in _LOADERS:
        raise ConfigError(
            "format", f"unknown format {format!r}; choose one of {', '.join(FORMATS)}"
        )
    loader = _LOADERS[format]
    try:
        inspect.signature(loader).bind(path, **options)
    except TypeError as err:
        raise ConfigError("format", f"wrong options for format {format!r}: {err}") from None
    return loader(path, **options)


def load_split(
    train_path: PathLike,
    test_path: PathLike,
    format: str | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Load a pre-split (train, test) pair into one table with a ``part`` column.

    ``part`` is categorical with values ``"train"`` and ``"test"``; ``line`` refers to the
    row's own file, and ``attrs["paths"]`` maps each part to its path. Both files must be
    of the same format (detected from the train file when ``format`` is None). For
    sequence files the test positions continue after the user's train positions, so the
    test events come last in time. When one file has integer ids and the other strings,
    both become strings. Whether test users and items occur in train is checked by
    :func:`negrec.data.prepare.check_test_in_train_table`, not here.
    """
    if format is None:
        format = detect_format(train_path)
    train = load(train_path, format, **options)
    test = load(test_path, format, **options)
    if list(train.columns) != list(test.columns):
        raise DataError(
            f"has columns {list(test.columns)[:-1]} but the train file {str(train_path)!r} has "
            f"{list(train.columns)[:-1]}; expected both parts to have the same columns",
            path=test_path,
        )
    for column in ("user", "item"):
        if train[column].dtype != test[column].dtype:
            train[column] = train[column].astype(str)
            test[column] = test[column].astype(str)
    if format == "sequence":
        offset = train.groupby("user")["timestamp"].max() + 1
        shift = test["user"].map(offset).fillna(0.0).to_numpy(np.float64)
        test["timestamp"] = test["timestamp"].to_numpy() + shift
    table = pd.concat([train, test], ignore_index=True)
    table["part"] = pd.Categorical.from_codes(
        np.repeat(np.array([0, 1], dtype=np.int8), [len(train), len(test)]),
        categories=["train", "test"],
    )
    table.attrs = {"paths": {"train": str(train_path), "test": str(test_path)}}
    return table


def source_path(table: pd.DataFrame, part: str | None = None) -> str | None:
    """The file a table (or one ``part`` of a pre-split table) was read from, if known."""
    if part is not None and "paths" in table.attrs:
        return table.attrs["paths"].get(part)
    path = table.attrs.get("path")
    return None if path is None else str(path)


__all__: Sequence[str] = (
    "FORMATS",
    "detect_format",
    "load",
    "load_delimited",
    "load_lightgcn",
    "load_movielens_100k",
    "load_movielens_csv",
    "load_movielens_dat",
    "load_recbole",
    "load_sequences",
    "load_split",
    "parse_separator",
    "register_format",
    "source_path",
)

# the raw formats of public datasets (Amazon, Yelp, Gowalla, Foursquare, NCF, SASRec)
from negrec.data import raw_formats as _raw_formats  # noqa: E402, F401
