"""A fused training step for MF with Adam (the default), LazyAdam or SGD on CPU: scores, row
gradients and the row update in compiled passes, without autograd over the embedding tables.

With one negative per positive a generic MF step is some 25 small torch operations (embedding
lookups, a gather-dot, the loss, the autograd engine, row-sparse COO gradients, the
optimizer), each costing more in dispatch than in arithmetic: 1,024 (user, item) pairs of
d = 64 are 0.4 MFLOP. Fused-loop libraries such as `implicit` (Cython SGD) run such an
epoch several times faster. This step keeps every part of negrec's contract independent
(the sampler proposes the negatives, the loss is any :class:`negrec.losses.Loss`, with its
``weights``, ``log_q`` and masked negatives) and fuses only what MF and the optimizer make
plain:

1. ``scores[b, w] = <p_u, q_i>`` for the positive and the K negatives ([B, 1 + K], compiled);
2. ``g = d loss / d scores`` by :meth:`Loss.value_and_grad` (BPR in closed form, other
   losses by autograd through the loss on that small tensor alone);
3. one compiled pass sums each touched row's gradient (``d/dp_u = sum_w g[b, w] q_i``,
   ``d/dq_i = g[b, w] p_u``, plus the explicit L2 term), a second updates those rows:
   LazyAdam's update in LazyAdam's own state (so checkpoints, resume and the autograd
   path interoperate), or SGD's ``p -= lr * g``. With :class:`RowwiseAdam` (what
   ``optimizer = "adam"`` builds for MF on one CPU process) the rows read are first brought
   up to date (their pending momentum-only steps), so the update is dense Adam's.

The result is the autograd path's update (``optimizer = "adam"``, ``"lazy_adam"`` or
``"sgd"``) up to float rounding (``tests/test_fused.py``). :func:`fused_step` says when it
applies: CPU, float32, fp32 precision, one process, exactly :class:`negrec.models.MF`,
RowwiseAdam, LazyAdam or SGD without momentum or weight decay (dense SGD decays untouched
rows too), ``train.fused``.
"""

from __future__ import annotations

import math

import torch

from negrec._fast.kernels import gather_dot_forward, mf_row_step
from negrec._fast.optim import LazyAdam, RowwiseAdam
from negrec.distributed import World
from negrec.losses import Loss
from negrec.models.mf import MF
from negrec.samplers.base import Negatives


class FusedMFStep:
    """One training step of MF + any loss + LazyAdam or SGD: returns the batch loss [] and
    updates the touched rows in place (see the module doc)."""

    def __init__(self, model: MF, loss: Loss, optimizer: torch.optim.Optimizer, l2: float):
        self.loss, self.optimizer, self.l2 = loss, optimizer, l2
        self.tables = (model.user.weight, model.item.weight)
        (self.group,) = optimizer.param_groups  # make_optimizer builds one group
        self.adam = isinstance(optimizer, LazyAdam)
        # RowwiseAdam (the default "adam"): the rows a step reads first take the
        # momentum-only steps dense Adam gave them since they were last read
        self.rowwise = isinstance(optimizer, RowwiseAdam)
        # SGD keeps no state: its row-gradient scratch, all zero between steps, lives here
        # (LazyAdam's is part of its state)
        self.scratch = [
            {"buffer": torch.zeros_like(t), "touched": torch.zeros(t.shape[0], dtype=torch.bool)}
            for t in ([] if self.adam else self.tables)
        ]

    @staticmethod
    def accepts(negatives: Negatives) -> bool:
        """Per-row negative ids (not the whole catalogue, not a shared in-batch list)."""
        return negatives.ids is not None and not negatives.shared

    def __call__(
        self, users: torch.Tensor, pos: torch.Tensor, negatives: Negatives
    ) -> torch.Tensor:
        assert negatives.ids is not None
        user_table, item_table = (t.detach().numpy() for t in self.tables)
        items = torch.cat([pos.unsqueeze(1), negatives.ids], dim=1)  # [B, 1 + K]
        users = users.contiguous()
        if self.rowwise:
            assert isinstance(self.optimizer, RowwiseAdam)
            self.optimizer.catch_up(self.tables[0], users)
            self.optimizer.catch_up(self.tables[1], items.reshape(-1))
        scores = torch.empty(items.shape, dtype=torch.float32)  # [B, 1 + K]
        gather_dot_forward(user_table, item_table, items.numpy(), scores.numpy(), users.numpy())
        value, grad = self.loss.value_and_grad(
            scores, valid=negatives.valid, log_q=negatives.log_q, weights=negatives.weights
        )  # [], [B, 1 + K]
        if not math.isfinite(value):  # leave the weights as they were; fit raises
            return value
        group = self.group
        if self.adam:
            assert isinstance(self.optimizer, LazyAdam)
            states = [self.optimizer.row_state(t) for t in self.tables]
            corrections = [self.optimizer.count_step(t, group["betas"]) for t in self.tables]
            beta1, beta2 = group["betas"]
        else:  # SGD: the moments are never read; the scratch stands in for them
            states = [
                {"exp_avg": s["buffer"], "exp_avg_sq": s["buffer"], **s} for s in self.scratch
            ]
            corrections, beta1, beta2 = [(1.0, 1.0)] * 2, 0.0, 0.0
        user_state, item_state = (
            tuple(state[k].numpy() for k in ("exp_avg", "exp_avg_sq", "buffer", "touched"))
            for state in states
        )
        squares = mf_row_step(
            user_table,
            item_table,
            users.numpy(),
            items.numpy(),
            grad.numpy(),
            2.0 * self.l2 / len(users),
            user_state,
            item_state,
            self.adam,
            group["lr"],
            beta1,
            beta2,
            group.get("eps", 0.0),
            group["weight_decay"],
            corrections[0],
            corrections[1],
        )
        return value + self.l2 * squares / len(users)


def fused_step(
    model: torch.nn.Module,
    loss: Loss,
    optimizer: torch.optim.Optimizer,
    *,
    enabled: bool,
    l2: float,
    precision: str,
    device: torch.device,
    world: World,
) -> FusedMFStep | None:
    """The fused step when it applies to this run (see the module doc), else None."""
    if type(model) is not MF:  # exactly MF: a subclass may score differently
        return None
    plain_sgd = (
        type(optimizer) is torch.optim.SGD
        and not any(optimizer.param_groups[0][k] for k in ("momentum", "weight_decay"))
        and not optimizer.param_groups[0]["maximize"]
    )
    if not (isinstance(optimizer, LazyAdam) or plain_sgd):
        return None
    applies = (
        enabled
        and len(optimizer.param_groups) == 1
        and device.type == "cpu"
        and precision == "fp32"
        and not world.distributed  # gradients would have to be summed over ranks first
        and all(
            t.dtype == torch.float32 and t.is_contiguous()
            for t in (model.user.weight, model.item.weight)
        )
    )
    return FusedMFStep(model, loss, optimizer, l2) if applies else None
