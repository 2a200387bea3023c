"""Downloads against a local HTTP server started by the test, with archives the test makes.

Covers: a verified download that is unpacked, prepared and cached; checksum mismatch;
truncated transfer; resume after an interruption (in the same run and in the next);
a server that ignores ``Range``; server errors; no network; trust-on-first-use checksums;
and that no failure leaves a cache entry behind. The server only listens on 127.0.0.1,
every request has a short timeout, and each test makes a handful of requests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from negrec.cli import main
from negrec.data import datasets as registry
from negrec.data.cache import is_prepared, load_prepared, read_meta
from negrec.data.datasets import DatasetSpec, Recipe, Source
from negrec.data.fetch import FetchError, download, fetch_dataset, recorded_checksums
from negrec.errors import DataError

TIMEOUT = 5.0
RATINGS = "".join(
    f"{u}::{i}::{(u + i) % 5 + 1}::{1000 + 10 * u + i}\n" for u in range(1, 7) for i in range(1, 9)
).encode()


# ---------------------------------------------------------------------- the test server
@dataclass
class Behaviour:
    """How the server answers one path."""

    body: bytes
    status: int = 200
    truncate_first: int = 0  # this many responses send only half the body, then hang up
    honour_range: bool = True
    chunked: bool = False  # HTTP/1.1 chunked body: no Content-Length, so no size known
    no_length: bool = False  # HTTP/1.0 without Content-Length: the body ends when it closes
    served: int = 0


@dataclass
class Server:
    """A local HTTP server; ``routes`` maps a path to its behaviour; requests are logged."""

    port: int
    routes: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: closing = end of body

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            if (route := server.routes.get(self.path)) is not None and route.chunked:
                self.protocol_version = "HTTP/1.1"  # chunked bodies need 1.1
            byte_range = self.headers.get("Range")
            server.requests.append((self.path, byte_range))
            route = server.routes.get(self.path)
            if route is None:
                self.send_error(404, "Not Found")
                return
            if route.status != 200:
                self.send_error(route.status, "Internal Server Error")
                return
            body, start = route.body, 0
            if byte_range and route.honour_range:
                start = int(byte_range.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_error(416, "Range Not Satisfiable")
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            route.served += 1
            if route.chunked:  # one chunk announced whole; a cut sends half and hangs up
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                cut = route.served <= route.truncate_first
                sent = payload[: len(payload) // 2] if cut else payload
                self.wfile.write(f"{len(payload):x}\r\n".encode() + sent)
                if not cut:
                    self.wfile.write(b"\r\n0\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True
                return
            if not route.no_length:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if route.served <= route.truncate_first:
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(port=0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NEGREC_CACHE", str(root))
    return root


# ------------------------------------------------------------------------ fixtures
def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def make_tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec_for(
    server: Server, body: bytes, *, sha256: str | None = "auto", md5: str | None = None
) -> DatasetSpec:
    """A one-zip MovieLens-style dataset served at /tiny.zip."""
    server.routes["/tiny.zip"] = Behaviour(body)
    return DatasetSpec(
        name="tiny",
        title="tiny test data",
        format="movielens-dat",
        files=("tiny/ratings.dat",),
        licence="test",
        size="48 ratings",
        homepage="http://127.0.0.1/",
        sources=(
            Source(
                server.url("/tiny.zip"),
                "tiny.zip",
                sha256=sha(body) if sha256 == "auto" else sha256,
                md5=md5,
            ),
        ),
        recipe=Recipe(min_rating=3.0),
    )


def leftovers(root: Path) -> list[str]:
    """Everything in the cache except downloads and the checksum record."""
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.name not in ("downloads", "checksums.json"))


def fetch(spec: DatasetSpec, root: Path, **options):
    options.setdefault("timeout", TIMEOUT)
    return fetch_dataset(spec, cache_dir=root, log=lambda message: None, **options)


# --------------------------------------------------------------------------- the tests
def test_fetch_verifies_unpacks_prepares_and_caches(server: Server, cache: Path) -> None:
    body = make_zip({"tiny/ratings.dat": RATINGS, "tiny/README": b"hello"})
    spec = spec_for(server, body)
    entry = fetch(spec, cache)
    assert entry == cache / "tiny" and is_prepared("tiny")
    train, test, report = load_prepared("tiny")
    assert test is None
    ratings = [int(line.split(b"::")[2]) for line in RATINGS.splitlines()]
    assert report.rows_read == 48 and train.nnz == sum(r >= 3 for r in ratings)
    meta = read_meta("tiny")
    assert meta["source"]["sha256"] == {spec.sources[0].url: sha(body)}
    assert meta["recipe"]["min_rating"] == 3.0 and meta["format"] == "movielens-dat"
    assert leftovers(cache) == ["tiny"]  # no staging folders left
    assert not list((cache / "downloads").rglob("*.part"))
    # already prepared: no new request; --force prepares again from the kept download
    n = len(server.requests)
    fetch(spec, cache)
    fetch(spec, cache, force=True, min_rating=5.0)
    assert len(server.requests) == n
    assert load_prepared("tiny")[2].min_rating == 5.0
    fetch(spec, cache, min_rating=5.0)  # what is cached: returned as it is


def test_a_cached_entry_prepared_otherwise_is_not_returned_as_asked(
    server: Server, cache: Path
) -> None:
    """Regression: fetching with other min_rating / k_core than the cached entry's
    returned the cached data unchanged; only a log line (hidden by --quiet) said so."""
    spec = spec_for(server, make_zip({"tiny/ratings.dat": RATINGS}))
    fetch(spec, cache)  # the registry recipe: min_rating 3
    with pytest.raises(FetchError, match=r"min_rating = 3\.0 \(asked: 5\.0\).*--force"):
        fetch(spec, cache, min_rating=5.0)
    with pytest.raises(FetchError, match=r"k_core = None \(asked: 2\)"):
        fetch(spec, cache, k_core=2)
    assert load_prepared("tiny")[2].min_rating == 3.0  # the entry is untouched


def test_checksum_mismatch_deletes_the_download_and_caches_nothing(
    server: Server, cache: Path
) -> None:
    spec = spec_for(server, make_zip({"tiny/ratings.dat": RATINGS}), sha256="0" * 64)
    with pytest.raises(FetchError) as excinfo:
        fetch(spec, cache)
    message = str(excinfo.value)
    assert "checksum mismatch" in message and "0" * 64 in message and "\n" not in message
    assert not is_prepared("tiny") and leftovers(cache) == []
    assert not list((cache / "downloads").rglob("*"))[1:]  # only the empty folder


def test_md5_from_the_publisher_is_checked(server: Server, cache: Path) -> None:
    body = make_zip({"tiny/ratings.dat": RATINGS})
    good = spec_for(server, body, sha256=None, md5=hashlib.md5(body).hexdigest())
    fetch(good, cache)
    bad = spec_for(server, body, sha256=None, md5="f" * 32)
    with pytest.raises(FetchError, match="expected md5"):
        fetch(bad, cache, force=True)


def test_truncated_transfer_is_an_error_and_keeps_the_part_for_resume(
    server: Server, cache: Path
) -> None:
    spec = spec_for(server, make_zip({"tiny/ratings.dat": RATINGS}))
    server.routes["/tiny.zip"].truncate_first = 100  # every response is cut short
    with pytest.raises(FetchError) as excinfo:
        fetch(spec, cache, attempts=2)
    message = str(excinfo.value)
    assert "interrupted after" in message and "run the same command again" in message
    assert "\n" not in message
    assert not is_prepared("tiny") and leftovers(cache) == []
    parts = list((cache / "downloads").rglob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < len(server.routes["/tiny.zip"].body)
    assert len(server.requests) == 2  # bounded: one request per try


def test_a_cut_transfer_of_unknown_size_is_never_taken_as_complete(
    server: Server, cache: Path
) -> None:
    """Regression: with no size announced (a chunked reply) and none pinned, a transfer
    that ended in a read error was accepted whole, and with no pinned checksum the short
    file's sha256 was recorded as the reference, so the right file failed later."""
    body = make_zip({"tiny/ratings.dat": RATINGS})
    spec = spec_for(server, body, sha256=None)
    route = server.routes["/tiny.zip"]
    route.chunked, route.truncate_first = True, 100
    with pytest.raises(FetchError, match="interrupted"):
        fetch(spec, cache, attempts=2)
    assert recorded_checksums(cache) == {} and not is_prepared("tiny")
    route.truncate_first = route.served + 1  # one more cut answer, then whole ones
    fetch(spec, cache)
    assert recorded_checksums(cache)[spec.sources[0].url]["sha256"] == sha(body)
    assert load_prepared("tiny")[2].rows_read == 48


