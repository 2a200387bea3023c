"""The model contract, as a conformance mixin (LensKit-style) for any model.

A model's test class inherits :class:`ModelContract` and states only its registered
``name`` and small ``options``. The mixin checks the typed config, seeded initialisation
that leaves the global RNG alone, shapes of ``score`` / ``score_all`` / ``l2_penalty`` on
evaluation and training contexts, that ``score`` agrees with ``score_all``, a
``state_dict`` save/load round trip, evaluation on both parts, LazyAdam, an end-to-end
run, and, for every registered loss x every registered sampler (plugins registered when
the tests are collected included; combinations the config layer rejects are skipped),
that a training step has finite gradients on every parameter and that training is
deterministic under a seed.

All on one tiny leave-one-out split with timestamps, so sequential models run on it too.
"""

from __future__ import annotations

import copy
import io
import json
from typing import Any, ClassVar

import pytest
import torch

from negrec.data.batches import Batch
from negrec.data.splits import Split, leave_one_out_split
from negrec.data.synthetic import synthetic_interactions
from negrec.errors import ConfigError
from negrec.evaluation import EvalConfig, evaluate
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import build_components, run_experiment
from negrec.models import MODELS, Model
from negrec.models.sequential import contexts_for
from negrec.testing._common import PluginContract
from negrec.train import fit, score_batch

SYNTHETIC: dict[str, Any] = {
    "n_users": 16,
    "n_items": 30,
    "mean_degree": 7.0,
    "n_clusters": 3,
    "seed": 3,
}
DATA = synthetic_interactions(**{k: v for k, v in SYNTHETIC.items()})
SPLIT: Split = leave_one_out_split(DATA)
TRAIN = {"epochs": 1, "batch_size": 32, "lr": 0.01, "l2": 1e-4, "metric": "ndcg@10"}
EVAL = {"ks": [10], "auc": False}


def raw_config(model: dict[str, Any], loss: str = "bpr", sampler: str = "uniform") -> dict:
    return {
        "data": {"source": "synthetic", "synthetic": SYNTHETIC},
        "split": {"method": "leave_one_out"},
        "model": model,
        "sampler": {"name": sampler, **({} if sampler in ("full", "inbatch") else {"k": 3})},
        "loss": {"name": loss},
        "train": TRAIN,
        "eval": EVAL,
    }


