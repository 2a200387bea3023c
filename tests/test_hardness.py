"""``negrec.hardness`` (sampling distribution over score ranks, implied beta) and the
``negrec hardness`` command.

Known answers for the pure pieces; exact cases of the measurement (the ``full`` sampler is
uniform over the negatives; DNS(M, N) with the pool equal to all n- negatives keeps ranks
1..M, so its measured beta is M/n-, Theorem 1's exact case); statistical checks with fixed
seeds for the rest; and the command end to end on a tiny trained run.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from negrec import hardness as H
from negrec.cli import main
from negrec.data.interactions import Interactions
from negrec.data.synthetic import synthetic_interactions
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import run_experiment
from negrec.hardness_cli import sampler_options
from negrec.models.base import ModelConfig
from negrec.models.mf import MF
from negrec.samplers import SAMPLERS, Sampler


# ------------------------------------------------------------------ pure functions
def test_default_ranks() -> None:
    assert H.default_ranks(195) == [1, 5, 10, 50, 100, 195]
    assert H.default_ranks(1000) == [1, 5, 10, 50, 100, 500, 1000]
    assert H.default_ranks(1) == [1]


def test_ranks_among_negatives_counts_strictly_higher_non_positives() -> None:
    scores = torch.tensor([[3.0, 1.0, 2.0, 2.0, 5.0]])
    positives = torch.tensor([[False, False, False, False, True]])  # item 4 scores highest
    ranks = H.ranks_among_negatives(scores, positives, torch.tensor([[0, 1, 2, 3, 4]]))
    assert ranks.tolist() == [[1, 4, 2, 2, 1]]  # ties share the best rank; 4 is not counted


def test_distribution_and_beta_known_answer() -> None:
    ranks = torch.tensor([[1, 3], [2, 2], [1, 1]])
    weights = torch.tensor([[0.5, 0.5], [2.0, 0.0], [1.0, 1.0]])
    valid = torch.tensor([[True, True], [True, True], [False, False]])  # row 2: all padding
    w = H.row_weights((3, 2), weights, valid, torch.device("cpu"))
    assert w.tolist() == [[0.5, 0.5], [1.0, 0.0], [0.0, 0.0]]
    np.testing.assert_allclose(H.cumulative_distribution(ranks, w, 4), [0.25, 0.75, 1.0, 1.0])
    n_neg = torch.tensor([4, 4, 4])
    # quantiles (r - 1/2) / 4: row 0 -> (0.125 + 0.625) / 2, row 1 -> 0.375; beta = 2 * mean
    assert H.measured_beta(ranks, w, n_neg) == pytest.approx(0.75)
    np.testing.assert_allclose(
        H.uniform_cumulative(torch.tensor([2, 4]), 4), [0.375, 0.75, 0.875, 1.0]
    )


def test_uniform_cumulative_is_the_mean_of_min_r_n_over_n() -> None:
    """The histogram form equals the [R, max_rank] definition, n- above max_rank included."""
    n_neg = torch.as_tensor(np.random.default_rng(0).integers(1, 90, 500))
    r = torch.arange(1, 61, dtype=torch.float64).unsqueeze(0)  # [1, 60]
    n = n_neg.to(torch.float64).unsqueeze(1)  # [500, 1]
    brute = (torch.minimum(r, n) / n).mean(dim=0).numpy()
    np.testing.assert_allclose(H.uniform_cumulative(n_neg, 60), brute, rtol=1e-13, atol=0)


def config(name: str, **options: Any):
    return SAMPLERS.config(name, {"name": name, **options}, "sampler")


def test_theoretical_beta() -> None:
    assert H.theoretical_beta(config("dns", k=5, pool=200)) == pytest.approx(0.025)
    assert H.theoretical_beta(config("softmax_v", rho=2.0, pool=10)) == pytest.approx(math.exp(-2))
    # exp(-10) asks for more than a pool of 200 gives: floored at its top 1 of 200
    assert H.theoretical_beta(config("softmax_v", rho=10.0, pool=200)) == pytest.approx(1 / 200)
    assert H.theoretical_beta(config("uniform")) == 1.0
    assert H.theoretical_beta(config("full")) == 1.0
    assert H.theoretical_beta(config("popularity")) is None


def test_table_and_atomic_write(tmp_path: Path) -> None:
    result = H.Hardness("x", np.array([0.5, 0.8, 1.0]), np.array([0.25, 0.5, 1.0]), None, 0.3, 2, 4)
    table = result.table([1, 3, 9])
    assert table["r"].tolist() == [1, 3] and table["ratio"].tolist() == [2.0, 1.0]

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        H.atomic_write(tmp_path / "a.csv", broken)
    assert list(tmp_path.iterdir()) == []
    png = H.plot(result, tmp_path / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and list(tmp_path.iterdir()) == [png]


# ------------------------------------------------------------------ measure()
TRAIN = synthetic_interactions(150, 240, 20.0, seed=1)
MODEL = MF(ModelConfig(name="mf", dim=16, init_std=1.0), TRAIN, torch.Generator().manual_seed(0))
USERS = torch.arange(150)


def measure(sampler: Sampler, train: Interactions = TRAIN, model: MF = MODEL, draws: int = 4):
    g = torch.Generator().manual_seed(0)
    return H.measure(model, train, sampler, USERS[: train.n_users], draws=draws, generator=g)


def build(name: str, train: Interactions = TRAIN, **options: Any) -> Sampler:
    return SAMPLERS.get(name, "sampler.name")(config(name, **options), train)


def test_full_catalogue_is_exactly_uniform() -> None:
    result = measure(build("full"), draws=1)
    # exact but for float32 score ties, which share the better rank
    np.testing.assert_allclose(result.cumulative, result.uniform, atol=1e-4)
    assert result.beta_measured == pytest.approx(1.0, abs=1e-4)


def test_uniform_sampler_measures_beta_one() -> None:
    result = measure(build("uniform", k=8))
    assert result.beta_measured == pytest.approx(1.0, abs=0.05)
    assert float(np.abs(result.cumulative - result.uniform).max()) < 0.05


def test_dns_with_all_negatives_as_pool_is_opauc_m_over_n() -> None:
    # every user holds 40 of 240 items: pool = 200 without replacement is all n- negatives
    rng = np.random.default_rng(0)
    rows = [rng.choice(240, 40, replace=False) for _ in range(50)]
    train = Interactions.from_arrays(
        np.repeat(np.arange(50), 40), np.concatenate(rows), n_users=50, n_items=240
    )
    model = MF(
        ModelConfig(name="mf", dim=16, init_std=1.0), train, torch.Generator().manual_seed(0)
    )
    result = measure(build("dns", train, k=5, pool=200, replacement=False), train, model)
    assert result.beta_measured == pytest.approx(5 / 200, rel=1e-9)
    assert result.beta_theory == pytest.approx(5 / 200)
    np.testing.assert_allclose(result.cumulative[:5], [0.2, 0.4, 0.6, 0.8, 1.0])


def test_dns_pool_measures_about_m_plus_one_over_n_plus_one() -> None:
    result = measure(build("dns", k=2, pool=20))
    assert result.beta_measured == pytest.approx(3 / 21, rel=0.15)
    assert result.beta_theory == pytest.approx(0.1)
    top10 = result.table([10])["ratio"].iloc[0]
    assert top10 > 5  # far harder than uniform at the head


def test_softmax_v_hardness_grows_with_rho() -> None:
    betas = [measure(build("softmax_v", rho=rho, pool=32)).beta_measured for rho in (1e-6, 1, 8)]
    assert betas[0] == pytest.approx(1.0, abs=0.06)
    assert betas[0] > betas[1] > betas[2]


def _planted_false_negatives() -> tuple[Interactions, Interactions, MF]:
    """50 users x 240 items: each user trains on 40 items, holds out item ``u`` (not among
    them), and the model scores that held-out item above every other item."""
    rng = np.random.default_rng(3)
    rows = [rng.choice(np.setdiff1d(np.arange(60, 240), [u]), 40, replace=False) for u in range(50)]
    train = Interactions.from_arrays(
        np.repeat(np.arange(50), 40), np.concatenate(rows), n_users=50, n_items=240
    )
    held = Interactions.from_arrays(np.arange(50), np.arange(50), n_users=50, n_items=240)
    model = MF(ModelConfig(name="mf", dim=50, init_std=0.0), train, torch.Generator())
    with torch.no_grad():  # score(u, i) = 1 if i == u else 0
        model.user.weight.copy_(torch.eye(50))
        model.item.weight.zero_()
        model.item.weight[:50] = torch.eye(50)
    return train, held, model


def test_held_out_counts_leave_out_training_items_and_repeats() -> None:
    def part(users: list[int], items: list[int]) -> Interactions:
        return Interactions.from_arrays(np.array(users), np.array(items), n_users=3, n_items=5)

    train, valid, test = (
        part([0, 0, 1], [1, 2, 0]),
        part([0, 0, 1], [2, 3, 4]),
        part([0, 1], [3, 1]),
    )
    # user 0: {2, 3} held out, 2 is a training item -> 1; user 1: {4, 1} -> 2; user 2: none
    counts = H.held_out_counts(torch.tensor([0, 1, 2]), (valid, test), train)
    assert counts.tolist() == [1, 2, 0]


def test_dns_over_all_negatives_draws_the_planted_false_negative() -> None:
    """DNS(1) over every negative keeps the top-scored one: the held-out item, every time;
    uniform draws over the 200 negatives hit it 1 time in 200."""
    train, held, model = _planted_false_negatives()
    users = torch.arange(50)
    for name, options, share in (
        ("dns", {"k": 1, "pool": 200, "replacement": False}, 1.0),
        ("full", {}, 1 / 200),
    ):
        sampler = build(name, train, **options)
        g = torch.Generator().manual_seed(0)
        result = H.measure(model, train, sampler, users, draws=2, generator=g, held_out=(held,))
        assert result.held_out_share == pytest.approx(share)
        assert result.held_out_uniform == pytest.approx(1 / 200)
    assert measure(build("uniform", k=4)).held_out_share is None  # not asked for


def test_inbatch_and_popularity_are_measured() -> None:
    for sampler in (build("inbatch"), build("popularity", alpha=1.0)):
        result = measure(sampler)
        assert 0 < result.beta_measured < 2 and result.beta_theory is None
        assert result.cumulative[-1] == pytest.approx(1.0)


def integer_model() -> MF:
    """MODEL with small-integer embeddings: its float32 scores are exact, so they do not
    depend on how many users one ``score_all`` call holds (a BLAS kernel's rounding does)."""
    model = copy.deepcopy(MODEL)
    with torch.no_grad():
        for table in (model.user.weight, model.item.weight):
            table.copy_(torch.round(table * 2))
    return model


@pytest.mark.parametrize("name", ["full", "uniform", "dns", "softmax_v"])
def test_user_blocks_do_not_change_the_measurement(name: str) -> None:
    """Ranking 1, 7 or 64 users at a time (a last block of 1 included) gives exactly the
    result of one block of every user."""
    sampler = build(name, **({"pool": 16} if name in ("dns", "softmax_v") else {}))
    model, users = integer_model(), USERS[:129]

    def run(block: int) -> H.Hardness:
        g = torch.Generator().manual_seed(0)
        return H.measure(model, TRAIN, sampler, users, draws=3, generator=g, block_users=block)

    whole = run(users.numel())
    for block in (1, 7, 64):
        part = run(block)
        np.testing.assert_array_equal(part.cumulative, whole.cumulative)
        np.testing.assert_array_equal(part.uniform, whole.uniform)
        assert part.beta_measured == whole.beta_measured
        assert (part.n_users, part.n_rows) == (whole.n_users, whole.n_rows)
    with pytest.raises(ValueError, match="block_users"):
        run(0)


# ------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    raw = {
        "name": "tiny",
        "output": str(out),
        "data": {"synthetic": {"n_users": 80, "n_items": 120, "mean_degree": 15.0}},
        "model": {"name": "mf", "dim": 8},
        "sampler": {"name": "softmax_v", "pool": 16, "rho": 1.0},
        "train": {"epochs": 1, "batch_size": 256, "lr": 0.01},
    }
    return run_experiment(ExperimentConfig.from_dict(raw), progress=False)


