"""Aggregation over seeds (negrec.experiment.aggregate) on hand-built run directories
with known values: groups = config minus seeds; mean and sample std (ddof = 1) match
hand computation; the paired t-test between the best and the runner-up matches a
closed form (Student's t with 2 degrees of freedom) and pairs by seed, not by position;
markdown and booktabs LaTeX tables, plots, and ``negrec report`` printing the aggregate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import write_fake_run

from negrec.cli import main
from negrec.errors import NegrecError
from negrec.experiment.aggregate import (
    PairedTest,
    aggregate,
    describe,
    group_runs,
    latex_table,
    legend_text,
    markdown_table,
    paired_test,
    seeds_repeat,
    write_report,
)
from negrec.experiment.report import comparison_table, load_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# test ndcg@20 per seed: cce is best, bpr the runner-up, bce last
VALUES = {
    "bpr": {0: 0.20, 1: 0.22, 2: 0.24},
    "cce": {0: 0.25, 1: 0.26, 2: 0.30},
    "bce": {0: 0.10, 1: 0.12, 2: 0.11},
}


def write_run(folder: Path, name: str, loss: str, seed: int, value: float, k: int = 4) -> Path:
    """A complete run directory written by hand (no training)."""
    history = [
        {"epoch": e, "loss": 1.0 / e, "valid/ndcg@20": value * e / 3 + 0.01 * seed}
        for e in (1, 2, 3)
    ]
    return write_fake_run(
        folder,
        name,
        loss=loss,
        seed=seed,
        k=k,
        history=history,
        valid={"ndcg@20": value + 0.01},
        test={"ndcg@20": value, "recall@20": 2 * value},
    )


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "sweep"
    # written in a scrambled order: grouping and pairing must not depend on it
    for seed in (2, 0, 1):
        for loss in ("cce", "bce", "bpr"):
            write_run(folder, f"loss={loss},seed={seed}", loss, seed, VALUES[loss][seed])
    return folder


def test_groups_are_configs_minus_seeds(runs_dir):
    groups = group_runs(load_runs([runs_dir]))
    assert sorted(g.label for g in groups) == ["loss=bce", "loss=bpr", "loss=cce"]
    for group in groups:
        assert group.n == 3
        assert [dict(s)["train.seed"] for s in group.seeds] == [0, 1, 2]
        assert "train.seed" not in group.config and "name" not in group.config
    assert seeds_repeat(load_runs([runs_dir]))


def test_a_repeated_seed_in_one_group_is_refused_naming_both_runs(runs_dir):
    """Regression: a rerun saved beside the original (``NAME-2``) was counted as a fourth
    replicate: n = 4, a shrunken std, and by_seed kept only one of the two."""
    write_run(runs_dir, "loss=bpr,seed=0-2", "bpr", 0, VALUES["bpr"][0])
    with pytest.raises(NegrecError, match=r"loss=bpr,seed=0 and .*loss=bpr,seed=0-2") as info:
        group_runs(load_runs([runs_dir]))
    assert "train.seed = 0" in str(info.value)
    assert main(["report", str(runs_dir)]) == 2  # the CLI prints it and exits 2


def test_a_run_folder_named_twice_is_read_once(runs_dir):
    runs = load_runs([runs_dir, runs_dir / "loss=bpr,seed=1", runs_dir / ".." / "sweep"])
    assert len(runs) == 9
    assert all(g.n == 3 for g in group_runs(runs))


def test_means_and_sample_stds_match_hand_computation(runs_dir):
    agg = aggregate(load_runs([runs_dir]))
    assert agg.columns == ["valid ndcg@20", "test ndcg@20", "test recall@20"]
    cells = {g.label: row for g, row in zip(agg.groups, agg.cells, strict=True)}
    # bpr: mean 0.22, deviations -0.02, 0, 0.02 -> var = 0.0008 / 2 -> std 0.02
    mean, std = cells["loss=bpr"][1]
    assert mean == pytest.approx(0.22, abs=1e-12) and std == pytest.approx(0.02, abs=1e-12)
    # cce: mean 0.27, deviations -0.02, -0.01, 0.03 -> var = 0.0014 / 2 = 0.0007
    mean, std = cells["loss=cce"][1]
    assert mean == pytest.approx(0.27, abs=1e-12)
    assert std == pytest.approx(math.sqrt(0.0007), abs=1e-12)
    # bce: 0.10, 0.12, 0.11 -> mean 0.11, std 0.01; recall = 2x: mean 0.22, std 0.02
    assert cells["loss=bce"][1] == pytest.approx((0.11, 0.01), abs=1e-12)
    assert cells["loss=bce"][2] == pytest.approx((0.22, 0.02), abs=1e-12)
    assert cells["loss=cce"][0][0] == pytest.approx(0.28, abs=1e-12)  # valid = test + 0.01
    assert agg.best(1) == agg.groups.index(next(g for g in agg.groups if g.label == "loss=cce"))


def test_paired_t_test_matches_the_closed_form(runs_dir):
    agg = aggregate(load_runs([runs_dir]))
    test = paired_test(agg.groups, "ndcg@20")
    assert isinstance(test, PairedTest)
    assert (test.best, test.runner_up, test.n) == ("loss=cce", "loss=bpr", 3)
    # differences cce - bpr by seed: 0.05, 0.04, 0.06 -> mean 0.05, sd 0.01 (ddof 1)
    # t = 0.05 / (0.01 / sqrt(3)) = 5 sqrt(3); with 2 dof, P(|T| > t) = 1 - t / sqrt(t^2 + 2)
    t = 5 * math.sqrt(3)
    assert test.mean_diff == pytest.approx(0.05, abs=1e-12)
    assert test.t == pytest.approx(t, rel=1e-9)
    assert test.p == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)  # 0.01307...
    assert test.p == pytest.approx(0.013072, abs=1e-6)


def test_pairs_by_seed_and_needs_two_shared_seeds(tmp_path):
    folder = tmp_path / "runs"
    best = {0: 0.30, 1: 0.31, 3: 0.50, 5: 0.36}  # seed 3 and 5 have no partner
    second = {1: 0.29, 0: 0.26, 4: 0.10, 5: 0.33}
    for seed, value in best.items():
        write_run(folder, f"cce-{seed}", "cce", seed, value)
    for seed, value in second.items():
        write_run(folder, f"bpr-{seed}", "bpr", seed, value)
    test = paired_test(group_runs(load_runs([folder])), "ndcg@20")
    assert isinstance(test, PairedTest) and test.n == 3  # seeds 0, 1, 5
    # differences 0.04, 0.02, 0.03: mean 0.03, sd 0.01 -> t = 0.03 / (0.01 / sqrt 3)
    assert test.t == pytest.approx(3 * math.sqrt(3), rel=1e-9)
    t = 3 * math.sqrt(3)
    assert test.p == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)

    lone = tmp_path / "lone"
    write_run(lone, "a", "cce", 0, 0.3)
    write_run(lone, "b", "bpr", 1, 0.2)
    message = paired_test(group_runs(load_runs([lone])), "ndcg@20")
    assert isinstance(message, str) and "share 0 seed" in message
    assert not seeds_repeat(load_runs([lone]))


def test_tables_and_report_files(runs_dir, tmp_path):
    runs = load_runs([runs_dir])
    agg = aggregate(runs)
    md = markdown_table(agg)
    assert md.splitlines()[0] == "| group | runs | valid ndcg@20 | test ndcg@20 | test recall@20 |"
    cce = next(line for line in md.splitlines() if "`loss=cce`" in line)
    assert "**0.2700 ± 0.0265**" in cce  # the best mean in bold
    bpr = next(line for line in md.splitlines() if "`loss=bpr`" in line)
    assert "| 3 | 0.2300 ± 0.0200 | 0.2200 ± 0.0200 |" in bpr

    tex = latex_table(agg, paired_test(agg.groups, "ndcg@20"))
    for piece in ("\\toprule", "\\midrule", "\\bottomrule", "\\texttt{loss=cce}"):
        assert piece in tex
    assert "$\\mathbf{0.2700} \\pm 0.0265$" in tex
    assert "$t = 8.660$" in tex and "$p = 0.0131$" in tex

    report = write_report(runs, tmp_path / "out")
    names = {p.name for p in report.files}
    assert names == {"report.md", "report.tex", "valid-ndcg@20-mean.png"}  # K is fixed
    assert "p = 0.0131" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "valid-ndcg@20-mean.png").read_bytes()[:8] == PNG_MAGIC


def test_metric_vs_k_plot_when_k_varies(tmp_path):
    folder = tmp_path / "runs"
    for k, base in ((1, 0.1), (5, 0.2), (20, 0.25)):
        for loss, shift in (("bpr", 0.0), ("cce", 0.03)):
            for seed in (0, 1):
                write_run(folder, f"{loss}-{k}-{seed}", loss, seed, base + shift + 0.01 * seed, k)
    report = write_report(load_runs([folder]), tmp_path / "out")
    plot = tmp_path / "out" / "ndcg@20-vs-k.png"
    assert plot in report.files and plot.read_bytes()[:8] == PNG_MAGIC
    labels = {g.label for g in report.aggregate.groups}
    assert "loss=cce,sampler.k=20" in labels


def test_report_command_prints_the_aggregate(runs_dir, capsys):
    assert main(["report", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "| run |" in out  # the per-run table is still there
    assert "aggregated over seeds" in out and "`loss=cce`" in out
    assert "p = 0.0131" in out
    folder, stem = runs_dir.parent, runs_dir.name  # beside the plot, named after the runs
    assert (folder / f"{stem}-report.md").is_file() and (folder / f"{stem}-report.tex").is_file()
    assert json.loads((runs_dir / "loss=cce,seed=0" / "summary.json").read_text())["seed"] == 0


def test_runs_from_before_a_new_config_key_group_with_runs_after_it(runs_dir):
    """Regression (the simce preset's report, session 4): runs made before
    ``train.fused`` existed lack the key in config.toml; read with the default filled in,
    they group with new runs of the same experiment instead of splitting the label."""
    import tomllib

    from negrec.experiment import rundir

    for path in sorted(runs_dir.glob("loss=cce,*"))[:2]:
        stored = tomllib.loads((path / "config.toml").read_text())
        del stored["train"]["fused"]
        rundir.write_toml(path / "config.toml", stored)
    groups = group_runs(load_runs([runs_dir]))
    assert sorted(g.label for g in groups) == ["loss=bce", "loss=bpr", "loss=cce"]
    assert all(g.n == 3 for g in groups)


def test_labels_leave_out_default_values_but_stay_distinct(tmp_path):
    """Regression (the simce preset's report): a BPR group beside SimCE groups with
    margin 16 was labelled ``loss=bpr,loss.margin=1.0`` although BPR has no margin.
    Values equal to negrec's defaults are left out of labels; plugin names stay, and a
    group whose every varying value is a default keeps a distinct label."""
    folder = tmp_path / "sweep"
    for seed in (0, 1):
        write_run(folder, f"loss=bpr,seed={seed}", "bpr", seed, 0.2)
        for margin in (1.0, 16.0):
            write_fake_run(
                folder,
                f"loss=simce,loss.margin={margin},seed={seed}",
                loss="simce",
                seed=seed,
                k=4,
                history=[{"epoch": 1, "loss": 1.0, "valid/ndcg@20": 0.1}],
                valid={"ndcg@20": 0.1},
                test={"ndcg@20": 0.1},
                config={"loss": {"name": "simce", "margin": margin}},
            )
    labels = sorted(g.label for g in group_runs(load_runs([folder])))
    assert labels == ["loss=bpr", "loss=simce", "loss=simce,loss.margin=16.0"]


def test_legend_text_wraps_long_labels_at_commas():
    label = "model=lightgcn,loss=ssm,model.layers=3,sampler.k=32,train.epochs=40,train.lr=0.005"
    lines = legend_text(label, width=30).split("\n")
    assert ",".join(lines) == label  # nothing lost, every break at a comma
    assert len(lines) == 3 and all(len(line) <= 30 for line in lines)
    assert legend_text("loss=bpr") == "loss=bpr"


def test_labels_read_defaults_from_each_runs_own_model():
    """Regression (the simce preset's report): LightGCN groups beside MF ones read
    ``model=lightgcn,model.layers=3`` although 3 is LightGCN's default: defaults came from
    MF, which has no ``layers``. A non-default value of the run's own model still shows."""
    keys = ["model.name", "model.layers", "loss.name", "loss.margin"]
    lightgcn = {"model.name": "lightgcn", "model.layers": 3, "loss.name": "bpr"}
    assert describe(lightgcn, keys) == "model=lightgcn,loss=bpr"
    assert (
        describe({**lightgcn, "model.layers": 2}, keys) == "model=lightgcn,model.layers=2,loss=bpr"
    )
    simce = {"model.name": "mf", "loss.name": "simce", "loss.margin": 16.0}
    assert describe(simce, keys) == "model=mf,loss=simce,loss.margin=16.0"
    unknown = {"model.name": "not-a-model", "model.layers": 3}  # a plugin from elsewhere
    assert describe(unknown, keys) == "model=not-a-model,model.layers=3"


def test_tables_show_the_cutoffs_the_runs_report(tmp_path):
    """Regression (the hns runs, eval.ks = [5, 20, 50]): the run table printed empty
    recall@10 / ndcg@10 columns and left out recall@50, the metric being compared."""
    test = {"recall@5": 0.1, "ndcg@5": 0.2, "recall@50": 0.3, "ndcg@50": 0.4, "mrr": 0.5}
    for seed in (0, 1):
        write_fake_run(
            tmp_path,
            f"seed={seed}",
            loss="bpr",
            seed=seed,
            k=1,
            history=[{"epoch": 1, "loss": 1.0, "valid/ndcg@50": 0.1}],
            valid={"ndcg@50": 0.1},
            test=test,
            config={
                "train": {"seed": seed, "epochs": 3, "metric": "ndcg@50"},
                "eval": {"ks": [5, 50]},
            },
        )
    runs = load_runs([tmp_path])
    header = comparison_table(runs).splitlines()[0]
    columns = [c.strip() for c in header.strip("|").split("|")]
    wanted = ["recall@5", "ndcg@5", "recall@50", "ndcg@50", "mrr"]
    assert columns[-5:] == [f"test {m}" for m in wanted]
    assert "test recall@10" not in columns
    # the aggregate leads with the selection metric (ndcg@20 in these summaries, which
    # the runs do not report), then the same columns
    assert aggregate(runs).columns[1:] == [f"test {m}" for m in wanted]


def test_equal_differences_up_to_rounding_give_no_t_test(tmp_path):
    """Regression: differences equal but for float rounding (0.3 - 0.2 and 0.2 - 0.1) gave
    t ~ 7e15 and p ~ 1e-16, a 'significant' result that only rounding made."""
    folder = tmp_path / "runs"
    for seed, (good, base) in enumerate([(0.2, 0.1), (0.3, 0.2)]):
        write_run(folder, f"cce-{seed}", "cce", seed, good)
        write_run(folder, f"bpr-{seed}", "bpr", seed, base)
    test = paired_test(group_runs(load_runs([folder])), "ndcg@20")
    assert isinstance(test, PairedTest)
    assert math.isnan(test.t) and math.isnan(test.p)
    assert "t = n/a" in test.describe() and "differences are all equal" in test.describe()
