"""Experiment config: unknown keys anywhere (top level, sections, plugin sections, nested
tables) and wrong types raise ConfigError naming the key; impossible combinations name the
fields involved; ``--set`` overrides are parsed as TOML values; ``to_toml_dict`` round-trips
through TOML and ``ExperimentConfig.from_dict``; malformed TOML names the line.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomli_w

from negrec.errors import ConfigError
from negrec.experiment.config import (
    ExperimentConfig,
    apply_overrides,
    load_config,
    parse_override,
    read_toml,
)
from negrec.samplers.uniform import UniformConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def config_error(raw: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict(raw)
    return info.value


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"bogus": 1}, "bogus"),
        ({"train": {"bogus": 1}}, "train.bogus"),
        ({"eval": {"k": [10]}}, "eval.k"),
        ({"model": {"name": "mf", "bogus": 1}}, "model.bogus"),
        ({"model": {"hidden": 8}}, "model.hidden"),  # plugin chosen by default
        ({"sampler": {"name": "uniform", "bogus": 1}}, "sampler.bogus"),
        ({"sampler": {"name": "full", "replacement": False}}, "sampler.replacement"),
        ({"data": {"synthetic": {"bogus": 1}}}, "data.synthetic.bogus"),
        ({"loss": {"temperature": 0.1}}, "loss.temperature"),
    ],
)
def test_unknown_key_names_the_key(raw, key):
    err = config_error(raw)
    assert err.key == key
    assert f"'{key}'" in str(err)
    assert "unknown key" in str(err)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"train": {"epochs": 2.5}}, "train.epochs"),
        ({"train": {"lr": True}}, "train.lr"),
        ({"eval": {"ks": [10, "x"]}}, "eval.ks[1]"),
        ({"eval": {"ks": 10}}, "eval.ks"),
        ({"sampler": {"k": "8"}}, "sampler.k"),
        ({"loss": {"neg_reduction": "max"}}, "loss.neg_reduction"),
        ({"data": {"synthetic": {"n_users": "many"}}}, "data.synthetic.n_users"),
        ({"train": 3}, "train"),
        ({"name": 3}, "name"),
    ],
)
def test_wrong_type_names_the_key(raw, key):
    err = config_error(raw)
    assert err.key == key
    assert f"'{key}'" in str(err)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"sampler": {"k": 0}}, "sampler.k"),
        ({"split": {"test_fraction": 1.0}}, "split.test_fraction"),
        ({"loss": {"name": "nope"}}, "loss.name"),
        ({"model": {"name": "nope"}}, "model.name"),
        ({"loss": {"name": "bpr", "margin": 0.5}}, "loss.margin"),
    ],
)
def test_invalid_values_name_the_key(raw, key):
    assert config_error(raw).key == key


def test_softmax_with_a_sampling_sampler_names_both_fields():
    err = config_error({"loss": {"name": "softmax"}, "sampler": {"name": "uniform"}})
    assert err.key == "loss.name"
    assert "sampler.name" in str(err)
    ExperimentConfig.from_dict({"loss": {"name": "softmax"}, "sampler": {"name": "full"}})


def test_selection_metric_not_computed_names_both_fields():
    err = config_error({"train": {"metric": "ndcg@50"}, "eval": {"ks": [10, 20]}})
    assert err.key == "train.metric"
    assert "eval.ks" in str(err)
    ExperimentConfig.from_dict({"train": {"metric": "ndcg@50"}, "eval": {"ks": [10, 50]}})
    err = config_error({"train": {"metric": "auc"}, "eval": {"auc": False}})
    assert err.key == "train.metric"


def test_presplit_and_split_method_must_agree():
    assert config_error({"split": {"method": "given"}}).key == "split.method"
    raw = {"data": {"source": "presplit", "train": "a.csv", "test": "b.csv"}}
    assert config_error(raw).key == "split.method"


@pytest.mark.parametrize(
    ("split", "key"),
    [
        ({"method": "leave_one_out", "test_fraction": 0.3}, "split.test_fraction"),
        ({"method": "leave_one_out", "valid": 0.3}, "split.valid"),
        ({"method": "leave_one_out", "seed": 4}, "split.seed"),
        ({"method": "random", "valid": "last", "seed": 4}, None),  # test hold-out is drawn
        ({"method": "leave_one_out", "valid": "last"}, None),  # says what it does
    ],
)
def test_split_keys_the_method_does_not_read_are_refused(split, key):
    """Regression: leave-one-out ignored split.test_fraction, split.valid and split.seed
    while storing them, so a config said one thing and the split did another."""
    if key is None:
        ExperimentConfig.from_dict({"split": split})
    else:
        assert config_error({"split": split}).key == key


def test_a_given_test_split_refuses_a_test_fraction_and_an_unused_seed():
    presplit = {"source": "presplit", "train": "a.csv", "test": "b.csv"}
    given = {"method": "given", "valid": "last"}
    for extra, key in (
        ({"test_fraction": 0.3}, "split.test_fraction"),
        ({"seed": 2}, "split.seed"),
    ):
        assert config_error({"data": presplit, "split": {**given, **extra}}).key == key
    ExperimentConfig.from_dict({"data": presplit, "split": {"method": "given", "seed": 2}})


# ----------------------------------------------------------------------------- overrides
@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("train.lr=1e-2", ["train", "lr"], 0.01),
        ("train.epochs=3", ["train", "epochs"], 3),
        ("eval.ks=[5, 10]", ["eval", "ks"], [5, 10]),
        ("sampler.replacement=false", ["sampler", "replacement"], False),
        ('loss.name="cce"', ["loss", "name"], "cce"),
        ("loss.name=cce", ["loss", "name"], "cce"),  # not TOML: kept as a string
        ("name=my run", ["name"], "my run"),
        (" data.synthetic.n_users = 50", ["data", "synthetic", "n_users"], 50),
    ],
)
def test_override_values_are_parsed_as_toml(text, path, value):
    got_path, got = parse_override(text)
    assert got_path == path
    assert got == value and type(got) is type(value)


def test_overrides_apply_to_the_loaded_file(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[train]\nepochs = 5\nlr = 0.1\n[sampler]\nk = 4\n')
    config = load_config(
        path,
        ["train.epochs=2", "sampler.replacement=false", "eval.ks=[5]", "train.metric=ndcg@5"],
    )
    assert config.train.epochs == 2
    assert config.train.lr == 0.1  # untouched values stay
    assert isinstance(config.sampler, UniformConfig) and config.sampler.replacement is False
    assert config.sampler.k == 4
    assert config.eval.ks == [5]


def test_bad_overrides_name_the_key():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.epochs=ten"])
    assert info.value.key == "train.epochs"
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.bogus=1"])
    assert info.value.key == "train.bogus"
    with pytest.raises(ConfigError):
        parse_override("train.epochs")
    with pytest.raises(ConfigError) as info:
        apply_overrides({"name": "x"}, ["name.sub=1"])
    assert info.value.key == "name"


# ----------------------------------------------------------------------------- files
def test_malformed_toml_names_the_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[train]\nepochs = = 3\n')
    with pytest.raises(ConfigError) as info:
        read_toml(path)
    assert str(info.value).startswith(f"{path}:3: invalid TOML")


def test_missing_config_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such config"):
        load_config(tmp_path / "absent.toml")


# ----------------------------------------------------------------------------- round trip
@pytest.mark.parametrize(
    "raw",
    [
        {},
        {
            "name": "custom",
            "output": "elsewhere",
            "data": {"synthetic": {"n_users": 50, "mean_degree": 12}},
            "split": {"valid": "last", "seed": 3},
            "model": {"dim": 8, "init_std": 0.05},
            "sampler": {"name": "uniform", "k": 16, "replacement": False},
            "loss": {"name": "hinge", "margin": 0.5, "neg_reduction": "mean"},
            "train": {"epochs": 3, "lr": 0.01, "metric": "recall@5", "device": "auto"},
            "eval": {"ks": [5], "betas": [0.1], "batch_size": 64},
        },
        {"loss": {"name": "softmax"}, "sampler": {"name": "full"}, "eval": {"auc": False}},
        {"data": {"source": "file", "path": "x.csv", "k_core": 5, "min_rating": 4}},
    ],
)
def test_to_toml_dict_round_trips(raw):
    config = ExperimentConfig.from_dict(raw)
    stored = config.to_toml_dict()
    again = ExperimentConfig.from_dict(tomllib.loads(tomli_w.dumps(stored)))
    assert again == config
    assert again.to_toml_dict() == stored
    assert type(again.sampler) is type(config.sampler)


def test_cached_dataset_source_builds_the_split(tmp_path, monkeypatch):
    """data.source = "cached" reads a dataset prepared by `negrec data import/fetch` from
    NEGREC_CACHE; a pre-split entry needs split.method = "given" (named in the error)."""
    from negrec.data.cache import save_prepared
    from negrec.data.prepare import PrepareReport
    from negrec.data.splits import random_split
    from negrec.data.synthetic import synthetic_interactions
    from negrec.experiment.data import build_split

    monkeypatch.setenv("NEGREC_CACHE", str(tmp_path))
    parts = random_split(synthetic_interactions(30, 40, 8, seed=2), 0.2, 0.1, seed=0)
    report = PrepareReport(
        rows_read=parts.train.nnz + parts.test.nnz,
        dropped_threshold=0,
        dropped_duplicates=0,
        dropped_kcore=0,
        dropped_unseen=0,
        n_users=30,
        n_items=40,
        n_interactions=parts.train.nnz + parts.test.nnz,
    )
    save_prepared("tiny", parts.train, parts.test, report)
    config = ExperimentConfig.from_dict(
        {"data": {"source": "cached", "name": "tiny"}, "split": {"method": "given"}}
    )
    split = build_split(config.data, config.split)
    assert split.test.nnz == parts.test.nnz
    assert split.train.nnz + split.valid.nnz == parts.train.nnz
    wrong = ExperimentConfig.from_dict({"data": {"source": "cached", "name": "tiny"}})
    with pytest.raises(ConfigError, match=r"split\.method.*pre-split"):
        build_split(wrong.data, wrong.split)


def test_run_config_stored_by_negrec_0_1_reads_as_today(tmp_path: Path):
    """negrec 0.1 stored ``neg_reduction`` and ``margin`` in every run's ``[loss]`` table;
    such a run reads back as the same config a run made today stores (so sweeps resume it
    and reports group it with new runs)."""
    from negrec.experiment import rundir
    from negrec.experiment.config import stored_run_config

    for loss, today in [
        ({"name": "bpr", "neg_reduction": "sum", "margin": 1.0}, {"name": "bpr"}),
        (
            {"name": "simce", "neg_reduction": "sum", "margin": 16.0},
            {"name": "simce", "margin": 16.0},
        ),
    ]:
        run = tmp_path / loss["name"]
        run.mkdir()
        old = ExperimentConfig.from_dict({"loss": today}).to_toml_dict()
        rundir.write_toml(run / "config.toml", {**old, "loss": loss})
        assert stored_run_config(run) == old


def test_source_file_with_train_and_test_says_they_are_for_presplit():
    """Regression: `source = "file"` with `train` / `test` (a pre-split pair) said only
    "source 'file' needs a path", with no word of source = 'presplit'."""
    raw = {"data": {"source": "file", "train": "t.txt", "test": "s.txt"}}
    with pytest.raises(ConfigError, match="for source = 'presplit'") as err:
        ExperimentConfig.from_dict(raw)
    assert err.value.key == "data.path"
