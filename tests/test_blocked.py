"""Blocked MF+BPR steps (negrec._fast.blocked, BlockedMFSteps) against the per-step fused
path: the same training up to float rounding, the same bits on any thread count, and a
non-finite loss stopping the block with its rows untouched."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from negrec._fast import fused
from negrec._fast.fused import BlockedMFSteps
from negrec.data.splits import random_split
from negrec.data.synthetic import synthetic_interactions
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import build_components
from negrec.samplers.base import Negatives
from negrec.samplers.uniform import UniformSampler
from negrec.train import TrainingDiverged, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = synthetic_interactions(n_users=50, n_items=70, mean_degree=9.0, n_clusters=3, seed=7)
SPLIT = random_split(DATA, 0.2, 0.1, 0)


def _config(optimizer: str, k: int, **train: Any) -> ExperimentConfig:
    loss: dict[str, Any] = {"name": "bpr"}
    if "neg_reduction" in train:
        loss["neg_reduction"] = train.pop("neg_reduction")
    raw = {
        "data": {"source": "synthetic"},
        "model": {"name": "mf", "dim": 8},
        "sampler": {"name": "uniform", "k": k},
        "loss": loss,
        "train": {
            "epochs": 3,
            "batch_size": 16,
            "lr": 0.02 if optimizer != "sgd" else 0.5,
            "optimizer": optimizer,
            "eval_every": 100,
            "patience": 0,
            **train,
        },
    }
    return ExperimentConfig.from_dict(raw)


def _train(config: ExperimentConfig) -> tuple[torch.nn.Module, list[float]]:
    parts = build_components(config, SPLIT)
    state = fit(parts.model, parts.sampler, parts.loss, SPLIT, config.train)
    return parts.model, [h["loss"] for h in state.history]


def _count_blocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the blocks run (their chunk counts)."""
    seen: list[int] = []
    real = fused.run_block

    def counted(chunks: int, *args: Any) -> int:
        seen.append(chunks)
        return real(chunks, *args)

    monkeypatch.setattr(fused, "run_block", counted)
    return seen


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam", "sgd"])
@pytest.mark.parametrize(
    ("k", "extra"), [(1, {}), (4, {"l2": 1e-3}), (3, {"neg_reduction": "mean"})]
)
def test_blocked_steps_train_as_the_per_step_fused_path(
    optimizer: str, k: int, extra: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of 3 steps (and the epoch's shorter last batch alone): the weights and loss
    history of the per-step fused path, up to float rounding."""
    monkeypatch.setattr(fused, "BLOCK_IDS", 3 * 16 * (1 + k))
    config = _config(optimizer, k, **extra)
    seen = _count_blocks(monkeypatch)
    model, losses = _train(config)
    assert len(seen) >= 3  # the blocked path ran, several blocks per epoch
    monkeypatch.setattr(BlockedMFSteps, "applies", staticmethod(lambda loss: False))
    reference, reference_losses = _train(config)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_negatives_drawn_a_block_ahead_are_the_ones_drawn_batch_by_batch(
    k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer draws a block's negatives in one sampler call (``drawn_ahead``): the
    same training, bit for bit, as one call per batch, with fewer calls."""
    monkeypatch.setattr(fused, "BLOCK_IDS", 4 * 16 * (1 + k))
    config = _config("adam", k)
    calls: list[int] = []
    real = UniformSampler.sample

    def counted(self: UniformSampler, users: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(users.numel())
        return real(self, users, *args, **kwargs)

    monkeypatch.setattr(UniformSampler, "sample", counted)
    model, losses = _train(config)
    ahead = list(calls)
    calls.clear()
    monkeypatch.setattr(UniformSampler, "draws_rows_in_order", property(lambda self: False))
    reference, reference_losses = _train(config)
    assert len(ahead) < len(calls) and sum(ahead) == sum(calls)
    assert max(ahead) == 4 * 16  # four batches of 16 pairs per call
    assert losses == reference_losses
    for name, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


@pytest.mark.parametrize(("layer", "serial"), [("omp", True), ("workqueue", False)])
def test_block_draws_run_on_one_numba_thread_on_the_openmp_layer(
    layer: str, serial: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On numba's OpenMP layer a parallel draw before a block slowed the block's threads
    to one thread's speed, so the draw ahead runs serially there (and gets its count back)."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one core: numba has one thread anyway")
    monkeypatch.setattr(numba, "threading_layer", lambda: layer)
    monkeypatch.setattr(fused, "BLOCK_IDS", 4 * 16 * 2)
    monkeypatch.setattr(fused, "ADAPTIVE_THREADS", False)
    restore = numba.get_num_threads()
    numba.set_num_threads(2)
    before = 2
    seen: list[int] = []
    real = UniformSampler.sample

    def counted(self: UniformSampler, *args: Any, **kwargs: Any) -> Any:
        seen.append(numba.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(UniformSampler, "sample", counted)
    try:
        _train(_config("adam", 1))
        assert numba.get_num_threads() == before
    finally:
        numba.set_num_threads(restore)
    assert seen and set(seen) == ({1} if serial else {before})


@pytest.mark.parametrize("k", [2, 20])
@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam", "sgd"])
def test_blocked_steps_give_the_same_bits_on_any_chunk_count(
    optimizer: str, k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1, 2, 3 and 4 threads (more than this machine's cores: the barrier yields) give the
    same weights bit for bit. One thread runs its own two-pass kernel
    (``block_one_thread``); K = 20 gives rows wider than the prefetched ones and a step
    whose ids outnumber the items."""
    monkeypatch.setattr(fused, "ADAPTIVE_THREADS", False)
    monkeypatch.setattr(fused, "BLOCK_IDS", 5 * 16 * 3)
    config = _config(optimizer, k, l2=1e-3)
    results = []
    for chunks in (1, 2, 3, 4):
        monkeypatch.setattr(fused, "mf_chunks", lambda work, chunks=chunks: chunks)
        seen = _count_blocks(monkeypatch)
        results.append(_train(config))
        assert seen and set(seen) == {chunks}
    for model, losses in results[1:]:
        assert losses == results[0][1]
        for name, value in results[0][0].state_dict().items():
            assert torch.equal(model.state_dict()[name], value), name


def _blocked_mf(optimizer: str) -> tuple[BlockedMFSteps, torch.nn.Module]:
    from negrec._fast.fused import fused_step
    from negrec.distributed import LOCAL
    from negrec.train import make_optimizer

    config = _config(optimizer, 1)
    parts = build_components(config, SPLIT)
    built = make_optimizer(parts.model, config.train)
    step = fused_step(
        parts.model, parts.loss, built, enabled=True, l2=0.0, precision="fp32",
        device=torch.device("cpu"), world=LOCAL,
    )  # fmt: skip
    assert step is not None
    return BlockedMFSteps(step), parts.model


@pytest.mark.parametrize("chunks", [1, 2])
def test_a_non_finite_step_stops_the_block_with_its_rows_untouched(
    chunks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 2 of 3 reads a user row of +inf (score inf - inf): step 1 is applied, step 2
    returns a non-finite loss and changes no row, step 3 never runs."""
    monkeypatch.setattr(fused, "ADAPTIVE_THREADS", False)
    monkeypatch.setattr(fused, "mf_chunks", lambda work: chunks)
    steps, model = _blocked_mf("lazy_adam")
    with torch.no_grad():
        model.user.weight[9] = float("inf")
    ids = torch.tensor([[20], [21]])
    assert steps(torch.tensor([0, 1]), torch.tensor([3, 4]), Negatives(ids=ids)) == []
    after_first = {}

    def first_only() -> None:
        one, reference = _blocked_mf("lazy_adam")
        with torch.no_grad():
            reference.load_state_dict(before)
        one(torch.tensor([0, 1]), torch.tensor([3, 4]), Negatives(ids=ids))
        one.flush()
        after_first.update({k: v.clone() for k, v in reference.state_dict().items()})

    before = {k: v.clone() for k, v in model.state_dict().items()}
    first_only()
    assert steps(torch.tensor([9, 2]), torch.tensor([5, 6]), Negatives(ids=ids)) == []
    assert steps(torch.tensor([7, 8]), torch.tensor([10, 11]), Negatives(ids=ids)) == []
    losses = steps.flush()
    assert len(losses) == 2 and np.isfinite(float(losses[0])) and not np.isfinite(float(losses[1]))
    for name, value in model.state_dict().items():
        assert torch.equal(value, after_first[name]), name


def test_fit_names_the_first_non_finite_batch_on_the_blocked_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _count_blocks(monkeypatch)
    config = _config("adam", 1)
    parts = build_components(config, SPLIT)
    with torch.no_grad():
        parts.model.item.weight.fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match="epoch 1, batch 1"):
        fit(parts.model, parts.sampler, parts.loss, SPLIT, config.train)
    assert seen
