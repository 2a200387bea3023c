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

The whole catalogue as negatives (the ``full`` sampler): the trainer hands the score matrix
[B, n_items] to :meth:`Loss.catalogue`, which is by definition the loss of
:func:`catalogue_scores` (the positive's column as ``pos``, the matrix with its masked items
at -inf as ``neg``). For CCE / softmax, where the [B, n_items] passes dominate a training
step, it takes the direct form :func:`cce_catalogue` instead: same value and gradients, one
[B, n_items] buffer instead of the masked copy, the [s+, neg] concatenation, logsumexp's
temporaries and as many again in the backward pass.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from negrec.config_base import from_dict, to_dict
from negrec.errors import ConfigError
from negrec.registry import Registry

NEG_INF = float("-inf")
Tensor = torch.Tensor
Reduction = Literal["sum", "mean"]


# ---------------------------------------------------------------------------- configs
@dataclass
class LossConfig:
    """Options every loss shares: its name. ``Loss(LossConfig(name=...))`` builds that
    loss with its defaults."""

    #: keys that configs stored by negrec 0.1 carry for every loss, at these values: a loss
    #: that does not take one accepts it at that value only (and drops it)
    retired: ClassVar[dict[str, Any]] = {"neg_reduction": "sum", "margin": 1.0}

    name: str = "bpr"


@dataclass
class SummedConfig(LossConfig):
    """Options of a loss that sums over the negatives."""

    neg_reduction: Reduction = "sum"  # "mean" divides the sum over negatives by K


@dataclass
class BPRConfig(SummedConfig):
    name: str = "bpr"


@dataclass
class BCEConfig(SummedConfig):
    name: str = "bce"


@dataclass
class CCEConfig(SummedConfig):
    name: str = "cce"


@dataclass
class SoftmaxConfig(CCEConfig):
    name: str = "softmax"


@dataclass
class SimCEConfig(LossConfig):
    name: str = "simce"
    margin: float = 1.0  # relu(margin - s+ + max_j s_j)


@dataclass
class HingeConfig(SummedConfig):
    name: str = "hinge"
    margin: float = 1.0  # relu(margin - s+ + s_j)


# ---------------------------------------------------------------------------- per positive
def _reduce_neg(per_neg: Tensor, weights: Tensor | None, mean: bool) -> Tensor:
    """Sum [B, K] -> [B] over negatives, weighted, or mean over K when asked."""
    if weights is not None:
        per_neg = per_neg * weights
    total = per_neg.sum(dim=1)
    return total / per_neg.shape[1] if mean else total


def _bpr_rows(pos: Tensor, neg: Tensor, weights: Tensor | None, mean: bool) -> Tensor:
    per_neg = F.softplus(neg - pos.unsqueeze(1))  # [B, K]
    return _reduce_neg(per_neg, weights, mean)  # [B]


def _bce_rows(pos: Tensor, neg: Tensor, weights: Tensor | None, mean: bool) -> Tensor:
    return F.softplus(-pos) + _reduce_neg(F.softplus(neg), weights, mean)  # [B]


def _cce_negative_logits(
    neg: Tensor, log_q: Tensor | None, weights: Tensor | None, mean: bool
) -> Tensor:
    """The negatives' logits [B, K] in CCE's softmax: their scores with the logQ correction
    (Yi et al., RecSys 2019), the log importance weights (weight 0 -> -inf -> no mass) and,
    for ``neg_reduction = "mean"``, log K subtracted."""
    k = neg.shape[1]
    logits = neg
    if log_q is not None:
        logits = logits - (log_q + math.log(k))
    if weights is not None:
        logits = logits + torch.log(weights)
    if mean:
        logits = logits - math.log(k)
    return logits


def _cce_rows(
    pos: Tensor, neg: Tensor, log_q: Tensor | None, weights: Tensor | None, mean: bool
) -> Tensor:
    logits = _cce_negative_logits(neg, log_q, weights, mean)
    all_logits = torch.cat([pos.unsqueeze(1), logits], dim=1)  # [B, 1 + K]
    return torch.logsumexp(all_logits, dim=1) - pos  # [B]


def _simce_rows(pos: Tensor, neg: Tensor, weights: Tensor | None, margin: float) -> Tensor:
    if weights is not None:
        neg = neg.masked_fill(weights <= 0, NEG_INF)
    hardest = neg.max(dim=1).values  # [B]
    return F.relu(margin - pos + hardest)  # [B]


def _hinge_rows(
    pos: Tensor, neg: Tensor, weights: Tensor | None, mean: bool, margin: float
) -> Tensor:
    per_neg = F.relu(margin - pos.unsqueeze(1) + neg)  # [B, K]
    return _reduce_neg(per_neg, weights, mean)  # [B]


