"""A loss and a sampler written outside negrec get every contract test for free.

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

from negrec.losses import LOSSES, Loss, LossConfig
from negrec.samplers import SAMPLERS, Negatives, Sampler, SamplerConfig
from negrec.testing import LossContract, SamplerContract


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


def test_the_plugins_are_registered_only_inside_their_tests() -> None:
    assert "squared_hinge" not in LOSSES.names()
    assert "masked_uniform" not in SAMPLERS.names()
