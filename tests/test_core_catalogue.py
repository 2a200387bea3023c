"""The whole catalogue as negatives (the ``full`` sampler, ``negatives.ids is None``).

The trainer hands the loss the score matrix [B, n_items] (``Loss.catalogue``), and CCE /
softmax computes it without building ``(pos, neg)`` (``cce_catalogue``). Both must equal the
previous expression, ``loss(scores[b, pos_b], scores.masked_fill(~valid, -inf))``, in value
and in gradients, for every loss (the ``full`` sampler goes with any of them), every
``neg_reduction``, with and without ``log_q`` / ``weights`` / ``valid``, including a
positive that ``valid`` leaves among the negatives (it then counts twice in CCE, as before);
and the trainer's step must give the same loss and parameter gradients as before for MF and
SASRec with the real sampler, its own positive masked or all training positives masked.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch
import torch.nn.functional as F

from negrec.data.batches import Batch
from negrec.data.interactions import Interactions
from negrec.data.synthetic import synthetic_interactions
from negrec.losses import LOSSES, Loss, LossConfig, catalogue_scores, cce_catalogue, make_loss
from negrec.models import MF, ModelConfig
from negrec.models.base import Model
from negrec.models.sasrec import SASRec, SASRecConfig
from negrec.samplers.full import FullCatalogue, FullConfig
from negrec.train import score_and_loss, score_batch

B, N = 6, 11


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def previous(
    loss: Loss,
    scores: torch.Tensor,
    pos: torch.Tensor,
    valid: torch.Tensor | None,
    log_q: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The full-catalogue loss as the trainer computed it before the direct form."""
    pos_scores = scores.gather(1, pos.unsqueeze(1)).squeeze(1)
    neg = scores if valid is None else scores.masked_fill(~valid, float("-inf"))
    return loss(pos_scores, neg, log_q=log_q, weights=weights)


def masks(kind: str, pos: torch.Tensor, gen: torch.Generator) -> torch.Tensor | None:
    rows = torch.arange(pos.numel())
    if kind == "none":
        return None
    valid = torch.ones(pos.numel(), N, dtype=torch.bool)
    if kind in ("positives", "kept"):  # other training positives masked too
        valid &= torch.rand(pos.numel(), N, generator=gen) > 0.3
    valid[rows, pos] = False
    if kind == "kept":  # a positive left among the negatives: counts twice in CCE
        valid[rows[::2], pos[::2]] = True
    if kind == "alone":  # every item but the positive masked (CCE = 0)
        valid[:] = False
    return valid


