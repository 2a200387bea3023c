"""The prepared-dataset cache: CSR arrays in an ``.npz`` file plus a JSON description.

Layout under the cache root (``$NEGREC_CACHE``, default ``<user cache dir>/negrec``)::

    <root>/<name>/data.npz        train_indptr, train_indices, [train_timestamps,
                                  train_ratings], the same for test_ when pre-split,
                                  user_ids, item_ids, n_items
    <root>/<name>/meta.json       format version, dataset, source, recipe, PrepareReport
    <root>/downloads/<name>/...   verified raw downloads (kept, so re-preparing is offline)
    <root>/checksums.json         sha256 recorded on first download of unpinned URLs

An entry is written into a temporary folder beside it and moved into place with
:func:`os.replace`, so a reader sees either the old complete entry or the new complete
one, never a half-written one. Nothing is pickled: ids are stored as int64 or as
fixed-width unicode arrays and loaded with ``allow_pickle=False``. The arrays are stored
uncompressed, so loading ML-1M takes milliseconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from negrec.atomic import staging_folder
from negrec.data.interactions import Interactions
from negrec.data.prepare import PrepareReport
from negrec.errors import NegrecError

PathLike = str | Path

#: Environment variable naming the cache root.
CACHE_ENV = "NEGREC_CACHE"
#: Version of the on-disk layout; entries of another version must be prepared again.
FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CacheError(NegrecError):
    """A cache entry is missing, from another negrec version, or damaged."""


# ---------------------------------------------------------------------------- locations
def user_cache_dir() -> Path:
    """The platform's per-user cache folder (XDG on Linux, Library/Caches on macOS)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return Path(base) if base else Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    base = os.environ.get("XDG_CACHE_HOME")
    return Path(base) if base else Path.home() / ".cache"


def cache_root(cache_dir: PathLike | None = None) -> Path:
    """The cache root: ``cache_dir`` if given, else ``$NEGREC_CACHE``, else the user cache."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "negrec"


def check_name(name: str) -> str:
    """``name`` if it is a safe entry name (letters, digits, ``. _ -``), else CacheError."""
    if not _NAME.match(name):
        raise CacheError(
            f"invalid dataset name {name!r}: use letters, digits, '.', '_' and '-' only"
        )
    return name


def entry_dir(name: str, cache_dir: PathLike | None = None) -> Path:
    """Folder of the prepared entry ``name`` (it may not exist)."""
    return cache_root(cache_dir) / check_name(name)


def is_prepared(name: str, cache_dir: PathLike | None = None) -> bool:
    """Whether a complete prepared entry ``name`` exists."""
    folder = entry_dir(name, cache_dir)
    return (folder / "meta.json").is_file() and (folder / "data.npz").is_file()


@contextlib.contextmanager
def staging_dir(root: Path, name: str) -> Iterator[Path]:
    """A temporary folder inside ``root`` (same file system), removed on exit."""
    root.mkdir(parents=True, exist_ok=True)
    folder = staging_folder(root, prefix=f".{name}.", suffix=".tmp")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _publish(staged: Path, final: Path) -> None:
    """Move the complete folder ``staged`` to ``final``, replacing an older entry."""
    old: Path | None = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    try:
        os.replace(staged, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------- saving
def _id_array(ids: np.ndarray) -> np.ndarray:
    """Raw ids in a pickle-free dtype: int64 when integer, fixed-width unicode otherwise."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    return np.asarray([str(value) for value in ids.tolist()], dtype=np.str_)


def _put(arrays: dict[str, np.ndarray], part: str, data: Interactions) -> None:
    arrays[f"{part}_indptr"] = data.indptr
    arrays[f"{part}_indices"] = data.indices
    if data.timestamps is not None:
        arrays[f"{part}_timestamps"] = data.timestamps
    if data.ratings is not None:
        arrays[f"{part}_ratings"] = data.ratings


def save_prepared(
    name: str,
    train: Interactions,
    test: Interactions | None,
    report: PrepareReport,
    meta: dict[str, Any] | None = None,
    *,
    cache_dir: PathLike | None = None,
) -> Path:
    """Store a prepared dataset as entry ``name``, atomically; returns its folder.

    ``test`` (for pre-split data) must share ``train``'s id space. ``meta`` is extra
    JSON-serialisable description (dataset, source, recipe) kept in ``meta.json``.
    """
    final = entry_dir(name, cache_dir)
    if test is not None and (
        test.n_users != train.n_users
        or test.n_items != train.n_items
        or not np.array_equal(test.user_ids, train.user_ids)
        or not np.array_equal(test.item_ids, train.item_ids)
    ):
        raise ValueError("train and test must share one id space")
    arrays: dict[str, np.ndarray] = {
        "user_ids": _id_array(train.user_ids),
        "item_ids": _id_array(train.item_ids),
        "n_items": np.asarray(train.n_items, dtype=np.int64),
    }
    _put(arrays, "train", train)
    if test is not None:
        _put(arrays, "test", test)
    description = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "has_test": test is not None,
        **(meta or {}),
        "report": dataclasses.asdict(report),
    }
    with staging_dir(final.parent, name) as staged:
        with open(staged / "data.npz", "wb") as out:
            np.savez(out, **arrays)  # type: ignore[arg-type]  # stubs mistake ids for flags
            out.flush()
            os.fsync(out.fileno())
        (staged / "meta.json").write_text(json.dumps(description, indent=2) + "\n", "utf-8")
        _publish(staged, final)
    return final


