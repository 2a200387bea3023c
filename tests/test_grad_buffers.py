"""The dense optimizer path adds the embedding tables' gradients into buffers kept for the
whole run (``negrec.train.grads_accumulate_in_place``): no new [n, d] gradient per step,
the same training as with one."""

from __future__ import annotations

import pytest
import torch

import negrec.train as train_module
from negrec.data.splits import Split, random_split
from negrec.data.synthetic import synthetic_interactions
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import build_components
from negrec.train import embedding_tables, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def split() -> Split:
    data = synthetic_interactions(n_users=120, n_items=400, mean_degree=12)
    return random_split(data, 0.2, 0.1, 0)


def experiment(model: str, optimizer: str, **train) -> ExperimentConfig:
    lr = 0.5 if optimizer == "sgd" else 0.02
    options = {"epochs": 2, "lr": lr, "batch_size": 64, "metric": "ndcg@10"}
    options |= {"optimizer": optimizer, "fused": False}
    return ExperimentConfig.from_dict(
        {
            "model": {"name": model, "dim": 16},
            "sampler": {"name": "uniform", "k": 3},
            "loss": {"name": "bpr"},
            "train": {**options, **train},
            "eval": {"ks": [10], "auc": False},
        }
    )


def trained(split: Split, config: ExperimentConfig) -> dict[str, torch.Tensor]:
    parts = build_components(config, split)
    fit(parts.model, parts.sampler, parts.loss, split, config.train)
    return {key: value.clone() for key, value in parts.model.state_dict().items()}


def test_dense_adam_made_a_new_table_gradient_every_step(split, monkeypatch):
    """Regression: with torch's Adam (``fused = false``) every MF step allocated two new
    [n, d] gradients and freed them at the next ``zero_grad``; on Gowalla glibc's heap
    grew to 1.9-4.9 GB in some runs. Now autograd hands the tables row-sparse gradients and
    the optimizer reads one dense buffer per table, the same tensor every step."""
    config = experiment("mf", "adam")
    parts = build_components(config, split)
    incoming: list[bool] = []  # per table and step: the gradient autograd produced
    for table in embedding_tables(parts.model):
        table.register_hook(lambda grad: incoming.append(grad.is_sparse))
    seen: dict[int, list[torch.Tensor]] = {}  # table -> the .grad of every step
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        for table in embedding_tables(parts.model):
            assert table.grad is not None and not table.grad.is_sparse
            seen.setdefault(id(table), []).append(table.grad)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    fit(parts.model, parts.sampler, parts.loss, split, config.train)
    assert incoming and all(incoming)
    assert len(seen) == 2
    for grads in seen.values():
        assert len(grads) > 2 and all(grad is grads[0] for grad in grads)
    # the run's own setting is back: dense gradients outside fit
    assert not any(module.sparse for module in parts.model.modules() if hasattr(module, "sparse"))


@pytest.mark.parametrize(
    ("model", "optimizer", "extra"),
    [
        ("mf", "adam", {}),
        ("mf", "adam", {"l2": 0.01, "weight_decay": 0.001}),
        ("mf", "sgd", {}),
        ("ncf", "adam", {}),  # an MLP beside the tables: its gradients are not buffered
        ("lightgcn", "adam", {}),  # dense table gradients (propagation): added, not taken
    ],
)
def test_buffered_gradients_train_like_per_step_gradients(
    split, monkeypatch, model, optimizer, extra
):
    config = experiment(model, optimizer, **extra)
    buffered = trained(split, config)
    monkeypatch.setattr(train_module, "grads_accumulate_in_place", lambda *args: False)
    fresh = trained(split, config)
    assert buffered.keys() == fresh.keys()
    for key, value in buffered.items():
        torch.testing.assert_close(value, fresh[key], rtol=1e-4, atol=1e-6, msg=key)
    # the comparison can fail: training moved the weights away from the initial ones
    initial = build_components(config, split).model.state_dict()
    assert any(not torch.equal(initial[key], value) for key, value in buffered.items())


def test_in_place_only_for_torch_optimizers_on_one_cpu_process_with_few_rows(split):
    config = experiment("mf", "adam")
    parts = build_components(config, split)
    model, cpu, world = parts.model, torch.device("cpu"), train_module.LOCAL
    adam = torch.optim.Adam(model.parameters())
    lazy = train_module.LazyAdam(model.parameters())
    in_place = train_module.grads_accumulate_in_place
    assert config.train.batch_size * (1 + 0) < model.n_items
    assert in_place(model, 0, adam, config.train, cpu, world)
    assert not in_place(model, 0, lazy, config.train, cpu, world)
    assert not in_place(model, 0, adam, config.train, torch.device("meta"), world)
    # a step gathers more item rows than there are items: fresh dense gradients
    assert not in_place(model, model.n_items, adam, config.train, cpu, world)
