"""Training: a fixed seed reproduces the history and the test metrics exactly; MF + BPR on
a small synthetic dataset beats a popularity ranking on test NDCG@10 by a wide margin;
early stopping restores (and checkpoints) the best weights, whose validation metric equals
the best logged value; a NaN loss raises TrainingDiverged naming the epoch and the batch.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from negrec._fast.fused import BlockedMFSteps
from negrec.data.splits import Split, random_split
from negrec.data.synthetic import synthetic_interactions
from negrec.errors import ConfigError
from negrec.evaluation import EvalConfig, evaluate
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import build_components
from negrec.train import (
    Callback,
    EarlyStopping,
    TrainingDiverged,
    TrainState,
    ValidationEval,
    fit,
)

METRIC = "ndcg@10"
EVAL = EvalConfig(ks=[10], auc=False)


@pytest.fixture(scope="module")
def split() -> Split:
    data = synthetic_interactions(n_users=200, n_items=300, mean_degree=30)
    return random_split(data, 0.2, 0.1, 0)


def experiment(**train) -> ExperimentConfig:
    options = {"epochs": 2, "lr": 0.05, "batch_size": 512, "metric": METRIC, **train}
    return ExperimentConfig.from_dict(
        {
            "model": {"name": "mf", "dim": 32},
            "sampler": {"name": "uniform", "k": 4},
            "loss": {"name": "bpr"},
            "train": options,
            "eval": {"ks": [10], "auc": False},
        }
    )


def train(split: Split, config: ExperimentConfig, callbacks=()) -> tuple[TrainState, nn.Module]:
    parts = build_components(config, split)
    state = fit(parts.model, parts.sampler, parts.loss, split, config.train, callbacks=callbacks)
    return state, parts.model


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if not k.endswith("_seconds")} for h in history]


class Popularity(nn.Module):
    """Scores every item by its number of training interactions."""

    def __init__(self, split: Split):
        super().__init__()
        degrees = torch.tensor(split.train.item_degrees, dtype=torch.float32)
        self.weight = nn.Parameter(degrees, requires_grad=False)

    def score_all(self, ctx: torch.Tensor) -> torch.Tensor:
        return self.weight.expand(ctx.numel(), -1)


# ----------------------------------------------------------------------------- determinism
def test_fixed_seed_gives_identical_history_and_test_metrics(split):
    runs = []
    for seed in (3, 3, 4):
        config = experiment(seed=seed)
        state, model = train(split, config, [ValidationEval(EVAL)])
        runs.append((untimed(state.history), evaluate(model, split, "test", EVAL).per_user))
    (history_a, test_a), (history_b, test_b), (history_c, _) = runs
    assert len(history_a) == 2 and f"valid/{METRIC}" in history_a[-1]
    assert history_a == history_b
    assert test_a.keys() == test_b.keys()
    for name in test_a:
        assert (test_a[name] == test_b[name]).all(), name
    assert history_a != history_c  # the seed matters, so the equality above means something


# ----------------------------------------------------------------------------- quality + ES
@pytest.fixture(scope="module")
def early_stopped(split, tmp_path_factory):
    """MF + BPR with a high learning rate, so validation NDCG peaks and then drops."""
    checkpoint = tmp_path_factory.mktemp("train") / "best.pt"
    config = experiment(epochs=15, patience=3, seed=0)
    stopper = EarlyStopping(METRIC, patience=3, checkpoint=checkpoint)
    state, model = train(split, config, [ValidationEval(EVAL), stopper])
    return state, model, stopper, checkpoint


def test_mf_bpr_beats_popularity_by_a_wide_margin(split, early_stopped):
    _, model, _, _ = early_stopped
    learned = evaluate(model, split, "test", EVAL).summary[METRIC]
    popular = evaluate(Popularity(split), split, "test", EVAL).summary[METRIC]
    assert popular > 0.02  # popularity is a real baseline here
    assert learned > 2 * popular and learned > popular + 0.1, (learned, popular)


def test_early_stopping_restores_the_best_weights(split, early_stopped):
    state, model, stopper, checkpoint = early_stopped
    logged = [h[f"valid/{METRIC}"] for h in state.history]
    # preconditions: training stopped early, after epochs worse than the best one
    assert state.stop and state.epoch < 15
    assert stopper.best_epoch < state.epoch
    assert logged[-1] < max(logged)
    assert stopper.best_value == max(logged) == logged[stopper.best_epoch - 1]
    restored = evaluate(model, split, "valid", EVAL).summary[METRIC]
    assert restored == pytest.approx(stopper.best_value, abs=1e-12)
    saved = torch.load(checkpoint)
    for key, value in model.state_dict().items():
        assert torch.equal(saved[key], value), key


# ----------------------------------------------------------------------------- divergence
def test_huge_learning_rate_raises_training_diverged(split):
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, batch \d+") as info:
        train(split, experiment(lr=1e30))
    assert "train.lr" in str(info.value)


def test_nan_loss_names_epoch_and_batch(split, monkeypatch):
    config = experiment(epochs=3)
    parts = build_components(config, split)
    batches_per_epoch = math.ceil(split.train.nnz / config.train.batch_size)
    calls = []
    real = parts.loss.rows
    real_fused = parts.loss.value_and_grad

    def nan_on_third_batch_of_epoch_two(pos, neg, **options):
        calls.append(1)
        value = real(pos, neg, **options)
        return value * math.nan if len(calls) == batches_per_epoch + 3 else value

    def nan_on_third_batch_fused(scores, **options):  # MF's default path: the fused step
        calls.append(1)
        value, grad = real_fused(scores, **options)
        return (value * math.nan if len(calls) == batches_per_epoch + 3 else value), grad

    parts.loss.rows = nan_on_third_batch_of_epoch_two  # type: ignore[method-assign]
    parts.loss.value_and_grad = nan_on_third_batch_fused  # type: ignore[method-assign]
    # (BPR's blocked steps compute the loss in compiled code: tests/test_blocked.py)
    monkeypatch.setattr(BlockedMFSteps, "applies", staticmethod(lambda loss: False))
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, batch 3\b"):
        fit(parts.model, parts.sampler, parts.loss, split, config.train)


def test_training_diverged_is_a_user_error():
    assert TrainingDiverged("x").exit_code == 2


def test_shared_candidates_fast_path_matches_gathered_scores():
    """In-batch negatives are scored once per batch ([B, d] @ [d, K]); the scores must
    equal those of the generic [B, K, d] gather path, for MF and the default method."""
    import dataclasses

    from negrec.data.synthetic import synthetic_interactions
    from negrec.models import MF, ModelConfig
    from negrec.samplers import SAMPLERS
    from negrec.train import Batch, score_batch

    data = synthetic_interactions(n_users=40, n_items=60, mean_degree=8, seed=1)
    model = MF(ModelConfig(dim=8), data, torch.Generator().manual_seed(0))
    sampler_cls = SAMPLERS.get("inbatch", "sampler.name")
    sampler = sampler_cls(sampler_cls.Config(name="inbatch"), data)
    users, items = data.to_coo()
    rows = torch.arange(0, 32)
    batch = Batch(
        ctx=torch.from_numpy(users)[rows],
        users=torch.from_numpy(users)[rows],
        pos=torch.from_numpy(items.copy())[rows],
    )
    negatives = sampler.sample(batch.users, batch.pos, 1, generator=torch.Generator())
    assert negatives.shared
    fast = score_batch(model, batch, negatives)
    slow = score_batch(model, batch, dataclasses.replace(negatives, shared=False))
    assert torch.allclose(fast[0], slow[0], atol=1e-6)
    assert torch.equal(torch.isinf(fast[1]), torch.isinf(slow[1]))
    finite = torch.isfinite(slow[1])
    assert torch.allclose(fast[1][finite], slow[1][finite], atol=1e-6)
    default = super(MF, model).score_candidates(batch.ctx, negatives.ids[0])
    assert torch.allclose(default, model.score_candidates(batch.ctx, negatives.ids[0]), atol=1e-6)


# ----------------------------------------------------------------------------- precision
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def experiment_on(device: str, model: dict, sampler: dict, loss: str, **train) -> ExperimentConfig:
    options = {"epochs": 2, "lr": 0.05, "batch_size": 512, "metric": METRIC, "device": device}
    return ExperimentConfig.from_dict(
        {
            "model": model,
            "sampler": sampler,
            "loss": {"name": loss},
            "train": {**options, **train},
            "eval": {"ks": [10], "auc": False},
        }
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model_name", ["mf", "lightgcn"])
def test_bf16_autocast_tracks_fp32_and_keeps_the_weights_float32(split, device, model_name):
    """Full softmax scores with one [B, d] @ [d, n] product, which autocast runs in bf16:
    the losses differ by bf16 rounding only, and the parameters stay float32. LightGCN's
    graph propagation stays float32 (regression: on CUDA its backward SpMM got a bf16
    gradient, which cuSPARSE rejects)."""
    model = {"name": model_name, "dim": 32}
    losses = {}
    for precision in ("fp32", "bf16"):
        config = experiment_on(device, model, {"name": "full"}, "softmax", precision=precision)
        state, trained = train(split, config, [ValidationEval(EVAL)])
        losses[precision] = [h["loss"] for h in state.history]
        assert all(p.dtype == torch.float32 for p in trained.parameters())
    assert losses["fp32"] != losses["bf16"]  # autocast did change the arithmetic
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("model", "sampler", "loss"),
    [
        ({"name": "mf", "dim": 16}, {"name": "uniform", "k": 4}, "bpr"),
        ({"name": "ncf", "dim": 16}, {"name": "popularity", "k": 8}, "cce"),
    ],
    ids=["mf-uniform-bpr", "ncf-popularity-cce"],
)
def test_compiled_step_trains_like_the_eager_step(split, device, model, sampler, loss):
    histories = []
    for compiled in (False, True):
        config = experiment_on(device, model, sampler, loss, compile=compiled, seed=1)
        state, _ = train(split, config, [ValidationEval(EVAL)])
        histories.append(untimed(state.history))
    eager, compiled_history = histories
    for a, b in zip(eager, compiled_history, strict=True):
        assert a.keys() == b.keys()
        # kernel fusion reorders float sums: the loss agrees up to rounding; a top-10
        # metric may flip a near-tie, so it gets a metric-sized tolerance
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)  # CUDA NCF: 3.5e-4 seen
        for key in a.keys() - {"loss"}:
            assert b[key] == pytest.approx(a[key], abs=1e-2), key


def test_compile_with_lazy_adam_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train\.compile"):
        experiment(compile=True, optimizer="lazy_adam")


# ----------------------------------------------------------------------------- lr schedule
class ParameterSnapshots(Callback):
    """The learning rate and a copy of the parameters at the end of every epoch."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.params: list[list[torch.Tensor]] = []

    def on_epoch_end(self, state: TrainState) -> None:
        assert state.optimizer is not None
        self.lrs.append(state.optimizer.param_groups[0]["lr"])
        self.params.append([p.detach().clone() for p in state.model.parameters()])


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam", "sgd"])  # lazy_adam, sgd: fused
def test_step_decay_lowers_the_rate_each_optimizer_steps_with(split, optimizer):
    lr = 1.0 if optimizer == "sgd" else 0.05
    snapshots = ParameterSnapshots()
    config = experiment(epochs=5, lr=lr, lr_decay=0.5, lr_decay_every=2, optimizer=optimizer)
    state, _ = train(split, config, [snapshots])
    assert snapshots.lrs == [lr, lr, lr / 2, lr / 2, lr / 4]
    assert [row["lr"] for row in state.history] == snapshots.lrs  # logged for plots

    # a rate decayed to almost nothing after epoch 1 freezes the weights from then on,
    # which shows the optimizer (and the fused step) really steps with the scheduled rate
    frozen = ParameterSnapshots()
    train(split, experiment(epochs=2, lr=lr, lr_decay=1e-9, optimizer=optimizer), [frozen])
    constant = ParameterSnapshots()
    train(split, experiment(epochs=2, lr=lr, optimizer=optimizer), [constant])
    for first, second, moved in zip(*frozen.params, constant.params[1], strict=True):
        assert torch.allclose(first, second, atol=1e-6)
        assert not torch.allclose(first, moved, atol=1e-3)  # without decay epoch 2 moves them


@pytest.mark.parametrize("setting", [{"lr_decay": 0.0}, {"lr_decay": 1.5}, {"lr_decay_every": 0}])
def test_bad_lr_schedule_is_a_config_error(setting):
    with pytest.raises(ConfigError, match=r"train\.lr_decay"):
        experiment(**setting)