def value_and_grad(fn, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = scores.clone().requires_grad_()
    value = fn(scores)
    value.backward()
    assert scores.grad is not None
    return value.detach(), scores.grad


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("kind", ["own", "positives", "kept", "none", "alone"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("extra", ["", "log_q", "weights"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_catalogue_equals_the_previous_expression(name, kind, reduction, extra, dtype):
    gen = torch.Generator().manual_seed(zlib.crc32(f"{name} {kind} {reduction} {extra}".encode()))
    scores = 3 * torch.randn(B, N, generator=gen, dtype=dtype)
    pos = torch.randint(N, (B,), generator=gen)
    valid = masks(kind, pos, gen)
    options = {}
    if extra == "log_q":
        options["log_q"] = torch.log_softmax(torch.randn(B, N, generator=gen, dtype=dtype), 1)
    if extra == "weights":
        weights = torch.rand(B, N, generator=gen, dtype=dtype) * 2
        options["weights"] = weights.masked_fill(weights < 0.2, 0.0)
    if "neg_reduction" not in LOSSES.get(name, "loss.name").option_keys():
        if reduction != "sum":
            pytest.skip(f"{name} takes no neg_reduction")
        loss = make_loss(name)
    else:
        loss = make_loss(name, neg_reduction=reduction)
    new, new_grad = value_and_grad(lambda s: loss.catalogue(s, pos, valid=valid, **options), scores)
    old, old_grad = value_and_grad(lambda s: previous(loss, s, pos, valid, **options), scores)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    assert torch.isfinite(new) and torch.isfinite(new_grad).all()
    torch.testing.assert_close(new, old, **tol)
    torch.testing.assert_close(new_grad, old_grad, **tol)


def test_catalogue_scores_masks_and_reads_the_positive_column():
    scores = torch.arange(12.0).reshape(3, 4)
    pos = torch.tensor([1, 0, 3])
    valid = torch.tensor([[1, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 0]], dtype=torch.bool)
    pos_scores, neg = catalogue_scores(scores, pos, valid)
    assert pos_scores.tolist() == [1.0, 4.0, 11.0]
    assert torch.equal(torch.isinf(neg), ~valid)
    assert torch.equal(neg[valid], scores[valid])
    assert catalogue_scores(scores, pos)[1] is scores  # nothing masked: no copy


def test_cce_catalogue_is_torch_cross_entropy_when_only_the_positive_is_masked():
    """``exclude_positives = false``: the full softmax is plain cross-entropy (RecBole's CE)."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(B, N, generator=gen, dtype=torch.float64)
    pos = torch.randint(N, (B,), generator=gen)
    valid = masks("own", pos, gen)
    ours, our_grad = value_and_grad(lambda s: cce_catalogue(s, pos, valid=valid), scores)
    torch_ce, torch_grad = value_and_grad(lambda s: F.cross_entropy(s, pos), scores)
    torch.testing.assert_close(ours, torch_ce, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(our_grad, torch_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_cce_catalogue_is_stable_at_extreme_scores(magnitude):
    gen = torch.Generator().manual_seed(0)
    scores = magnitude * torch.rand(B, N, generator=gen)
    pos = torch.randint(N, (B,), generator=gen)
    valid = masks("positives", pos, gen)
    loss = Loss(LossConfig(name="softmax"))
    new, new_grad = value_and_grad(lambda s: loss.catalogue(s, pos, valid=valid), scores)
    old, old_grad = value_and_grad(lambda s: previous(loss, s, pos, valid), scores)
    assert torch.isfinite(new) and torch.isfinite(new_grad).all()
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(new_grad, old_grad, rtol=1e-5, atol=1e-6)


def test_a_second_backward_raises_instead_of_a_wrong_gradient():
    """The gradient is computed in place in the forward pass's buffer (one backward only)."""
    scores = torch.randn(B, N, requires_grad=True)
    pos = torch.randint(N, (B,))
    value = cce_catalogue(scores, pos, valid=masks("own", pos, torch.Generator()))
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):
        value.backward()


# ----------------------------------------------------------------------------- the trainer
@pytest.fixture(scope="module")
def data() -> Interactions:
    return synthetic_interactions(n_users=30, n_items=40, mean_degree=8, seed=3)


def build(name: str, data: Interactions) -> Model:
    gen = torch.Generator().manual_seed(0)
    if name == "mf":
        return MF(ModelConfig(dim=8), data, gen)
    return SASRec(SASRecConfig(dim=8, max_len=5, dropout=0.2), data, gen)


def step(model: Model, fn) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and parameter gradients of one step; SASRec's dropout masks replayed."""
    dropout = model.dropout_generator(torch.device("cpu")) if isinstance(model, SASRec) else None
    state = dropout.get_state() if dropout is not None else None
    model.zero_grad(set_to_none=True)
    value = fn()
    value.backward()
    if dropout is not None:
        dropout.set_state(state)
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return value.item(), grads


@pytest.mark.parametrize("model_name", ["mf", "sasrec"])
@pytest.mark.parametrize("exclude_positives", [True, False])
@pytest.mark.parametrize("name", LOSSES.names())
def test_trainer_step_equals_the_previous_step(data, model_name, exclude_positives, name):
    model = build(model_name, data)
    model.train()
    batches = model.make_batches(data, 64, torch.device("cpu"))
    batch: Batch = next(iter(batches.epoch(torch.Generator().manual_seed(1))))
    sampler = FullCatalogue(FullConfig(name="full", exclude_positives=exclude_positives), data)
    negatives = sampler.sample(batch.users, batch.pos, 1, generator=torch.Generator())
    assert negatives.ids is None
    loss = Loss(LossConfig(name=name))

    def old() -> torch.Tensor:
        pos, neg, _ = score_batch(model, batch, negatives)
        return loss(pos, neg, log_q=negatives.log_q, weights=negatives.weights)

    def new() -> torch.Tensor:
        value, touched = score_and_loss(model, loss, batch, negatives)
        assert torch.equal(touched, score_batch(model, batch, negatives)[2])
        return value

    old_value, old_grads = step(model, old)
    new_value, new_grads = step(model, new)
    assert math.isfinite(new_value)
    assert new_value == pytest.approx(old_value, rel=1e-5)
    assert new_grads.keys() == old_grads.keys()
    for key, grad in new_grads.items():
        torch.testing.assert_close(grad, old_grads[key], rtol=1e-4, atol=1e-6, msg=key)
