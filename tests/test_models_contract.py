"""The model contract (docs/architecture.md#contracts), checked for every registered
model: one test class per model inherits :class:`negrec.testing.ModelContract` (what it
checks is listed there), and a guard test fails when a registered model has no such class."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from negrec.models import MODELS
from negrec.models.base import squared_norms
from negrec.testing import ModelContract
from negrec.testing.models import SPLIT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ one class per model
class TestMF(ModelContract):
    name = "mf"


class TestLightGCN(ModelContract):
    name = "lightgcn"
    options: ClassVar[dict[str, Any]] = {"layers": 2}


class TestNCF(ModelContract):
    name = "ncf"
    options: ClassVar[dict[str, Any]] = {"layers": [8, 6, 4]}

    def test_score_all_in_item_blocks_is_exact(self, monkeypatch: pytest.MonkeyPatch) -> None:
        model = self.make().eval()
        users = torch.arange(SPLIT.n_users)
        with torch.no_grad():
            whole = model.score_all(users)
            monkeypatch.setattr(type(model), "score_all_block", 7 * SPLIT.n_users * 8)
            blocked = model.score_all(users)  # blocks of 7 items: 5 blocks, the last short
        torch.testing.assert_close(blocked, whole, rtol=1e-6, atol=1e-7)  # float rounding only


class TestNCFGMF(ModelContract):
    name = "ncf"
    options: ClassVar[dict[str, Any]] = {"variant": "gmf"}


class TestNCFMLP(ModelContract):
    name = "ncf"
    options: ClassVar[dict[str, Any]] = {"variant": "mlp", "layers": [8, 4]}


class TestSASRec(ModelContract):
    name = "sasrec"
    options: ClassVar[dict[str, Any]] = {"max_len": 5, "heads": 2, "dropout": 0.3}


class TestGRU4Rec(ModelContract):
    name = "gru4rec"
    options: ClassVar[dict[str, Any]] = {"max_len": 5, "layers": 2, "dropout_embed": 0.1}


def test_every_registered_model_has_a_contract_class() -> None:
    tested = {c.name for c in ModelContract.__subclasses__() if c.plugin is None}
    assert tested == set(MODELS.names())


@pytest.mark.parametrize("n_ids", [3, 400])  # few ids: unique; many: bincount
@pytest.mark.parametrize("sparse", [False, True])
def test_squared_norms_equals_the_gathered_sum(n_ids: int, sparse: bool) -> None:
    """Regression (Softmax-v with an explicit L2 ran 10x slower per epoch: the penalty
    gathered [B, 200, d] rows): the per-distinct-row sum has the value and the gradient
    of the gathered sum, repeated ids included, and keeps sparse gradients sparse."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(20, (n_ids // 2, 2), generator=generator)  # repeats, 20-row table
    grads = []
    for fast in (True, False):
        table = torch.nn.Embedding(20, 4, sparse=sparse)
        with torch.no_grad():
            table.weight.copy_(torch.randn(20, 4, generator=torch.Generator().manual_seed(2)))
        value = squared_norms(table, ids) if fast else table(ids).pow(2).sum()
        value.backward()
        grads.append((value.detach(), table.weight.grad))
    (fast_value, fast_grad), (slow_value, slow_grad) = grads
    torch.testing.assert_close(fast_value, slow_value)
    assert fast_grad.is_sparse == sparse
    torch.testing.assert_close(fast_grad.to_dense(), slow_grad.to_dense())
