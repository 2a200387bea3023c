"""A loss, a sampler and a model written outside negrec get every contract test for free
(they are the examples of docs/extending.md).

Each is one small class (with its typed config) and one registration: ``plugin = ...`` on
the test class registers it under ``name`` for each contract test only (a plugin package
would write ``@LOSSES.register("squared_hinge")`` on the class instead). The contract
mixins then check values against the plain formula, the batch mean, gradients, -inf
padding, the fast forms, and training with every sampler and model; the last test shows
that nothing leaked into the registries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from negrec.losses import LOSSES, Loss, LossConfig
from negrec.models import MODELS, Model, ModelConfig
from negrec.models.base import squared_norms
from negrec.samplers import SAMPLERS, Negatives, Sampler, SamplerConfig
from negrec.testing import LossContract, ModelContract, SamplerContract


# ----------------------------------------------------------------------------- the loss
@dataclass
class SquaredHingeConfig(LossConfig):
    name: str = "squared_hinge"
    margin: float = 1.0


class SquaredHinge(Loss):
    """sum_j relu(margin - s+ + s_j)^2: a smooth pairwise hinge."""

    Config = SquaredHingeConfig
    config: SquaredHingeConfig

    def rows(self, pos, neg, *, log_q=None, weights=None):
        per_neg = F.relu(self.config.margin - pos.unsqueeze(1) + neg).square()  # [B, K]
        return (per_neg if weights is None else per_neg * weights).sum(dim=1)  # [B]


class TestSquaredHinge(LossContract):
    name = "squared_hinge"
    plugin = SquaredHinge  # the one registration
    options: ClassVar[dict[str, Any]] = {"margin": 0.5}

    def reference(self, pos: float, neg: Sequence[float]) -> float:
        return sum(max(0.0, 0.5 - pos + n) ** 2 for n in neg)


# ----------------------------------------------------------------------------- the sampler
@dataclass
class MaskedUniformConfig(SamplerConfig):
    name: str = "masked_uniform"


class MaskedUniform(Sampler):
    """Uniform over the whole catalogue; the user's positives drawn are marked padding."""

    Config = MaskedUniformConfig

    def sample(self, users, pos_items, k, *, model=None, generator):
        ids = torch.randint(self.n_items, (users.numel(), k), generator=generator)  # [B, K]
        return Negatives(ids=ids, valid=~self.train.contains(users.unsqueeze(1), ids))


class TestMaskedUniform(SamplerContract):
    name = "masked_uniform"
    plugin = MaskedUniform  # the one registration


# ----------------------------------------------------------------------------- the model
@dataclass
class BiasedMFConfig(ModelConfig):
    name: str = "biased_mf"


class BiasedMF(Model):
    """Dot product plus an item bias."""

    Config = BiasedMFConfig

    def __init__(self, config, train, generator):
        super().__init__(config, train, generator)
        with torch.random.fork_rng(devices=[]):  # nn.Embedding's own init draws globally
            self.user = nn.Embedding(self.n_users, config.dim)
            self.item = nn.Embedding(self.n_items, config.dim)
            self.bias = nn.Embedding(self.n_items, 1)
        with torch.no_grad():
            self.user.weight.normal_(0.0, config.init_std, generator=generator)
            self.item.weight.normal_(0.0, config.init_std, generator=generator)
            self.bias.weight.zero_()

    def score(self, ctx, items):  # [B], [B, K] -> [B, K]
        dots = (self.user(ctx).unsqueeze(1) * self.item(items)).sum(-1)
        return dots + self.bias(items).squeeze(-1)

    def score_all(self, ctx):  # [B] -> [B, n_items]
        return self.user(ctx) @ self.item.weight.T + self.bias.weight.T

    def l2_penalty(self, ctx, items):
        norms = squared_norms(self.user, ctx) + squared_norms(self.item, items)
        return norms / ctx.numel()


class TestBiasedMF(ModelContract):
    name = "biased_mf"
    plugin = BiasedMF  # the one registration


def test_the_plugins_are_registered_only_inside_their_tests() -> None:
    assert "squared_hinge" not in LOSSES.names()
    assert "masked_uniform" not in SAMPLERS.names()
    assert "biased_mf" not in MODELS.names()
