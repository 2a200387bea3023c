"""The loss contract, as a conformance mixin (LensKit-style) for any loss.

A loss's test class inherits :class:`LossContract`, states its registered ``name`` and
small ``options``, and writes :meth:`LossContract.reference`: the loss of one positive in
plain Python. The mixin checks

- the registration and typed config (unknown keys refused, ``Loss(LossConfig(name=...))``
  builds it, the config round-trips through an experiment config, the loss through
  ``copy.deepcopy`` and pickle);
- values: each positive's loss (:meth:`negrec.losses.Loss.rows`) equals the reference;
- the batch mean: the loss of a batch is the mean of its rows' losses, each computed alone
  (with importance weights and ``log_q`` too);
- gradients: ``torch.autograd.gradcheck`` in float64 (weights and ``log_q`` held fixed);
- -inf handling: padded negatives scored -inf (and a row with every negative padded) give
  a finite value, finite gradients (no NaN), zero gradient at the padding, and the value
  of a negligible finite score there; finite values and gradients at scores of +-1e4;
- the same value and gradients on every device (CUDA when present) as on the CPU;
- the fast forms agree with the definition: :meth:`~negrec.losses.Loss.value_and_grad`
  (the fused MF step's) with autograd through the loss on masked scores, and
  :meth:`~negrec.losses.Loss.catalogue` (the ``full`` sampler's) with the loss of
  :func:`~negrec.losses.catalogue_scores`;
- it trains with every registered sampler (MF, one epoch through ``fit``, on the fused
  LazyAdam step where it applies) and every registered model (one autograd step): finite
  value, finite gradients. Combinations the config layer rejects are skipped with its
  reason.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
import torch

from negrec.errors import ConfigError
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import build_components
from negrec.losses import LOSSES, NEG_INF, Loss, LossConfig, catalogue_scores
from negrec.testing._common import PluginContract
from negrec.testing.models import SPLIT, first_batch, params, raw_config
from negrec.train import fit, score_and_loss

#: small options of the built-in models for the one-step tests (others: their defaults)
SMALL_MODELS: dict[str, dict[str, Any]] = {
    "lightgcn": {"layers": 2},
    "ncf": {"layers": [8, 6, 4]},
    "sasrec": {"max_len": 5, "heads": 2},
    "gru4rec": {"max_len": 5},
}
SHAPES = [(1, 1), (3, 4), (6, 7)]  # (B, K) of the value and batch-mean checks


def draw(rows: int, k: int, seed: int) -> dict[str, torch.Tensor]:
    """Float64 ``pos`` [B] and ``neg`` [B, K] (scale 3), positive ``weights`` and a
    ``log_q`` [B, K] of log probabilities, from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "pos": 3 * torch.randn(rows, generator=gen, dtype=torch.float64),
        "neg": 3 * torch.randn(rows, k, generator=gen, dtype=torch.float64),
        "weights": 0.1 + 2 * torch.rand(rows, k, generator=gen, dtype=torch.float64),
        "log_q": torch.log_softmax(torch.randn(rows, k, generator=gen, dtype=torch.float64), 1),
    }


