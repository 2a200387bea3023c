"""The sampler contract, as a conformance mixin (LensKit-style) for any sampler.

A sampler's test class inherits :class:`SamplerContract` and states only its registered
``name``, small ``options`` and the K it returns. The mixin checks shapes, dtypes and
device; that no valid entry is a training positive of its user; determinism under a seed;
finite weights and ``log_q``; that the typed config rejects unknown keys; that every
registered loss trains with the sampler (finite value and gradients); that samplers
which score candidates refuse to run without ``model=``; and, for a sampler claiming
``draws_rows_in_order``, that one call over three batches' rows equals three calls.

The data is built to stress exclusion: user 0 has 38 of the 40 items as positives, and
the popularity proposal puts most of its mass on them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from negrec.data.batches import Batch
from negrec.data.interactions import Interactions
from negrec.errors import ConfigError
from negrec.models.base import ModelConfig
from negrec.models.mf import MF
from negrec.samplers import SAMPLERS, Negatives, Sampler
from negrec.testing._common import PluginContract, loss_with
from negrec.train import score_batch

N_USERS, N_ITEMS = 12, 40


def stress_interactions() -> Interactions:
    """12 users x 40 items: user 0 owns items 0..37, user 1 owns 30..39 (so every item is
    seen in training), the others draw a Zipf-skewed handful."""
    rng = np.random.default_rng(7)
    rows = [list(range(38)), list(range(30, 40))]
    p = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    for _ in range(2, N_USERS):
        size = int(rng.integers(1, 12))
        rows.append(sorted(rng.choice(N_ITEMS, size=size, replace=False, p=p / p.sum())))
    users = np.repeat(np.arange(N_USERS), [len(r) for r in rows])
    items = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    return Interactions.from_arrays(users, items, n_users=N_USERS, n_items=N_ITEMS)


TRAIN = stress_interactions()


def batch_pairs(n: int, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` (user, positive) training pairs [n], [n], user 0 heavily represented."""
    users, items = TRAIN.to_coo()
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, users.size, size=n)
    return (
        torch.as_tensor(users[rows], device=device),
        torch.as_tensor(items[rows], device=device),
    )


def make_model(device: str) -> MF:
    model = MF(ModelConfig(name="mf", dim=8), TRAIN, torch.Generator().manual_seed(0))
    return model.to(device)


