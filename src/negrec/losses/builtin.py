"""The built-in losses, one registered class each with its typed config: BPR, BCE, CCE
(alias ``ssm``), softmax (CCE with the ``full`` sampler), SimCE and hinge."""

from __future__ import annotations

from dataclasses import dataclass

from negrec.losses.base import LOSSES, Loss, LossConfig, SummedConfig, Tensor
from negrec.losses.catalogue import cce_catalogue
from negrec.losses.functions import (
    bce,
    bce_rows,
    bpr,
    bpr_rows,
    bpr_value_and_grad,
    cce,
    cce_rows,
    cce_value_and_grad,
    hinge,
    hinge_rows,
    simce,
    simce_rows,
)


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
        return bpr_rows(pos, neg, weights, self.config.neg_reduction == "mean")

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
        return bce_rows(pos, neg, weights, self.config.neg_reduction == "mean")


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
        return cce_rows(pos, neg, log_q, weights, self.config.neg_reduction == "mean")

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
        return simce_rows(pos, neg, weights, self.config.margin)


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
        return hinge_rows(
            pos, neg, weights, self.config.neg_reduction == "mean", self.config.margin
        )
