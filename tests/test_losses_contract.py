"""The loss contract, checked for every registered loss: one test class per loss class
inherits :class:`negrec.testing.LossContract` (what it checks is listed there) with a plain
reference formula, and a guard test fails when a registered loss has no such class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from negrec.losses import LOSSES
from negrec.testing import LossContract

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sp(x: float) -> float:
    """softplus, stable for any finite x"""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def lse(values: Sequence[float]) -> float:
    """log sum exp, stable"""
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


class Summed(LossContract):
    """A loss summing over negatives, or averaging with ``neg_reduction = "mean"``."""

    def reduce(self, terms: Sequence[float]) -> float:
        total = math.fsum(terms)
        return total / len(terms) if self.options.get("neg_reduction") == "mean" else total


class TestBPR(Summed):
    name = "bpr"

    def reference(self, pos: float, neg: Sequence[float]) -> float:
        return self.reduce([sp(n - pos) for n in neg])


class TestBPRMean(TestBPR):
    options: ClassVar[dict[str, Any]] = {"neg_reduction": "mean"}


class TestBCE(Summed):
    name = "bce"

    def reference(self, pos: float, neg: Sequence[float]) -> float:
        return sp(-pos) + self.reduce([sp(n) for n in neg])


class TestCCE(LossContract):
    name = "cce"

    def reference(self, pos: float, neg: Sequence[float]) -> float:
        shift = math.log(len(neg)) if self.options.get("neg_reduction") == "mean" else 0.0
        return lse([pos, *(n - shift for n in neg)]) - pos


class TestSSM(TestCCE):
    name = "ssm"  # an alias of cce: same class, same formula
    options: ClassVar[dict[str, Any]] = {"neg_reduction": "mean"}


class TestSoftmax(TestCCE):
    name = "softmax"


class TestSimCE(LossContract):
    name = "simce"
    options: ClassVar[dict[str, Any]] = {"margin": 0.5}

    def reference(self, pos: float, neg: Sequence[float]) -> float:
        return max(0.0, self.options["margin"] - pos + max(neg))


class TestHinge(Summed):
    name = "hinge"
    options: ClassVar[dict[str, Any]] = {"margin": 2.0}

    def reference(self, pos: float, neg: Sequence[float]) -> float:
        return self.reduce([max(0.0, self.options["margin"] - pos + n) for n in neg])


def all_contract_classes() -> list[type[LossContract]]:
    found, todo = [], list(LossContract.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_registered_loss_has_a_contract_class() -> None:
    """Every registered loss class (aliases share one) has a test class for its name."""
    tested = {c.name for c in all_contract_classes() if c.plugin is None and hasattr(c, "name")}
    assert set(LOSSES.names()) <= tested
