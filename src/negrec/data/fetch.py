"""Download, verify, unpack and prepare registered datasets; or prepare them from local files.

:func:`fetch_dataset` is ``negrec data fetch NAME``: each of the dataset's sources is
downloaded over HTTP(S) into ``<cache>/downloads/NAME/`` (a partial download is kept as
``FILE.part`` and resumed with an HTTP ``Range`` request, on the next try or the next
run), verified (pinned sha256, the publisher's md5, or the sha256 recorded when it first
prepared -- see :mod:`negrec.data.datasets`), unpacked (zip, tar, gzip), loaded with the
dataset's format, prepared with its recipe and stored in the cache
(:mod:`negrec.data.cache`). :func:`import_dataset` is ``negrec data import NAME PATH``:
the same from a file, archive or folder the user already has (the offline path), checked
against the dataset's pinned checksums (:func:`verify_import`), or under a name of the
user's own (``as_name``).

Failures raise :class:`FetchError` with one line that says what happened and what to do;
a failed download or preparation never leaves a cache entry behind (entries are written
to a temporary folder and moved into place last). Only a ``.part`` file of an interrupted
transfer is kept, so the next run can resume it; a download whose checksum does not
match is deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from negrec.atomic import atomic_write_text
from negrec.data.cache import (
    PathLike,
    cache_root,
    check_name,
    entry_dir,
    is_prepared,
    read_meta,
    save_prepared,
    staging_dir,
)
from negrec.data.datasets import DatasetSpec, Recipe, Source, get_spec
from negrec.data.interactions import Interactions
from negrec.data.loaders import detect_format, load, load_split
from negrec.data.prepare import PrepareReport, prepare, prepare_split
from negrec.errors import DataError, NegrecError

#: Seconds to wait for a server before giving up on a connection or a read.
DEFAULT_TIMEOUT = 60.0
#: Tries per file: a transfer cut short is resumed this many times within one run.
DEFAULT_ATTEMPTS = 3
_CHUNK = 1 << 16
_USER_AGENT = "negrec (https://pypi.org/project/negrec)"
_STRONG_NAMES = re.compile(r"(^u\.data$|^ratings\.(dat|csv)$|\.inter$)", re.IGNORECASE)

Log = Callable[[str], None]


class FetchError(NegrecError):
    """A download failed (network, server, checksum) or a dataset cannot be fetched."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# ------------------------------------------------------------------------ checksums
def _digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _known_path(root: Path) -> Path:
    return root / "checksums.json"


def recorded_checksums(cache_dir: PathLike | None = None) -> dict[str, dict[str, str]]:
    """The sha256 recorded on first download for unpinned URLs: url -> {sha256, recorded}."""
    path = _known_path(cache_root(cache_dir))
    if not path.is_file():
        return {}
    try:
        known = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FetchError(
            f"{path}: unreadable ({err}); delete it to record checksums anew"
        ) from None
    return known if isinstance(known, dict) else {}


def _record_checksum(root: Path, url: str, sha256: str) -> None:
    """Record ``sha256`` as the reference of the unpinned ``url`` (after it prepared)."""
    known = recorded_checksums(root)
    known[url] = {"sha256": sha256, "recorded": time.strftime("%Y-%m-%d", time.gmtime())}
    atomic_write_text(_known_path(root), json.dumps(known, indent=2, sort_keys=True) + "\n")


def _verify(source: Source, path: Path, root: Path, dataset: str, rerecord: bool = False) -> str:
    """Check a complete download against its checksum; returns its sha256.

    A mismatch deletes the file and raises. An unpinned URL is compared with the sha256
    recorded when it was first prepared, unless ``rerecord``; nothing is recorded here
    (see :func:`fetch_dataset`: only a download that prepares is recorded).
    """
    sha256, md5 = _digests(path)
    expected, kind, hint = None, "", ""
    if source.sha256:
        expected, kind, actual = source.sha256.lower(), "sha256", sha256
    elif source.md5:
        expected, kind, actual = source.md5.lower(), "md5", md5
    elif not rerecord:
        recorded = recorded_checksums(root).get(source.url)
        if recorded is not None:
            expected, actual = recorded["sha256"], sha256
            kind = f"sha256 (recorded on first download, {recorded.get('recorded', '?')})"
            hint = (
                "; if the file changed upstream on purpose, or the recorded sha256 is wrong, "
                f"run `negrec data fetch {dataset} --rerecord-checksum` to record it anew"
            )
    if expected is not None and actual != expected:
        path.unlink(missing_ok=True)
        raise FetchError(
            f"checksum mismatch for {source.url}: expected {kind} {expected}, got {actual}; "
            "the download was deleted (a corrupted transfer or a changed file upstream)" + hint
        )
    return sha256


