"""``artifacts.id_array``: raw ids stored without pickle (int64, or unicode text kept
exactly) round-trip through ``np.savez`` / ``np.load(allow_pickle=False)``, in work that
does not grow with the number of ids in Python."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from negrec.errors import NegrecError
from negrec.experiment import artifacts
from negrec.experiment.artifacts import id_array


def _round_trip(ids: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    np.savez(buffer, ids=id_array(ids))
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        return stored["ids"]


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)  # [N] (np.array would guess a dtype)
    out[:] = values
    return out


TEXT = ["007", "7", "ünï", "ß", "", " a b ", "日本", "😀", "x" * 40]


@pytest.mark.parametrize(
    "ids",
    [
        _objects(TEXT),  # what a pandas index of strings gives
        np.array(TEXT),  # unicode already
        _objects([np.str_("a"), "b"]),
    ],
)
def test_text_ids_round_trip_exactly(ids):
    back = _round_trip(ids)
    assert back.dtype.kind == "U"
    assert back.tolist() == [str(v) for v in ids.tolist()]


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
def test_integer_ids_round_trip_as_int64(dtype):
    ids = np.array([0, 7, 3, 65535], dtype=dtype)
    back = _round_trip(ids)
    assert back.dtype == np.int64 and back.tolist() == [0, 7, 3, 65535]


def test_empty_ids():
    assert id_array(_objects([])).dtype == np.dtype("<U1")
    assert id_array(np.array([], dtype=np.int64)).dtype == np.int64


@pytest.mark.parametrize(
    ("values", "kinds"),
    [
        (["a", 7], "int, str"),
        ([7, 8], "int"),
        (["a", b"a"], "bytes, str"),
        (["a", None], "NoneType, str"),
        (["a", float("nan")], "float, str"),
    ],
)
def test_ids_that_are_not_all_text_are_refused(values, kinds):
    with pytest.raises(NegrecError, match=rf"raw ids mix types \({kinds}\); cannot store them"):
        id_array(_objects(values))


def test_a_trailing_nul_is_refused_not_dropped():
    """numpy's unicode arrays drop trailing NULs: "a\0" would have come back as "a"."""
    with pytest.raises(NegrecError, match=r"raw id 'a\\x00' ends with a NUL character"):
        id_array(_objects(["b", "a\0"]))
    assert _round_trip(_objects(["\0a"])).tolist() == ["\0a"]  # a leading one is kept


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=8).filter(lambda t: not t.endswith("\0")), max_size=30))
def test_any_text_ids_round_trip(values):
    ids = _objects(values)
    assert _round_trip(ids).tolist() == values


def _lines_run(function: Callable[[], object], filename: str) -> int:
    """How many Python lines of ``filename`` run during ``function()``."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename != filename:
            return None
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        function()
    finally:
        sys.settrace(previous)
    return count


def test_id_array_python_loop_once_per_run_write():
    """Regression: `id_array` checked every id with `isinstance` in a Python generator
    (run for each run written and each export): Python work growing with the number of
    ids. It is now whole-array numpy work: as many Python lines for 10,000 ids as for 10."""
    source = str(Path(artifacts.__file__))
    few = _objects([f"u{i}" for i in range(10)])
    many = _objects([f"u{i}" for i in range(10_000)])
    assert _lines_run(lambda: id_array(few), source) == _lines_run(lambda: id_array(many), source)