def test_resume_after_interruption_within_one_run(server: Server, cache: Path) -> None:
    body = make_zip({"tiny/ratings.dat": RATINGS})
    spec = spec_for(server, body)
    server.routes["/tiny.zip"].truncate_first = 1
    fetch(spec, cache)
    assert is_prepared("tiny")
    (_, first_range), (_, second_range) = server.requests
    assert first_range is None
    assert second_range == f"bytes={len(body) // 2}-"


def test_resume_after_interruption_in_the_next_run(server: Server, cache: Path) -> None:
    body = make_zip({"tiny/ratings.dat": RATINGS})
    spec = spec_for(server, body)
    server.routes["/tiny.zip"].truncate_first = 1
    with pytest.raises(FetchError, match="interrupted"):
        fetch(spec, cache, attempts=1)
    assert not is_prepared("tiny")
    fetch(spec, cache, attempts=1)  # the next run resumes the kept part
    assert server.requests[-1][1] == f"bytes={len(body) // 2}-"
    assert load_prepared("tiny")[2].rows_read == 48


def test_server_that_ignores_range_restarts_cleanly(server: Server, cache: Path) -> None:
    body = make_zip({"tiny/ratings.dat": RATINGS})
    spec = spec_for(server, body)
    route = server.routes["/tiny.zip"]
    route.truncate_first, route.honour_range = 1, False
    fetch(spec, cache)  # the second answer is a full 200: the part is rewritten, not appended
    assert server.requests[1][1] is not None and is_prepared("tiny")


