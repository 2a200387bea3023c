"""Your own delimited file in (issue 18): ``[data]`` ``format = "delimited"`` with
``sep``, ``header`` and ``[data.columns]``, the same for a pre-split pair, and
``negrec data stats --format delimited --columns ... [--sep ...] [--no-header]``.

Known answers: a CSV with a header and string ids ``"007"``, ``"7"`` and a unicode id
gives exactly those vocabularies; a headerless TSV read by positions gives the same;
thresholds and timestamps are honoured; bad mappings are one line naming the file and
line (or the key / option) and what was expected.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from negrec.data.cli import delimited_options, parse_columns
from negrec.data.loaders import load, parse_separator
from negrec.data.prepare import prepare
from negrec.errors import ConfigError, DataError, NegrecError
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.data import build_split
from negrec.experiment.rundir import read_per_user, write_per_user

# user 007 and 7 are two users; "ünï" and the item "ß" are unicode; (7, b) is repeated,
# the later row (rating 1, time 15) wins
CSV = """\
user,item,rating,timestamp
007,a,5,10
007,b,4,11
7,a,2,12
7,b,5,13
ünï,ß,4,14
7,b,1,15
ünï,a,5,16
"""
TSV = "".join(
    "\t".join(line.split(",")) + "\n" for line in CSV.splitlines()[1:]
)  # the same rows, tab separated, no header


def data_config(path: Path, **data: object) -> ExperimentConfig:
    raw = {
        "data": {"source": "file", "path": str(path), "format": "delimited", **data},
        "split": {"method": "leave_one_out"},
    }
    return ExperimentConfig.from_dict(raw)


def events(config: ExperimentConfig):
    """The whole prepared data set a file config describes (no split: some files here
    have no timestamps for a leave-one-out split)."""
    data = config.data
    assert data.path is not None
    table = load(data.resolve(data.path), data.format, **data.loader_options())
    return prepare(table, min_rating=data.min_rating)[0]


def pairs(interactions) -> list[tuple[str, str]]:
    users, items = interactions.to_coo()
    return sorted(
        zip(
            interactions.user_ids[users].tolist(),
            interactions.item_ids[items].tolist(),
            strict=True,
        )
    )


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "ratings.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


@pytest.fixture
def tsv_file(tmp_path: Path) -> Path:
    path = tmp_path / "ratings.tsv"
    path.write_text(TSV, encoding="utf-8")
    return path


def all_interactions(split):
    """train + valid + test of a leave-one-out split, as (raw user, raw item) pairs."""
    return sorted(pairs(split.train) + pairs(split.valid) + pairs(split.test))


# --------------------------------------------------------------------------- config path
def test_csv_with_header_keeps_string_zero_padded_and_unicode_ids(csv_file):
    columns = {"user": "user", "item": "item", "rating": "rating", "timestamp": "timestamp"}
    config = data_config(csv_file, columns=columns)
    split = build_split(config.data, config.split)
    assert split.train.user_ids.tolist() == ["007", "7", "ünï"]
    assert split.train.item_ids.tolist() == ["a", "b", "ß"]
    assert all_interactions(split) == [
        ("007", "a"),
        ("007", "b"),
        ("7", "a"),
        ("7", "b"),
        ("ünï", "a"),
        ("ünï", "ß"),
    ]
    # timestamps order the leave-one-out split: each user's latest item is the test item
    assert pairs(split.test) == [("007", "b"), ("7", "b"), ("ünï", "a")]


def test_headerless_tsv_by_positions_equals_the_csv(csv_file, tsv_file):
    by_name = data_config(
        csv_file, columns={"user": "user", "item": "item", "timestamp": "timestamp"}
    )
    by_position = data_config(
        tsv_file, sep="\t", header=False, columns={"user": 0, "item": 1, "timestamp": 3}
    )
    a = build_split(by_name.data, by_name.split)
    b = build_split(by_position.data, by_position.split)
    assert b.train.user_ids.tolist() == ["007", "7", "ünï"]
    for part in ("train", "valid", "test"):
        assert pairs(getattr(a, part)) == pairs(getattr(b, part))


def test_tsv_with_positional_columns_still_defaults_header_true(csv_file, tsv_file, capsys):
    """Regression: `format = "delimited"` with `columns` all 0-based positions and no
    `header` key took the first row for a header and silently dropped it (here the
    interaction 007-a). Positions alone cannot tell, so the config must say `header`
    (and the command line `--header` or `--no-header`); a mapping that names a column
    still means a header line."""
    from negrec.cli import main

    columns = {"user": 0, "item": 1}
    with pytest.raises(ConfigError) as caught:
        data_config(tsv_file, sep="tab", columns=columns)
    assert caught.value.key == "data.header"
    assert "data.header = true (skip it) or false (it is data)" in str(caught.value)
    every = pairs(events(data_config(tsv_file, sep="tab", header=False, columns=columns)))
    assert ("007", "a") in every and len(every) == 6
    skipped = pairs(events(data_config(tsv_file, sep="tab", header=True, columns=columns)))
    assert ("007", "a") not in skipped and len(skipped) == 6 - 1
    named = data_config(csv_file, columns={"user": "user", "item": 1})
    assert named.data.loader_options()["header"] is True

    stats = ["data", "stats", str(tsv_file), "--columns", "user=0,item=1", "--sep", "tab"]
    assert main(stats) == 2
    err = capsys.readouterr().err
    assert "--columns: the columns are 0-based positions" in err
    assert "--header (skip it) or --no-header (it is data)" in err and err.count("\n") == 1
    assert main([*stats, "--no-header"]) == 0
    assert "kept 6 interactions: 3 users x 3 items" in capsys.readouterr().out
    assert main([*stats, "--header"]) == 0
    assert "kept 5 interactions" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # one or the other
        main([*stats, "--header", "--no-header"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(NegrecError, match="--header: only read with --format delimited"):
        delimited_options("recbole", None, None, True)


def test_sep_names_tab_and_whitespace(tsv_file, tmp_path):
    for sep in ("tab", "\\t"):
        config = data_config(tsv_file, sep=sep, header=False, columns={"user": 0, "item": 1})
        assert events(config).n_users == 3
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("007   a  5\n7 b 4\n7   a 3\n", encoding="utf-8")
    config = data_config(spaced, sep="whitespace", header=False, columns={"user": 0, "item": 1})
    assert config.data.loader_options()["delimiter"] is None
    assert events(config).user_ids.tolist() == ["007", "7"]


def test_rating_threshold_is_applied_after_the_latest_row_wins(csv_file):
    columns = {"user": "user", "item": "item", "rating": "rating", "timestamp": "timestamp"}
    config = data_config(csv_file, columns=columns, min_rating=4)
    split = build_split(config.data, config.split)
    # (7, a) rated 2 and (7, b) re-rated 1 are below 4: user 7 is gone
    assert split.train.user_ids.tolist() == ["007", "ünï"]
    assert all_interactions(split) == [("007", "a"), ("007", "b"), ("ünï", "a"), ("ünï", "ß")]


def test_presplit_pair_reads_the_same_mapping(tmp_path):
    train = tmp_path / "train.csv"
    test = tmp_path / "test.csv"
    train.write_text("u;i;r\n007;a;5\n007;b;4\n7;a;5\n7;c;3\nünï;b;5\nünï;c;4\n", "utf-8")
    test.write_text("u;i;r\n007;c;5\n7;b;5\nünï;a;5\n", "utf-8")
    raw = {
        "data": {
            "source": "presplit",
            "train": str(train),
            "test": str(test),
            "format": "delimited",
            "sep": ";",
            "columns": {"user": "u", "item": "i", "rating": "r"},
        },
        "split": {"method": "given", "valid": 0.4, "seed": 0},
    }
    config = ExperimentConfig.from_dict(raw)
    split = build_split(config.data, config.split)
    assert split.train.user_ids.tolist() == ["007", "7", "ünï"]
    assert pairs(split.test) == [("007", "c"), ("7", "b"), ("ünï", "a")]


def test_config_stores_and_reloads_the_mapping(csv_file):
    config = data_config(csv_file, sep=",", columns={"user": "user", "item": 1})
    stored = config.to_toml_dict()["data"]
    assert stored["columns"] == {"user": "user", "item": 1}
    assert stored["sep"] == ","
    assert "header" not in stored  # left at its default: not written
    again = ExperimentConfig.from_dict({**config.to_toml_dict()})
    assert again.data.loader_options() == config.data.loader_options()
    # other formats store none of the new keys (old run configs compare equal)
    other = ExperimentConfig.from_dict({}).to_toml_dict()["data"]
    assert not {"sep", "header", "columns"} & set(other)


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({}, "data.columns", "needs the column mapping"),
        ({"columns": {"item": "item"}}, "data.columns.user", "required"),
        ({"columns": {"user": "u", "item": "i", "rating": 2, "colour": 3}}, "colour", "unknown"),
        ({"columns": {"user": "u", "item": "u"}}, "data.columns.item", "already the user"),
        ({"columns": {"user": -1, "item": 1}}, "data.columns.user", ">= 0"),
        ({"columns": {"user": True, "item": 1}}, "data.columns.user", "expected"),
        ({"header": False, "columns": {"user": "u", "item": 1}}, "data.columns.user", "header"),
        ({"sep": "", "columns": {"user": 0, "item": 1}}, "data.sep", "empty"),
    ],
)
def test_bad_mapping_in_the_config_names_the_key(tmp_path, data, key, words):
    with pytest.raises(ConfigError) as caught:
        data_config(tmp_path / "x.csv", **data)
    assert caught.value.key.startswith(key) or key in str(caught.value)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_delimited_keys_refused_for_other_formats(tmp_path):
    raw = {"data": {"source": "file", "path": "x.inter", "format": "recbole", "sep": "\t"}}
    with pytest.raises(ConfigError, match=r"data\.sep.*only read with data\.format = 'delimited'"):
        ExperimentConfig.from_dict(raw)
    raw = {"data": {"source": "file", "path": "x.txt", "columns": {"user": 0, "item": 1}}}
    with pytest.raises(ConfigError, match=r"data\.columns"):
        ExperimentConfig.from_dict(raw)


def test_sequential_model_needs_the_time_column(csv_file):
    raw = {
        "data": {
            "source": "file",
            "path": str(csv_file),
            "format": "delimited",
            "columns": {"user": "user", "item": "item"},
        },
        "split": {"method": "leave_one_out"},
        "model": {"name": "sasrec"},
    }
    with pytest.raises(ConfigError, match=r"data\.columns\.timestamp"):
        ExperimentConfig.from_dict(raw)


def test_bad_mapping_in_the_file_names_file_line_and_expectation(csv_file, tsv_file):
    config = data_config(csv_file, columns={"user": "user", "item": "product"})
    with pytest.raises(DataError) as caught:
        build_split(config.data, config.split)
    assert str(caught.value) == (
        f"{csv_file}:1: header has no column 'product' (for item); "
        "columns are ['user', 'item', 'rating', 'timestamp']"
    )
    config = data_config(tsv_file, sep="tab", header=False, columns={"user": 0, "item": 7})
    with pytest.raises(DataError) as caught:
        build_split(config.data, config.split)
    message = str(caught.value)
    assert message.startswith(f"{tsv_file}:1: column 8 (0-based position 7) is needed")
    assert "only 4 fields" in message and "expected fields separated by tab" in message


def test_a_quoted_header_says_quotes_are_read_as_written(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('"user","item"\n"007","a"\n', encoding="utf-8")
    config = data_config(path, columns={"user": "user", "item": "item"})
    with pytest.raises(DataError, match=r"fields are read as written, quotes included$"):
        events(config)


def test_timestamp_that_is_not_a_number_names_the_line(tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text("user,item,time\n007,a,5\n7,b,2020-01-01\n", encoding="utf-8")
    config = data_config(path, columns={"user": "user", "item": "item", "timestamp": "time"})
    with pytest.raises(DataError, match=r"dates.csv:3: timestamp '2020-01-01' is not a finite"):
        build_split(config.data, config.split)


# ------------------------------------------------------------------------------ CLI path
def test_parse_columns_and_separator():
    assert parse_columns("user=user_id, item=2,timestamp=ts") == {
        "user": "user_id",
        "item": 2,
        "timestamp": "ts",
    }
    assert parse_separator("\\t") == parse_separator("tab") == "\t"
    assert parse_separator("whitespace") is None
    assert parse_separator("::") == "::"
    for text, words in [
        ("user=0", "the item column is required"),
        ("user=0,item", "is not ROLE=COLUMN"),
        ("user=0,item=1,user=2", "user is given twice"),
        ("user=0,product=1", "unknown role 'product'"),
        ("user=2,item=1,rating=2", "rating and user are both column '2'"),
    ]:
        with pytest.raises(NegrecError, match=words):
            parse_columns(text)
    with pytest.raises(NegrecError, match="--sep: only read with --format delimited"):
        delimited_options("recbole", None, ";", True)
    with pytest.raises(NegrecError, match="--columns: user=u names a column, but --no-header"):
        delimited_options("delimited", "user=u,item=1", None, False)


def negrec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "negrec", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        encoding="utf-8",
    )


def test_cli_data_stats_reads_a_delimited_file(csv_file, tsv_file, tmp_path):
    """One subprocess per case would be slow: the in-process handler, as the CLI calls it."""
    from negrec.cli import main

    def stats(*args: str) -> str:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["data", "stats", *args]) == 0
        return out.getvalue()

    by_name = stats(
        str(csv_file),
        "--format",
        "delimited",
        "--columns",
        "user=user,item=item,rating=rating,timestamp=timestamp",
    )
    assert "kept 6 interactions: 3 users x 3 items" in by_name
    assert "dropped 1 duplicate" in by_name
    by_position = stats(
        str(tsv_file), "--columns", "user=0,item=1,rating=2", "--sep", "\\t", "--no-header"
    )
    assert f"{tsv_file} (delimited)" in by_position  # --columns implies --format delimited
    assert "kept 6 interactions: 3 users x 3 items" in by_position
    threshold = stats(str(tsv_file), "--columns", "user=0,item=1,rating=2", "--sep", "tab",
                      "--no-header", "--min-rating", "4")  # fmt: skip
    # the latest (7, b) has rating 1, (7, a) rating 2: user 7 is gone
    assert "kept 4 interactions: 2 users x 3 items" in threshold
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    train.write_text("007\ta\n007\tb\n7\ta\nünï\tb\n", encoding="utf-8")
    test.write_text("007\tc\n7\tb\n", encoding="utf-8")
    presplit = stats(str(train), "--test", str(test), "--columns", "user=0,item=1", "--sep",
                     "tab", "--no-header", "--unseen", "drop")  # fmt: skip
    assert "dropped 1 test rows whose user or item is not in train" in presplit  # item c
    assert "kept 5 interactions (train 4, test 1): 3 users x 2 items" in presplit


@pytest.mark.slow
def test_cli_bad_mapping_is_one_line(csv_file, tmp_path):
    """As a user runs it (a subprocess): status 2 and one line, no traceback."""
    result = negrec(
        "data", "stats", str(csv_file), "--format", "delimited", "--columns",
        "user=user,item=item,timestamp=time", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        f"negrec data stats: error: {csv_file}:1: header has no column 'time' (for "
        "timestamp); columns are ['user', 'item', 'rating', 'timestamp']\n"
    )


def test_cli_without_a_mapping_is_one_line(csv_file, capsys):
    from negrec.cli import main

    assert main(["data", "stats", str(csv_file), "--format", "delimited"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("negrec data stats: error: --columns: --format delimited needs")
    assert err.count("\n") == 1


def test_ids_with_the_same_digits_stay_apart_end_to_end(csv_file):
    """'007' and '7' are two users from file to Interactions (not merged as the int 7)."""
    config = data_config(csv_file, columns={"user": "user", "item": "item"})
    data = events(config)
    degrees = dict(zip(data.user_ids.tolist(), np.diff(data.indptr).tolist(), strict=True))
    assert degrees == {"007": 2, "7": 2, "ünï": 2}


# ----------------------------------------------------------------------- property: ids
_ID = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),  # no blanks or line breaks
        blacklist_characters=",\u0085\ufeff",
    ),
    min_size=1,
    max_size=6,
).filter(lambda text: text == text.strip())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_ID, _ID), min_size=1, max_size=12))
def test_any_ids_come_back_exactly_from_file_to_per_user_table(tmp_path_factory, rows):
    """Ids written to a CSV are the vocabulary's ids, and test_per_user.csv gives them back
    as written (zero-padded digits, unicode, 'NA', digits that look like numbers)."""
    folder = tmp_path_factory.mktemp("ids")
    path = folder / "events.csv"
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows), encoding="utf-8")
    config = data_config(path, columns={"user": "user", "item": "item"})
    data = events(config)
    as_text = [str(user) for user in data.user_ids.tolist()]
    assert sorted(as_text) == sorted({u for u, _ in rows})
    assert sorted(str(i) for i in data.item_ids.tolist()) == sorted({i for _, i in rows})
    table_path = folder / "test_per_user.csv"
    users = np.arange(data.n_users)
    write_per_user(table_path, users, {"auc": np.zeros(data.n_users)}, data.user_ids)
    assert read_per_user(table_path)["user"].tolist() == as_text


def test_data_stats_names_its_flags_not_config_keys(tmp_path, capsys):
    """Regression: `data stats x.csv --columns user=user,item=item --min-rating 3` said
    "config key 'min_rating'", and a name without a known suffix "config key 'format'":
    keys the user never wrote; the error now names --min-rating / --format."""
    from negrec.cli import main

    path = tmp_path / "x.csv"
    path.write_text("user,item\nu1,a\nu2,b\n", encoding="utf-8")
    args = ["data", "stats", str(path), "--columns", "user=user,item=item", "--min-rating", "3"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--min-rating: the data has no rating column" in err and "config key" not in err
    assert main(["data", "stats", str(path)]) == 2
    err = capsys.readouterr().err
    assert "error: --format: cannot tell the format" in err and "config key" not in err


def test_data_import_reads_a_delimited_file_of_your_own(csv_file, tsv_file, tmp_path, capsys):
    """Regression: `negrec data import --as NAME x.csv` said the format could not be told
    and listed 'delimited' as a choice, but `--format delimited` was refused and import
    had no --columns: your own CSV could be run from a config, never cached."""
    from negrec.cli import main
    from negrec.data.cache import load_prepared

    cache = tmp_path / "cache"
    columns = "user=user,item=item,rating=rating,timestamp=timestamp"
    args = ["data", "import", "--as", "mine", str(csv_file), "--columns", columns]
    assert main([*args, "--cache-dir", str(cache)]) == 0
    tsv = ["data", "import", "--as", "tsv", str(tsv_file), "--columns", "user=0,item=1"]
    assert main([*tsv, "--sep", "tab", "--no-header", "--cache-dir", str(cache)]) == 0
    capsys.readouterr()
    expected = [("007", "a"), ("007", "b"), ("7", "a"), ("7", "b"), ("ünï", "a"), ("ünï", "ß")]
    for name in ("mine", "tsv"):
        data, _, _ = load_prepared(name, cache)
        assert pairs(data) == expected
    # a column mapping is for data of your own: not under a registered name
    registered = ["data", "import", "ml-1m", str(csv_file), "--columns", columns]
    assert main([*registered, "--cache-dir", str(cache)]) == 2
    assert "--as NEWNAME" in capsys.readouterr().err
