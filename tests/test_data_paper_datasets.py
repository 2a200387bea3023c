"""Every dataset of the papers negrec reproduces is in the registry, from a pinned source.

The papers: SimCE (Yang et al., arXiv 2406.16170; 12 datasets in its Table 2), the
hard-negative-sampling paper (Shi et al., WWW 2023: Gowalla, Yelp2018, Amazon-Book) and
the loss-comparison paper (Di Teodoro et al., arXiv 2411.07770). Schema checks run on the
entries themselves; downloads are exercised offline against the local HTTP server of
``test_data_fetch`` with tiny fixture files laid out like the real ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from test_data_fetch import TIMEOUT, Behaviour, Server, server  # noqa: F401 (fixture)

from negrec.data.cache import load_prepared, read_meta
from negrec.data.datasets import REGISTRY, DatasetSpec, Source, get_spec
from negrec.data.fetch import FetchError, fetch_dataset, import_dataset
from negrec.data.loaders import FORMATS, detect_format, load
from negrec.errors import DataError

#: paper -> {dataset as the paper names it: registry entry of the split it used}
PAPERS: dict[str, dict[str, str]] = {
    "SimCE Table 2": {
        "Alibaba": "alibaba-mcns",
        "Pinterest": "pinterest-ncf",
        "Gowalla": "gowalla-lightgcn",
        "iFashion": "ifashion-selfrec",
        "Yelp2018": "yelp2018-lightgcn",
        "Douban-Book": "douban-book-selfrec",
        "MovieLens-1M": "ml-1m-selfrec",
        "Amazon-CD": "amazon-cd-reczoo",
        "Amazon-Book": "amazon-book-lightgcn",
        "Amazon-Beauty": "amazon-beauty-selfrec",
        "Amazon-Kindle": "amazon-kindle-selfrec",
        "Amazon-Movies": "amazon-movies-reczoo",
    },
    "hard negative sampling (WWW 2023)": {  # its code reads datasets/<name>data.mat
        "Gowalla": "gowalla-hns",
        "Yelp2018": "yelp-hns",
        "Amazon-Book": "amazon-hns",
    },
    "loss comparison (arXiv 2411.07770)": {
        "MovieLens-1M": "ml-1m",
        "Amazon-Beauty": "amazon-beauty-2014-5core",
        "Foursquare-NYC": "foursquare-nyc",
        "Amazon-Books": "amazon-books-2014-5core",
        "Yelp": "yelp",
    },
}

_COMMIT = re.compile(r"[0-9a-f]{7,40}")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NEGREC_CACHE", str(root))
    return root


# ------------------------------------------------------------------------ the schema
def test_every_dataset_of_the_papers_is_registered() -> None:
    assert len(PAPERS["SimCE Table 2"]) == 12
    for paper, datasets in PAPERS.items():
        for shown, name in datasets.items():
            spec = get_spec(name)
            assert spec.format in FORMATS, (paper, shown)
            assert spec.licence and spec.size and spec.title and spec.homepage, name
            counts = re.search(r"\d", spec.size) or "not published by the source" in spec.size
            assert counts, f"{name}: neither counts nor why not in {spec.size!r}"
            assert spec.downloadable or "negrec data import" in spec.notes, name
    # the SimCE splits are the pre-split files its code reads, and say where they are used
    for shown, name in PAPERS["SimCE Table 2"].items():
        spec = get_spec(name)
        assert spec.presplit and spec.recipe.split == "given", name
        if name != "amazon-beauty-selfrec":  # described by the project's benchmark notes
            assert "SimCE" in spec.notes, f"{name}: no provenance note for SimCE's {shown}"


def test_every_source_is_pinned_to_a_commit_or_a_published_checksum() -> None:
    """A branch name (``master``, ``main``) can move: such a URL needs a checksum."""
    for name, spec in REGISTRY.items():
        for source in spec.sources:
            url = urlparse(source.url)
            assert url.scheme in ("http", "https"), source.url
            if url.hostname == "raw.githubusercontent.com":
                ref = url.path.split("/")[3]
                assert _COMMIT.fullmatch(ref), f"{name}: {source.url} is not pinned to a commit"
            elif url.hostname == "huggingface.co":
                assert source.md5 or source.sha256, f"{name}: {source.url} has no checksum"
            assert source.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", source.sha256)
            assert source.md5 is None or re.fullmatch(r"[0-9a-f]{32}", source.md5)


def test_new_entries_read_their_files_in_the_format_they_name(tmp_path: Path) -> None:
    """A two-line sample in each new entry's layout is read by the entry's format."""
    samples = {
        "ml-1m-selfrec": "1 1193 5\n1 661 4\n",
        "douban-book-selfrec": "75 2250 4\n10192 3453 5\n",
        "alibaba-mcns": "0\t106042\n5\t106100\n",
        "amazon-cd-reczoo": "0 1 2 3\n1 2\n",
        "amazon-movies-reczoo": "0 5 6\n1 7\n",
        "ifashion-selfrec": "0 1 1\n1 2 1\n",
        "amazon-kindle-selfrec": "0 1 1\n1 2 1\n",
    }
    for name, text in samples.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(text)
        fmt = get_spec(name).format
        table = load(path, fmt)
        lines = [line.split() for line in text.splitlines()]
        # adjacency lines hold one event per item; 'pairs' lines one event each
        expected = sum(len(f) - 1 for f in lines) if fmt == "lightgcn" else len(lines)
        assert len(table) == expected, name
        assert table["user"].tolist()[0] == int(lines[0][0]), name


# ---------------------------------------------------------------------- the 'pairs' format
def test_pairs_format_reads_selfrec_and_mcns_lines(tmp_path: Path) -> None:
    selfrec = tmp_path / "selfrec.txt"
    selfrec.write_text("75 2250 4\n10192 3453 5\n\n75 61 4\n")
    table = load(selfrec, "pairs")
    assert table["user"].tolist() == [75, 10192, 75]
    assert table["item"].tolist() == [2250, 3453, 61]
    assert table["rating"].tolist() == [4.0, 5.0, 4.0]
    assert table["line"].tolist() == [1, 2, 4]
    mcns = tmp_path / "mcns.txt"
    mcns.write_text("0\t106042\n1\t106042\n1\t106043\n")
    table = load(mcns, "pairs")
    assert "rating" not in table and table["item"].tolist() == [106042, 106042, 106043]
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 4\n1 x 4\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: .*'x'"):
        load(bad, "pairs")


# --------------------------------------------------------------------- the 'matlab' format
def _mat(matrix: object) -> bytes:
    """A MATLAB v5 file holding ``matrix`` as the variable ``data``, as AdaSIR's files do."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"data": matrix})
    return buffer.getvalue()


