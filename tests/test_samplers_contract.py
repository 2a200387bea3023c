"""The sampler contract (docs/architecture.md#contracts), checked for every registered
sampler: one test class per sampler inherits :class:`negrec.testing.SamplerContract` (what it
checks is listed there), and a guard test fails when a registered sampler has no such class."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from negrec.errors import ConfigError
from negrec.samplers import SAMPLERS, Negatives, Sampler
from negrec.samplers.uniform import UniformSampler
from negrec.testing import SamplerContract
from negrec.testing.samplers import (
    N_ITEMS,
    TRAIN,
    assert_no_training_positives,
    batch_pairs,
)


def test_the_positive_check_catches_the_papers_pool() -> None:
    """The paper's code draws its pool with randint over all items; the check must fail on
    such a pool (it is what makes the contract test below able to fail)."""
    users, _ = batch_pairs(256, "cpu")
    pool = torch.randint(N_ITEMS, (256, 20), generator=torch.Generator().manual_seed(0))
    with pytest.raises(AssertionError, match="training positives"):
        assert_no_training_positives(TRAIN, users, Negatives(ids=pool))


# ------------------------------------------------------------------ one class per sampler
class TestUniform(SamplerContract):
    name = "uniform"


class TestUniformDistinct(SamplerContract):
    name = "uniform"
    options: ClassVar[dict[str, Any]] = {"replacement": False, "k": 2}
    k = 2


class TestFull(SamplerContract):
    name = "full"
    random = False

    def expected_k(self, batch: int) -> int | None:
        return None


class TestPopularity(SamplerContract):
    name = "popularity"


class TestPopularityDenseFallback(SamplerContract):
    """Rejection rounds switched off: every rejected entry takes the dense exact path."""

    name = "popularity"
    options: ClassVar[dict[str, Any]] = {"alpha": 0.75}

    def make(self, **overrides: Any) -> Sampler:
        sampler = super().make(**overrides)
        sampler.max_rounds = 0  # type: ignore[misc]
        sampler.dense_chunk = 64 * N_ITEMS  # type: ignore[misc]  # several chunks
        return sampler


class TestInBatch(SamplerContract):
    name = "inbatch"
    random = False

    def expected_k(self, batch: int) -> int | None:
        return batch


class TestDNS(SamplerContract):
    name = "dns"
    options: ClassVar[dict[str, Any]] = {"pool": 10, "k": 4}


class TestDNSOriginal(SamplerContract):
    name = "dns"
    options: ClassVar[dict[str, Any]] = {"pool": 2}
    k = 1


class TestSoftmaxV(SamplerContract):
    name = "softmax_v"
    options: ClassVar[dict[str, Any]] = {"pool": 4, "rho": 2.0}


class TestSoftmaxTau(SamplerContract):
    name = "softmax_tau"
    options: ClassVar[dict[str, Any]] = {"pool": 4, "tau": 0.5, "by": "loss"}


def test_every_registered_sampler_has_a_contract_class() -> None:
    tested = {c.name for c in SamplerContract.__subclasses__() if c.plugin is None}
    assert tested == set(SAMPLERS.names())


# ------------------------------------------------------------------ config validation
@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"name": "popularity", "alpha": -1.0}, "sampler.alpha"),
        ({"name": "popularity", "smoothing": float("nan")}, "sampler.smoothing"),
        ({"name": "dns", "pool": 0}, "sampler.pool"),
        ({"name": "dns", "pool": 5, "k": 6}, "sampler.k"),
        ({"name": "softmax_v", "rho": 0.0}, "sampler.rho"),
        ({"name": "softmax_v", "pool": 8, "k": 3}, "sampler.k"),
        ({"name": "softmax_tau", "tau": -1.0}, "sampler.tau"),
        ({"name": "softmax_tau", "by": "rank"}, "sampler.by"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        SAMPLERS.config(options["name"], options, "sampler")
    assert err.value.key == key


def test_softmax_pool_and_k_are_one_number() -> None:
    by_pool = SAMPLERS.config("softmax_v", {"name": "softmax_v", "pool": 7}, "sampler")
    by_k = SAMPLERS.config("softmax_v", {"name": "softmax_v", "k": 7}, "sampler")
    both = SAMPLERS.config("softmax_v", {"name": "softmax_v", "k": 7, "pool": 7}, "sampler")
    assert by_pool.k == by_pool.pool == by_k.k == by_k.pool == both.k == 7


def test_pool_too_large_without_replacement_names_pool() -> None:
    config = SAMPLERS.config(
        "dns", {"name": "dns", "pool": 5, "k": 1, "replacement": False}, "sampler"
    )
    with pytest.raises(ConfigError) as err:
        SAMPLERS.get("dns", "sampler.name")(config, TRAIN)  # user 0 has only 2 negatives
    assert err.value.key == "sampler.pool"


def test_experiment_config_builds_every_sampler() -> None:
    from negrec.experiment.config import load_config

    for name, sets in [
        ("popularity", ["sampler.alpha=0.75"]),
        ("inbatch", []),
        ("dns", ["sampler.pool=200", "sampler.k=5"]),
        ("softmax_v", ["sampler.pool=200", "sampler.rho=0.5"]),
        ("softmax_tau", ["sampler.k=50", "sampler.tau=0.2"]),
    ]:
        config = load_config(None, [f'sampler.name="{name}"', *sets])
        assert config.sampler.name == name


def test_uniform_without_exclusion_draws_rows_in_order():
    """``exclude_positives = false`` draws ids with ``torch.randint``: one call over three
    batches gives what three calls give."""
    config = SAMPLERS.config("uniform", {"exclude_positives": False, "k": 3}, "sampler")
    sampler = SAMPLERS.get("uniform", "sampler.name")(config, TRAIN)
    assert sampler.draws_rows_in_order
    users, pos = batch_pairs(90, "cpu", 2)
    whole = sampler.sample(users, pos, 3, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    parts = [
        sampler.sample(users[r], pos[r], 3, generator=g) for r in (slice(0, 33), slice(33, 90))
    ]
    assert whole.ids is not None
    assert torch.equal(whole.ids, torch.cat([p.ids for p in parts if p.ids is not None]))


def test_the_rows_in_order_contract_fails_for_distinct_rows_that_claim_it():
    """Distinct rows redraw their repeats in rounds over the whole call: a sampler making
    them that claimed ``draws_rows_in_order`` would change its negatives when the trainer
    draws a block at once, and the contract test catches it."""

    class Claiming(UniformSampler):
        @property
        def draws_rows_in_order(self) -> bool:
            return True

    class Contract(TestUniformDistinct):
        def make(self, **overrides: Any) -> UniformSampler:
            config = SAMPLERS.config("uniform", self.options, "sampler")
            return Claiming(config, TRAIN)

    with pytest.raises(AssertionError):
        Contract().test_one_draw_over_batches_equals_the_draws_batch_by_batch()
