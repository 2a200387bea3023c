"""CCE over the whole catalogue straight from the score matrix (the ``full`` sampler):
one [B, N] buffer for the softmax and its gradient instead of the masked copy of
:func:`negrec.losses.catalogue_scores`."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch.autograd.function import once_differentiable

from negrec.losses.base import NEG_INF


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Per row, ``logsumexp(logits) - logits[target]`` where ``logits`` is ``scores`` with the
    ``drop`` entries at -inf and ``shift`` subtracted from every column but the target.

    Forward and backward share one [B, N] buffer: forward leaves the softmax in it, backward
    turns it in place into the gradient ``grad * (softmax - onehot(target))``. Hence one
    backward pass per forward: a second one (``retain_graph=True``) raises autograd's
    "modified by an inplace operation" error instead of returning a wrong gradient.
    """

    @staticmethod
    def forward(
        ctx: Any,
        scores: torch.Tensor,
        target: torch.Tensor,
        drop: torch.Tensor | None,
        shift: float,
    ) -> torch.Tensor:
        rows = torch.arange(target.numel(), device=target.device)
        target_scores = scores[rows, target]
        # one pass (masked_fill would copy, then fill)
        work = scores.clone() if drop is None else torch.where(drop, NEG_INF, scores)
        if shift:
            work.sub_(shift)
            work[rows, target] = target_scores
        top = work.amax(dim=1, keepdim=True)  # finite: the target column is never dropped
        work.sub_(top).exp_()
        total = work.sum(dim=1, keepdim=True)
        work.div_(total)  # the softmax
        ctx.save_for_backward(work, target)
        return (top + total.log()).squeeze(1) - target_scores

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        probs, target = ctx.saved_tensors
        rows = torch.arange(target.numel(), device=target.device)
        out = probs.mul_(grad.unsqueeze(1))
        out.index_put_((rows, target), -grad, accumulate=True)
        return out, None, None, None


def cce_catalogue(
    scores: torch.Tensor,
    pos_items: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    neg_reduction: Literal["sum", "mean"] = "sum",
) -> torch.Tensor:
    """CCE over the whole catalogue straight from the score matrix ``scores`` [B, N]:
    ``cce(*catalogue_scores(scores, pos_items, valid), neg_reduction=...)`` in value and
    gradient (up to float rounding), without building it.

    The positive is already a column of the matrix, so ``logsumexp([s+, neg]) - s+`` is
    the cross-entropy of the row with the masked items at -inf but the positive's column
    kept, at target ``pos_items``: a softmax computed in place in one [B, N] buffer that
    becomes the gradient (see :class:`_SoftmaxCrossEntropy`). A positive that ``valid``
    leaves among the negatives (``valid`` None, or True at it) counts twice in
    ``[s+, neg]``: that row's value is then ``log(e^ce + 1)`` (``log(e^ce + 1/N)`` with
    ``neg_reduction = "mean"``), as in ``cce``.
    """
    rows = torch.arange(pos_items.numel(), device=pos_items.device)
    if valid is None:
        drop = None
        twice = torch.ones(pos_items.shape, dtype=torch.bool, device=pos_items.device)
    else:
        twice = valid[rows, pos_items]
        drop = ~valid
        drop[rows, pos_items] = False  # the positive's column is the target
    shift = math.log(scores.shape[1]) if neg_reduction == "mean" else 0.0
    per_row = _SoftmaxCrossEntropy.apply(scores, pos_items, drop, shift)
    doubled = torch.logaddexp(per_row, per_row.new_tensor(-shift))  # + e^{s+ - shift}
    return torch.where(twice, doubled, per_row).mean()