# users x items: user 0 -> items 1, 3; user 1 -> item 2; user 2 -> item 0 (rating 5)
_MATRIX = scipy.sparse.csr_matrix(
    (np.array([1.0, 1.0, 1.0, 5.0]), ([0, 0, 1, 2], [1, 3, 2, 0])), shape=(3, 5)
)


def test_matlab_format_reads_sparse_and_dense_data(tmp_path: Path) -> None:
    for name, matrix in (("sparse.mat", _MATRIX), ("dense.mat", _MATRIX.toarray())):
        path = tmp_path / name
        path.write_bytes(_mat(matrix))
        table = load(path, "matlab")
        assert table["user"].tolist() == [0, 0, 1, 2], name
        assert table["item"].tolist() == [1, 3, 2, 0], name
        assert table["rating"].tolist() == [1.0, 1.0, 1.0, 5.0], name
        assert table["line"].tolist() == [1, 2, 3, 4] and table.attrs["path"] == str(path)


def test_a_mat_file_is_detected_by_its_name(tmp_path: Path) -> None:
    path = tmp_path / "gowalladata.mat"
    path.write_bytes(_mat(_MATRIX))
    assert detect_format(path) == "matlab"
    assert len(load(path)) == 4


def test_matlab_format_errors_name_the_file(tmp_path: Path) -> None:
    other = tmp_path / "other.mat"
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"matrix": _MATRIX})
    other.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"other\.mat: has no 2-D variable 'data'"):
        load(other, "matlab")
    text = tmp_path / "text.mat"
    text.write_text("0 1\n")
    with pytest.raises(DataError, match=r"text\.mat: cannot read it as MATLAB"):
        load(text, "matlab")
    empty = tmp_path / "empty.mat"
    empty.write_bytes(_mat(scipy.sparse.csr_matrix((2, 2))))
    with pytest.raises(DataError, match=r"empty\.mat: matrix 'data' has no entries"):
        load(empty, "matlab")


# ------------------------------------------------------------ fetched end to end, offline
def _served(spec: DatasetSpec, local: Server, bodies: dict[str, bytes]) -> DatasetSpec:
    """``spec`` with each source served locally; checksums kept as the entry pins them
    (a pinned md5 is replaced by the fixture's, so the check still runs)."""
    sources = []
    for source in spec.sources:
        body = bodies[source.filename]
        path = f"/{spec.name}/{source.filename}"
        local.routes[path] = Behaviour(body)
        md5 = hashlib.md5(body).hexdigest() if source.md5 else None
        sha = hashlib.sha256(body).hexdigest() if source.sha256 else None
        sources.append(Source(local.url(path), source.filename, sha256=sha, md5=md5))
    return dataclasses.replace(spec, sources=tuple(sources))