# ---------------------------------------------------------------------------- pure functions
def bpr(
    pos: Tensor,
    neg: Tensor,
    *,
    log_q: Tensor | None = None,
    weights: Tensor | None = None,
    neg_reduction: Reduction = "sum",
) -> Tensor:
    """Bayesian personalised ranking: sum_j softplus(s_j - s+), batch mean (``log_q``
    ignored)."""
    return _bpr_rows(pos, neg, weights, neg_reduction == "mean").mean()


def bce(
    pos: Tensor,
    neg: Tensor,
    *,
    log_q: Tensor | None = None,
    weights: Tensor | None = None,
    neg_reduction: Reduction = "sum",
) -> Tensor:
    """Binary cross-entropy: softplus(-s+) + sum_j softplus(s_j), batch mean (``log_q``
    ignored)."""
    return _bce_rows(pos, neg, weights, neg_reduction == "mean").mean()


def cce(
    pos: Tensor,
    neg: Tensor,
    *,
    log_q: Tensor | None = None,
    weights: Tensor | None = None,
    neg_reduction: Reduction = "sum",
) -> Tensor:
    """Sampled softmax cross-entropy: logsumexp([s+, s_j]) - s+, batch mean.

    With ``neg_reduction="mean"`` the negatives' mass is divided by K (log K subtracted).
    """
    return _cce_rows(pos, neg, log_q, weights, neg_reduction == "mean").mean()


def simce(
    pos: Tensor,
    neg: Tensor,
    *,
    log_q: Tensor | None = None,
    weights: Tensor | None = None,
    margin: float = 1.0,
) -> Tensor:
    """SimCE: relu(margin - s+ + max_j s_j), batch mean (the hardest sampled negative).

    Weights only select: the max runs over the negatives with a positive weight. DNS(M, N)
    keeps the pool's top M, whose max is the pool's top one, so SimCE with DNS(M, N)
    trains exactly as with DNS(1, N). (The SimCE paper draws its negatives uniformly.)
    """
    return _simce_rows(pos, neg, weights, margin).mean()


def hinge(
    pos: Tensor,
    neg: Tensor,
    *,
    log_q: Tensor | None = None,
    weights: Tensor | None = None,
    neg_reduction: Reduction = "sum",
    margin: float = 1.0,
) -> Tensor:
    """Pairwise hinge: sum_j relu(margin - s+ + s_j), batch mean (``log_q`` ignored)."""
    return _hinge_rows(pos, neg, weights, neg_reduction == "mean", margin).mean()