def scorer_for(model: MF, users: torch.Tensor):
    """What the trainer passes as ``model=``: item ids [B, N] -> scores [B, N], no grad."""

    def score(items: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.score(users, items)

    return score


def assert_no_training_positives(
    train: Interactions, users: torch.Tensor, negatives: Negatives
) -> None:
    """No valid entry of ``negatives`` is a training positive of its row's user."""
    if negatives.ids is None:  # the whole catalogue: positives must be masked
        assert negatives.valid is not None
        hit = train.dense_mask(users) & negatives.valid
    else:
        hit = train.contains(users.unsqueeze(1), negatives.ids)
        if negatives.valid is not None:
            hit &= negatives.valid
    assert not bool(hit.any()), f"{int(hit.sum())} training positives proposed as negatives"


class SamplerContract(PluginContract):
    """Conformance tests every sampler's test class inherits."""

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    #: K passed to ``sample`` by these tests (the trainer passes ``config.k``)
    k: ClassVar[int] = 4
    #: False for samplers without randomness (in-batch, full)
    random: ClassVar[bool] = True

    registry = SAMPLERS
    #: a sampler class defined beside the test (see :class:`PluginContract`)
    plugin: ClassVar[type[Sampler] | None] = None

    # -------------------------------------------------------------- per-sampler hooks
    def make(self, **overrides: Any) -> Sampler:
        options = {"name": self.name, **self.options, **overrides}
        config = SAMPLERS.config(self.name, options, "sampler")
        return SAMPLERS.get(self.name, "sampler.name")(config, TRAIN)

    def expected_k(self, batch: int) -> int | None:
        """Columns of ``ids`` for a batch of ``batch`` rows (None: ``ids is None``)."""
        return self.k

    def draw(
        self, sampler: Sampler, device: str, seed: int = 0, n: int = 64, batch_seed: int = 0
    ) -> tuple[torch.Tensor, Negatives]:
        users, pos = batch_pairs(n, device, batch_seed)
        model = make_model(device) if sampler.needs_model else None
        scorer = scorer_for(model, users) if model is not None else None
        g = torch.Generator(device=device).manual_seed(seed)
        return users, sampler.sample(users, pos, self.k, model=scorer, generator=g)

    # -------------------------------------------------------------- the contract
    def test_registered_with_typed_config(self) -> None:
        cls = SAMPLERS.get(self.name, "sampler.name")
        sampler = self.make()
        assert isinstance(sampler, cls)
        assert isinstance(sampler.config, cls.Config)
        with pytest.raises(ConfigError, match=r"sampler\.bogus"):
            self.make(bogus=1)

    def test_shapes_dtype_device(self, device: str) -> None:
        users, neg = self.draw(self.make(), device)
        b, k = users.numel(), self.expected_k(users.numel())
        if k is None:
            assert neg.ids is None
            assert neg.valid is not None and neg.valid.shape == (b, N_ITEMS)
            return
        assert neg.ids is not None
        assert neg.ids.dtype == torch.int64 and neg.ids.shape == (b, k)
        assert neg.ids.device.type == device
        assert int(neg.ids.min()) >= 0 and int(neg.ids.max()) < N_ITEMS
        for name in ("log_q", "weights"):
            value = getattr(neg, name)
            if value is not None:
                assert value.shape == (b, k) and value.dtype.is_floating_point, name
                assert value.device.type == device, name
                assert not value.requires_grad, name
        if neg.valid is not None:
            assert neg.valid.shape == (b, k) and neg.valid.dtype == torch.bool

    def test_never_returns_training_positives(self, device: str) -> None:
        sampler = self.make()
        for seed in range(3):
            users, neg = self.draw(sampler, device, seed=seed, n=256, batch_seed=seed)
            assert_no_training_positives(TRAIN, users, neg)

    def test_deterministic_under_a_seed(self) -> None:
        sampler = self.make()
        _, a = self.draw(sampler, "cpu", seed=3)
        _, b = self.draw(self.make(), "cpu", seed=3)
        for field in ("ids", "log_q", "weights", "valid"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None) == (y is None), field
            if x is not None:
                assert torch.equal(x, y), field

    def test_one_draw_over_batches_equals_the_draws_batch_by_batch(self) -> None:
        """What ``draws_rows_in_order`` promises the trainer (it then draws a block of
        batches in one call)."""
        sampler = self.make()
        if not sampler.draws_rows_in_order:
            pytest.skip("draws batch by batch")
        users, pos = batch_pairs(96, "cpu", 5)
        g = torch.Generator().manual_seed(7)
        whole = sampler.sample(users, pos, self.k, generator=g)
        g = torch.Generator().manual_seed(7)
        parts = [
            sampler.sample(users[rows], pos[rows], self.k, generator=g)
            for rows in (slice(0, 40), slice(40, 47), slice(47, 96))
        ]
        for field in ("ids", "log_q", "weights", "valid"):
            value = getattr(whole, field)
            if value is None:
                assert all(getattr(part, field) is None for part in parts), field
            else:
                assert torch.equal(value, torch.cat([getattr(p, field) for p in parts])), field

    def test_another_seed_draws_other_negatives(self) -> None:
        if not self.random:
            pytest.skip("no randomness in this sampler")
        sampler = self.make()
        _, a = self.draw(sampler, "cpu", seed=1)
        _, b = self.draw(sampler, "cpu", seed=2)
        assert a.ids is not None and b.ids is not None
        assert not torch.equal(a.ids, b.ids)

    def test_weights_and_log_q_are_finite(self) -> None:
        _, neg = self.draw(self.make(), "cpu", n=256)
        valid = neg.valid if neg.valid is not None else torch.ones((), dtype=torch.bool)
        if neg.weights is not None:
            assert bool(torch.isfinite(neg.weights).all())
            assert bool((neg.weights >= 0).all())
        if neg.log_q is not None:
            assert bool(torch.isfinite(neg.log_q[valid.expand_as(neg.log_q)]).all())
            assert bool((neg.log_q <= 1e-6).all()), "log of a probability is <= 0"

    def test_every_loss_trains_with_it(self, loss_name: str) -> None:
        sampler = self.make()
        model = make_model("cpu")
        users, pos = batch_pairs(32, "cpu")
        scorer = scorer_for(model, users) if sampler.needs_model else None
        g = torch.Generator().manual_seed(0)
        neg = sampler.sample(users, pos, self.k, model=scorer, generator=g)
        pos_s, neg_s, _ = score_batch(model, Batch(ctx=users, users=users, pos=pos), neg)
        fn = loss_with(loss_name, margin=0.5)
        value = fn(pos_s, neg_s, log_q=neg.log_q, weights=neg.weights)
        assert bool(torch.isfinite(value)), f"{loss_name} with {self.name}: {value}"
        value.backward()
        for p in model.parameters():
            assert p.grad is not None and bool(torch.isfinite(p.grad).all())

    def test_needs_a_model_when_it_scores(self) -> None:
        sampler = self.make()
        if not sampler.needs_model:
            pytest.skip("does not score candidates")
        users, pos = batch_pairs(8, "cpu")
        with pytest.raises(ValueError, match="model="):
            sampler.sample(users, pos, self.k, generator=torch.Generator().manual_seed(0))
