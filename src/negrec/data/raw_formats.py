"""Readers for the raw formats of public datasets, beyond the ones in :mod:`negrec.data.loaders`.

Each reader returns the same raw event table as the core loaders (``user``, ``item``,
optional ``rating`` and ``timestamp`` as float64, ``line``; ``attrs["path"]``) and reports
malformed input as a :class:`~negrec.errors.DataError` naming the file and the 1-based line.
Importing this module registers the formats with :func:`negrec.data.loaders.load` (the
core loaders module imports it, so they are always available):

=====================  ====================================================================
``amazon-csv-2014``    Amazon 2014 "ratings only" CSV: ``user,item,rating,timestamp``
``amazon-csv-2018``    Amazon 2018 "ratings only" CSV: ``item,user,rating,timestamp``
``amazon-json``        Amazon 2014 / 2018 review JSON lines (``reviewerID``, ``asin``,
                       ``overall``, ``unixReviewTime``), e.g. the 5-core ``*_5.json.gz``
``yelp-json``          Yelp academic dataset ``review.json`` (``user_id``, ``business_id``,
                       ``stars``, ``date``)
``gowalla-checkins``   SNAP Gowalla ``loc-gowalla_totalCheckins.txt``: ``user TAB time TAB
                       latitude TAB longitude TAB location``
``foursquare-tsmc``    Foursquare TSMC2014 NYC / TKY TSV (8 fields, time last)
``ncf-rating``         NCF ``*.rating`` files: ``user TAB item TAB rating [TAB timestamp]``
``sasrec``             SASRec ``data/*.txt``: ``user item`` per line, in time order
``pairs``              one ``user item [weight]`` pair per line, separated by spaces or
                       tabs (SELFRec graph splits, MCNS edge lists)
``matlab``             a MATLAB ``.mat`` (v5) file whose variable ``data`` is the sparse
                       users x items matrix (the AdaSIR / hard-negative-sampling code)
=====================  ====================================================================

Every reader accepts a gzip-compressed file as well (recognised by its magic bytes), and
names the compressed file in its errors. Time stamps become float seconds since the Unix
epoch (UTC); for ``sasrec`` the position in the user's sequence, like the core
``sequence`` format.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from negrec.data import loaders
from negrec.data.loaders import (
    PathLike,
    _auto_ids,
    _show,
    decode_utf8,
    load_delimited,
    read_file,
)
from negrec.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"
#: Most bytes a gzip file may expand to (a guard against decompression bombs): 64 GiB.
MAX_UNCOMPRESSED = 64 << 30


# ------------------------------------------------------------------------- file access
def _gunzip(data: bytes, path: PathLike) -> bytes:
    """``data`` decompressed when it starts with the gzip magic bytes, else unchanged."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        decompressor = zlib.decompressobj(wbits=31)
        out = decompressor.decompress(data, MAX_UNCOMPRESSED)
        if decompressor.unconsumed_tail:
            raise DataError("decompresses to more than 64 GiB; refusing to read it", path=path)
        if not decompressor.eof:
            raise DataError(
                "gzip data ends early (truncated download?); expected a complete .gz file",
                path=path,
            )
        if decompressor.unused_data:  # concatenated gzip members, as `cat a.gz b.gz` makes
            out += gzip.decompress(decompressor.unused_data)
    except (zlib.error, gzip.BadGzipFile, EOFError) as err:
        raise DataError(f"is not a valid gzip file ({err})", path=path) from None
    return out


@contextlib.contextmanager
def _plain_file(path: PathLike, *, latin1: bool = False) -> Iterator[tuple[Path, bytes]]:
    """A plain UTF-8 copy of ``path`` when it is gzip (or, with ``latin1``, not UTF-8).

    Yields (path to read, its bytes). Errors raised inside the block that name the
    temporary copy are re-raised naming ``path`` (line numbers are the same), and the
    copy is deleted afterwards.
    """
    stored = read_file(path)
    data = _gunzip(stored, path)
    if latin1:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            data = data.decode("latin-1").encode("utf-8")
    if data is stored:
        yield Path(path), data
        return
    handle, name = tempfile.mkstemp(prefix="negrec-", suffix=".txt")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        try:
            yield Path(name), data
        except DataError as err:
            if err.path != name:
                raise
            prefix = f"{name}:{err.line}: " if err.line is not None else f"{name}: "
            message = str(err)[len(prefix) :] if str(err).startswith(prefix) else str(err)
            raise DataError(message, path=path, line=err.line) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _finish(table: pd.DataFrame, path: PathLike) -> pd.DataFrame:
    table.attrs["path"] = str(path)
    return table