def params(model: Model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def first_batch(model: Model, split: Split = SPLIT, seed: int = 0) -> Batch:
    batches = model.make_batches(split.train, 32, next(model.parameters()).device)
    device = next(model.parameters()).device
    batch: Batch = next(iter(batches.epoch(torch.Generator(device=device).manual_seed(seed))))
    return batch


class ModelContract(PluginContract):
    """Conformance tests every model's test class inherits."""

    name: ClassVar[str]
    #: small options for speed (merged over the model's defaults)
    options: ClassVar[dict[str, Any]] = {}
    registry = MODELS
    #: a model class defined beside the test (see :class:`PluginContract`)
    plugin: ClassVar[type[Model] | None] = None

    # -------------------------------------------------------------- per-model hooks
    def model_options(self, **overrides: Any) -> dict[str, Any]:
        return {"name": self.name, "dim": 8, **self.options, **overrides}

    def make(self, seed: int = 0, **overrides: Any) -> Model:
        config = MODELS.config(self.name, self.model_options(**overrides), "model")
        cls = MODELS.get(self.name, "model.name")
        return cls(config, SPLIT.train, torch.Generator().manual_seed(seed))

    def eval_ctx(self, model: Model, part: str = "valid") -> Any:
        users = torch.arange(SPLIT.n_users, device=next(model.parameters()).device)
        contexts = contexts_for(model, SPLIT, part)
        return users if contexts is None else contexts(users)

    def experiment(self, loss: str = "bpr", sampler: str = "uniform", **train: Any) -> Any:
        raw = raw_config(self.model_options(), loss, sampler)
        raw["train"] = {**TRAIN, **train}
        return ExperimentConfig.from_dict(raw)

    # -------------------------------------------------------------- config and init
    def test_registered_with_typed_config(self) -> None:
        cls = MODELS.get(self.name, "model.name")
        model = self.make()
        assert isinstance(model, cls) and isinstance(model.config, cls.Config)
        with pytest.raises(ConfigError, match=r"model\.bogus"):
            self.make(bogus=1)
        config = self.experiment()  # the config round-trips through its TOML form
        again = ExperimentConfig.from_dict(config.to_toml_dict())
        assert again.model == config.model

    def test_init_is_seeded_and_independent_of_the_global_rng(self) -> None:
        torch.manual_seed(1)
        a = self.make(seed=0)
        torch.manual_seed(2)
        b, c = self.make(seed=0), self.make(seed=1)
        pa, pb, pc = params(a), params(b), params(c)
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
        assert any(not torch.equal(pa[k], pc[k]) for k in pa)

    def test_init_leaves_the_global_rng_alone(self) -> None:
        before = torch.get_rng_state()
        self.make(seed=0)
        assert torch.equal(before, torch.get_rng_state())

    # -------------------------------------------------------------- scoring
    def test_shapes(self, device: str) -> None:
        model = self.make().to(device)
        model.eval()
        n_items = SPLIT.n_items
        for ctx, b in [(self.eval_ctx(model), SPLIT.n_users), *self._train_ctx(model)]:
            items = torch.randint(n_items, (b, 5), generator=torch.Generator().manual_seed(0))
            items = items.to(device)
            scores = model.score(ctx, items)
            assert scores.shape == (b, 5) and scores.dtype.is_floating_point
            assert scores.device.type == device
            everything = model.score_all(ctx)
            assert everything.shape == (b, n_items)
            assert bool(torch.isfinite(everything).all())
            penalty = model.l2_penalty(ctx, items)
            assert penalty.shape == () and float(penalty.detach()) >= 0.0

    def _train_ctx(self, model: Model) -> list[tuple[Any, int]]:
        batch = first_batch(model)
        return [(batch.ctx, batch.pos.numel())]

    def test_score_agrees_with_score_all(self, device: str) -> None:
        model = self.make().to(device)
        model.eval()
        with torch.no_grad():
            for ctx, b in [(self.eval_ctx(model), SPLIT.n_users), *self._train_ctx(model)]:
                everything = model.score_all(ctx)  # [B, n_items]
                items = torch.arange(SPLIT.n_items, device=device).roll(3).expand(b, -1)
                some = model.score(ctx, items)  # [B, n_items], in another order
                assert torch.allclose(some, everything.gather(1, items), rtol=1e-5, atol=1e-6)

    def test_score_candidates_agrees_with_score(self) -> None:
        """One candidate list shared by all rows (in-batch negatives)."""
        model = self.make().eval()
        with torch.no_grad():
            for ctx, b in [(self.eval_ctx(model), SPLIT.n_users), *self._train_ctx(model)]:
                items = torch.tensor([4, 0, 7, 7, 29])  # [C], a repeat included
                shared = model.score_candidates(ctx, items)
                expanded = model.score(ctx, items.expand(b, -1))
                assert shared.shape == (b, 5)
                torch.testing.assert_close(shared, expanded, rtol=1e-5, atol=1e-6)

    # -------------------------------------------------------------- every loss x sampler
    def test_trains_with_every_loss_and_sampler(self, loss_name: str, sampler_name: str) -> None:
        loss, sampler = loss_name, sampler_name
        try:
            config = self.experiment(loss, sampler)
        except ConfigError as err:
            pytest.skip(f"the config layer rejects it: {err}")
        # one step, as the trainer takes it: finite loss and gradients on every parameter
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
        negatives = parts.sampler.sample(batch.users, batch.pos, 3, model=scorer, generator=g)
        pos, neg, touched = score_batch(model, batch, negatives)
        value = parts.loss(pos, neg, log_q=negatives.log_q, weights=negatives.weights)
        value = value + 1e-4 * model.l2_penalty(batch.ctx, touched)
        assert bool(torch.isfinite(value)), f"{loss} x {sampler}: {value}"
        value.backward()
        for key, p in model.named_parameters():
            assert p.grad is not None, f"no gradient for {key}"
            assert bool(torch.isfinite(p.grad).all()), f"non-finite gradient for {key}"

        # a whole epoch through fit, twice: it learns, and the same seed gives the same numbers
        runs = []
        for _ in range(2):
            parts = build_components(config, SPLIT)
            start = params(parts.model)
            state = fit(parts.model, parts.sampler, parts.loss, SPLIT, config.train)
            assert all(torch.isfinite(torch.tensor(h["loss"])) for h in state.history)
            end = params(parts.model)
            assert any(not torch.equal(start[k], end[k]) for k in start), "nothing was trained"
            runs.append((state.history[-1]["loss"], end))
        (loss_a, a), (loss_b, b) = runs
        assert loss_a == loss_b
        assert all(torch.equal(a[k], b[k]) for k in a), "not deterministic under a seed"

    # -------------------------------------------------------------- persistence, evaluation
    def test_save_load_round_trip_and_deepcopy(self) -> None:
        config = self.experiment()
        parts = build_components(config, SPLIT)
        fit(parts.model, parts.sampler, parts.loss, SPLIT, config.train)
        trained = parts.model.eval()
        buffer = io.BytesIO()
        torch.save(trained.state_dict(), buffer)
        buffer.seek(0)
        fresh = self.make(seed=123).eval()
        ctx = self.eval_ctx(fresh)
        with torch.no_grad():
            before = fresh.score_all(ctx)  # fills any evaluation cache with the old weights
            fresh.load_state_dict(torch.load(buffer, weights_only=True))
            after, expected = fresh.score_all(ctx), trained.score_all(ctx)
        assert not torch.equal(before, expected)
        assert torch.equal(after, expected)
        clone = copy.deepcopy(trained)  # e.g. to keep a best model in memory
        with torch.no_grad():
            assert torch.equal(clone.score_all(ctx), expected)

    def test_evaluates_on_both_parts(self) -> None:
        model = self.make()
        for part in ("valid", "test"):
            contexts = contexts_for(model, SPLIT, part)
            result = evaluate(model, SPLIT, part, EvalConfig(ks=[5, 10]), contexts=contexts)
            assert result.users.size > 0
            assert all(0.0 <= v <= 1.0 for v in result.summary.values()), result.summary

    def test_lazy_adam(self) -> None:
        config = self.experiment(optimizer="lazy_adam")
        parts = build_components(config, SPLIT)
        start = params(parts.model)
        state = fit(parts.model, parts.sampler, parts.loss, SPLIT, config.train)
        assert torch.isfinite(torch.tensor(state.history[-1]["loss"]))
        end = params(parts.model)
        assert any(not torch.equal(start[k], end[k]) for k in start)

    def test_runs_end_to_end(self, tmp_path: Any) -> None:
        raw = raw_config(self.model_options())
        raw.update(name=self.name, output=str(tmp_path))
        raw["train"] = {**TRAIN, "epochs": 2}
        run = run_experiment(ExperimentConfig.from_dict(raw), progress=False)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["model"] == self.name
        assert 0.0 <= summary["test"]["ndcg@10"] <= 1.0
        assert summary["n_test_users"] > 0
