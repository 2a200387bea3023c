"""Recommendation losses: pure tensor functions of positive and negative scores, and one
registered plugin class per loss.

Every loss is ``loss(pos[B], neg[B, K], *, log_q=None, weights=None, <its options>) ->
scalar``, defined per positive and averaged over the batch. Sums over negatives are the
default (that is what the theory of Di Teodoro et al., arXiv 2411.07770, uses: BPR equals
CCE exactly at K = 1); ``neg_reduction = "mean"`` divides by K. Negatives scored ``-inf``
(padding, or masked items of the full catalogue) contribute nothing to any loss. Only
stable forms are used: softplus and logsumexp.

Per positive with score ``s+`` and negatives ``s_j``:

- BPR (Rendle et al. 2009):  sum_j softplus(s_j - s+)
- BCE:                       softplus(-s+) + sum_j softplus(s_j)
- CCE / sampled softmax (SSM):  logsumexp([s+, s_1..s_K]) - s+
- SimCE (Yang et al., "SimCE: Simplifying Cross-Entropy Loss for CF"): relu(margin - s+ + max_j s_j)
- hinge (pairwise margin):   sum_j relu(margin - s+ + s_j)
- softmax: CCE over every item (requires the ``full`` sampler)

``weights`` [B, K] turn each sum over negatives into a weighted sum (importance weights,
e.g. DNS's 1/M or Softmax-v); in CCE they weight ``e^{s_j}``; SimCE's max ignores weights
but skips negatives of weight 0. ``log_q`` [B, K] applies the logQ correction of sampled
softmax (Yi et al. 2019): CCE and softmax use ``s_j - log(K q_j)`` in place of ``s_j``.

The plugin kind. Each loss is a :class:`Loss` subclass registered in :data:`LOSSES` under
its config name (aliases register the same class twice: ``ssm`` is ``cce``), with its own
typed ``Config`` (``[loss] name = "simce", margin = 5``; a key the loss does not take is
refused). A loss implements :meth:`Loss.rows` (the per-positive values [B]); the batch
value is their mean. Optional fast forms are methods it may override, never found by
identity: :meth:`Loss.value_and_grad_dense` (a closed-form gradient, used by the fused MF
step), :meth:`Loss.catalogue` (the whole catalogue as negatives, used with the ``full``
sampler); ``requires_sampler`` names a sampler the loss only works with.

Modules: :mod:`~negrec.losses.base` (the base class, its config, the registry),
:mod:`~negrec.losses.builtin` (the built-in losses), :mod:`~negrec.losses.functions` (the
pure functions and closed-form gradients), :mod:`~negrec.losses.catalogue` (CCE over the
whole catalogue).

The whole catalogue as negatives (the ``full`` sampler): the trainer hands the score matrix
[B, n_items] to :meth:`Loss.catalogue`, which is by definition the loss of
:func:`catalogue_scores` (the positive's column as ``pos``, the matrix with its masked items
at -inf as ``neg``). For CCE / softmax, where the [B, n_items] passes dominate a training
step, it takes the direct form :func:`cce_catalogue` instead: same value and gradients, one
[B, n_items] buffer instead of the masked copy, the [s+, neg] concatenation, logsumexp's
temporaries and as many again in the backward pass.
"""

from negrec.losses.base import (
    LOSSES,
    NEG_INF,
    Loss,
    LossConfig,
    LossFn,
    Reduction,
    SummedConfig,
    catalogue_scores,
    make_loss,
)
from negrec.losses.builtin import (
    BCE,
    BPR,
    CCE,
    BCEConfig,
    BPRConfig,
    CCEConfig,
    Hinge,
    HingeConfig,
    SimCE,
    SimCEConfig,
    Softmax,
    SoftmaxConfig,
)
from negrec.losses.catalogue import cce_catalogue
from negrec.losses.functions import (
    bce,
    bpr,
    bpr_value_and_grad,
    cce,
    cce_value_and_grad,
    hinge,
    simce,
)

__all__ = [
    "BCE",
    "BPR",
    "CCE",
    "LOSSES",
    "NEG_INF",
    "BCEConfig",
    "BPRConfig",
    "CCEConfig",
    "Hinge",
    "HingeConfig",
    "Loss",
    "LossConfig",
    "LossFn",
    "Reduction",
    "SimCE",
    "SimCEConfig",
    "Softmax",
    "SoftmaxConfig",
    "SummedConfig",
    "bce",
    "bpr",
    "bpr_value_and_grad",
    "catalogue_scores",
    "cce",
    "cce_catalogue",
    "cce_value_and_grad",
    "hinge",
    "make_loss",
    "simce",
]