def _established(source: Source, root: Path, rerecord: bool) -> bool:
    """Whether a verified download of ``source`` is known good: pinned by the registry, or
    matching the sha256 recorded when it was last prepared (and not being re-recorded)."""
    if source.sha256 or source.md5:
        return True
    return not rerecord and source.url in recorded_checksums(root)


# ------------------------------------------------------------------------- downloads
def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _total_size(response: http.client.HTTPResponse, offset: int) -> int | None:
    """The full size of the file from Content-Range or Content-Length, if the server says."""
    content_range = response.headers.get("Content-Range")
    if content_range:
        match = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", content_range)
        if match and match.group(3) != "*":
            return int(match.group(3))
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return int(length) + offset
    return None


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=timeout)
    return response


def download(
    source: Source,
    dest: Path,
    *,
    root: Path,
    timeout: float = DEFAULT_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
    progress: bool = False,
    log: Log = _stderr,
    dataset: str = "NAME",
    rerecord: bool = False,
) -> str:
    """Download ``source`` to ``dest`` (resuming ``dest.part``), verify it; returns its sha256.

    A transfer that ends early is resumed with a ``Range`` request, up to ``attempts``
    tries in all; after that the ``.part`` file stays for the next run. HTTP errors,
    unreachable hosts and checksum mismatches raise :class:`FetchError` (``dataset``
    names the dataset in the advice; ``rerecord`` ignores a recorded sha256).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():  # downloaded before: verify again and reuse
        try:
            return _verify(source, dest, root, dataset, rerecord)
        except FetchError:
            log(f"re-downloading {source.url}: the earlier download no longer verifies")
    complete = False
    total: int | None = None
    problem = ""
    for _ in range(max(1, attempts)):
        offset = part.stat().st_size if part.is_file() else 0
        try:
            response = _open(source.url, offset, timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:  # nothing after `offset`: the part is complete
                complete = True
                break
            raise FetchError(
                f"{source.url}: the server answered HTTP {err.code} {err.reason}; nothing was "
                "cached (try again later, or download the file yourself and use "
                "`negrec data import`)"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise FetchError(
                f"cannot reach {_host(source.url)} ({reason}); no network? Download "
                f"{source.url} yourself and run `negrec data import NAME PATH`"
            ) from None
        with contextlib.closing(response):
            status = response.status
            resumed = offset > 0 and status == 206
            if offset and not resumed:
                offset = 0  # the server ignored the Range request: start over
            total = _total_size(response, offset)
            if total is None and source.size is not None:
                total = source.size
            bar = _progress_bar(source.filename, total, offset, progress)
            cut = False  # did this transfer end in a read error?
            try:
                with open(part, "ab" if resumed else "wb") as out:
                    while True:
                        chunk = response.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        bar(len(chunk))
            except (http.client.IncompleteRead, TimeoutError, ConnectionError, OSError) as err:
                problem, cut = f"{type(err).__name__}", True
            finally:
                bar(None)
        size = part.stat().st_size
        # Complete only when the read loop ended cleanly: with no size announced (or
        # pinned), a read error is the only sign the file is short, and a short file
        # accepted here would have its checksum recorded as the reference.
        if not cut and (total is None or size >= total):
            complete = True
            break
        problem = problem or "connection closed early"
        log(f"transfer of {source.url} cut short at {size:,}{_of(total)} bytes; resuming")
    if not complete:
        size = part.stat().st_size if part.is_file() else 0
        raise FetchError(
            f"download of {source.url} interrupted after {size:,}{_of(total)} bytes "
            f"({problem}, {attempts} tries); nothing was cached; run the same command again "
            f"to resume from {part}"
        )
    sha256 = _verify(source, part, root, dataset, rerecord)
    os.replace(part, dest)
    return sha256


def _of(total: int | None) -> str:
    """The " of 1,234" in "N bytes of TOTAL" when the size is known, else nothing."""
    return f" of {total:,}" if total is not None else ""


def _progress_bar(
    name: str, total: int | None, initial: int, enabled: bool
) -> Callable[[int | None], None]:
    """A callable taking bytes read (or None to close); a tqdm bar when enabled."""
    if not enabled:
        return lambda n: None
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, file=sys.stderr)

    def update(n: int | None) -> None:
        if n is None:
            bar.close()
        else:
            bar.update(n)

    return update


# ---------------------------------------------------------------------------- unpacking
def _kind(path: Path) -> str:
    """'zip', 'tar', 'gzip' or 'plain', from the file's first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(262)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x1f\x8b"):
        try:
            with tarfile.open(path, "r:gz") as archive:
                archive.next()
            return "tar"
        except (tarfile.TarError, OSError, EOFError):
            return "gzip"
    if head.startswith(b"BZh") or head.startswith(b"\xfd7zXZ"):
        return "tar"
    return "plain"