def _fetch(spec: DatasetSpec, root: Path) -> Path:
    return fetch_dataset(spec, cache_dir=root, timeout=TIMEOUT, log=lambda message: None)


def test_fetch_mcns_edge_lists_end_to_end(server: Server, cache: Path) -> None:  # noqa: F811
    """Alibaba (MCNS): 'user TAB item' edges with items offset by the number of users."""
    train = b"0\t4\n0\t5\n1\t5\n1\t6\n2\t4\n3\t6\n"
    test = b"0\t6\n2\t5\n3\t7\n"  # item 7 occurs only in test: kept in the catalogue
    spec = _served(get_spec("alibaba-mcns"), server, {"train.txt": train, "test.txt": test})
    _fetch(spec, cache)
    train_part, test_part, report = load_prepared("alibaba-mcns")
    assert test_part is not None
    assert (report.n_users, report.n_items) == (4, 4)
    assert report.parts == {"train": 6, "test": 3} and report.unseen_kept == 1
    assert train_part.nnz == 6 and test_part.nnz == 3
    assert read_meta("alibaba-mcns")["format"] == "pairs"


def test_fetch_reczoo_files_checks_the_published_md5(server: Server, cache: Path) -> None:  # noqa: F811
    """Amazon-CD (RecZoo): adjacency lines, verified against an md5 like RecZoo's."""
    train = b"0 0 1 2\n1 1 3\n2 0 3\n"
    test = b"0 3\n1 2\n2 1\n"
    spec = _served(get_spec("amazon-cd-reczoo"), server, {"train.txt": train, "test.txt": test})
    assert all(s.md5 and not s.sha256 for s in spec.sources)
    _fetch(spec, cache)
    train_part, test_part, report = load_prepared("amazon-cd-reczoo")
    assert (report.n_users, report.n_items, report.n_interactions) == (3, 4, 10)
    assert report.parts == {"train": 7, "test": 3}
    assert test_part is not None and (train_part.nnz, test_part.nnz) == (7, 3)
    wrong = dataclasses.replace(
        spec,
        name="amazon-cd-wrong",
        sources=(dataclasses.replace(spec.sources[0], md5="0" * 32), spec.sources[1]),
    )
    with pytest.raises(FetchError, match="md5"):
        _fetch(wrong, cache)


def test_fetch_hns_matrix_end_to_end(server: Server, cache: Path) -> None:  # noqa: F811
    """Gowalla (HNS code): one .mat file, prepared whole; split 80/20 per user later."""
    spec = _served(get_spec("gowalla-hns"), server, {"gowalladata.mat": _mat(_MATRIX)})
    assert not spec.presplit and spec.recipe.split == "random"
    _fetch(spec, cache)
    data, test_part, report = load_prepared("gowalla-hns")
    assert test_part is None and data.nnz == 4
    assert (report.n_users, report.n_items, report.n_interactions) == (3, 4, 4)
    assert read_meta("gowalla-hns")["format"] == "matlab"


def test_import_only_hns_matrix_imports_the_file(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "yelpdata.mat"
    path.write_bytes(_mat(_MATRIX))
    spec = get_spec("yelp-hns")
    assert not spec.downloadable
    _, report = import_dataset(spec, path, cache_dir=cache, log=lambda message: None)
    assert (report.n_users, report.n_interactions) == (3, 4)


def test_import_only_paper_datasets_import_a_folder(tmp_path: Path, cache: Path) -> None:
    """iFashion / Amazon-Kindle have no pinned download: a folder of the files imports."""
    folder = tmp_path / "iFashion"
    folder.mkdir()
    (folder / "train.txt").write_text("0 0 1\n0 1 1\n1 1 1\n2 2 1\n")
    (folder / "test.txt").write_text("0 2 1\n1 0 1\n")
    spec = get_spec("ifashion-selfrec")
    assert not spec.downloadable
    with pytest.raises(FetchError, match="negrec data import ifashion-selfrec"):
        _fetch(spec, cache)
    import_dataset(spec, folder, cache_dir=cache, log=lambda message: None)
    _, test_part, report = load_prepared("ifashion-selfrec")
    assert test_part is not None and report.parts == {"train": 4, "test": 2}
    assert (report.n_users, report.n_items) == (3, 3)
