"""The loss plugin kind: :class:`Loss` (the base class every loss subclasses), its
config :class:`LossConfig`, the registry :data:`LOSSES` and :func:`make_loss`.

A loss implements :meth:`Loss.rows` (each positive's loss; the batch value is their mean)
and may override its fast forms (:meth:`Loss.value_and_grad_dense`,
:meth:`Loss.catalogue`); nothing outside the class tests which loss it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from negrec.config_base import from_dict, to_dict
from negrec.errors import ConfigError
from negrec.registry import Registry

NEG_INF = float("-inf")
Tensor = torch.Tensor
Reduction = Literal["sum", "mean"]


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


def make_loss(name: str, **options: Any) -> Loss:
    """The loss ``name`` with ``options`` (checked as in a config's ``[loss]`` table)."""
    return Loss(LOSSES.config(name, {"name": name, **options}, "loss"))
