"""The dataset registry, the raw formats, the prepared cache and ``negrec data list/import``.

Raw-format tests use tiny files written by the test with known answers; the
``shared_data`` tests import every folder of ``../shared/data`` through the CLI and check
the statistics its README states.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from negrec.cli import main
from negrec.data.cache import (
    CacheError,
    cache_root,
    is_prepared,
    load_prepared,
    prepared_names,
    read_meta,
    remove_prepared,
    save_prepared,
)
from negrec.data.datasets import REGISTRY, Recipe, UnknownDataset, get_spec
from negrec.data.fetch import import_dataset, locate_files
from negrec.data.interactions import Interactions
from negrec.data.loaders import FORMATS, load
from negrec.data.prepare import prepare
from negrec.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NEGREC_CACHE", str(root))
    return root


def write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ------------------------------------------------------------------------- registry
def test_registry_entries_are_consistent() -> None:
    assert len(REGISTRY) >= 20
    for name, spec in REGISTRY.items():
        assert name == spec.name and re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name)
        assert spec.format in FORMATS, name
        assert len(spec.files) in (1, 2)
        assert spec.presplit == (spec.recipe.split == "given"), name
        assert spec.licence and spec.size and spec.homepage and spec.title
        assert spec.downloadable or "import" in spec.notes
        for source in spec.sources:
            assert source.url.startswith(("http://", "https://"))
            assert source.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", source.sha256)
            assert source.md5 is None or re.fullmatch(r"[0-9a-f]{32}", source.md5)
        assert len({s.filename for s in spec.sources}) == len(spec.sources)
    # every raw format of the issue has at least one dataset
    used = {spec.format for spec in REGISTRY.values()}
    assert used >= set(FORMATS) - {"delimited", "recbole"}


def test_recipe_descriptions() -> None:
    assert (
        Recipe(min_rating=4, k_core=10).describe() == "rating >= 4, 10-core, random 80/20 per user"
    )
    assert "given train/test split" in Recipe(split="given").describe()
    assert "keep" in Recipe(split="given", on_unseen="keep").describe()
    assert "leave-one-out" in Recipe(split="leave_one_out").describe()


def test_unknown_dataset_lists_the_names() -> None:
    with pytest.raises(UnknownDataset, match="choose one of ml-100k"):
        get_spec("ml-2m")


def test_cli_list_shows_source_licence_size_recipe(cache: Path, capsys) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for spec in REGISTRY.values():
        block = out.split(f"\n{spec.name}  ", 1)[-1] if not out.startswith(spec.name) else out
        block = block.split("\n\n", 1)[0]
        for source in spec.sources:
            assert source.url in block
        assert "licence" in block and spec.size in block and spec.recipe.describe() in block
    assert f"cache: {cache}" in out
    assert main(["data", "list", "--short"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(REGISTRY)
    assert main(["data", "list", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_cache_root_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEGREC_CACHE", str(tmp_path / "a"))
    assert cache_root() == tmp_path / "a"
    assert cache_root(tmp_path / "b") == tmp_path / "b"
    monkeypatch.delenv("NEGREC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if cache_root().parent == tmp_path / "xdg":  # Linux
        assert cache_root() == tmp_path / "xdg" / "negrec"


# ---------------------------------------------------------------------- raw formats
def test_amazon_csv_2014_and_2018_column_order(tmp_path: Path) -> None:
    old = write(tmp_path, "ratings_Beauty.csv", "A1,B001,5.0,1300000000\nA2,B001,3.0,1300000001\n")
    new = write(tmp_path, "All_Beauty.csv", "B001,A1,5.0,1300000000\nB002,A1,2.0,1300000002\n")
    t14 = load(old, "amazon-csv-2014")
    assert t14["user"].tolist() == ["A1", "A2"] and t14["item"].tolist() == ["B001", "B001"]
    assert t14["timestamp"].tolist() == [1.3e9, 1300000001.0]
    t18 = load(new, "amazon-csv-2018")
    assert t18["user"].tolist() == ["A1", "A1"] and t18["item"].tolist() == ["B001", "B002"]
    assert t18["rating"].tolist() == [5.0, 2.0]


def test_amazon_json_plain_and_gzip(tmp_path: Path) -> None:
    rows = [
        {"reviewerID": "U1", "asin": "I1", "overall": 5.0, "unixReviewTime": 10, "text": "x"},
        {"reviewerID": "U2", "asin": "I1", "overall": 2.0, "unixReviewTime": 20},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n\n"
    for path in (
        write(tmp_path, "reviews.json", text),
        write(tmp_path, "reviews.json.gz", gzip.compress(text.encode())),
    ):
        table = load(path, "amazon-json")
        assert table["user"].tolist() == ["U1", "U2"] and table["line"].tolist() == [1, 2]
        assert table["rating"].tolist() == [5.0, 2.0] and table["timestamp"].tolist() == [10, 20]
        assert table.attrs["path"] == str(path)
    bad = write(tmp_path, "bad.json.gz", gzip.compress((text + '{"reviewerID": "U3"}\n').encode()))
    with pytest.raises(DataError, match=r"bad\.json\.gz:4: no 'asin' field"):
        load(bad, "amazon-json")
    truncated = write(tmp_path, "cut.json.gz", gzip.compress(text.encode())[:-12])
    with pytest.raises(DataError, match=r"cut\.json\.gz: gzip data ends early"):
        load(truncated, "amazon-json")


def test_yelp_json_dates(tmp_path: Path) -> None:
    lines = [
        {"user_id": "u", "business_id": "b", "stars": 4, "date": "2016-03-09 00:00:00"},
        {"user_id": "v", "business_id": "b", "stars": 1.5, "date": "2011-01-26"},
    ]
    path = write(tmp_path, "review.json", "\n".join(json.dumps(x) for x in lines))
    table = load(path, "yelp-json")
    assert table["timestamp"].tolist() == [1457481600.0, 1296000000.0]
    bad = write(tmp_path, "r2.json", json.dumps({**lines[0], "date": "someday"}))
    with pytest.raises(DataError, match=r"r2\.json:1: date 'someday' is not a date"):
        load(bad, "yelp-json")
    bad = write(tmp_path, "r3.json", json.dumps({**lines[0], "stars": "four"}))
    with pytest.raises(DataError, match=r"r3\.json:1: stars '\"four\"' is not a valid rating"):
        load(bad, "yelp-json")


def test_gowalla_checkins(tmp_path: Path) -> None:
    text = (
        "0\t2010-10-19T23:55:27Z\t30.2359091167\t-97.7951395833\t22847\n"
        "0\t2010-10-18T22:17:43Z\t30.2691029532\t-97.7493953705\t420315\n"
    )
    table = load(write(tmp_path, "checkins.txt", text), "gowalla-checkins")
    assert table["item"].tolist() == [22847, 420315]
    assert table["timestamp"].tolist() == [1287532527.0, 1287440263.0]
    bad = write(tmp_path, "c.txt.gz", gzip.compress((text + "1\tlater\t0\t0\t5\n").encode()))
    with pytest.raises(DataError, match=r"c\.txt\.gz:3: time 'later' is not a date-time"):
        load(bad, "gowalla-checkins")


def test_foursquare_tsmc_latin1_category(tmp_path: Path) -> None:
    line = (
        "470\t49bbd6c0f964a520f4531fe3\t4bf58dd8d48988d127951735\tCaf\xe9\t40.71\t-74.00"
        "\t-240\tTue Apr 03 18:00:09 +0000 2012\n"
    )
    path = write(tmp_path, "dataset_TSMC2014_NYC.txt", line.encode("latin-1"))
    table = load(path, "foursquare-tsmc")
    assert table["user"].tolist() == [470] and table["item"].tolist() == [
        "49bbd6c0f964a520f4531fe3"
    ]
    assert table["timestamp"].tolist() == [1333476009.0]
    bad = write(tmp_path, "short.txt", "470\t49bb\n")
    with pytest.raises(DataError, match=r"short\.txt:1: expected 8 tab-separated fields"):
        load(bad, "foursquare-tsmc")


def test_ncf_rating_and_sasrec(tmp_path: Path) -> None:
    ncf = load(
        write(tmp_path, "ml-1m.train.rating", "0\t32\t4\t978824330\n0\t34\t4\t978824330\n"),
        "ncf-rating",
    )
    assert ncf.columns.tolist() == ["user", "item", "rating", "timestamp", "line"]
    no_time = load(write(tmp_path, "p.train.rating", "0\t1\t1\n"), "ncf-rating")
    assert "timestamp" not in no_time.columns
    sasrec = load(write(tmp_path, "Beauty.txt", "1 5\n2 7\n1 3\n1 5\n"), "sasrec")
    assert sasrec["timestamp"].tolist() == [0.0, 0.0, 1.0, 2.0]
    data, report = prepare(sasrec)
    assert report.dropped_duplicates == 1  # the re-consumed item keeps its latest position
    assert data.item_ids[data.sequences()[0]].tolist() == [3, 5]
    with pytest.raises(DataError, match=r"bad\.txt:2: .*item id '-3' is not an integer|bad\.txt:2"):
        load(write(tmp_path, "bad.txt", "1 5\n1 x\n"), "sasrec")


# --------------------------------------------------------------------------- cache
def _interactions(ids: list, items: list, **extra) -> Interactions:
    users = np.array([0, 0, 1, 2])
    return Interactions.from_arrays(
        users,
        np.array([0, 2, 1, 2]),
        n_users=3,
        n_items=3,
        user_ids=np.array(ids, dtype=object),
        item_ids=np.array(items, dtype=object),
        **extra,
    )


def test_cache_round_trip_with_string_ids(cache: Path) -> None:
    from negrec.data.prepare import PrepareReport

    train = _interactions(
        ["a", "b", "é"], ["x", "y", "z"], timestamps=np.arange(4.0), ratings=np.ones(4)
    )
    report = PrepareReport(4, 0, 0, 0, 0, 3, 3, 4)
    save_prepared("toy", train, None, report, {"dataset": "toy"})
    got, test, got_report = load_prepared("toy")
    assert test is None and got_report == report
    assert got.user_ids.tolist() == ["a", "b", "é"] and got.item_ids.tolist() == ["x", "y", "z"]
    assert np.array_equal(got.indptr, train.indptr) and np.array_equal(got.indices, train.indices)
    assert np.array_equal(got.timestamps, train.timestamps)
    assert not got.indices.flags.writeable
    assert prepared_names() == ["toy"] and read_meta("toy")["dataset"] == "toy"
    assert remove_prepared("toy") and not is_prepared("toy")


def test_cache_errors_are_one_line(cache: Path) -> None:
    with pytest.raises(CacheError, match="negrec data fetch nope"):
        load_prepared("nope")
    with pytest.raises(CacheError, match="invalid dataset name"):
        load_prepared("../etc")
    from negrec.data.prepare import PrepareReport

    train = _interactions([1, 2, 3], [4, 5, 6])
    save_prepared("toy", train, train, PrepareReport(8, 0, 0, 0, 0, 3, 3, 8))
    (cache / "toy" / "data.npz").write_bytes(b"not a zip")
    with pytest.raises(CacheError, match="damaged cache entry") as excinfo:
        load_prepared("toy")
    assert "\n" not in str(excinfo.value)
    meta = json.loads((cache / "toy" / "meta.json").read_text())
    (cache / "toy" / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CacheError, match="another negrec version"):
        load_prepared("toy")


# -------------------------------------------------------------------------- import
def test_import_from_archive_folder_and_file(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ratings = "".join(
        f"{u}::{i}::{1 + (u * i) % 5}::{u * 100 + i}\n" for u in range(1, 5) for i in range(1, 6)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", ratings)
        archive.writestr("ml-1m/movies.dat", "1::x::y\n")
    zipped = write(tmp_path, "downloads/ml-1m.zip", buffer.getvalue())
    spec = get_spec("ml-1m")  # pinned to this test's zip, so that the import verifies it
    source = replace(spec.sources[0], md5=hashlib.md5(buffer.getvalue()).hexdigest())
    monkeypatch.setitem(REGISTRY, "ml-1m", replace(spec, sources=(source,)))
    entry, report = import_dataset("ml-1m", zipped, log=lambda m: None)
    assert entry == cache / "ml-1m" and report.min_rating == 4.0
    expected = sum(1 + (u * i) % 5 >= 4 for u in range(1, 5) for i in range(1, 6))
    assert report.n_interactions == expected
    nested = write(tmp_path, "mine/deep/ratings.dat", ratings)
    _, report = import_dataset("ml-1m", tmp_path / "mine", min_rating=1, log=lambda m: None)
    assert report.n_interactions == 20
    _, report = import_dataset("ml-1m", nested, k_core=4, min_rating=1, log=lambda m: None)
    assert report.n_interactions == 20 and read_meta("ml-1m")["recipe"]["k_core"] == 4


def test_import_errors_name_what_is_missing(cache: Path, tmp_path: Path) -> None:
    pair = tmp_path / "pair"
    write(pair, "train.txt", "0 1\n")
    write(pair, "test.txt", "0 1\n")
    with pytest.raises(DataError, match="pre-split datasets are ml-1m-lightgcn"):
        locate_files(get_spec("ml-1m"), pair)
    with pytest.raises(DataError, match="is a train/test pair"):
        locate_files(get_spec("gowalla-lightgcn"), pair / "train.txt")
    write(tmp_path, "two/a/ratings.dat", "1::1::5::1\n")
    write(tmp_path, "two/b/ratings.dat", "1::1::5::1\n")
    with pytest.raises(DataError, match=r"several files named ratings\.dat"):
        locate_files(get_spec("ml-1m"), tmp_path / "two")
    with pytest.raises(DataError, match="no such file or folder"):
        locate_files(get_spec("ml-1m"), tmp_path / "missing")
    assert not prepared_names()


def test_cli_import_prints_stats_and_errors_in_one_line(
    cache: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "gowalla"
    write(folder, "train.txt", "0 0 1 2\n1 1 2\n2 0 2\n")
    write(folder, "test.txt", "0 3\n1 0\n2 1\n")
    command = ["data", "import", "--as", "my-pair", "--format", "lightgcn", str(folder)]
    assert main([*command, "--unseen", "keep"]) == 0
    out = capsys.readouterr().out
    assert "users         3" in out and "items         4" in out and "train 7, test 3" in out
    assert main([*command, "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test.txt:1: test item 3" in err
    assert main(["data", "import", "sasrec-nope", str(folder)]) == 2


def test_import_does_not_trust_any_folder(cache: Path, tmp_path: Path, capsys) -> None:
    """Regression: `negrec data import gowalla-lightgcn DIR` cached whatever train/test
    files DIR held under that name, although the registry pins their sha256."""
    folder = tmp_path / "other"
    write(folder, "train.txt", "0 0 1 2\n1 1 2\n2 0 2\n")
    write(folder, "test.txt", "0 1\n1 0\n2 2\n")
    with pytest.raises(DataError, match=r"train\.txt: sha256 \w+ is not the sha256 pinned") as err:
        import_dataset("gowalla-lightgcn", folder, log=lambda m: None)
    assert "--as NEWNAME" in str(err.value) and "\n" not in str(err.value)
    assert not is_prepared("gowalla-lightgcn")
    assert main(["data", "import", "gowalla-lightgcn", str(folder)]) == 2
    assert "not the sha256 pinned" in capsys.readouterr().err
    assert not prepared_names()


def test_an_unverifiable_import_with_another_row_count_is_flagged(
    cache: Path, tmp_path: Path, capsys
) -> None:
    """An extracted events file has no checksum of its own (the registry pins the
    archive's): its row count is compared with the registry's instead."""
    ratings = write(tmp_path, "ml/ratings.dat", "1::1::5::1\n1::2::4::2\n2::1::3::3\n")
    assert main(["data", "import", "ml-1m", str(ratings.parent)]) == 0
    err = capsys.readouterr().err
    assert "note: read 3 rows, but ml-1m has 1,000,209" in err and "--as NEWNAME" in err
    assert read_meta("ml-1m")["source"]["verified"] == []


def test_import_under_a_name_of_ones_own(cache: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "mine"
    write(folder, "train.txt", "0 0 1\n1 1 2\n2 0 2\n")
    write(folder, "test.txt", "0 2\n1 0\n2 1\n")
    # with a registered dataset as the template (its format and recipe), unverified
    assert main(["data", "import", "gowalla-lightgcn", str(folder), "--as", "my-gowalla"]) == 0
    assert "my-gowalla: prepared from" in capsys.readouterr().out
    meta = read_meta("my-gowalla")
    assert meta["dataset"] == "my-gowalla" and meta["format"] == "lightgcn"
    assert meta["source"]["template"] == "gowalla-lightgcn"
    train, test, _ = load_prepared("my-gowalla")
    assert (train.nnz, test.nnz) == (6, 3) and not is_prepared("gowalla-lightgcn")
    # no template: a folder with one train and one test file, or one events file
    _, report = import_dataset(None, folder, as_name="pair", format="lightgcn", log=print)
    assert report.parts == {"train": 6, "test": 3} and read_meta("pair")["recipe"]["split"] == (
        "given"
    )
    events = write(tmp_path, "events/ratings.dat", "1::1::5::1\n1::2::4::2\n2::1::3::3\n")
    _, report = import_dataset(None, events, as_name="events", log=print)
    assert report.n_interactions == 3 and read_meta("events")["format"] == "movielens-dat"
    # a registered name cannot be taken, nor an entry replaced without --force
    with pytest.raises(DataError, match="ml-1m is a registered dataset"):
        import_dataset(None, events, as_name="ml-1m", log=print)
    assert main(["data", "import", "--as", "events", str(events)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["data", "import", str(events)]) == 2  # one path and no --as: NAME missing
    assert "NAME" in capsys.readouterr().err
    assert main(["data", "list"]) == 0
    assert "your own datasets (negrec data import --as): events, my-gowalla, pair" in (
        capsys.readouterr().out
    )


# ------------------------------------------------------------------------ real data
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")

SHARED_CASES = [
    # name, folder, users, items, interactions, parts
    ("ml-100k", "ml-100k", 943, 1682, 100_000, None),
    ("ml-1m-lightgcn", "ml-1m", 6038, 3533, 575_281, (457_819, 117_462)),
    ("gowalla-lightgcn", "gowalla", 29_858, 40_981, 1_027_370, (810_128, 217_242)),
    ("amazon-beauty-selfrec", "amazon-beauty", 22_363, 12_101, 198_502, (176_139, 22_363)),
]


@pytest.mark.shared_data
@needs_shared
@pytest.mark.parametrize(("name", "folder", "users", "items", "nnz", "parts"), SHARED_CASES)
def test_import_every_shared_dataset_reproduces_the_readme(
    cache: Path, capsys, name: str, folder: str, users: int, items: int, nnz: int, parts
) -> None:
    assert main(["data", "import", name, str(SHARED / folder)]) == 0
    out = capsys.readouterr().out
    assert f"users         {users:,}" in out and f"items         {items:,}" in out
    assert f"interactions  {nnz:,}" in out
    start = time.perf_counter()
    train, test, report = load_prepared(name)
    seconds = time.perf_counter() - start
    assert seconds < 1.0  # "loads in well under a second" (typically ~20 ms)
    assert (report.n_users, report.n_items, report.n_interactions) == (users, items, nnz)
    if parts is None:
        assert test is None and train.nnz == nnz
    else:
        assert (train.nnz, test.nnz) == parts and train.n_items == test.n_items == items


@pytest.mark.shared_data
@needs_shared
def test_import_shared_ml100k_file_with_threshold(cache: Path) -> None:
    _, report = import_dataset(
        "ml-100k", SHARED / "ml-100k" / "ml-100k.inter", min_rating=4, log=lambda m: None
    )
    assert (report.n_users, report.n_items, report.n_interactions) == (942, 1447, 55_375)
    assert read_meta("ml-100k")["format"] == "recbole"