def _seconds(values: pd.Series, fmt: str) -> np.ndarray:
    """Parse date-time strings with ``fmt`` (or "ISO8601") to float seconds (NaN if bad)."""
    parsed = pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
    # in the parsed unit, not via Timestamp arithmetic: a date like year -27 is a valid
    # parse in seconds but overflows nanoseconds (a crash found by fuzzing)
    stamps = np.asarray(parsed.dt.tz_localize(None), dtype=parsed.dtype.base)
    unit = np.datetime_data(stamps.dtype)[0]
    one_unit = np.array(1, dtype=f"m8[{unit}]") / np.timedelta64(1, "s")  # in seconds
    seconds = stamps.view(np.int64) * one_unit
    seconds[np.isnat(stamps)] = np.nan
    return seconds.astype(np.float64)


def _column(data: bytes, position: int, delimiter: str, path: PathLike) -> pd.Series:
    """Column ``position`` (0-based) of every non-blank line, as strings.

    Only called after :func:`load_delimited` has checked that every data line has the
    same number of fields, so rows line up with its table (:func:`_with_times` checks).
    """
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            sep=delimiter,
            header=None,
            usecols=[position],
            dtype=str,
            quoting=3,  # csv.QUOTE_NONE
            keep_default_na=False,
            skip_blank_lines=True,
            encoding="utf-8",
            engine="c",
        )
    except (ValueError, pd.errors.ParserError) as err:
        reason = " ".join(str(err).split())
        raise DataError(f"cannot read column {position + 1} ({reason})", path=path) from None
    return frame[position]


def _with_times(
    table: pd.DataFrame, times: pd.Series, fmt: str, path: PathLike, expected: str
) -> pd.DataFrame:
    """Add a ``timestamp`` column parsed from ``times``; a bad one names its line."""
    if len(times) != len(table):
        raise DataError(f"cannot line up the time column; expected {expected}", path=path)
    seconds = _seconds(times.str.strip(), fmt)
    bad = ~np.isfinite(seconds)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"time {_show(str(times.iloc[k]))} is not a date-time; expected {expected}",
            path=path,
            line=int(table["line"].iloc[k]),
        )
    columns = {c: table[c].to_numpy() for c in table.columns if c != "line"}
    columns["timestamp"] = seconds
    columns["line"] = table["line"].to_numpy()
    return pd.DataFrame(columns)


def _positions(users: np.ndarray) -> np.ndarray:
    """Position of each event within its user's events, in file order (float64)."""
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    first = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    group_start = np.repeat(first, np.diff(np.r_[first, sorted_users.size]))
    position = np.empty(users.size, dtype=np.float64)
    position[order] = np.arange(users.size) - group_start
    return position


# ------------------------------------------------------------------------ delimited files
def load_amazon_csv_2014(path: PathLike) -> pd.DataFrame:
    """Amazon 2014 "ratings only" CSV (``ratings_<Category>.csv``): ``user,item,rating,time``.

    No header; ``time`` is Unix seconds. Ids are kept as strings unless all are integers.
    """
    with _plain_file(path) as (plain, _):
        table = load_delimited(
            plain, user=0, item=1, rating=2, timestamp=3, delimiter=",", header=False
        )
    return _finish(table, path)


def load_amazon_csv_2018(path: PathLike) -> pd.DataFrame:
    """Amazon 2018 "ratings only" CSV (``<Category>.csv``): ``item,user,rating,time``.

    Note the order: the 2018 files put the item (ASIN) first. No header; ``time`` is Unix
    seconds.
    """
    with _plain_file(path) as (plain, _):
        table = load_delimited(
            plain, user=1, item=0, rating=2, timestamp=3, delimiter=",", header=False
        )
    return _finish(table, path)


def load_ncf_rating(path: PathLike) -> pd.DataFrame:
    """NCF ``*.train.rating`` / ``*.test.rating``: ``user TAB item TAB rating [TAB time]``.

    Integer ids (0-based in the NCF repository). The time column is read when present.
    """
    with _plain_file(path) as (plain, data):
        first = next((line for line in data.split(b"\n") if line.strip()), b"")
        timestamp = 3 if first.count(b"\t") >= 3 else None
        table = load_delimited(
            plain,
            user=0,
            item=1,
            rating=2,
            timestamp=timestamp,
            delimiter="\t",
            header=False,
            int_ids=True,
        )
    return _finish(table, path)