def _wanted(member: str, names: Sequence[str]) -> str | None:
    """Which wanted file ``member`` (a path inside an archive) is, if any."""
    member = member.replace("\\", "/").lstrip("/")
    for name in names:
        if member == name or PurePosixPath(member).name == PurePosixPath(name).name:
            return name
    return None


def unpack(path: Path, into: Path, names: Sequence[str]) -> None:
    """Extract the members of archive ``path`` that are the files ``names`` into ``into``.

    Members are written under their wanted name (never a path from the archive, so no
    member can escape ``into``). A ``.gz`` that is not a tar is decompressed to its name
    without ``.gz``; a plain file is copied. Damaged archives raise :class:`DataError`.
    """
    into.mkdir(parents=True, exist_ok=True)
    kind = _kind(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    name = _wanted(info.filename, names)
                    if name is None or info.is_dir():
                        continue
                    target = into / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
        elif kind == "tar":
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    name = _wanted(member.name, names)
                    if name is None or not member.isfile():
                        continue
                    source = archive.extractfile(member)
                    if source is None:
                        continue
                    target = into / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, _CHUNK)
        elif kind == "gzip":
            plain = path.name[:-3] if path.name.endswith(".gz") else path.name + ".out"
            with gzip.open(path, "rb") as src, open(into / plain, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
        else:
            try:  # a hard link costs no space; copy across file systems
                os.link(path, into / path.name)
            except OSError:
                shutil.copyfile(path, into / path.name)
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataError(f"damaged {kind} archive ({err})", path=path) from None
    except OSError as err:  # a real I/O problem: disk full, permissions
        raise DataError(f"cannot unpack: {err}", path=path) from None


# ------------------------------------------------------------------- locating the files
def _find(folder: Path, name: str) -> Path | None:
    """The file ``name`` (a relative path) in ``folder``, or a unique file of its base name."""
    direct = folder / name
    if direct.is_file():
        return direct
    base = PurePosixPath(name).name
    for candidate in (base, base + ".gz"):
        matches = sorted(p for p in folder.rglob(candidate) if p.is_file())
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(str(m.relative_to(folder)) for m in matches[:4])
            raise DataError(
                f"several files named {candidate} ({shown}); give the file", path=folder
            )
    return None


def _presplit_names(like: str) -> str:
    """Pre-split datasets, those whose name starts with ``like`` first (if any)."""
    from negrec.data.datasets import REGISTRY

    names = [name for name, spec in REGISTRY.items() if spec.presplit]
    close = [name for name in names if name.startswith(like + "-")]
    return ", ".join(close or names)


def locate_files(spec: DatasetSpec, path: Path) -> list[Path]:
    """The dataset's data file(s) in ``path`` (a folder, or the one data file).

    A folder is searched for each of ``spec.files`` (by relative path, then by unique
    base name, optionally ``.gz``), then for ``spec.also_accept`` patterns. A single
    file is taken as the events file of a dataset that is not pre-split.
    """
    if path.is_file():
        if spec.presplit:
            names = " and ".join(PurePosixPath(f).name for f in spec.files)
            raise DataError(
                f"{spec.name} is a train/test pair ({names}); give the folder that holds both",
                path=path,
            )
        return [path]
    if not path.is_dir():
        raise DataError("no such file or folder", path=path)
    found = [_find(path, name) for name in spec.files]
    if not spec.presplit and found[0] is None:
        for pattern in spec.also_accept:
            matches = sorted(
                p for p in path.rglob("*") if p.is_file() and fnmatch.fnmatch(p.name, pattern)
            )
            if len(matches) == 1:
                found = [matches[0]]
                break
    missing = [name for name, hit in zip(spec.files, found, strict=True) if hit is None]
    if missing:
        present = sorted(p.name for p in path.iterdir())[:8]
        hint = ""
        if not spec.presplit and {"train.txt", "test.txt"} <= set(present):
            hint = "; this looks like a pre-split folder: pre-split datasets are "
            hint += _presplit_names(spec.name)
        wanted = ", ".join(missing + [f"or {p}" for p in spec.also_accept])
        raise DataError(
            f"no {wanted} for dataset {spec.name} here (found: {', '.join(present) or 'nothing'})"
            + hint,
            path=path,
        )
    return [hit for hit in found if hit is not None]


def _format_for(spec: DatasetSpec, path: Path) -> str:
    """The spec's format, unless the file's name says otherwise (``*.inter``, ``u.data``...)."""
    expected = {PurePosixPath(f).name for f in spec.files}
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name not in expected and _STRONG_NAMES.search(name):
        return detect_format(path)
    return spec.format


# ---------------------------------------------------------------------------- preparing
def _recipe(spec: DatasetSpec, overrides: dict[str, Any]) -> Recipe:
    changes = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(spec.recipe, **changes)


def prepare_files(
    spec: DatasetSpec,
    files: Sequence[Path],
    recipe: Recipe,
    fmt: str | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[Interactions, Interactions | None, PrepareReport, str]:
    """Load ``files`` (one events file or a train/test pair) and prepare with ``recipe``.
    ``options``: the loader's own (format 'delimited': the column mapping, delimiter and
    header).

    Returns (train or all events, test or None, report, format used).
    """
    fmt = fmt or _format_for(spec, files[0])
    options = options or {}
    if len(files) == 2:
        table = load_split(files[0], files[1], fmt, **options)
        train, test, report = prepare_split(
            table,
            min_rating=recipe.min_rating,
            k_core=recipe.k_core,
            on_unseen=recipe.on_unseen,
            on_overlap=recipe.on_overlap,
        )
        return train, test, report, fmt
    data, report = prepare(
        load(files[0], fmt, **options), min_rating=recipe.min_rating, k_core=recipe.k_core
    )
    return data, None, report, fmt


def _meta(spec: DatasetSpec, recipe: Recipe, fmt: str, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": spec.name,
        "title": spec.title,
        "format": fmt,
        "recipe": dataclasses.asdict(recipe),
        "source": source,
    }


PREPARING = ("min_rating", "k_core", "on_unseen", "on_overlap")  # fields that change the data


def _check_cached_recipe(name: str, root: Path, wanted: Recipe) -> None:
    """A cached entry prepared with other settings than ``wanted`` is not what was asked
    for: returning it would hand back other data under the same name, so refuse."""
    stored = read_meta(name, root).get("recipe") or {}
    differ = [
        f"{key} = {stored.get(key)!r} (asked: {getattr(wanted, key)!r})"
        for key in PREPARING
        if key in stored and stored[key] != getattr(wanted, key)
    ]
    if differ:
        raise FetchError(
            f"{name} is cached with {', '.join(differ)}; run again with --force to prepare "
            "it with the new settings (this replaces the cached entry)"
        )


def _head(path: Path, n: int = 40) -> str:
    """The first ``n`` bytes of a file as text, for saying what a download really is."""
    with open(path, "rb") as handle:
        return handle.read(n).decode("utf-8", "replace").split("\n")[0].strip()


def _not_an_archive(spec: DatasetSpec, paths: Sequence[Path]) -> FetchError | None:
    """A :class:`FetchError` when a download that should hold ``spec.files`` is a plain
    file of another name (an HTML error or login page, typically), else None."""
    wanted = {PurePosixPath(name).name for name in spec.files}
    for path in paths:
        plain = path.name[:-3] if path.name.endswith(".gz") else path.name
        if _kind(path) == "plain" and plain not in wanted:
            return FetchError(
                f"the download {path.name} of {spec.name} is not an archive (zip, tar or gzip) "
                f"and not one of its files: it begins {_head(path)!r} (an error or login page?)"
            )
    return None


def fetch_dataset(
    spec: DatasetSpec | str,
    *,
    cache_dir: PathLike | None = None,
    force: bool = False,
    min_rating: float | None = None,
    k_core: int | None = None,
    on_unseen: str | None = None,
    on_overlap: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
    progress: bool = False,
    rerecord_checksum: bool = False,
    log: Log = _stderr,
) -> Path:
    """Download, verify, unpack, prepare and cache a registered dataset; returns its entry.

    An entry that is already prepared is kept unless ``force`` (or ``rerecord_checksum``).
    ``min_rating``, ``k_core``, ``on_unseen`` and ``on_overlap`` override the recipe. Raises
    :class:`FetchError` for download problems and :class:`DataError` for bad data;
    neither leaves an entry.

    The sha256 of a download with no pinned checksum is recorded only once the download
    has been unpacked and prepared (a file cut short without a sign, e.g. a server that
    announced no size, fails there and is never taken as the reference); such a download
    that fails to unpack or prepare is deleted, so the next run downloads it anew.
    ``rerecord_checksum`` ignores the sha256 recorded for such a URL and records the new
    download's, once it has prepared.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    root = cache_root(cache_dir)
    final = entry_dir(spec.name, root)
    changes = {"min_rating": min_rating, "k_core": k_core, "on_unseen": on_unseen}
    recipe = _recipe(spec, {**changes, "on_overlap": on_overlap})
    if is_prepared(spec.name, root) and not (force or rerecord_checksum):
        _check_cached_recipe(spec.name, root, recipe)
        log(f"{spec.name} is already prepared in {final} (use --force to prepare it again)")
        return final
    if not spec.downloadable:
        raise FetchError(
            f"{spec.name} has no direct download (its terms must be accepted on the web "
            f"page); download it from {spec.homepage} and run "
            f"`negrec data import {spec.name} PATH`"
        )
    downloads = root / "downloads" / spec.name
    hashes: dict[str, str] = {}
    paths = []
    unproven: list[tuple[Source, Path]] = []  # downloads no checksum vouches for yet
    for source in spec.sources:
        dest = downloads / source.filename
        if rerecord_checksum and not (source.sha256 or source.md5):
            dest.unlink(missing_ok=True)  # re-recording: a new download, not the kept one
        if not dest.is_file():
            log(f"downloading {source.url}")
        hashes[source.url] = download(
            source,
            dest,
            root=root,
            timeout=timeout,
            attempts=attempts,
            progress=progress,
            log=log,
            dataset=spec.name,
            rerecord=rerecord_checksum,
        )
        paths.append(dest)
        if not _established(source, root, rerecord_checksum):
            unproven.append((source, dest))
    try:
        with staging_dir(root, f"unpack-{spec.name}") as work:
            for path in dict.fromkeys(paths):
                unpack(path, work, spec.files)
            files = [_find(work, name) for name in spec.files]
            missing = [n for n, f in zip(spec.files, files, strict=True) if f is None]
            if missing:
                raise _not_an_archive(spec, list(dict.fromkeys(paths))) or FetchError(
                    f"the download of {spec.name} has no {', '.join(missing)}; the registry "
                    "entry may be out of date"
                )
            train, test, report, fmt = prepare_files(spec, [f for f in files if f], recipe)
    except (DataError, FetchError) as err:
        if unproven:  # never reuse (nor later trust) a download that did not prepare
            for _, dest in unproven:
                dest.unlink(missing_ok=True)
            err.args = (f"{err}; the download was deleted: run the same command to fetch it anew",)
        raise
    source_meta = {"kind": "fetch", "sha256": hashes}
    entry = save_prepared(
        spec.name, train, test, report, _meta(spec, recipe, fmt, source_meta), cache_dir=root
    )
    for source, _ in unproven:
        _record_checksum(root, source.url, hashes[source.url])
        log(
            f"note: no pinned checksum for {source.url}; recorded sha256 {hashes[source.url]} "
            f"in {_known_path(root)}; later downloads must match it"
        )
    return entry


def _pinned(source: Source, root: Path) -> tuple[str, str] | None:
    """(kind, expected hex digest) a file of ``source`` must have: the registry's sha256 or
    md5, else the sha256 recorded when it was first prepared; None when none is known."""
    if source.sha256:
        return "sha256", source.sha256.lower()
    if source.md5:
        return "md5", source.md5.lower()
    recorded = recorded_checksums(root).get(source.url)
    return None if recorded is None else ("sha256", recorded["sha256"])


def verify_import(spec: DatasetSpec, given: Path, files: Sequence[Path], root: Path) -> list[str]:
    """Check local files against the checksums of ``spec``'s downloads; returns the names
    of the files checked (empty when no checksum applies, e.g. a file extracted from the
    downloaded archive).

    The file or archive ``given`` (else each file found in the folder ``given``) whose name
    is a download's file name must have that download's pinned (or recorded) checksum:
    another dataset's files imported under this name would silently stand for it.
    A mismatch raises :class:`DataError` naming the file and the way to import it anyway
    under a name of one's own.
    """
    by_name = {source.filename: source for source in spec.sources}
    checked = []
    for path in [given] if given.is_file() else list(files):
        source = by_name.get(path.name)
        pinned = None if source is None else _pinned(source, root)
        if pinned is None:
            continue
        kind, expected = pinned
        sha256, md5 = _digests(path)
        actual = sha256 if kind == "sha256" else md5
        if actual != expected:
            raise DataError(
                f"{kind} {actual} is not the {kind} pinned for {spec.name}'s {path.name} "
                f"({expected}): these are not {spec.name}'s files; to use them anyway, import "
                f"them under a name of your own: `negrec data import {spec.name} PATH --as "
                "NEWNAME`",
                path=path,
            )
        checked.append(path.name)
    return checked


def _own_spec(name: str, path: Path, fmt: str | None, template: DatasetSpec | None) -> DatasetSpec:
    """The registry-like entry of data imported under the user's own ``name``.

    With a registered ``template``: its files, format and recipe under the new name (no
    download, nothing to verify). Without: ``path`` is one events file (format ``fmt`` or
    detected from the name), or a folder with one ``*train*`` and one ``*test*`` file (a
    pre-split pair, evaluated on the given test)."""
    from negrec.data.datasets import REGISTRY

    check_name(name)
    if name in REGISTRY:
        raise DataError(
            f"{name} is a registered dataset (`negrec data list`): choose another name for "
            "your own data"
        )
    title = f"imported from {path}"
    if template is not None:
        return dataclasses.replace(
            template,
            name=name,
            title=f"{template.title}; {title}",
            notes="",
            licence="your own data",
            sources=(),
        )
    if path.is_file():
        files: tuple[str, ...] = (path.name,)
    elif path.is_dir():
        pair = []
        for part in ("train", "test"):
            hits = sorted(p for p in path.iterdir() if p.is_file() and part in p.name.lower())
            if len(hits) != 1:
                shown = ", ".join(p.name for p in hits) or "none"
                raise DataError(
                    f"a folder to import needs exactly one file with '{part}' in its name "
                    f"(found: {shown}); or give the one events file",
                    path=path,
                )
            pair.append(hits[0].name)
        files = (pair[0], pair[1])
    else:
        raise DataError("no such file or folder", path=path)
    first = path if path.is_file() else path / files[0]
    split: Any = "given" if len(files) == 2 else "random"
    return DatasetSpec(
        name=name,
        title=title,
        format=fmt or detect_format(first),
        files=files,
        licence="your own data",
        size="-",
        homepage="-",
        recipe=Recipe(split=split),
    )


def import_dataset(
    spec: DatasetSpec | str | None,
    path: PathLike,
    *,
    cache_dir: PathLike | None = None,
    format: str | None = None,
    min_rating: float | None = None,
    k_core: int | None = None,
    on_unseen: str | None = None,
    on_overlap: str | None = None,
    force: bool = True,
    as_name: str | None = None,
    read_options: dict[str, Any] | None = None,
    log: Log = _stderr,
) -> tuple[Path, PrepareReport]:
    """Prepare a dataset from local files and cache it; returns (entry, report).

    ``path`` is the data file, the folder holding the file(s) (searched recursively), or
    the archive as downloaded (zip / tar / gz). ``format`` overrides the format;
    ``min_rating``, ``k_core``, ``on_unseen`` and ``on_overlap`` override the recipe. An
    existing entry is replaced unless ``force`` is false.

    A registered dataset ``spec`` is verified (:func:`verify_import`): files that are not
    its own are refused. ``as_name`` caches the data under a name of the user's own
    instead, unverified: with ``spec`` as the template (its files, format and recipe), or
    with ``spec`` None from one events file or a folder holding a ``*train*`` and a
    ``*test*`` file (see :func:`_own_spec`). ``read_options``: the loader's options
    (format 'delimited': ``user``, ``item``, ... columns, ``delimiter``, ``header``), own
    data only.
    """
    source = Path(path).expanduser()
    if read_options and as_name is None:
        raise FetchError("reading options (a column mapping) are for your own data: use --as")
    root = cache_root(cache_dir)
    template = get_spec(spec) if isinstance(spec, str) else spec
    if as_name is not None:
        spec = _own_spec(as_name, source, format, template)
    elif template is None:
        raise FetchError("give a registered dataset NAME, or --as NEWNAME for your own data")
    else:
        spec = template
    final = entry_dir(spec.name, root)
    if is_prepared(spec.name, root) and not force:
        raise FetchError(f"{spec.name} is already prepared in {final}; pass --force to replace it")
    changes = {"min_rating": min_rating, "k_core": k_core, "on_unseen": on_unseen}
    recipe = _recipe(spec, {**changes, "on_overlap": on_overlap})
    with staging_dir(root, f"import-{spec.name}") as work:
        if source.is_file() and _kind(source) in ("zip", "tar"):
            unpack(source, work, spec.files)
            folder = work
        else:
            folder = source
        files = locate_files(spec, folder)
        verified = [] if as_name is not None else verify_import(spec, source, files, root)
        train, test, report, fmt = prepare_files(spec, files, recipe, format, read_options)
    origin: dict[str, Any] = {
        "kind": "import",
        "path": str(source.resolve()),
        "files": [str(f) for f in files],
    }
    expected = expected_rows(spec) if as_name is None and not verified else None
    if as_name is None:
        origin["verified"] = verified  # the files checked by checksum
        if expected is not None:
            origin["rows_expected"] = expected  # else by the registry's row count
    elif template is not None:
        origin["template"] = template.name
    if read_options:
        origin["read_options"] = dict(read_options)
    meta = _meta(spec, recipe, fmt, origin)
    entry = save_prepared(spec.name, train, test, report, meta, cache_dir=root)
    log(f"prepared {spec.name} from {source} into {entry}")
    if as_name is None and not verified:
        if expected is not None and expected != report.rows_read:
            log(
                f"note: read {report.rows_read:,} rows, but {spec.name} has {expected:,} "
                f"({spec.size}); if these are not its files, import them under a name of "
                f"your own: `negrec data import {spec.name} PATH --as NEWNAME --force`"
            )
        elif expected is None and any(_pinned(s, root) for s in spec.sources):
            log(
                f"note: {spec.name} was not verified by checksum: its checksums are of the "
                "download, not of the extracted file(s); import the download as it is to "
                "verify it"
            )
    return entry, report


_EXACT_ROWS = re.compile(r"^([\d,]+) (?:ratings|interactions|reviews|check-ins|actions)\b")


def expected_rows(spec: DatasetSpec) -> int | None:
    """The number of rows of the dataset's raw file(s) where its ``size`` states it exactly
    (``"1,000,209 ratings; ..."``), else None (``"about ..."``)."""
    match = _EXACT_ROWS.match(spec.size)
    return None if match is None else int(match.group(1).replace(",", ""))


__all__ = [
    "FetchError",
    "download",
    "fetch_dataset",
    "import_dataset",
    "locate_files",
    "prepare_files",
    "recorded_checksums",
    "unpack",
    "verify_import",
]
