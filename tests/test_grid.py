"""Grid expansion (negrec.experiment.grid): the cartesian product of ``[grid]`` axes,
crossed with explicit ``[[grid.runs]]`` entries and ``grid.seeds``; deterministic,
unique, file-safe run names that do not change when the grid grows; every run validated
as a normal config (an unknown dotted key fails, naming the key); the shipped grid
presets expand with registered plugins only. Nothing here trains.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from negrec.cli import main
from negrec.errors import ConfigError
from negrec.experiment.config import load_config
from negrec.experiment.grid import expand_grid, load_grid, run_name, sanitize
from negrec.models import MODELS
from negrec.samplers import SAMPLERS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BASE = """\
name = "g"
output = "out"

[data.synthetic]
n_users = 40
n_items = 60
mean_degree = 8

[model]
dim = 8

[train]
epochs = 2
"""

GRID = (
    BASE
    + """
[grid]
seeds = [0, 1, 2]
loss.name = ["bpr", "cce"]
"sampler.k" = [1, 8]

[[grid.runs]]
model.name = "mf"

[[grid.runs]]
name = "lgcn-2"
model.name = "lightgcn"
model.layers = 2
"""
)


def expand(text: str, **kwargs: Any):
    return expand_grid(tomllib.loads(text), **kwargs)


def test_cartesian_product_times_entries_times_seeds():
    grid = expand(GRID)
    assert len(grid.runs) == 2 * 2 * 2 * 3
    assert str(grid.folder) == "out/g"
    first = grid.runs[0]
    assert first.name == "loss=bpr,sampler.k=1,model=mf,seed=0"
    assert first.values == {"loss.name": "bpr", "sampler.k": 1, "model.name": "mf", "train.seed": 0}
    assert grid.runs[2].name == "loss=bpr,sampler.k=1,model=mf,seed=2"
    # the label replaces the entry's keys in the name, its values are still applied
    labelled = grid.runs[3]
    assert labelled.name == "loss=bpr,sampler.k=1,lgcn-2,seed=0"
    assert labelled.config.model.name == "lightgcn" and labelled.config.model.layers == 2
    assert grid.runs[-1].name == "loss=cce,sampler.k=8,lgcn-2,seed=2"

    combos = {
        (r.config.loss.name, r.config.sampler.k, r.config.model.name, r.config.train.seed)
        for r in grid.runs
    }
    assert len(combos) == 24  # every combination exactly once
    for run in grid.runs:
        assert run.config.name == run.name
        assert run.config.output == "out/g"
        assert run.config.model.dim == 8  # base values kept
        assert run.config.data.synthetic.n_users == 40


def test_names_are_unique_stable_and_survive_a_growing_grid():
    names = [r.name for r in expand(GRID).runs]
    assert len(set(names)) == len(names)
    assert names == [r.name for r in expand(GRID).runs]  # deterministic
    grown = GRID.replace("seeds = [0, 1, 2]", "seeds = [0, 1, 2, 3]").replace(
        '"sampler.k" = [1, 8]', '"sampler.k" = [1, 8, 32]'
    )
    grown_names = {r.name for r in expand(grown).runs}
    assert set(names) <= grown_names  # finished runs keep their names: resume finds them
    assert len(grown_names) == 2 * 3 * 2 * 4


def test_explicit_entries_alone_and_seeds_alone():
    only_runs = BASE + '[[grid.runs]]\nloss.name = "bce"\n[[grid.runs]]\nloss.name = "cce"\n'
    assert [r.name for r in expand(only_runs).runs] == ["loss=bce", "loss=cce"]
    only_seeds = BASE + "[grid]\nseeds = [3, 1]\n"
    runs = expand(only_seeds).runs
    assert [r.name for r in runs] == ["seed=3", "seed=1"]
    assert [r.config.train.seed for r in runs] == [3, 1]
    several = BASE + '[grid]\nseeds = [5]\nseed_keys = ["train.seed", "split.seed"]\n'
    (run,) = expand(several).runs
    assert run.name == "seed=5" and run.config.split.seed == 5 and run.config.train.seed == 5
    no_grid = expand(BASE)
    assert [r.name for r in no_grid.runs] == ["g"]


def test_names_are_sanitised_and_collisions_disambiguated():
    assert sanitize("a/b c") == "a_b_c"
    assert not sanitize(".hidden").startswith(".")
    assert run_name({"train.lr": 0.001, "eval.ks": [5, 10], "train.seed": 1}) == (
        "train.lr=0.001,eval.ks=5+10,seed=1"
    )
    text = BASE + '[grid]\n"data.root" = ["a/b", "a_b"]\n'
    names = [r.name for r in expand(text).runs]
    assert len(set(names)) == 2
    assert all(n.startswith("data.root=a_b-") and "/" not in n for n in names)
    long = BASE + '[grid]\n"data.root" = ["' + "x" * 300 + '"]\n'
    (run,) = expand(long).runs
    assert len(run.name) <= 120


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[grid]\nloss.nmae = ["bpr"]\n', "loss.nmae"),  # unknown key in a known section
        ('[grid]\n"los.name" = ["bpr"]\n', "los"),  # unknown section
        ("[[grid.runs]]\nsampler.kk = 3\n", "sampler.kk"),  # in an explicit entry
        ('[grid]\n"train.epochs" = ["two"]\n', "train.epochs"),  # wrong type
        ('[grid]\n"loss.name" = ["nope"]\n', "loss.name"),  # unknown plugin
        ('[grid]\n"sampler.k" = 3\n', "grid.sampler.k"),  # not a list
        ('[grid]\n"sampler.k" = [1, 1]\n', "grid.sampler.k"),  # repeated value
        ("[grid]\nseeds = [0, 0]\n", "grid.seeds"),
        ("[grid]\nseeds = []\n", "grid.seeds"),  # ran the base once, as if unset
        ("[grid]\nseeds = [-1]\n", "grid.seeds"),
        ('[grid]\nseeds = ["a"]\n', "grid.seeds"),
        ('[grid]\nname = ["x"]\n', "grid.name"),  # names are derived
        (
            '[grid]\n"loss.name" = ["bpr"]\n[[grid.runs]]\nloss.name = "cce"\n',
            "grid.runs[0].loss.name",
        ),
        ('[grid]\nseeds = [1]\n"train.seed" = [1, 2]\n', "grid.seeds"),
        ('[[grid.runs]]\nloss.name = "cce"\n[[grid.runs]]\nloss.name = "cce"\n', "grid.runs[1]"),
        # distinct as written, one config once typed: the same run twice (counted twice)
        ('[grid]\n"loss.margin" = [1, 1.0]\n', "grid"),
        (
            '[[grid.runs]]\nname = "a"\nmodel.dim = 8\n'  # the base already has dim 8
            '[[grid.runs]]\nname = "b"\nmodel.name = "mf"\n',  # and model mf
            "grid",
        ),
    ],
)
def test_bad_grids_fail_naming_the_key(text, key):
    with pytest.raises(ConfigError) as info:
        expand(BASE + text)
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)


def test_overrides_change_the_base_or_the_grid_but_not_a_varied_value(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(GRID)
    grid = load_grid(path, ["train.epochs=3", "grid.seeds=[7]", "grid.sampler.k=[4]"])
    assert len(grid.runs) == 2 * 1 * 2 * 1
    assert {r.config.train.epochs for r in grid.runs} == {3}
    assert {r.config.sampler.k for r in grid.runs} == {4}
    assert grid.runs[0].name == "loss=bpr,sampler.k=4,model=mf,seed=7"
    assert load_grid(path, folder=tmp_path / "elsewhere").runs[0].config.output == str(
        tmp_path / "elsewhere"
    )
    for varied in ("loss.name=bce", "train.seed=3", "model.name=mf"):
        with pytest.raises(ConfigError, match="varied by the grid"):
            load_grid(path, [varied])


def test_a_grid_is_not_a_single_run(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(GRID)
    with pytest.raises(ConfigError, match="negrec sweep"):
        load_config(path)


@pytest.mark.parametrize(("preset", "count"), [("simce", 18), ("hns", 42), ("loss-theory", 90)])
def test_presets_expand_with_registered_plugins(preset, count):
    grid = load_grid(preset, ["data.root=/nowhere"])
    assert len(grid.runs) == count
    assert len({r.name for r in grid.runs}) == count
    for run in grid.runs:
        assert run.config.model.name in MODELS.names()
        assert run.config.sampler.name in SAMPLERS.names()
        assert run.config.data.root == "/nowhere"
    seeds = {r.config.train.seed for r in grid.runs}
    assert seeds == {0, 1, 2}
    if preset == "loss-theory":
        assert {r.config.sampler.k for r in grid.runs} == {1, 5, 10, 20, 100}
        assert {r.config.loss.name for r in grid.runs} == {"bpr", "bce", "cce"}
    if preset == "simce":
        assert {(r.config.model.name, r.config.loss.name) for r in grid.runs} == {
            (m, loss) for m in ("mf", "lightgcn") for loss in ("bpr", "ssm", "simce")
        }
        # MF at the paper's batch; LightGCN at the CPU recipe of benchmarks/RESULTS.md
        recipes = {
            (
                r.config.model.name,
                r.config.train.batch_size,
                r.config.train.lr,
                r.config.train.epochs,
            )
            for r in grid.runs
        }
        assert recipes == {("mf", 1024, 1e-3, 500), ("lightgcn", 8192, 5e-3, 300)}


def test_sweep_dry_run_lists_the_runs(tmp_path, capsys):
    path = tmp_path / "g.toml"
    path.write_text(GRID)
    assert main(["sweep", str(path), "--dry-run", "--output", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "24 runs" in out
    assert "todo     loss=cce,sampler.k=8,lgcn-2,seed=2" in out
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    assert main(["sweep", str(path), "--set", "loss.nmae=x", "--dry-run"]) == 2
    assert "'loss.nmae'" in capsys.readouterr().err