def load_sasrec(path: PathLike) -> pd.DataFrame:
    """SASRec ``data/<name>.txt``: one ``user item`` pair per line, each user's in time order.

    Integer ids (1-based in the SASRec repository). ``timestamp`` is the event's position
    in its user's sequence (0, 1, ...), so time order survives preparation.
    """
    with _plain_file(path) as (plain, _):
        table = load_delimited(plain, user=0, item=1, delimiter=None, header=False, int_ids=True)
    users = table["user"].to_numpy()
    table = pd.DataFrame(
        {
            "user": users,
            "item": table["item"].to_numpy(),
            "timestamp": _positions(users),
            "line": table["line"].to_numpy(),
        }
    )
    return _finish(table, path)


def load_pairs(path: PathLike) -> pd.DataFrame:
    """One interaction per line: ``user item [weight]``, separated by spaces or tabs.

    The layout of the pre-split graph datasets of SELFRec (Yu et al.; ``user item rating``,
    e.g. Douban-Book, MovieLens-1M) and of the MCNS edge lists (Yang et al., KDD 2020;
    ``user TAB item``, e.g. Alibaba), used by the SimCE paper. Integer ids, taken as they
    are (preparation re-encodes them, so 0-/1-based ids and MCNS's item ids offset by the
    number of users all work). A third field, where lines have one, is read as the rating;
    further fields are ignored.
    """
    with _plain_file(path) as (plain, data):
        first = next((line for line in data.split(b"\n") if line.strip()), b"")
        rating = 2 if len(first.split()) >= 3 else None
        table = load_delimited(
            plain, user=0, item=1, rating=rating, delimiter=None, header=False, int_ids=True
        )
    return _finish(table, path)