@pytest.mark.parametrize("status", [500, 503, 404])
def test_server_error_gives_a_clear_message(server: Server, cache: Path, status: int) -> None:
    spec = spec_for(server, b"unused")
    if status == 404:
        del server.routes["/tiny.zip"]
    else:
        server.routes["/tiny.zip"].status = status
    with pytest.raises(FetchError) as excinfo:
        fetch(spec, cache)
    assert f"HTTP {status}" in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert leftovers(cache) == [] and not list((cache / "downloads").rglob("*.part"))


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_network_suggests_import(cache: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/tiny.zip"
    spec = DatasetSpec(
        name="tiny",
        title="t",
        format="movielens-dat",
        files=("tiny/ratings.dat",),
        licence="test",
        size="-",
        homepage="-",
        sources=(Source(url, "tiny.zip", sha256="0" * 64),),
    )
    with pytest.raises(FetchError) as excinfo:
        fetch(spec, cache)
    message = str(excinfo.value)
    assert "cannot reach 127.0.0.1" in message and "negrec data import" in message
    assert leftovers(cache) == []


def test_unpinned_checksum_is_recorded_then_enforced(server: Server, cache: Path) -> None:
    body = make_zip({"tiny/ratings.dat": RATINGS})
    spec = spec_for(server, body, sha256=None)
    notes: list[str] = []
    fetch_dataset(spec, cache_dir=cache, timeout=TIMEOUT, log=notes.append)
    assert any("recorded sha256" in note for note in notes)
    assert recorded_checksums(cache)[spec.sources[0].url]["sha256"] == sha(body)
    # the file changes upstream: a fresh download no longer matches the recorded sha256
    server.routes["/tiny.zip"].body = make_zip({"tiny/ratings.dat": RATINGS + b"7::1::5::1\n"})
    for path in (cache / "downloads").rglob("tiny.zip"):
        path.unlink()
    with pytest.raises(FetchError, match="recorded on first download"):
        fetch(spec, cache, force=True)
    assert is_prepared("tiny")  # the earlier entry is untouched


def test_failed_refetch_keeps_the_old_entry(server: Server, cache: Path) -> None:
    body = make_zip({"tiny/ratings.dat": RATINGS})
    spec = spec_for(server, body)
    fetch(spec, cache)
    before = (cache / "tiny" / "data.npz").read_bytes()
    broken = spec_for(server, make_zip({"tiny/ratings.dat": b"1::2::x::4\n"}))
    for path in (cache / "downloads").rglob("tiny.zip"):
        path.unlink()
    with pytest.raises(DataError, match=r"ratings\.dat:1: rating 'x'"):
        fetch(broken, cache, force=True)
    assert (cache / "tiny" / "data.npz").read_bytes() == before
    assert leftovers(cache) == ["tiny"]


def test_tar_gz_and_plain_gzip_sources(server: Server, cache: Path) -> None:
    json_lines = b"".join(
        json.dumps(
            {"reviewerID": f"U{u}", "asin": f"I{i}", "overall": 5.0, "unixReviewTime": u * 10 + i}
        ).encode()
        + b"\n"
        for u in range(4)
        for i in range(3)
    )
    server.routes["/reviews.json.gz"] = Behaviour(gzip.compress(json_lines))
    server.routes["/pair.tar.gz"] = Behaviour(
        make_tar_gz({"data/train.txt": b"0 1 3\n1 2\n", "data/test.txt": b"0 2\n1 1\n"})
    )
    gz_spec = DatasetSpec(
        name="reviews",
        title="t",
        format="amazon-json",
        files=("reviews.json",),
        licence="-",
        size="-",
        homepage="-",
        sources=(Source(server.url("/reviews.json.gz"), "reviews.json.gz"),),
    )
    tar_spec = DatasetSpec(
        name="pair",
        title="t",
        format="lightgcn",
        files=("train.txt", "test.txt"),
        licence="-",
        size="-",
        homepage="-",
        sources=(Source(server.url("/pair.tar.gz"), "pair.tar.gz"),),
        recipe=Recipe(split="given"),
    )
    fetch(gz_spec, cache)
    fetch(tar_spec, cache)
    assert load_prepared("reviews")[0].nnz == 12
    train, test, report = load_prepared("pair")
    assert (train.nnz, test.nnz) == (3, 2) and report.parts == {"train": 3, "test": 2}


def test_damaged_archive_is_a_data_error(server: Server, cache: Path) -> None:
    body = make_zip({"tiny/ratings.dat": RATINGS})[:-40]  # cut off: the central directory is gone
    spec = spec_for(server, body)
    with pytest.raises(DataError, match="damaged zip archive"):
        fetch(spec, cache)
    assert leftovers(cache) == []


def test_download_helper_returns_the_sha256(server: Server, tmp_path: Path) -> None:
    server.routes["/f.bin"] = Behaviour(b"x" * 1000)
    source = Source(server.url("/f.bin"), "f.bin", sha256=sha(b"x" * 1000))
    digest = download(source, tmp_path / "f.bin", root=tmp_path, timeout=TIMEOUT, log=print)
    assert digest == sha(b"x" * 1000) and (tmp_path / "f.bin").read_bytes() == b"x" * 1000


# ------------------------------------------------------------------------------- CLI
def test_cli_fetch_success_and_one_line_failure(
    server: Server, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    spec = spec_for(server, make_zip({"tiny/ratings.dat": RATINGS}))
    monkeypatch.setitem(registry.REGISTRY, "tiny", spec)
    assert main(["data", "fetch", "tiny", "--quiet", "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    assert "tiny: prepared in" in out and "users" in out and "density" in out
    server.routes["/tiny.zip"].status = 500
    for path in (cache / "downloads").rglob("tiny.zip"):
        path.unlink()
    assert main(["data", "fetch", "tiny", "--force", "--quiet", "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("negrec data fetch: error: ") and err.count("\n") == 1
    assert "HTTP 500" in err
    assert main(["data", "fetch", "yelp"]) == 2
    assert "no direct download" in capsys.readouterr().err


# --------------------------------------------------------------- defects (issue 21)
def test_cut_download_does_not_poison_checksum(server: Server, cache: Path) -> None:
    """Regression: an unpinned file served without Content-Length and closed halfway
    looked complete; its sha256 was recorded as the reference, the half archive stayed in
    downloads/ and was reused, and the whole file was refused afterwards."""
    body = make_zip({"tiny/ratings.dat": RATINGS})
    spec = spec_for(server, body, sha256=None)
    route = server.routes["/tiny.zip"]
    route.no_length, route.truncate_first = True, 1
    with pytest.raises(DataError, match=r"damaged zip archive.*deleted") as excinfo:
        fetch(spec, cache)
    assert "\n" not in str(excinfo.value)
    assert recorded_checksums(cache) == {} and not is_prepared("tiny")
    assert not [p for p in (cache / "downloads").rglob("*") if p.is_file()]  # not reused
    fetch(spec, cache)  # the next answer is whole: prepared, and only now recorded
    assert recorded_checksums(cache)[spec.sources[0].url]["sha256"] == sha(body)
    assert load_prepared("tiny")[2].rows_read == 48


def test_a_recorded_checksum_mismatch_names_how_to_record_it_anew(
    server: Server, cache: Path
) -> None:
    """Regression: once a wrong sha256 was recorded, the right file was refused with no
    way out named in the message."""
    body = make_zip({"tiny/ratings.dat": RATINGS})
    spec = spec_for(server, body, sha256=None)
    url = spec.sources[0].url
    cache.mkdir(parents=True)
    (cache / "checksums.json").write_text(
        json.dumps({url: {"sha256": "0" * 64, "recorded": "2020-01-01"}})
    )
    with pytest.raises(FetchError, match=r"recorded on first download.*--rerecord-checksum"):
        fetch(spec, cache)
    assert not is_prepared("tiny")
    fetch(spec, cache, rerecord_checksum=True)
    assert recorded_checksums(cache)[url]["sha256"] == sha(body) and is_prepared("tiny")


def test_a_download_that_is_not_an_archive_is_reported_as_such(server: Server, cache: Path) -> None:
    """Regression: an HTML page served in place of a zip was reported as a zip lacking
    the data file ("has no tiny/ratings.dat"), not as what it is."""
    spec = spec_for(server, b"<!DOCTYPE html><html><body>Sign in</body></html>\n", sha256=None)
    with pytest.raises(FetchError, match=r"tiny\.zip of tiny is not an archive.*<!DOCTYPE html>"):
        fetch(spec, cache)
    assert not is_prepared("tiny") and leftovers(cache) == []
    assert not [p for p in (cache / "downloads").rglob("*") if p.is_file()]