def table_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")][2:]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_command_dns(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "hardness",
        str(run_dir),
        "--sampler",
        "dns",
        "--set",
        "sampler.pool=20",
        "--set",
        "sampler.k=2",
        "--users",
        "40",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert [r[0] for r in rows][:3] == ["1", "5", "10"]
    assert all(float(r[1]) >= float(r[2]) for r in rows)  # DNS dominates uniform
    assert "implied beta of OPAUC(beta): theory 0.1, measured" in out
    png, csv = tmp_path / "hardness-dns-pool20-k2.png", tmp_path / "hardness-dns-pool20-k2.csv"
    assert png.read_bytes()[:4] == b"\x89PNG"
    frame = pd.read_csv(csv)
    assert list(frame.columns) == [
        "r",
        "sampler",
        "uniform",
        "ratio",
        "beta_theory",
        "beta_measured",
        "held_out_share",
        "held_out_uniform",
    ]
    assert "false negatives: " in out and "of the drawn weight falls on the user's" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([png.name, csv.name])
    assert main(argv) == 0  # deterministic under the seed
    assert capsys.readouterr().out == out


def test_command_defaults_to_the_runs_sampler(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "hardness",
                str(run_dir),
                "--users",
                "20",
                "--out",
                str(tmp_path),
                "--set",
                "sampler.pool=8",
                "--ranks",
                "1,2,3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "sampler softmax_v-pool8" in out and [r[0] for r in table_rows(out)] == ["1", "2", "3"]
    assert f"theory {math.exp(-1):.4g}" in out


def test_sampler_options_follow_pool_for_weighted_pools() -> None:
    run = {"name": "softmax_v", "k": 50, "pool": 50, "rho": 1.0}
    assert sampler_options(run, None, ["sampler.pool=10"]) == {
        "name": "softmax_v",
        "pool": 10,
        "rho": 1.0,
    }
    assert sampler_options(run, "dns", ["sampler.k=3"]) == {"name": "dns", "k": 3}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "nope"], "unknown sampler 'nope'"),
        (["--set", "loss.name=cce"], "--set takes sampler options"),
        (["--sampler", "dns", "--set", "sampler.k=30", "--set", "sampler.pool=20"], "sampler.k"),
        (["--users", "0"], "--users must be >= 1"),
        (["--ranks", "1,x"], "--ranks must be comma-separated integers"),
        (["--device", "nodevice"], "--device nodevice"),
        (["--ranks", "99999"], "every rank is beyond"),  # wrote a CSV of headers only
    ],
)
def test_command_bad_input_is_one_line(
    run_dir: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hardness", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("negrec: error:") and message in err and err.count("\n") == 1


def test_command_needs_a_run_with_weights(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hardness", str(tmp_path / "missing")]) == 2
    assert "not a finished run directory" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.toml").write_text((run_dir / "config.toml").read_text())
    (broken / "best.pt").write_bytes(b"not a checkpoint")
    assert main(["hardness", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "cannot load the run's weights" in err and err.count("\n") == 1