def load_matlab(path: PathLike) -> pd.DataFrame:
    """A MATLAB ``.mat`` file whose variable ``data`` is the users x items matrix.

    The layout of the datasets of the hard-negative-sampling paper's code (Shi et al.,
    WWW 2023, built on AdaSIR: ``datasets/gowalladata.mat``, read with
    ``scipy.io.loadmat(file)['data']`` and split 80/20 per user at run time). Every
    stored entry is an event: row = user, column = item (0-based integer ids), value =
    rating. A .mat file has no lines, so ``line`` is the entry's 1-based position in the
    matrix in row-major order. MATLAB v7.3 (HDF5) files are not read.
    """
    import scipy.io
    import scipy.sparse

    data = read_file(path)  # a missing file / folder is reported here, naming it
    expected = "a MATLAB v5 .mat file with a 2-D matrix named 'data' (users x items)"
    try:
        variables = scipy.io.loadmat(io.BytesIO(data), variable_names=["data"])
    except NotImplementedError:
        raise DataError(f"is a MATLAB v7.3 (HDF5) file; expected {expected}", path=path) from None
    except Exception as err:  # scipy's parser fails on damaged bytes in many ways
        reason = " ".join(str(err).split())[:120]
        raise DataError(
            f"cannot read it as MATLAB ({reason}); expected {expected}", path=path
        ) from None
    matrix = variables.get("data")
    if matrix is None or getattr(matrix, "ndim", 0) != 2:
        raise DataError(f"has no 2-D variable 'data'; expected {expected}", path=path)
    dtype = getattr(matrix, "dtype", None)
    if dtype is None or dtype.kind not in "biuf":  # not real numbers: text, cells, complex
        shown = "a cell or struct array" if dtype is None or dtype.kind == "O" else str(dtype)
        raise DataError(
            f"matrix 'data' holds {shown}, not real numbers; expected {expected}", path=path
        )
    coo = scipy.sparse.coo_array(matrix)
    coo.sum_duplicates()  # canonical: sorted by (row, column), one entry per cell
    if coo.nnz == 0:
        raise DataError(f"matrix 'data' has no entries; expected {expected}", path=path)
    values = np.asarray(coo.data, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(
            f"matrix 'data' holds a value that is not finite; expected {expected}", path=path
        )
    table = pd.DataFrame(
        {
            "user": np.asarray(coo.row, dtype=np.int64),  # [nnz]
            "item": np.asarray(coo.col, dtype=np.int64),  # [nnz]
            "rating": values,  # [nnz]
            "line": np.arange(1, coo.nnz + 1, dtype=np.int64),
        }
    )
    return _finish(table, path)


def load_gowalla_checkins(path: PathLike) -> pd.DataFrame:
    """SNAP Gowalla check-ins: ``user TAB time TAB latitude TAB longitude TAB location``.

    ``time`` is ISO 8601 UTC (``2010-10-19T23:55:27Z``); the location is the item. Integer
    ids. Repeated check-ins are separate events (preparation keeps the latest).
    """
    expected = "'user<TAB>2010-10-19T23:55:27Z<TAB>latitude<TAB>longitude<TAB>location'"
    with _plain_file(path) as (plain, data):
        table = load_delimited(plain, user=0, item=4, delimiter="\t", header=False, int_ids=True)
        times = _column(data, 1, "\t", plain)
        table = _with_times(table, times, "%Y-%m-%dT%H:%M:%SZ", plain, expected)
    return _finish(table, path)


def load_foursquare_tsmc(path: PathLike) -> pd.DataFrame:
    """Foursquare TSMC2014 (``dataset_TSMC2014_NYC.txt`` / ``_TKY.txt``), tab separated.

    Fields: user, venue, venue category id, category name, latitude, longitude, time-zone
    offset, UTC time (``Tue Apr 03 18:00:09 +0000 2012``). The venue is the item. The
    files are read as UTF-8, falling back to Latin-1 (some category names are Latin-1).
    """
    expected = "8 tab-separated fields: user, venue, category id, category, lat, lon, offset, time"
    with _plain_file(path, latin1=True) as (plain, data):
        table = load_delimited(plain, user=0, item=1, delimiter="\t", header=False)
        if _field_count(data, "\t") != 8:
            raise DataError(f"expected {expected}", path=plain, line=_first_line(data))
        times = _column(data, 7, "\t", plain)
        table = _with_times(table, times, "%a %b %d %H:%M:%S %z %Y", plain, expected)
    return _finish(table, path)


def _first_line(data: bytes) -> int:
    """1-based number of the first non-blank line."""
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            return number
    return 1


def _field_count(data: bytes, delimiter: str) -> int:
    """Fields on the first non-blank line (load_delimited has checked all lines agree)."""
    first = next((line for line in data.split(b"\n") if line.strip()), b"")
    return first.rstrip(b"\r").count(delimiter.encode()) + 1


# ------------------------------------------------------------------------- JSON lines
def _json_id(value: Any) -> str | None:
    """An id from JSON: a non-empty string or an integer, as a string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _json_number(value: Any) -> float | None:
    """A finite number from JSON (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _json_lines(
    path: PathLike,
    fields: dict[str, str],
    expected: str,
    convert: Mapping[str, Callable[[Any], Any]],
) -> tuple[dict[str, list[Any]], list[int]]:
    """Read one JSON object per line and pull ``fields`` (role -> key) out of each.

    ``convert`` maps a role to a function returning the value or None when it is invalid.
    Returns (values per role, 1-based line numbers). Blank lines are skipped.
    """
    text = decode_utf8(_gunzip(read_file(path), path), path)
    values: dict[str, list[Any]] = {role: [] for role in fields}
    numbers: list[int] = []
    decoder = json.JSONDecoder()
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = decoder.decode(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"not valid JSON ({err.msg} at column {err.colno}); expected {expected}",
                path=path,
                line=number,
            ) from None
        except RecursionError:
            raise DataError(
                f"JSON nested too deeply; expected {expected}", path=path, line=number
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"a JSON {type(record).__name__}, not an object; expected {expected}",
                path=path,
                line=number,
            )
        for role, key in fields.items():
            if key not in record:
                raise DataError(f"no {key!r} field; expected {expected}", path=path, line=number)
            value = convert[role](record[key])
            if value is None:
                raise DataError(
                    f"{key} {_show(json.dumps(record[key]))} is not a valid {role}; "
                    f"expected {expected}",
                    path=path,
                    line=number,
                )
            values[role].append(value)
        numbers.append(number)
    if not numbers:
        raise DataError(f"file is empty; expected {expected}", path=path)
    return values, numbers


def _id_column(values: list[str]) -> np.ndarray:
    return _auto_ids(pd.Series(values, dtype=object))


def load_amazon_json(path: PathLike) -> pd.DataFrame:
    """Amazon 2014 / 2018 review JSON lines (e.g. ``reviews_Beauty_5.json.gz``).

    One JSON object per line with ``reviewerID`` (user), ``asin`` (item), ``overall``
    (rating) and ``unixReviewTime`` (Unix seconds); other fields are ignored.
    """
    expected = 'one JSON object per line with "reviewerID", "asin", "overall" and "unixReviewTime"'
    fields = {
        "user": "reviewerID",
        "item": "asin",
        "rating": "overall",
        "timestamp": "unixReviewTime",
    }
    convert = {
        "user": _json_id,
        "item": _json_id,
        "rating": _json_number,
        "timestamp": _json_number,
    }
    values, numbers = _json_lines(path, fields, expected, convert)
    table = pd.DataFrame(
        {
            "user": _id_column(values["user"]),
            "item": _id_column(values["item"]),
            "rating": np.asarray(values["rating"], dtype=np.float64),
            "timestamp": np.asarray(values["timestamp"], dtype=np.float64),
            "line": np.asarray(numbers, dtype=np.int64),
        }
    )
    return _finish(table, path)


def _json_string(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def load_yelp_json(path: PathLike) -> pd.DataFrame:
    """Yelp academic dataset reviews (``yelp_academic_dataset_review.json``).

    One JSON object per line with ``user_id``, ``business_id`` (item), ``stars`` (rating)
    and ``date`` (``2016-03-09 00:00:00`` or ``2016-03-09``); other fields are ignored.
    """
    expected = 'one JSON object per line with "user_id", "business_id", "stars" and "date"'
    fields = {"user": "user_id", "item": "business_id", "rating": "stars", "timestamp": "date"}
    convert = {
        "user": _json_id,
        "item": _json_id,
        "rating": _json_number,
        "timestamp": _json_string,
    }
    values, numbers = _json_lines(path, fields, expected, convert)
    dates = pd.Series(values["timestamp"], dtype=object)
    seconds = _seconds(dates, "ISO8601")
    bad = ~np.isfinite(seconds)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(
            f"date {_show(dates.iloc[k])} is not a date; expected {expected}",
            path=path,
            line=numbers[k],
        )
    table = pd.DataFrame(
        {
            "user": _id_column(values["user"]),
            "item": _id_column(values["item"]),
            "rating": np.asarray(values["rating"], dtype=np.float64),
            "timestamp": seconds,
            "line": np.asarray(numbers, dtype=np.int64),
        }
    )
    return _finish(table, path)


# ----------------------------------------------------------------------- registration
#: The formats this module adds: name -> (loader, description).
RAW_FORMATS: dict[str, tuple[Callable[..., pd.DataFrame], str]] = {
    "amazon-csv-2014": (load_amazon_csv_2014, "Amazon 2014 ratings CSV: user,item,rating,time"),
    "amazon-csv-2018": (load_amazon_csv_2018, "Amazon 2018 ratings CSV: item,user,rating,time"),
    "amazon-json": (
        load_amazon_json,
        "Amazon 2014/2018 review JSON lines (reviewerID, asin, overall, unixReviewTime)",
    ),
    "yelp-json": (load_yelp_json, "Yelp academic review.json (user_id, business_id, stars, date)"),
    "gowalla-checkins": (
        load_gowalla_checkins,
        "SNAP Gowalla check-ins: user TAB time TAB lat TAB lon TAB location",
    ),
    "foursquare-tsmc": (
        load_foursquare_tsmc,
        "Foursquare TSMC2014 TSV: user TAB venue TAB ... TAB UTC time",
    ),
    "ncf-rating": (load_ncf_rating, "NCF .rating file: user TAB item TAB rating [TAB time]"),
    "sasrec": (load_sasrec, "SASRec data/*.txt: 'user item' per line, in time order"),
    "pairs": (load_pairs, "'user item [weight]' per line, spaces or tabs (SELFRec, MCNS)"),
    "matlab": (load_matlab, "MATLAB .mat (v5) with a sparse users x items matrix 'data'"),
}

for _name, (_loader, _description) in RAW_FORMATS.items():
    loaders.register_format(_name, _loader, _description)

__all__ = [
    "RAW_FORMATS",
    "load_amazon_csv_2014",
    "load_amazon_csv_2018",
    "load_amazon_json",
    "load_foursquare_tsmc",
    "load_gowalla_checkins",
    "load_matlab",
    "load_ncf_rating",
    "load_pairs",
    "load_sasrec",
    "load_yelp_json",
]
