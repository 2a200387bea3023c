"""The bound monitor (negrec.monitor; paper (a), Di Teodoro et al., arXiv 2411.07770).

- its per-user ranks, losses, counts, holds and predictions equal a brute-force NumPy
  computation (docs/theory.md#notation) on a hand-built score matrix with ties (several
  batches, a K larger than some users' negative sets, and K = "all negatives");
- its draws of S_K are uniform without replacement over the user's negatives;
- on the worst case (docs/theory.md#worst-case) the measured holds-fractions match p_L;
- a run with the monitor trains exactly like one without it;
- the ``[monitor]`` config section, the runner, ``plot_bound_monitor`` and ``negrec report``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from negrec.data.interactions import Interactions
from negrec.data.splits import Split
from negrec.errors import ConfigError
from negrec.evaluation import EvalConfig
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.data import build_split
from negrec.experiment.runner import build_components
from negrec.monitor import BoundMonitor, monitor_key
from negrec.theory import (
    bound_probability,
    neg_log_ndcg,
    rank_of_positive,
    sampled_loss,
)
from negrec.train import ValidationEval, fit

LOSSES = ("cce", "bpr", "bce")


class FixedScores(nn.Module):
    """A 'model' whose scores are a given [n_users, n_items] table (the monitor's contract:
    ``score_all(ctx) -> [B, n_items]``)."""

    input_kind = "user"

    def __init__(self, table: np.ndarray):
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    def score_all(self, ctx: torch.Tensor) -> torch.Tensor:
        return self.table[ctx]

    def score(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.table[ctx].gather(1, items)


def rows_to_interactions(rows: list[np.ndarray], n_items: int) -> Interactions:
    users = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    items = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    return Interactions.from_arrays(users, items, n_users=len(rows), n_items=n_items)


def random_split(n_users: int, n_items: int, rng: np.random.Generator) -> Split:
    """Disjoint random train / valid / test rows; every user has >= 1 validation item."""
    train, valid, test = [], [], []
    for _ in range(n_users):
        perm = rng.permutation(n_items)
        a, b = rng.integers(1, n_items // 2), rng.integers(1, 4)
        train.append(perm[:a])
        valid.append(perm[a : a + b])
        test.append(perm[a + b : a + b + 1])
    return Split(
        train=rows_to_interactions(train, n_items),
        valid=rows_to_interactions(valid, n_items),
        test=rows_to_interactions(test, n_items),
    )


# ----------------------------------------------------------------------------- brute force
def test_monitor_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 30
    split = random_split(n_users, n_items, rng)
    table = np.round(rng.normal(0.0, 1.5, size=(n_users, n_items)), 1)  # coarse: many ties
    model = FixedScores(table)
    ks = [1, 5, 20, n_items]  # 20 exceeds some users' negatives; n_items means "all of them"
    monitor = BoundMonitor(ks, users=25, seed=1, batch_size=7)  # 4 batches
    logged = monitor.measure(model, split)
    rec = monitor.last
    assert rec is not None
    assert rec.users.size == 25 and len(set(rec.users.tolist())) == 25

    scores = table.astype(np.float32).astype(np.float64)  # what the model returns
    for i, (u, pos) in enumerate(zip(rec.users, rec.positives, strict=True)):
        assert pos in split.valid.items_of(u)
        known = set(split.train.items_of(u)) | set(split.valid.items_of(u))
        negatives = np.array([j for j in range(n_items) if j not in known])
        s_pos = scores[u, pos]
        r = int(rank_of_positive(s_pos, scores[u, negatives]))
        assert rec.rank[i] == r and rec.n_neg[i] == negatives.size
        assert rec.n0[i] == int((scores[u, negatives] >= 0).sum())
        target = float(neg_log_ndcg(r))
        for k in ks:
            kr = rec.by_k[k]
            ids = kr.ids[i][kr.drawn[i]]
            assert ids.size == min(k, negatives.size) == kr.k_eff[i]
            assert len(set(ids.tolist())) == ids.size and set(ids.tolist()) <= set(negatives)
            if k >= negatives.size:  # the whole negative set: no randomness left
                assert set(ids.tolist()) == set(negatives.tolist())
            s_neg = scores[u, ids]
            assert kr.gamma[i] == int((s_neg >= s_pos).sum())
            assert kr.gamma0[i] == int((s_neg >= 0).sum())
            for loss in LOSSES:
                value = float(sampled_loss(loss, s_pos, s_neg))
                assert kr.loss[loss][i] == pytest.approx(value, rel=1e-12, abs=1e-12)
                assert bool(kr.holds[loss][i]) == (target <= value)
                extra: dict[str, Any] = {"s_pos": s_pos, "n0": rec.n0[i]} if loss == "bce" else {}
                p = float(bound_probability(loss, negatives.size, ids.size, r, **extra))
                assert kr.predicted[loss][i] == pytest.approx(p, rel=1e-12)

    # the logged summary is the mean over users of those per-user values
    for k in ks:
        kr = rec.by_k[k]
        assert logged[monitor_key(k, "gamma")] == pytest.approx(kr.gamma.mean())
        for loss in LOSSES:
            assert logged[monitor_key(k, loss, "holds")] == pytest.approx(kr.holds[loss].mean())
    assert logged["bound/rank_median"] == pytest.approx(float(np.median(rec.rank)))
    # docs/theory.md#loss-chain on users with s+ >= 0: CCE <= BPR <= BCE for every sample
    nonneg = rec.s_pos >= 0
    for k in ks:
        lv = rec.by_k[k].loss
        assert np.all(lv["cce"][nonneg] <= lv["bpr"][nonneg] + 1e-12)
        assert np.all(lv["bpr"][nonneg] <= lv["bce"][nonneg] + 1e-12)


def test_draws_are_uniform_without_replacement() -> None:
    n_users, n_items, k = 3000, 10, 2
    rows = lambda items: rows_to_interactions([np.array(items)] * n_users, n_items)  # noqa: E731
    # every user: train {0, 1, 2}, valid {3}, so negatives are items 4..9 (N_- = 6)
    split = Split(train=rows([0, 1, 2]), valid=rows([3]), test=rows([4]))
    monitor = BoundMonitor([k], users=n_users, seed=5)
    monitor.measure(FixedScores(np.zeros((n_users, n_items))), split)
    assert monitor.last is not None
    ids = monitor.last.by_k[k].ids  # [U, K]
    assert np.all(ids[:, 0] != ids[:, 1]) and ids.min() >= 4
    counts = np.bincount(ids.ravel(), minlength=n_items)[4:]
    expected = n_users * k / 6  # 1000 each
    sd = math.sqrt(n_users * (k / 6) * (1 - k / 6))
    assert np.all(np.abs(counts - expected) < 5 * sd), counts


# ----------------------------------------------------------------------------- worst case
def test_worst_case_matches_theory() -> None:
    """docs/theory.md#worst-case: s+ = 0, r+ - 1 negatives tied at 0, the rest at -60,
    N_- = 999, K = 10.

    Every lemma is then an equality, so the measured fractions estimate p_L itself.
    """
    n_items, k, epochs = 1001, 10, 3
    ranks = np.array([10] * 1500 + [50] * 1500)
    n_users = ranks.size
    # item 0: the validation positive; item 1000: a training item; items 1..999: negatives
    table = np.full((n_users, n_items), -60.0)
    table[:, 0] = 0.0
    for r in (10, 50):
        table[np.ix_(ranks == r, np.arange(1, r))] = 0.0
    rows = lambda item: rows_to_interactions([np.array([item])] * n_users, n_items)  # noqa: E731
    split = Split(train=rows(1000), valid=rows(0), test=rows(999))
    monitor = BoundMonitor([k], users=n_users, seed=11)
    model = FixedScores(table)
    holds: dict[str, list[np.ndarray]] = {loss: [] for loss in LOSSES}
    for _ in range(epochs):  # repeated draws, as over epochs
        monitor.measure(model, split)
        rec = monitor.last
        assert rec is not None
        assert np.array_equal(rec.rank, ranks[rec.users])
        for loss in LOSSES:
            holds[loss].append(rec.by_k[k].holds[loss])
    rank = rec.rank
    kr = rec.by_k[k]
    # the lemmas hold with equality (up to e^-60)
    np.testing.assert_allclose(kr.loss["cce"], np.log1p(kr.gamma), atol=1e-20)
    np.testing.assert_allclose(kr.loss["bpr"], kr.gamma * math.log(2), atol=1e-20)
    np.testing.assert_allclose(kr.loss["bce"], (1 + kr.gamma0) * math.log(2), atol=1e-20)
    # docs/theory.md#theorem-1 worked table, N_- = 999, K = 10 (BCE with s+ = 0, n0 = r+ - 1)
    theory = {
        10: {"cce": 5.89432e-5, "bpr": 3.12996e-3, "bce": 0.0869006},
        50: {"cce": 4.85130e-5, "bpr": 0.0104398, "bce": 0.08248},
    }
    for r, expected in theory.items():
        group = rank == r
        for loss in LOSSES:
            assert kr.predicted[loss][group] == pytest.approx(expected[loss], rel=1e-4)
            measured = np.concatenate([h[group] for h in holds[loss]]).mean()
            n = group.sum() * epochs
            se = math.sqrt(expected[loss] * (1 - expected[loss]) / n)
            assert abs(measured - expected[loss]) < 4 * se + 2e-4, (r, loss, measured)


# ----------------------------------------------------------------------------- training
def tiny_experiment(**sections: Any) -> ExperimentConfig:
    raw: dict[str, Any] = {
        "name": "tiny",
        "data": {"synthetic": {"n_users": 60, "n_items": 80, "mean_degree": 12.0}},
        "model": {"name": "mf", "dim": 8},
        "sampler": {"name": "uniform", "k": 4},
        "loss": {"name": "bce"},
        "train": {"epochs": 4, "eval_every": 2, "lr": 0.01, "batch_size": 64, "patience": 0},
        "eval": {"ks": [10, 20]},
    }
    raw.update(sections)
    return ExperimentConfig.from_dict(raw)


def test_monitor_does_not_change_training() -> None:
    config = tiny_experiment()
    split = build_split(config.data, config.split)

    def train(with_monitor: bool) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
        parts = build_components(config, split)
        callbacks: list[Any] = [ValidationEval(EvalConfig(ks=[10, 20]), every=2)]
        if with_monitor:
            callbacks.append(BoundMonitor([1, 4, 50], users=30, seed=3))
        state = fit(
            parts.model, parts.sampler, parts.loss, split, config.train, callbacks=callbacks
        )
        return state.history, parts.model.state_dict()

    plain, plain_weights = train(False)
    watched, watched_weights = train(True)
    timing = {"train_seconds", "eval_seconds"}
    for a, b in zip(plain, watched, strict=True):
        bound = {key for key in b if key.startswith("bound/")}
        assert bool(bound) == any(key.startswith("valid/") for key in b)  # same epochs
        assert {key: v for key, v in a.items() if key not in timing} == {
            key: v for key, v in b.items() if key not in timing | bound
        }
    assert [h["epoch"] for h in watched if "bound/k=4/bce/holds" in h] == [2, 4]
    for name, tensor in plain_weights.items():
        assert torch.equal(tensor, watched_weights[name])


# ------------------------------------------------------------- config, runner, report
def test_monitor_config_section() -> None:
    config = tiny_experiment(monitor={"enabled": True, "users": 16, "k": [100, 1, 100]})
    assert config.monitor.sample_sizes(config.sampler.k) == [1, 100]
    assert tiny_experiment().monitor.sample_sizes(4) == [4]  # default: the training K
    stored = config.to_toml_dict()["monitor"]
    assert stored == {"enabled": True, "users": 16, "k": [100, 1, 100], "seed": 0}
    assert ExperimentConfig.from_dict({"monitor": stored}).monitor == config.monitor
    with pytest.raises(ConfigError, match=r"monitor\.k"):
        tiny_experiment(monitor={"k": [0]})
    with pytest.raises(ConfigError, match=r"monitor\.user"):
        tiny_experiment(monitor={"user": 3})


def test_runner_report_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from negrec.cli import main
    from negrec.experiment.report import has_bound_monitor, load_runs, plot_bound_monitor
    from negrec.experiment.runner import run_experiment

    paths = []
    for loss in ("bce", "simce"):  # simce has no bound of its own: all three are plotted
        extra = {"margin": 0.5} if loss == "simce" else {}
        config = tiny_experiment(
            name=f"tiny-{loss}",
            output=str(tmp_path / "runs"),
            loss={"name": loss, **extra},
            monitor={"enabled": True, "users": 20},
        )
        paths.append(run_experiment(config, progress=False))
    runs = load_runs([tmp_path / "runs"])
    assert has_bound_monitor(runs)
    history = runs[0].history
    assert {"bound/k=4/bce/holds", "bound/k=4/bce/predicted", "bound/k=4/gamma"} <= set(history)
    assert history["bound/k=4/cce/holds"].notna().tolist() == [False, True, False, True]

    out = plot_bound_monitor(runs, tmp_path / "plots" / "bound.png")
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"

    assert main(["report", str(tmp_path / "runs")]) == 0
    printed = capsys.readouterr().out
    assert "bound monitor plot:" in printed
    assert (tmp_path / "runs-bound-monitor.png").is_file()

    off = run_experiment(tiny_experiment(name="off", output=str(tmp_path / "off")), progress=False)
    assert not has_bound_monitor(load_runs([off]))