# ------------------------------------------------------------------------------ loading
def read_meta(name: str, cache_dir: PathLike | None = None) -> dict[str, Any]:
    """The ``meta.json`` of entry ``name``; CacheError when it is absent or unreadable."""
    folder = entry_dir(name, cache_dir)
    path = folder / "meta.json"
    if not path.is_file():
        raise CacheError(
            f"dataset {name!r} is not prepared in {folder.parent}; run "
            f"`negrec data fetch {name}` or `negrec data import {name} PATH`"
        )
    try:
        meta = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CacheError(
            f"{path}: unreadable cache entry ({err}); prepare it again with --force"
        ) from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CacheError(
            f"{path}: cache entry from another negrec version; prepare it again with --force"
        )
    return meta


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def _part(
    arrays: Any, part: str, n_items: int, user_ids: np.ndarray, item_ids: np.ndarray, path: Path
) -> Interactions:
    indptr = np.asarray(arrays[f"{part}_indptr"], dtype=np.int64)
    indices = np.asarray(arrays[f"{part}_indices"], dtype=np.int64)
    files = set(arrays.files)
    timestamps = arrays[f"{part}_timestamps"] if f"{part}_timestamps" in files else None
    ratings = arrays[f"{part}_ratings"] if f"{part}_ratings" in files else None
    ok = (
        indptr.ndim == 1
        and indptr.size == user_ids.size + 1
        and indptr[0] == 0
        and indptr[-1] == indices.size
        and bool(np.all(np.diff(indptr) >= 0))
        and (indices.size == 0 or (indices.min() >= 0 and indices.max() < n_items))
        and all(a is None or a.shape == indices.shape for a in (timestamps, ratings))
    )
    if not ok:
        raise CacheError(f"{path}: damaged cache entry ({part} arrays disagree); use --force")
    return Interactions(
        indptr=_frozen(indptr),
        indices=_frozen(indices),
        n_items=n_items,
        user_ids=user_ids,
        item_ids=item_ids,
        timestamps=None if timestamps is None else _frozen(timestamps.astype(np.float64)),
        ratings=None if ratings is None else _frozen(ratings.astype(np.float64)),
    )


def _ids(array: np.ndarray) -> np.ndarray:
    return _frozen(array.astype(object) if array.dtype.kind == "U" else array)


def load_prepared(
    name: str, cache_dir: PathLike | None = None
) -> tuple[Interactions, Interactions | None, PrepareReport]:
    """Load the prepared dataset ``name``: (train, test or None, report).

    ``train`` holds all interactions of a dataset that is not pre-split (``test`` is then
    None: split it as the experiment asks, e.g. with the recipe in :func:`read_meta`);
    for a pre-split dataset ``train`` and ``test`` share one id space. Raises
    :class:`CacheError` (a :class:`~negrec.errors.NegrecError`) when ``name`` has not
    been prepared (``negrec data fetch NAME`` / ``negrec data import NAME PATH``) or the
    entry is damaged.
    """
    meta = read_meta(name, cache_dir)
    path = entry_dir(name, cache_dir) / "data.npz"
    try:
        with np.load(path, allow_pickle=False) as arrays:
            n_items = int(arrays["n_items"])
            user_ids = _ids(arrays["user_ids"])
            item_ids = _ids(arrays["item_ids"])
            train = _part(arrays, "train", n_items, user_ids, item_ids, path)
            test = None
            if meta.get("has_test"):
                test = _part(arrays, "test", n_items, user_ids, item_ids, path)
    except CacheError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise CacheError(
            f"{path}: damaged cache entry ({err}); prepare it again with --force"
        ) from None
    try:
        report = PrepareReport(**meta["report"])
    except (KeyError, TypeError) as err:
        raise CacheError(
            f"{path.parent / 'meta.json'}: damaged report ({err}); use --force"
        ) from None
    return train, test, report


def prepared_names(cache_dir: PathLike | None = None) -> list[str]:
    """Names of the complete entries under the cache root, sorted."""
    root = cache_root(cache_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if not p.name.startswith(".") and (p / "meta.json").is_file() and (p / "data.npz").is_file()
    )


def remove_prepared(name: str, cache_dir: PathLike | None = None) -> bool:
    """Delete entry ``name`` (not its downloads); returns whether there was one."""
    folder = entry_dir(name, cache_dir)
    if not folder.exists():
        return False
    trash = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return True


__all__ = [
    "CACHE_ENV",
    "CacheError",
    "cache_root",
    "entry_dir",
    "is_prepared",
    "load_prepared",
    "prepared_names",
    "read_meta",
    "remove_prepared",
    "save_prepared",
    "user_cache_dir",
]