class LossContract(PluginContract):
    """Conformance tests every loss's test class inherits."""

    name: ClassVar[str]
    #: options of the ``[loss]`` table for these tests (merged over the loss's defaults)
    options: ClassVar[dict[str, Any]] = {}
    registry = LOSSES
    #: a loss class defined beside the test (see :class:`PluginContract`)
    plugin: ClassVar[type[Loss] | None] = None

    # -------------------------------------------------------------- per-loss hooks
    def reference(self, pos: float, neg: Sequence[float]) -> float:
        """The loss of one positive scored ``pos`` with negatives scored ``neg`` (no
        weights, no ``log_q``), written plainly with ``math``; ``self.options`` holds the
        options under test."""
        raise NotImplementedError(f"{type(self).__name__} must define reference()")

    def make(self, **overrides: Any) -> Loss:
        options = {"name": self.name, **self.options, **overrides}
        return Loss(LOSSES.config(self.name, options, "loss"))

    def experiment(self, model: str = "mf", sampler: str = "uniform") -> ExperimentConfig:
        """A tiny experiment with this loss (raises ConfigError where the config layer
        rejects the combination)."""
        raw = raw_config({"name": model, "dim": 8, **SMALL_MODELS.get(model, {})}, sampler=sampler)
        raw["loss"] = {"name": self.name, **self.options}
        return ExperimentConfig.from_dict(raw)

    def sampler_for_models(self) -> str:
        return LOSSES.get(self.name, "loss.name").requires_sampler or "uniform"

    # -------------------------------------------------------------- the contract
    def test_registered_with_typed_config(self) -> None:
        cls = LOSSES.get(self.name, "loss.name")
        loss = self.make()
        assert isinstance(loss, cls) and isinstance(loss.config, cls.Config)
        assert loss.config.name == self.name
        assert isinstance(Loss(LossConfig(name=self.name)), cls)
        with pytest.raises(ConfigError, match=r"loss\.bogus"):
            self.make(bogus=1)
        for clone in (copy.deepcopy(loss), pickle.loads(pickle.dumps(loss))):  # e.g. to workers
            assert type(clone) is cls and clone.config == loss.config
        config = self.experiment(sampler=self.sampler_for_models())
        again = ExperimentConfig.from_dict(config.to_toml_dict())
        assert again.loss == config.loss == loss.config

    def test_values_match_the_reference(self) -> None:
        loss = self.make()
        for seed, (rows, k) in enumerate(SHAPES):
            x = draw(rows, k, seed)
            got = loss.rows(x["pos"], x["neg"])
            assert got.shape == (rows,)
            expected = [
                self.reference(float(p), [float(v) for v in n])
                for p, n in zip(x["pos"], x["neg"], strict=True)
            ]
            torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
            value = loss(x["pos"], x["neg"])
            assert value.shape == ()
            assert float(value) == pytest.approx(math.fsum(expected) / rows, rel=1e-9, abs=1e-12)

    def test_batch_loss_is_the_mean_of_each_positive_alone(self) -> None:
        loss = self.make()
        for seed, (rows, k) in enumerate(SHAPES):
            x = draw(rows, k, 10 + seed)
            extra = {"weights": x["weights"], "log_q": x["log_q"]}
            for kwargs in ({}, extra):
                batch = loss(x["pos"], x["neg"], **kwargs)
                alone = [
                    loss(
                        x["pos"][i : i + 1],
                        x["neg"][i : i + 1],
                        **{key: value[i : i + 1] for key, value in kwargs.items()},
                    )
                    for i in range(rows)
                ]
                torch.testing.assert_close(batch, torch.stack(alone).mean())
                rows_value = loss.rows(x["pos"], x["neg"], **kwargs)
                torch.testing.assert_close(batch, rows_value.mean())

    def test_gradients_match_finite_differences(self) -> None:
        loss = self.make()
        x = draw(4, 5, 20)
        for kwargs in ({}, {"weights": x["weights"], "log_q": x["log_q"]}):
            pos = x["pos"].clone().requires_grad_(True)
            neg = x["neg"].clone().requires_grad_(True)
            assert torch.autograd.gradcheck(
                lambda p, n, kw=kwargs: loss(p, n, **kw), (pos, neg), eps=1e-6, atol=1e-5
            )

    def test_minus_inf_negatives_contribute_nothing(self) -> None:
        """Padding scored -inf: finite value and gradients, zero gradient at the padding,
        the value of a negligible finite score (-1e4 below the others) there; row 0 has
        every negative padded, with weights and ``log_q`` of any value there."""
        loss = self.make()
        x = draw(4, 6, 30)
        pad = torch.zeros(4, 6, dtype=torch.bool)
        pad[:, 1::2] = True
        pad[0] = True
        for kwargs in ({}, {"weights": x["weights"], "log_q": x["log_q"]}):
            results = []
            for fill in (NEG_INF, -1e4):
                pos = x["pos"].clone().requires_grad_(True)
                neg = x["neg"].clone().requires_grad_(True)
                value = loss(pos, neg.masked_fill(pad, fill), **kwargs)
                value.backward()
                assert pos.grad is not None and neg.grad is not None
                results.append((value.detach(), pos.grad, neg.grad))
            (value, pos_grad, neg_grad), (finite, finite_pos_grad, finite_neg_grad) = results
            assert bool(torch.isfinite(value)), f"{self.name}: {value} with -inf negatives"
            assert bool(torch.isfinite(pos_grad).all() and torch.isfinite(neg_grad).all())
            assert bool((neg_grad[pad] == 0).all()), "gradient flows into padding"
            torch.testing.assert_close(value, finite)
            torch.testing.assert_close(pos_grad, finite_pos_grad)
            torch.testing.assert_close(neg_grad[~pad], finite_neg_grad[~pad])

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    @pytest.mark.parametrize("magnitude", [1e4, -1e4])
    def test_finite_at_extreme_scores(self, dtype: torch.dtype, magnitude: float) -> None:
        loss = self.make()
        gen = torch.Generator().manual_seed(40)
        pos = (magnitude * torch.rand(5, generator=gen, dtype=dtype)).requires_grad_(True)
        neg = (-magnitude * torch.rand(5, 3, generator=gen, dtype=dtype)).requires_grad_(True)
        value = loss(pos, neg)
        value.backward()
        assert bool(torch.isfinite(value)), f"{self.name}: {value}"
        assert pos.grad is not None and neg.grad is not None
        assert bool(torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all())

    def test_value_and_grad_is_autograd_of_the_loss(self) -> None:
        """The fused MF step's form (closed or by autograd) against the definition, with
        masked negatives, importance weights and ``log_q``."""
        loss = self.make()
        x = draw(5, 4, 50)
        scores = torch.cat([x["pos"].unsqueeze(1), x["neg"]], dim=1)  # [B, 1 + K]
        valid = torch.rand(5, 4, generator=torch.Generator().manual_seed(51)) > 0.3
        valid[:, 0] = True
        for kwargs in ({}, {"weights": x["weights"], "log_q": x["log_q"]}):
            value, grad = loss.value_and_grad(scores, valid=valid, **kwargs)
            leaf = scores.clone().requires_grad_(True)
            neg = leaf[:, 1:].masked_fill(~valid, NEG_INF)
            expected = loss(leaf[:, 0], neg, **kwargs)
            (expected_grad,) = torch.autograd.grad(expected, leaf)
            assert not value.requires_grad
            torch.testing.assert_close(value, expected.detach())
            torch.testing.assert_close(grad, expected_grad)

    def test_catalogue_is_the_loss_of_catalogue_scores(self) -> None:
        """The ``full`` sampler's form against the definition: every item a negative, the
        user's positives masked (the positive among them)."""
        loss = self.make()
        gen = torch.Generator().manual_seed(60)
        scores = 3 * torch.randn(5, 9, generator=gen, dtype=torch.float64)
        pos_items = torch.randint(9, (5,), generator=gen)
        valid = torch.rand(5, 9, generator=gen) > 0.3
        valid[torch.arange(5), pos_items] = False
        weights = 0.1 + torch.rand(5, 9, generator=gen, dtype=torch.float64)
        for kwargs in ({}, {"weights": weights}):
            got = []
            for direct in (True, False):
                leaf = scores.clone().requires_grad_(True)
                if direct:
                    value = loss.catalogue(leaf, pos_items, valid=valid, **kwargs)
                else:
                    value = loss(*catalogue_scores(leaf, pos_items, valid), **kwargs)
                (grad,) = torch.autograd.grad(value, leaf)
                got.append((value.detach(), grad))
            (value, grad), (expected, expected_grad) = got
            torch.testing.assert_close(value, expected)
            torch.testing.assert_close(grad, expected_grad)

    def test_same_on_every_device(self, device: str) -> None:
        """Value and gradients on ``device`` equal the CPU's (float32, padding included)."""
        loss = self.make()
        x = draw(6, 5, 70)
        neg = x["neg"].masked_fill(torch.arange(5) >= 3, NEG_INF)  # [B, K], 2 padded columns
        got = []
        for where in ("cpu", device):
            inputs = {"pos": x["pos"], "neg": neg, "weights": x["weights"], "log_q": x["log_q"]}
            moved = {k: v.to(where, torch.float32) for k, v in inputs.items()}
            pos, neg_scores = (moved.pop(k).requires_grad_(True) for k in ("pos", "neg"))
            value = loss(pos, neg_scores, **moved)
            value.backward()
            assert value.device.type == where
            assert pos.grad is not None and neg_scores.grad is not None
            got.append([t.detach().cpu() for t in (value, pos.grad, neg_scores.grad)])
        for ours, cpu in zip(got[1], got[0], strict=True):
            torch.testing.assert_close(ours, cpu, rtol=1e-5, atol=1e-6)

    # -------------------------------------------------------------- every sampler, model
    def test_trains_with_every_sampler(self, sampler_name: str) -> None:
        """MF with ``sampler_name``, one epoch through ``fit`` (LazyAdam: the fused MF
        step where it applies), after one autograd step with finite gradients."""
        try:
            config = self.experiment("mf", sampler_name)
        except ConfigError as err:
            pytest.skip(f"the config layer rejects it: {err}")
        self._one_step(config)
        config.train.optimizer = "lazy_adam"
        parts = build_components(config, SPLIT)
        start = params(parts.model)
        state = fit(parts.model, parts.sampler, parts.loss, SPLIT, config.train)
        assert all(math.isfinite(h["loss"]) for h in state.history)
        end = params(parts.model)
        assert any(not torch.equal(start[k], end[k]) for k in start), "nothing was trained"

    def test_trains_with_every_model(self, model_name: str) -> None:
        """``model_name`` with the uniform sampler (or the one this loss requires): one
        training step with a finite value and finite gradients."""
        try:
            config = self.experiment(model_name, self.sampler_for_models())
        except ConfigError as err:
            pytest.skip(f"the config layer rejects it: {err}")
        self._one_step(config)

    def _one_step(self, config: ExperimentConfig) -> None:
        parts = build_components(config, SPLIT)
        model = parts.model
        model.train()
        batch = first_batch(model)
        scorer = None
        if parts.sampler.needs_model:

            def scorer(items: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return model.score(batch.ctx, items)

        g = torch.Generator().manual_seed(0)
        negatives = parts.sampler.sample(
            batch.users, batch.pos, config.sampler.k, model=scorer, generator=g
        )
        value, _ = score_and_loss(model, parts.loss, batch, negatives)
        assert bool(torch.isfinite(value)), f"{self.name} x {config.sampler.name}: {value}"
        value.backward()
        grads = {key: p.grad for key, p in model.named_parameters() if p.grad is not None}
        assert grads, f"{self.name}: no parameter of {config.model.name} got a gradient"
        for key, grad in grads.items():
            assert bool(torch.isfinite(grad).all()), f"non-finite gradient for {key}"
