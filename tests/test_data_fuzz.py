"""Fuzzing every loader: bad input either loads correctly or stops with a one-line error.

For each format in :data:`negrec.data.loaders.FORMATS`, hypothesis generates files that
are near-misses of the format (truncated lines, wrong delimiters, huge and negative ids,
NaN ratings, duplicate rows, users without items, non-UTF-8 bytes, byte-order marks,
gzip, cut-off files) as well as random bytes. Every input must either load into a table
that keeps the loader contract and prepares into valid :class:`Interactions`, or raise a
:class:`~negrec.errors.NegrecError` whose message is one line and names the file. Any
other exception is a crash.

CI runs ``FUZZ_EXAMPLES`` (default 200) inputs per loader, derandomized. The deep run,
``FUZZ_DEEP_EXAMPLES`` (default 10,000) inputs per loader without shrinking, is marked
``fuzz`` and deselected by default (15-30 minutes on two cores)::

    python -m pytest -m fuzz tests/test_data_fuzz.py -rA       # every loader
    FUZZ_DEEP_EXAMPLES=500 python -m pytest -m fuzz tests/test_data_fuzz.py -k lightgcn -rA

It prints one line per loader (inputs, loaded, one-line errors, crashes, seconds) and fails
on any crash, showing the first crashing input and its traceback. The named regression
tests at the end pin bugs fuzzing found.
"""

from __future__ import annotations

import collections
import gzip
import io
import json
import os
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from negrec.data.loaders import FORMATS, load, load_split
from negrec.data.prepare import prepare, prepare_split
from negrec.errors import NegrecError

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ_DEEP_EXAMPLES = int(os.environ.get("FUZZ_DEEP_EXAMPLES", "10000"))

#: Options for formats whose loader needs them.
OPTIONS: dict[str, dict[str, Any]] = {
    "delimited": {"user": 0, "item": 1, "rating": 2, "timestamp": 3, "header": False},
}
#: Formats that are read as train/test pairs in the pre-split fuzz test.
PAIR_FORMATS = ("lightgcn", "sequence", "ncf-rating")
#: Formats that may be gzip-compressed (the raw public-dataset formats).
GZIP_OK = {
    "amazon-csv-2014",
    "amazon-csv-2018",
    "amazon-json",
    "yelp-json",
    "gowalla-checkins",
    "foursquare-tsmc",
    "ncf-rating",
    "sasrec",
    "pairs",
}

