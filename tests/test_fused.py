"""The fused MF step (negrec._fast.fused) against the autograd path it replaces.

The fused step must give the autograd path's updates (``optimizer = "lazy_adam"`` or
``"sgd"``, ``fused = false``) up to float rounding, for every loss, with the samplers that attach
``log_q``, ``weights`` or a ``valid`` mask, with the explicit L2 and Adam's weight decay;
fall back to the autograd path where it does not apply (in-batch negatives, the whole
catalogue); and leave the weights alone when the loss is not finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from negrec._fast.fused import FusedMFStep, fused_step
from negrec.data.splits import random_split
from negrec.data.synthetic import synthetic_interactions
from negrec.distributed import LOCAL
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import build_components
from negrec.losses import LOSSES, Loss, LossConfig, make_loss
from negrec.samplers.base import Negatives
from negrec.train import TrainConfig, TrainingDiverged, fit, make_optimizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = synthetic_interactions(n_users=40, n_items=60, mean_degree=9.0, n_clusters=3, seed=5)
SPLIT = random_split(DATA, 0.2, 0.1, 0)
SAMPLERS: dict[str, dict[str, Any]] = {
    "uniform": {"name": "uniform", "k": 4},
    "popularity": {"name": "popularity", "k": 4},  # log_q
    "softmax_v": {"name": "softmax_v", "pool": 10},  # weights, scored by the model
    "dns": {"name": "dns", "k": 2, "pool": 8},
    "uniform_distinct": {"name": "uniform", "k": 5, "replacement": False},
    "inbatch": {"name": "inbatch"},  # shared candidates: the fused step does not apply
}


def _trained(loss: str, sampler: dict[str, Any], fused: bool, **train: Any) -> torch.nn.Module:
    raw = {
        "data": {"source": "synthetic"},
        "model": {"name": "mf", "dim": 8},
        "sampler": sampler,
        "loss": {"name": loss},
        "train": {
            "epochs": 3,
            "batch_size": 16,
            "lr": 0.02,
            "optimizer": "lazy_adam",
            "fused": fused,
            "eval_every": 100,
            "patience": 0,
            **train,
        },
    }
    config = ExperimentConfig.from_dict(raw)
    parts = build_components(config, SPLIT)
    state = fit(parts.model, parts.sampler, parts.loss, SPLIT, config.train)
    parts.model.losses = [h["loss"] for h in state.history]  # type: ignore[assignment]
    return parts.model


@pytest.mark.parametrize("loss", sorted(set(LOSSES.names()) - {"softmax"}))
@pytest.mark.parametrize("sampler", ["uniform", "popularity", "softmax_v"])
def test_fused_training_equals_the_autograd_path(loss: str, sampler: str) -> None:
    """Three epochs, with the explicit L2 and Adam's weight decay on: same weights and
    the same loss history as ``fused = false``, up to float rounding."""
    options = {"l2": 1e-3, "weight_decay": 1e-4}
    fused = _trained(loss, SAMPLERS[sampler], True, **options)
    plain = _trained(loss, SAMPLERS[sampler], False, **options)
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[name], value, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused.losses, plain.losses, rtol=1e-5)


@pytest.mark.parametrize("loss", sorted(set(LOSSES.names()) - {"softmax"}))
@pytest.mark.parametrize("sampler", ["uniform", "popularity", "softmax_v"])
def test_fused_sgd_training_equals_the_autograd_path(loss: str, sampler: str) -> None:
    """The same with plain SGD (dense autograd gradients and ``torch.optim.SGD`` on the
    other side) and the explicit L2."""
    options = {"optimizer": "sgd", "lr": 0.5, "l2": 1e-3}
    fused = _trained(loss, SAMPLERS[sampler], True, **options)
    plain = _trained(loss, SAMPLERS[sampler], False, **options)
    start = _trained(loss, SAMPLERS[sampler], True, **{**options, "lr": 1e-12})
    assert not torch.equal(fused.item.weight, start.item.weight)  # it did train
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[name], value, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused.losses, plain.losses, rtol=1e-5)


@pytest.mark.parametrize("loss", ["bpr", "bce", "cce"])
@pytest.mark.parametrize(
    "sampler", ["uniform", "popularity", "softmax_v", "dns", "uniform_distinct", "inbatch"]
)
def test_default_adam_on_the_fused_path_equals_dense_torch_adam(loss: str, sampler: str) -> None:
    """The default ``optimizer = "adam"`` on MF runs RowwiseAdam in the fused step (every
    row's momentum-only steps applied when it is next read); ``fused = false`` is torch's
    dense Adam through autograd. Three epochs with the explicit L2 and a decaying lr: the
    same weights and losses up to float rounding, including samplers that score with the
    model (DNS, Softmax-v) and in-batch negatives (the autograd fall-back)."""
    options = {"optimizer": "adam", "l2": 1e-3, "lr_decay": 0.5}
    fused = _trained(loss, SAMPLERS[sampler], True, **options)
    dense = _trained(loss, SAMPLERS[sampler], False, **options)
    start = _trained(loss, SAMPLERS[sampler], True, **{**options, "lr": 1e-12})
    assert not torch.equal(fused.item.weight, start.item.weight)  # it did train
    for name, value in dense.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[name], value, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(fused.losses, dense.losses, rtol=1e-5)


@pytest.mark.parametrize("sampler", ["dns", "uniform_distinct", "inbatch"])
def test_fused_training_equals_the_autograd_path_for_other_samplers(sampler: str) -> None:
    """DNS (hard negatives kept from a scored pool), distinct uniform draws, and in-batch
    negatives (a shared candidate list: the trainer falls back to the autograd path)."""
    fused = _trained("bpr", SAMPLERS[sampler], True)
    plain = _trained("bpr", SAMPLERS[sampler], False)
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[name], value, rtol=1e-4, atol=1e-5)


def test_fused_step_updates_exactly_the_rows_the_batch_touched() -> None:
    """LazyAdam semantics: the batch's users, positives and negatives move; every other
    row, and its Adam moments, stays exactly as it was."""
    step, model = _mf_step()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    users, pos = torch.tensor([0, 1, 0]), torch.tensor([3, 4, 3])
    step(users, pos, Negatives(ids=torch.tensor([[5], [6], [5]])))
    for table, rows in (("user.weight", {0, 1}), ("item.weight", {3, 4, 5, 6})):
        moved = (model.state_dict()[table] != before[table]).any(dim=1)
        assert set(moved.nonzero().flatten().tolist()) == rows


def _mf_step(l2: float = 0.0) -> tuple[FusedMFStep, torch.nn.Module]:
    config = ExperimentConfig.from_dict(
        {
            "data": {"source": "synthetic"},
            "model": {"name": "mf", "dim": 8},
            "train": {"optimizer": "lazy_adam"},
        }
    )
    parts = build_components(config, SPLIT)
    optimizer = make_optimizer(parts.model, config.train)
    step = fused_step(
        parts.model,
        parts.loss,
        optimizer,
        enabled=True,
        l2=l2,
        precision="fp32",
        device=torch.device("cpu"),
        world=LOCAL,
    )
    assert isinstance(step, FusedMFStep)
    return step, parts.model


def test_fused_step_applies_only_to_mf_on_one_cpu_process() -> None:
    config = ExperimentConfig.from_dict(
        {"data": {"source": "synthetic"}, "model": {"name": "mf", "dim": 8}}
    )
    parts = build_components(config, SPLIT)

    def applies(**overrides: Any) -> bool:
        options: dict[str, Any] = {
            "enabled": True,
            "l2": 0.0,
            "precision": "fp32",
            "device": torch.device("cpu"),
            "world": LOCAL,
        }
        optimizer = overrides.pop("optimizer", "lazy_adam")
        model = overrides.pop("model", parts.model)
        options.update(overrides)
        built = make_optimizer(model, TrainConfig(optimizer=optimizer))
        return fused_step(model, parts.loss, built, **options) is not None

    assert applies()
    assert not applies(enabled=False)
    assert applies(optimizer="adam")  # RowwiseAdam: dense Adam's update, row by row
    wd_adam = make_optimizer(parts.model, TrainConfig(optimizer="adam", weight_decay=1e-4))
    assert isinstance(wd_adam, torch.optim.Adam)  # coupled decay moves every row: dense
    assert not applies(precision="bf16")
    assert applies(optimizer="sgd")
    sgd = make_optimizer(parts.model, TrainConfig(optimizer="sgd", weight_decay=1e-4))
    options = {"enabled": True, "l2": 0.0, "precision": "fp32", "device": torch.device("cpu")}
    # dense SGD's weight decay moves untouched rows too: the fused step would not
    assert fused_step(parts.model, parts.loss, sgd, world=LOCAL, **options) is None
    lightgcn = ExperimentConfig.from_dict(
        {"data": {"source": "synthetic"}, "model": {"name": "lightgcn", "dim": 8}}
    )
    assert not applies(model=build_components(lightgcn, SPLIT).model, optimizer="lazy_adam")


def test_a_non_finite_loss_leaves_the_weights_alone() -> None:
    """The autograd path checks the loss before its optimizer step; so must the fused one
    (and ``fit`` then raises TrainingDiverged naming the batch)."""
    step, model = _mf_step()
    with torch.no_grad():
        model.user.weight[0] = float("inf")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    users, pos = torch.tensor([0, 1]), torch.tensor([3, 4])
    value = step(users, pos, Negatives(ids=torch.tensor([[5], [6]])))
    assert not torch.isfinite(value)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name])


def test_fit_raises_training_diverged_on_the_fused_path(monkeypatch: Any) -> None:
    def exploding(self: Loss, scores: torch.Tensor, **_: Any) -> Any:
        return torch.tensor(float("nan")), torch.zeros_like(scores)

    monkeypatch.setattr(Loss, "value_and_grad", exploding)
    with pytest.raises(TrainingDiverged, match="epoch 1, batch 1"):  # (BPR: blocked steps)
        _trained("bce", SAMPLERS["uniform"], True)


def test_fused_l2_term_equals_the_models_penalty() -> None:
    """The loss the fused step reports includes ``l2 * MF.l2_penalty`` computed on the
    rows before the update."""
    l2 = 0.5
    step, model = _mf_step(l2)
    users, pos = torch.tensor([0, 1, 0]), torch.tensor([3, 4, 3])
    ids = torch.tensor([[5, 6], [7, 5], [8, 9]])
    touched = torch.cat([pos.unsqueeze(1), ids], 1)
    with torch.no_grad():
        scores = model.score(users, touched)
        expected = Loss(LossConfig(name="bpr"))(scores[:, 0], scores[:, 1:])
        expected = expected + l2 * model.l2_penalty(users, touched)
    got = step(users, pos, Negatives(ids=ids))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    loss=st.sampled_from(sorted(set(LOSSES.names()) - {"softmax"})),
    rows=st.integers(1, 6),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    masked=st.booleans(),
    weighted=st.booleans(),
    corrected=st.booleans(),
    reduction=st.sampled_from(["sum", "mean"]),
)
def test_value_and_grad_equals_autograd_of_the_loss(
    loss: str,
    rows: int,
    k: int,
    seed: int,
    masked: bool,
    weighted: bool,
    corrected: bool,
    reduction: str,
) -> None:
    """``Loss.value_and_grad`` (closed form for BPR and CCE) against autograd through the pure
    loss, with masked negatives, importance weights, logQ and both reductions."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(rows, 1 + k, generator=gen, dtype=torch.float64) * 3
    valid = torch.rand(rows, k, generator=gen) > 0.3 if masked else None
    if valid is not None:
        valid[:, 0] = True  # every row keeps a negative
    weights = torch.rand(rows, k, generator=gen, dtype=torch.float64) if weighted else None
    uniforms = torch.rand(rows, k, generator=gen, dtype=torch.float64)
    log_q = torch.log(uniforms) if corrected else None
    keys = LOSSES.get(loss, "loss.name").option_keys()
    options = {"margin": 0.5, "neg_reduction": reduction}
    fn = make_loss(loss, **{key: value for key, value in options.items() if key in keys})
    value, grad = fn.value_and_grad(scores, valid=valid, log_q=log_q, weights=weights)

    leaf = scores.clone().requires_grad_(True)
    neg = leaf[:, 1:] if valid is None else leaf[:, 1:].masked_fill(~valid, float("-inf"))
    expected = fn(leaf[:, 0], neg, log_q=log_q, weights=weights)
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    torch.testing.assert_close(value, expected.detach())
    torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam", "sgd"])
@pytest.mark.parametrize(("loss", "k"), [("bpr", 1), ("cce", 4), ("cce", 20)])
def test_training_is_identical_across_thread_counts(
    optimizer: str, loss: str, k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fused MF step's row passes split rows by owner (each row's gradient summed in
    batch order, whichever thread owns it), its scores split batch rows, and the other
    parallel kernels (RowwiseAdam's flush, the samplers' and evaluation's) split
    independent rows; all forced parallel here even for tiny work. So one seed gives the
    same weights and losses on 1 thread (the serial twins), 2 threads, 3 owner chunks (3
    threads where numba has them, else 3 chunks on 2), and 2 threads or 1 as the step's
    timing chooses (``ChunkChooser``), for K = 1, a few negatives, and
    rows wider than the prefetching ones (K = 20: RowwiseAdam's one-pass catch-up and
    scores when serial)."""
    import numba

    from negrec._fast import fused, kernels, owned

    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(owned, "MF_PARALLEL_MIN_WORK", 0)
    results = []
    # the last run lets the step choose threads or one by timing, step by step
    for threads, chunks, adaptive in ((1, 1, False), (2, 2, False), (3, 3, False), (2, 2, True)):
        monkeypatch.setattr(fused, "ADAPTIVE_THREADS", adaptive)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        torch.set_num_threads(threads)
        seen: list[int] = []

        def counted(work: int, chunks: int = chunks, seen: list[int] = seen) -> int:
            seen.append(chunks)
            return chunks

        monkeypatch.setattr(fused, "mf_chunks", counted)
        try:
            sampler = {"name": "uniform", "k": k}
            model = _trained(loss, sampler, True, optimizer=optimizer, l2=1e-3)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
            torch.set_num_threads(1)
        assert seen and set(seen) == {chunks}  # the fused step ran, on these chunks
        results.append(model)
    for model in results[1:]:
        for name, value in results[0].state_dict().items():
            assert torch.equal(model.state_dict()[name], value), name
        assert model.losses == results[0].losses


def test_chunk_chooser_probes_both_ways_and_keeps_the_faster() -> None:
    """Every ``every`` steps, ``probe`` steps on the threads and ``probe`` on one; then the
    faster median until the next probe; one thread: always serial."""
    from negrec._fast.owned import ChunkChooser

    chooser = ChunkChooser(probe=2, every=10)
    picks = []
    for step in range(20):
        chunks = chooser.pick(4)
        picks.append(chunks)
        chooser.record(chunks, 1.0 if chunks > 1 else 2.0 + (step >= 10) * -1.5)
    assert picks[:4] == [4, 4, 1, 1] and set(picks[4:10]) == {4}  # threads were faster
    assert picks[10:14] == [4, 4, 1, 1] and set(picks[14:]) == {1}  # then one was
    assert ChunkChooser().pick(1) == 1


@pytest.mark.parametrize("adam", [True, False])
@pytest.mark.parametrize("width", [2, 5, 21])
@pytest.mark.parametrize("l2_scale", [0.0, 1e-2])
def test_row_step_gives_the_same_bits_serially_and_on_owner_chunks(
    adam: bool, width: int, l2_scale: float
) -> None:
    """``mf_row_step`` on one chunk (narrow rows: the one-pass kernel, each row updated at
    its last occurrence, single occurrences without the buffer) and on 2 and 3 owner chunks
    (two parallel passes), on tables small enough that most rows repeat in the batch: the
    same tables, moments and penalty, and the scratch left all zero / False."""
    from negrec._fast.owned import mf_row_step

    rng = np.random.default_rng(width)
    n_users, n_items, size, dim = 70, 90, 64, 16  # 64 x width ids over 90 items: repeats
    users = rng.integers(n_users, size=size)
    users[:5] = np.arange(5) + 65  # a few users seen once
    items = rng.integers(n_items, size=(size, width))
    grad = rng.normal(size=(size, width)).astype(np.float32)
    tables = [rng.normal(size=(n, dim)).astype(np.float32) for n in (n_users, n_items)]
    moments = [(np.abs(rng.normal(size=t.shape)) * 1e-3).astype(np.float32) for t in tables]
    results = []
    for chunks in (1, 2, 3):
        user_table, item_table = (t.copy() for t in tables)
        states = [
            (m.copy(), m.copy() * m, np.zeros_like(m), np.zeros(m.shape[0], dtype=bool))
            for m in moments
        ]
        args = (users, items, grad, l2_scale, states[0], states[1], adam, 0.01, 0.9, 0.999)
        rest = (1e-8, 0.0, (0.3, 0.01), (0.2, 0.005), chunks)
        squares = [mf_row_step(user_table, item_table, *args, *rest) for _ in range(2)]
        for state in states:
            assert not state[2].any() and not state[3].any()  # scratch restored
        results.append((user_table, item_table, *states[0][:2], *states[1][:2], squares))
    for other in results[1:]:
        for a, b in zip(results[0][:-1], other[:-1], strict=True):
            np.testing.assert_array_equal(a, b)
        assert other[-1] == results[0][-1]


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam", "sgd"])
def test_wide_rows_prefetching_ahead_give_the_same_bits(
    optimizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows wider than the narrow prefetch (K = 20) prefetch their item rows some ids ahead
    when the item table is large (``kernels.wide_ahead``). Forced on for this tiny table:
    the same weights, bit for bit, as without."""
    from negrec._fast import optim, owned

    sampler = {"name": "uniform", "k": 20}
    plain = _trained("cce", sampler, True, optimizer=optimizer)
    monkeypatch.setattr(owned, "wide_ahead", lambda table: 3)
    monkeypatch.setattr(optim, "wide_ahead", lambda table: 3)
    ahead = _trained("cce", sampler, True, optimizer=optimizer)
    assert ahead.losses == plain.losses  # type: ignore[attr-defined]
    for name, value in plain.state_dict().items():
        assert torch.equal(ahead.state_dict()[name], value), name