# ---------------------------------------------------------------------------- closed forms
def bpr_value_and_grad(
    scores: torch.Tensor, weights: torch.Tensor | None, mean: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR of ``scores`` [B, 1 + K] (column 0 the positive) and its gradient [B, 1 + K] in
    closed form: ``d softplus(x) / dx = sigmoid(x)`` (five small ops; autograd's engine
    costs ~0.2 ms per 1,024-row step on CPU, a fifth of a fused MF step)."""
    diff = scores[:, 1:] - scores[:, :1]  # [B, K]: s_j - s+
    per_neg, slope = F.softplus(diff), torch.sigmoid(diff)
    if weights is not None:
        per_neg, slope = per_neg * weights, slope * weights
    scale = 1.0 / (scores.shape[0] * (diff.shape[1] if mean else 1))  # batch mean (and K)
    grad = torch.empty_like(scores)
    torch.mul(slope, scale, out=grad[:, 1:])
    torch.sum(grad[:, 1:], dim=1, out=grad[:, 0]).neg_()
    return per_neg.sum() * scale, grad


def cce_value_and_grad(
    scores: torch.Tensor, log_q: torch.Tensor | None, weights: torch.Tensor | None, mean: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """CCE of ``scores`` [B, 1 + K] (column 0 the positive) and its gradient [B, 1 + K] in
    closed form: ``(softmax(logits) - onehot(0)) / B``, where ``logits`` are the scores with
    :func:`cce`'s offsets (logQ, log weights, log K), constants in the scores. With K = 100
    autograd's engine took ~1.7 ms of a ~8 ms fused MF step on CPU."""
    neg = _cce_negative_logits(scores[:, 1:], log_q, weights, mean)  # [B, K]
    logits = torch.cat([scores[:, :1], neg], dim=1)  # [B, 1 + K]
    top = logits.max(dim=1, keepdim=True).values  # [B, 1], finite: the positive is
    mass = logits.sub_(top).exp_()  # [B, 1 + K], in place: one exp pass serves both
    total = mass.sum(dim=1, keepdim=True)  # [B, 1]
    value = (total[:, 0].log() + top[:, 0] - scores[:, 0]).mean()  # logsumexp - s+
    grad = mass.div_(total * scores.shape[0])  # softmax / B
    grad[:, 0] -= 1.0 / scores.shape[0]
    return value, grad


# ---------------------------------------------------------------------------- whole catalogue
def catalogue_scores(
    scores: torch.Tensor, pos_items: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pos [B], neg [B, N])`` of the whole catalogue, as every loss sees it: ``pos`` is
    column ``pos_items`` [B] of ``scores`` [B, N]; ``neg`` is ``scores`` with the items where
    ``valid`` [B, N] is False (the user's training positives, hence the positive itself)
    at -inf."""
    pos = scores.gather(1, pos_items.unsqueeze(1)).squeeze(1)
    neg = scores if valid is None else scores.masked_fill(~valid, NEG_INF)
    return pos, neg


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


# ---------------------------------------------------------------------------- the plugin kind
LossFn = Callable[..., Tensor]


class Loss:
    """Base class of every loss: a configured loss, called on scores.

    A subclass sets ``Config`` (its typed options) and implements :meth:`rows`; it
    registers with ``@LOSSES.register("name")``. ``Loss(config)`` on this base class
    builds the loss ``config.name`` names (``Loss(LossConfig(name="cce"))``)."""

    Config: ClassVar[type[LossConfig]] = LossConfig
    #: the public pure function this loss computes (for tests and documentation), if any
    function: ClassVar[LossFn | None] = None
    #: the sampler this loss only works with (the config layer refuses any other), if any
    requires_sampler: ClassVar[str | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Loss:
        if cls is Loss:  # Loss(config): the loss the config names
            config = args[0] if args else kwargs["config"]
            cls = LOSSES.get(config.name, "loss.name")
        return super().__new__(cls)  # (no arguments: copy and pickle rebuild it so)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @classmethod
    def option_keys(cls) -> list[str]:
        """The keys of this loss's ``[loss]`` table, ``name`` first."""
        return [field.name for field in dataclasses.fields(cls.Config)]

    def __init__(self, config: LossConfig):
        if not isinstance(config, self.Config):  # e.g. LossConfig(name=...): its defaults
            config = from_dict(self.Config, to_dict(config), prefix="loss")
        self.config = config

    def rows(
        self,
        pos: Tensor,
        neg: Tensor,
        *,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        """The loss of each positive [B] from ``pos`` [B], ``neg`` [B, K] (``-inf``:
        padding, contributes nothing), ``log_q`` and ``weights`` [B, K]."""
        raise NotImplementedError  # abstract

    def __call__(
        self,
        pos: Tensor,
        neg: Tensor,
        *,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        """The batch loss: the mean of :meth:`rows`."""
        return self.rows(pos, neg, log_q=log_q, weights=weights).mean()

    def value_and_grad(
        self,
        scores: Tensor,
        *,
        valid: Tensor | None = None,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The loss of ``scores`` [B, 1 + K] (column 0 the positive, the rest its negatives,
        those where ``valid`` [B, K] is False masked) and its gradient with respect to
        ``scores``, for steps that back-propagate into the model themselves
        (:mod:`negrec._fast.fused`): :meth:`value_and_grad_dense` of the masked scores."""
        scores = scores.detach()
        if valid is not None:
            scores = torch.cat([scores[:, :1], scores[:, 1:].masked_fill(~valid, NEG_INF)], 1)
        return self.value_and_grad_dense(scores, log_q=log_q, weights=weights)

    def value_and_grad_dense(
        self, scores: Tensor, *, log_q: Tensor | None, weights: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Value and gradient [B, 1 + K] of the loss of ``scores`` [B, 1 + K] (padding
        already at -inf), by autograd through :meth:`__call__` on that small tensor alone.
        A loss with a closed-form gradient overrides it (same value and gradient)."""
        scores = scores.detach().requires_grad_(True)
        value = self(scores[:, 0], scores[:, 1:], log_q=log_q, weights=weights)
        (grad,) = torch.autograd.grad(value, scores)
        return value.detach(), grad

    def catalogue(
        self,
        scores: Tensor,
        pos_items: Tensor,
        *,
        valid: Tensor | None = None,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        """The loss with every item as a negative, from the score matrix ``scores``
        [B, N] (``valid``, ``log_q``, ``weights``: [B, N]): by definition
        ``self(*catalogue_scores(scores, pos_items, valid), log_q=..., weights=...)``.
        A loss with a cheaper direct form overrides it (CCE: :func:`cce_catalogue`)."""
        pos, neg = catalogue_scores(scores, pos_items, valid)
        return self(pos, neg, log_q=log_q, weights=weights)


class _LossRegistry(Registry[type[Loss]]):
    """The loss registry: configs stored by negrec 0.1 carry ``neg_reduction`` and
    ``margin`` for every loss; a loss that does not take one accepts it at its 0.1
    default (see ``LossConfig.retired``) and drops it."""

    def config(self, name: str, options: dict[str, Any], prefix: str) -> Any:
        cls = self.get(name, f"{prefix}.name")
        own = cls.option_keys()
        retired = cls.Config.retired
        kept = {}
        for key, value in options.items():
            if key in own:
                kept[key] = value
            elif key not in retired or value != retired[key]:
                raise ConfigError(
                    f"{prefix}.{key}",
                    f"unknown key for loss '{name}' (its keys: {', '.join(own)})",
                )
        return super().config(name, kept, prefix)


LOSSES: Registry[type[Loss]] = _LossRegistry("loss")


@LOSSES.register("bpr")
class BPR(Loss):
    """BPR (Rendle et al., UAI 2009), with its closed-form gradient for the fused step."""

    Config = BPRConfig
    config: BPRConfig
    function = staticmethod(bpr)

    def rows(
        self,
        pos: Tensor,
        neg: Tensor,
        *,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        return _bpr_rows(pos, neg, weights, self.config.neg_reduction == "mean")

    def value_and_grad_dense(
        self, scores: Tensor, *, log_q: Tensor | None, weights: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        return bpr_value_and_grad(scores, weights, self.config.neg_reduction == "mean")


@LOSSES.register("bce")
class BCE(Loss):
    """Binary cross-entropy on the positive and each negative."""

    Config = BCEConfig
    config: BCEConfig
    function = staticmethod(bce)

    def rows(
        self,
        pos: Tensor,
        neg: Tensor,
        *,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        return _bce_rows(pos, neg, weights, self.config.neg_reduction == "mean")


@LOSSES.register("ssm")  # the SimCE paper's name for sampled softmax
@LOSSES.register("cce")
class CCE(Loss):
    """Sampled softmax cross-entropy with the logQ correction, its closed-form gradient for
    the fused step and its direct whole-catalogue form."""

    Config = CCEConfig
    config: CCEConfig
    function = staticmethod(cce)

    def rows(
        self,
        pos: Tensor,
        neg: Tensor,
        *,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        return _cce_rows(pos, neg, log_q, weights, self.config.neg_reduction == "mean")

    def value_and_grad_dense(
        self, scores: Tensor, *, log_q: Tensor | None, weights: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        return cce_value_and_grad(scores, log_q, weights, self.config.neg_reduction == "mean")

    def catalogue(
        self,
        scores: Tensor,
        pos_items: Tensor,
        *,
        valid: Tensor | None = None,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        """Without ``log_q`` or ``weights`` (the ``full`` sampler sets neither):
        :func:`cce_catalogue`, which never builds the masked [B, N] copy."""
        if log_q is None and weights is None:
            return cce_catalogue(
                scores, pos_items, valid=valid, neg_reduction=self.config.neg_reduction
            )
        return super().catalogue(scores, pos_items, valid=valid, log_q=log_q, weights=weights)


@LOSSES.register("softmax")
class Softmax(CCE):
    """The full softmax: CCE with every item as a negative (the ``full`` sampler)."""

    Config = SoftmaxConfig
    config: SoftmaxConfig
    requires_sampler = "full"


@LOSSES.register("simce")
class SimCE(Loss):
    """SimCE (Yang et al.): a margin hinge on the hardest sampled negative."""

    Config = SimCEConfig
    config: SimCEConfig
    function = staticmethod(simce)

    def rows(
        self,
        pos: Tensor,
        neg: Tensor,
        *,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        return _simce_rows(pos, neg, weights, self.config.margin)


@LOSSES.register("hinge")
class Hinge(Loss):
    """Pairwise margin hinge summed over the negatives."""

    Config = HingeConfig
    config: HingeConfig
    function = staticmethod(hinge)

    def rows(
        self,
        pos: Tensor,
        neg: Tensor,
        *,
        log_q: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Tensor:
        return _hinge_rows(
            pos, neg, weights, self.config.neg_reduction == "mean", self.config.margin
        )


def make_loss(name: str, **options: Any) -> Loss:
    """The loss ``name`` with ``options`` (checked as in a config's ``[loss]`` table)."""
    return Loss(LOSSES.config(name, {"name": name, **options}, "loss"))