# ------------------------------------------------------------------ field strategies
# Each format has a strategy for a *valid* line and one for a line with a defect. A file
# is mostly valid lines with at most a few defects, so that both outcomes -- loading
# correctly and the one-line error -- are exercised often.
_int_ids = st.integers(0, 40).map(str)
_str_ids = st.one_of(_int_ids, st.text("ABCXYZ0123456789", min_size=1, max_size=10))
_bad_ids = st.one_of(
    st.integers(-50, -1).map(str),  # negative ids
    st.integers(10**17, 10**30).map(str),  # huge ids (past int64)
    st.sampled_from(["", " ", "1.5", "0x1F", "١٢", "é", "nan", "-", "+3", "1e3", "a b"]),
    st.text(max_size=8),
)
_ratings = st.one_of(st.integers(1, 5).map(str), st.sampled_from(["3.5", "4.0", "0.5"]))
_bad_ratings = st.one_of(
    st.sampled_from(["NaN", "nan", "inf", "-inf", "", "abc", "1e400", "5 5", "--1"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
)
_unix = st.integers(0, 2_000_000_000).map(str)
_bad_times = st.sampled_from(
    ["", "yesterday", "nan", "inf", "2010-13-19T23:55:27Z", "Tue Apr 33 18:00:09 +0000 2012"]
)
_text = st.text(max_size=12)
_wrong_delimiters = st.sampled_from(["\t", ",", " ", "::", ";", "|", ":", "  "])


def _field(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> tuple[Any, Any]:
    return good, st.one_of(good, bad)


def _row(delimiter: str, fields: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """(valid line, defective line) strategies for a delimited format.

    A defective line has bad values, or too few / too many fields, or a wrong delimiter.
    """
    good = st.tuples(*(f[0] for f in fields)).map(delimiter.join)
    bad_values = st.tuples(*(f[1] for f in fields)).map(delimiter.join)
    truncated = st.tuples(*(f[0] for f in fields)).flatmap(
        lambda values: st.integers(0, len(values) - 1).map(lambda k: delimiter.join(values[:k]))
    )
    extra = st.tuples(st.tuples(*(f[0] for f in fields)), _text).map(
        lambda pair: delimiter.join([*pair[0], pair[1]])
    )
    wrong = st.tuples(st.tuples(*(f[0] for f in fields)), _wrong_delimiters).map(
        lambda pair: pair[1].join(pair[0])
    )
    return good, st.one_of(bad_values, bad_values, truncated, extra, wrong)


def _adjacency(separator: str) -> tuple[Any, Any]:
    """``user item item ...`` (or ``user:item ...``); a user with no items is valid."""

    def line(t: tuple[str, list[str]]) -> str:
        return t[0] + separator + " ".join(t[1])

    good = st.tuples(_int_ids, st.lists(_int_ids, max_size=6)).map(line)
    bad_values = st.tuples(
        st.one_of(_int_ids, _bad_ids), st.lists(st.one_of(_int_ids, _bad_ids), max_size=6)
    ).map(line)
    wrong = st.tuples(_int_ids, st.lists(_int_ids, min_size=1, max_size=4), _wrong_delimiters).map(
        lambda t: t[0] + t[2] + t[2].join(t[1])
    )
    return good, st.one_of(bad_values, wrong, _text)


def _json_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**25), 10**25),
        st.floats(allow_nan=True, allow_infinity=True),
        _bad_ids,
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )


def _json(keys: dict[str, st.SearchStrategy[Any]]) -> tuple[Any, Any]:
    """(valid line, defective line): JSON objects with the format's keys and extra ones."""
    extra = st.dictionaries(st.sampled_from(["text", "summary", "helpful"]), _text, max_size=2)
    good = st.tuples(st.fixed_dictionaries(keys), extra).map(lambda t: json.dumps({**t[1], **t[0]}))
    wrong_values = st.fixed_dictionaries(
        {key: st.one_of(value, _json_value()) for key, value in keys.items()}
    )
    missing = st.fixed_dictionaries({}, optional=keys)
    records = st.one_of(wrong_values, missing).map(lambda r: json.dumps(r, allow_nan=True))
    broken = good.flatmap(lambda s: st.integers(0, len(s) - 1).map(lambda k: s[:k]))
    other = st.sampled_from(["[]", "1", '"x"', "null", "{", "{}", "NaN", "[" * 5000])
    return good, st.one_of(records, records, broken, other)


_AMAZON = {
    "reviewerID": st.text("AB12", min_size=1, max_size=3),
    "asin": st.text("XY89", min_size=1, max_size=3),
    "overall": st.integers(1, 5).map(float),
    "unixReviewTime": st.integers(0, 2_000_000_000),
}
_YELP = {
    "user_id": st.text("ab12", min_size=1, max_size=3),
    "business_id": st.text("xy89", min_size=1, max_size=3),
    "stars": st.integers(1, 5),
    "date": st.sampled_from(["2016-03-09 00:00:00", "2016-03-09", "2012-11-30 23:59:59"]),
}
_ISO = _field(st.sampled_from(["2010-10-19T23:55:27Z", "2011-01-02T03:04:05Z"]), _bad_times)
_TWEET_TIME = _field(
    st.sampled_from(["Tue Apr 03 18:00:09 +0000 2012", "Sat Feb 16 02:35:36 +0000 2013"]),
    _bad_times,
)
_GEO = _field(st.sampled_from(["40.71", "-73.99"]), _text)
_INT_ID = _field(_int_ids, _bad_ids)
_STR_ID = _field(_str_ids, _bad_ids)
_RATING = _field(_ratings, _bad_ratings)
_UNIX = _field(_unix, _bad_ratings)

#: (valid line, defective line) strategies per format, without any header.
LINES: dict[str, tuple[Any, Any]] = {
    "lightgcn": _adjacency(" "),
    "sequence": _adjacency(":"),
    "recbole": _row("\t", [_STR_ID, _STR_ID, _RATING, _UNIX]),
    "movielens-100k": _row("\t", [_INT_ID, _INT_ID, _RATING, _UNIX]),
    "movielens-dat": _row("::", [_INT_ID, _INT_ID, _RATING, _UNIX]),
    "movielens-csv": _row(",", [_INT_ID, _INT_ID, _RATING, _UNIX]),
    "delimited": _row(",", [_STR_ID, _STR_ID, _RATING, _UNIX]),
    "amazon-csv-2014": _row(",", [_STR_ID, _STR_ID, _RATING, _UNIX]),
    "amazon-csv-2018": _row(",", [_STR_ID, _STR_ID, _RATING, _UNIX]),
    "amazon-json": _json(_AMAZON),
    "yelp-json": _json(_YELP),
    "gowalla-checkins": _row("\t", [_INT_ID, _ISO, _GEO, _GEO, _INT_ID]),
    "foursquare-tsmc": _row(
        "\t",
        [
            _INT_ID,
            _STR_ID,
            _STR_ID,
            _field(_text, _text),
            _GEO,
            _GEO,
            _field(st.just("-240"), _text),
            _TWEET_TIME,
        ],
    ),
    "ncf-rating": _row("\t", [_INT_ID, _INT_ID, _RATING, _UNIX]),
    "sasrec": _row(" ", [_INT_ID, _INT_ID]),
    "pairs": _row(" ", [_INT_ID, _INT_ID, _RATING]),
}
HEADERS: dict[str, tuple[Any, Any]] = {
    "recbole": (
        st.just("user_id:token\titem_id:token\trating:float\ttimestamp:float"),
        st.sampled_from(
            [
                "user_id:token\titem_id:token",
                "user_id\titem_id\trating\ttimestamp",
                "item_id:token\tuser_id:token\trating:float\ttimestamp:float",
                "user_id:token\titem_id:token\trating:float\ttimestamp:float\textra:float",
            ]
        ),
    ),
    "movielens-csv": (
        st.just("userId,movieId,rating,timestamp"),
        st.sampled_from(["userId,movieId,rating", "user,item,rating,time", ""]),
    ),
}


@st.composite
def _mat_file(draw: st.DrawFn) -> bytes:
    """A MATLAB v5 file (``matlab`` format): a small matrix under ``data`` (sparse or dense;
    NaN / infinite / complex / text values, duplicate cells, no entries, a wrong shape or
    name), then possibly cut off or with a byte flipped."""
    import scipy.io
    import scipy.sparse

    rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    cells = draw(
        st.lists(
            st.tuples(
                st.integers(0, rows - 1),
                st.integers(0, cols - 1),
                st.one_of(st.integers(-3, 5).map(float), st.floats(allow_nan=True)),
            ),
            max_size=8,
        )
    )
    r, c, v = (list(x) for x in zip(*cells, strict=True)) if cells else ([], [], [])
    sparse = scipy.sparse.csc_matrix((v, (r, c)), shape=(rows, cols))
    kind = draw(st.integers(0, 7))
    value: Any = sparse
    if kind == 1:
        value = sparse.toarray()
    elif kind == 2:
        value = sparse.toarray() * 1j
    elif kind == 3:
        value = np.array(["ab", "cd"])
    elif kind == 4:
        value = np.zeros((2, 2, 2))
    name = "data" if kind != 5 else "matrix"
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {name: value}, do_compression=draw(st.booleans()))
    data = buffer.getvalue()
    mutation = draw(st.integers(0, 3))
    if mutation == 0:
        data = data[: draw(st.integers(0, len(data)))]
    elif mutation == 1 and data:
        k = draw(st.integers(0, len(data) - 1))
        data = data[:k] + bytes([data[k] ^ draw(st.integers(1, 255))]) + data[k + 1 :]
    return data


#: Binary formats: a strategy for a whole (possibly damaged) file instead of lines.
BINARY: dict[str, st.SearchStrategy[bytes]] = {"matlab": _mat_file()}


@st.composite
def fuzz_input(draw: st.DrawFn, fmt: str) -> bytes:
    """The bytes of one fuzzed file of format ``fmt``.

    Mostly valid lines, with (half of the time) a few defective lines, duplicate rows,
    blank lines, CRLF line ends, then (a third of the time) a byte-level mutation: cut
    off at a random byte, invalid UTF-8, a byte-order mark, a NUL byte, or gzip (whole or
    truncated) for the raw formats. One input in twenty is random bytes.
    """
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=200))
    if fmt in BINARY:
        return draw(BINARY[fmt])
    good, bad = LINES[fmt]
    lines = draw(st.lists(good, max_size=12))
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 2))):
            lines.insert(draw(st.integers(0, len(lines))), draw(bad))
    if lines and draw(st.booleans()):
        lines.append(draw(st.sampled_from(lines)))  # a duplicate row
    if draw(st.integers(0, 4)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", "\t"])))
    if fmt in HEADERS:
        header_good, header_bad = HEADERS[fmt]
        lines.insert(0, draw(header_bad if draw(st.integers(0, 5)) == 0 else header_good))
    newline = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    data = newline.join(lines).encode("utf-8")
    if draw(st.booleans()):
        data += newline.encode()
    mutation = draw(st.integers(0, 14))
    if mutation == 0 and data:  # a file cut off at a random byte
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mutation == 1:  # bytes that are not UTF-8
        position = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xe9t\xe9"]))
        data = data[:position] + junk + data[position:]
    elif mutation == 2:
        data = b"\xef\xbb\xbf" + data  # byte-order mark
    elif mutation == 3:
        data = data.replace(b" ", b"\x00", 1)  # a NUL byte
    elif mutation == 4 and fmt in GZIP_OK:
        compressed = gzip.compress(data, mtime=0)
        if draw(st.booleans()):  # a truncated .gz
            compressed = compressed[: draw(st.integers(0, len(compressed)))]
        data = compressed
    return data


# ------------------------------------------------------------------------- the checks
def _one_line(err: BaseException, path: Path) -> str:
    message = str(err)
    assert "\n" not in message and "\r" not in message, f"multi-line error: {message!r}"
    assert str(path) in message, f"error does not name the file: {message!r}"
    return message


def check_table(table: pd.DataFrame, n_lines: int) -> None:
    """The loader contract: columns, dtypes, line numbers, finite numbers."""
    assert list(table.columns[:2]) == ["user", "item"]
    assert table.columns[-1] == "line"
    assert set(table.columns) <= {"user", "item", "rating", "timestamp", "line"}
    lines = table["line"].to_numpy()
    assert lines.dtype == np.int64
    assert ((lines >= 1) & (lines <= n_lines)).all()
    for column in ("rating", "timestamp"):
        if column in table.columns:
            values = table[column].to_numpy()
            assert values.dtype == np.float64 and np.isfinite(values).all()
    for column in ("user", "item"):
        values = table[column]
        assert values.notna().all()
        if values.dtype.kind != "i":
            assert all(isinstance(v, str) and v for v in values)


def check_input(fmt: str, data: bytes, folder: Path) -> str:
    """Load ``data`` as ``fmt``; return 'ok' or 'error', or fail (a crash or a broken rule)."""
    path = folder / f"input-{fmt}.txt"
    path.write_bytes(data)
    try:
        table = load(path, fmt, **OPTIONS.get(fmt, {}))
    except NegrecError as err:
        _one_line(err, path)
        return "error"
    lines_unknown = fmt in BINARY or data.startswith(b"\x1f\x8b")  # no text lines to count
    check_table(table, 10**9 if lines_unknown else data.count(b"\n") + 1)
    try:
        events, report = prepare(table)
    except NegrecError as err:
        assert "\n" not in str(err)
        return "error"
    assert events.nnz == report.n_interactions <= len(table)
    assert events.nnz == len(table.drop_duplicates(["user", "item"]))
    assert np.all(np.diff(events.indptr) >= 0)
    return "ok"


def check_pair(fmt: str, train: bytes, test: bytes, folder: Path, on_unseen: str) -> str:
    """Load and prepare a fuzzed (train, test) pair; 'ok', 'error' or a failure."""
    paths = folder / f"train-{fmt}.txt", folder / f"test-{fmt}.txt"
    paths[0].write_bytes(train)
    paths[1].write_bytes(test)
    try:
        table = load_split(*paths, fmt)
        train_data, test_data, _ = prepare_split(table, on_unseen=on_unseen)  # type: ignore[arg-type]
    except NegrecError as err:
        assert "\n" not in str(err)
        return "error"
    assert train_data.n_items == test_data.n_items and train_data.n_users == test_data.n_users
    return "ok"


def _settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -------------------------------------------------------------------------- the tests
def scratch_root() -> str | None:
    """A RAM-backed folder for the fuzzed files where there is one (writes are faster)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="negrec-fuzz-", dir=scratch_root()) as folder:
        yield Path(folder)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_loader_fuzz(fmt: str, scratch: Path) -> None:
    @_settings(FUZZ_EXAMPLES)
    @given(data=fuzz_input(fmt))
    def run(data: bytes) -> None:
        check_input(fmt, data, scratch)

    run()


@pytest.mark.parametrize("fmt", PAIR_FORMATS)
def test_presplit_fuzz(fmt: str, scratch: Path) -> None:
    @_settings(max(FUZZ_EXAMPLES // 4, 20))
    @given(
        train=fuzz_input(fmt),
        test=fuzz_input(fmt),
        on_unseen=st.sampled_from(["error", "drop", "keep"]),
    )
    def run(train: bytes, test: bytes, on_unseen: str) -> None:
        check_pair(fmt, train, test, scratch, on_unseen)

    run()


@pytest.mark.fuzz
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_loader_fuzz_deep(fmt: str, scratch: Path) -> None:
    """``FUZZ_DEEP_EXAMPLES`` inputs for one loader, no shrinking: every crash is counted and
    fuzzing goes on, so the printed line gives the outcome counts of the whole run."""
    counts: collections.Counter[str] = collections.Counter()
    crashes: list[str] = []

    @settings(_settings(FUZZ_DEEP_EXAMPLES), phases=[Phase.generate])
    @given(data=fuzz_input(fmt))
    def run(data: bytes) -> None:
        try:
            counts[check_input(fmt, data, scratch)] += 1
        except Exception:  # a crash or a broken rule: keep the first, keep fuzzing
            counts["crash"] += 1
            if not crashes:
                crashes.append(f"input {data!r}\n{traceback.format_exc()}")

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy/pandas runtime warnings on junk input
        run()
    seconds = time.perf_counter() - start
    print(
        f"{fmt:<18} {sum(counts.values()):>7,} inputs  {counts['ok']:>6,} loaded  "
        f"{counts['error']:>6,} one-line errors  {counts['crash']:>3} crashes  {seconds:7.1f} s"
    )
    assert not crashes, f"{counts['crash']} crashes in {fmt}; the first:\n{crashes[0]}"


def test_every_format_is_fuzzed() -> None:
    assert set(LINES) | set(BINARY) == set(FORMATS) and not set(LINES) & set(BINARY)


# ------------------------------------------------------------------------- configs
_toml_values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(-3, 30), max_size=3),
    st.dictionaries(st.text("abk", min_size=1, max_size=3), st.integers(), max_size=2),
)


@st.composite
def mutated_config(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config dict with a few random edits: unknown keys, wrong types, deletions."""
    from negrec.experiment.config import ExperimentConfig

    raw = ExperimentConfig.from_dict({}).to_toml_dict()
    for _ in range(draw(st.integers(1, 3))):
        tables = [(raw, "")]
        tables += [(v, k) for k, v in raw.items() if isinstance(v, dict)]
        table, _ = draw(st.sampled_from(tables))
        keys = sorted(table)
        action = draw(st.integers(0, 2))
        if action == 0 or not keys:
            table[draw(st.text("xyz_", min_size=1, max_size=6))] = draw(_toml_values)
        elif action == 1:
            table[draw(st.sampled_from(keys))] = draw(_toml_values)
        else:
            del table[draw(st.sampled_from(keys))]
    return raw


def test_config_fuzz() -> None:
    """Configs with unknown keys, wrong types or missing keys: valid, or a one-line error."""
    from negrec.errors import ConfigError
    from negrec.experiment.config import ExperimentConfig

    @_settings(FUZZ_EXAMPLES)
    @given(raw=mutated_config())
    def run(raw: dict[str, Any]) -> None:
        try:
            ExperimentConfig.from_dict(raw)
        except ConfigError as err:
            assert "\n" not in str(err) and err.key and f"'{err.key}'" in str(err)

    run()


# ---------------------------------------------------------------- regression tests
@pytest.mark.parametrize("name", [[], {"a": 1}, 3])
def test_config_plugin_name_not_a_string_is_a_config_error(name: Any) -> None:
    """Bug found by test_config_fuzz: ``model.name = []`` crashed Registry.get (TypeError)."""
    from negrec.errors import ConfigError
    from negrec.experiment.config import ExperimentConfig

    with pytest.raises(ConfigError, match=r"model\.name"):
        ExperimentConfig.from_dict({"model": {"name": name}})


@pytest.mark.parametrize(
    ("date", "seconds"),
    [
        ("-27", -63_019_209_600.0),  # 1 January of year -27
        ("-1", -62_198_755_200.0),
        ("0001-01-01", -62_135_596_800.0),
        ("9999-12-31 23:59:59", 253_402_300_799.0),
    ],
)
def test_yelp_date_outside_nanosecond_range_does_not_crash(
    tmp_path: Path, date: str, seconds: float
) -> None:
    """Bug found by the deep loader fuzz (test_loader_fuzz_deep): a Yelp ``date`` of "-27"
    (year -27, a valid ISO 8601 parse) overflowed nanoseconds when converted to seconds and
    raised pandas' OutOfBoundsDatetime instead of loading."""
    record = {"user_id": "u", "business_id": "b", "stars": 4, "date": date}
    path = tmp_path / "review.json"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert load(path, "yelp-json")["timestamp"].tolist() == [seconds]
