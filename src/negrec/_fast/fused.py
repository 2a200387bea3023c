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

Each pass runs on numba's threads (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``) with
the same bits on any thread count: rows are split by owner (:mod:`negrec._fast.owned`).

The result is the autograd path's update (``optimizer = "adam"``, ``"lazy_adam"`` or
``"sgd"``) up to float rounding (``tests/test_fused.py``). :func:`fused_step` says when it
applies: CPU, float32, fp32 precision, one process, exactly :class:`negrec.models.MF`,
RowwiseAdam, LazyAdam or SGD without momentum or weight decay (dense SGD decays untouched
rows too), ``train.fused``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from negrec._fast.blocked import LAZY_ADAM, ROWWISE_ADAM, SGD, run_block
from negrec._fast.optim import LazyAdam, RowwiseAdam
from negrec._fast.owned import ChunkChooser, mf_chunks, mf_row_step, scores
from negrec.distributed import World
from negrec.losses import Loss
from negrec.losses.builtin import BPR
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
        # (state tensors, table data pointers, their numpy views): see _arrays
        self._cache: tuple[Any, ...] | None = None
        # threads or one, by timing (same bits either way); None: always numba's threads
        self.chooser = ChunkChooser() if ADAPTIVE_THREADS else None

    @staticmethod
    def accepts(negatives: Negatives) -> bool:
        """Per-row negative ids (not the whole catalogue, not a shared in-batch list)."""
        return negatives.ids is not None and not negatives.shared

    def __call__(
        self, users: torch.Tensor, pos: torch.Tensor, negatives: Negatives
    ) -> torch.Tensor:
        assert negatives.ids is not None
        items = torch.cat([pos.unsqueeze(1), negatives.ids], dim=1)  # [B, 1 + K]
        user_ids, item_ids = users.contiguous().numpy(), items.numpy()  # [B], [B, 1 + K]
        group = self.group
        if self.adam:
            assert isinstance(self.optimizer, LazyAdam)
            states = [self.optimizer.row_state(t) for t in self.tables]
        else:  # SGD: the moments are never read; the scratch stands in for them
            states = self.scratch
        user_table, item_table, user_state, item_state = self._arrays(states)
        # owner chunks of the row passes: numba's thread count (1: the serial twins)
        chunks = mf_chunks(item_ids.size * user_table.shape[1])
        if self.chooser is not None:
            chunks = self.chooser.pick(chunks)
        start = time.perf_counter()
        batch_scores = torch.empty(items.shape, dtype=torch.float32)  # [B, 1 + K]
        out = batch_scores.numpy()
        if self.rowwise:  # the rows read are first brought up to date, in the same pass
            assert isinstance(self.optimizer, RowwiseAdam)
            self.optimizer.catch_up_and_score(*self.tables, user_ids, item_ids, out, chunks)
        else:
            scores(user_table, item_table, user_ids, item_ids, out, chunks)
        value, grad = self.loss.value_and_grad(
            batch_scores, valid=negatives.valid, log_q=negatives.log_q, weights=negatives.weights
        )  # [], [B, 1 + K]
        if not math.isfinite(value):  # leave the weights as they were; fit raises
            return value
        if self.adam:
            assert isinstance(self.optimizer, LazyAdam)
            corrections = [self.optimizer.count_step(t, group["betas"]) for t in self.tables]
            beta1, beta2 = group["betas"]
        else:
            corrections, beta1, beta2 = [(1.0, 1.0)] * 2, 0.0, 0.0
        squares = mf_row_step(
            user_table,
            item_table,
            user_ids,
            item_ids,
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
            chunks,
        )
        if self.chooser is not None:
            self.chooser.record(chunks, time.perf_counter() - start)
        return value + self.l2 * squares / len(users)

    def _arrays(self, states: list[dict[str, Any]]) -> tuple[Any, ...]:
        """numpy views of both tables and of each one's (m, v, buffer, touched) row state,
        made again only when a tensor behind them changed (``load_state_dict`` replaces the
        optimizer's state; assigning ``.data`` moves a table): ~25 ``.numpy()`` calls per
        step cost ~30 us, 5% of a default ML-1M step. A view keeps its tensor alive, so a
        changed ``data_ptr`` is a moved table, never a reused address."""
        keys = ("exp_avg", "exp_avg_sq", "buffer", "touched") if self.adam else _SGD_KEYS
        tensors = tuple(state[k] for state in states for k in keys)
        pointers = tuple(t.data_ptr() for t in self.tables)
        cached = self._cache
        if (
            cached is None
            or cached[1] != pointers
            or any(a is not b for a, b in zip(cached[0], tensors, strict=True))
        ):
            views = [t.numpy() for t in tensors]
            tables = tuple(t.detach().numpy() for t in self.tables)
            cached = (tensors, pointers, (*tables, tuple(views[:4]), tuple(views[4:])))
            self._cache = cached
        return cached[2]


class BlockedMFSteps:
    """Fused MF+BPR steps held back and run a block at a time, in one compiled loop per
    thread (:mod:`negrec._fast.blocked`): the default MF run's path on CPU when the
    sampler does not read the model (its negatives can be drawn ahead).

    Calling it with a batch returns the losses [] of the steps it ran then (often none:
    the batch waits); :meth:`flush` runs what waits. The model is current only after a
    flush, so the trainer flushes before anything reads it (an unblocked step, the end of
    the epoch). The update is :class:`FusedMFStep`'s up to float rounding (the same
    optimizer state, counters and history), with the same bits on any thread count."""

    def __init__(self, step: FusedMFStep):
        self.step = step
        self.users: list[np.ndarray] = []  # int64 [B] per waiting step
        self.items: list[np.ndarray] = []  # int64 [B, 1 + K] per waiting step
        self.chooser = ChunkChooser(probe=2, every=128) if ADAPTIVE_THREADS else None
        self.mean = getattr(step.loss.config, "neg_reduction", "sum") == "mean"

    @staticmethod
    def applies(loss: Loss) -> bool:
        """Exactly BPR (its gradient is compiled into the block)."""
        return type(loss) is BPR

    @staticmethod
    def steps_per_block(ids_per_step: int) -> int:
        """How many steps of ``ids_per_step`` ids (batch rows x (1 + K)) a block holds."""
        return max(1, BLOCK_IDS // ids_per_step)

    @staticmethod
    def accepts(negatives: Negatives) -> bool:
        """Per-row negative ids with nothing masked or weighted (BPR ignores ``log_q``)."""
        return (
            FusedMFStep.accepts(negatives)
            and negatives.valid is None
            and (negatives.weights is None)
        )

    def __call__(
        self, users: torch.Tensor, pos: torch.Tensor, negatives: Negatives
    ) -> list[torch.Tensor]:
        assert negatives.ids is not None
        items = torch.cat([pos.unsqueeze(1), negatives.ids], dim=1).numpy()  # [B, 1 + K]
        losses = []
        if self.items and self.items[0].shape != items.shape:  # (an epoch's last batch)
            losses = self.flush()
        self.users.append(users.numpy().astype(np.int64, copy=True))
        self.items.append(items.astype(np.int64, copy=True))
        if len(self.items) * items.size >= BLOCK_IDS:
            losses += self.flush()
        return losses

    def flush(self) -> list[torch.Tensor]:
        """Run the waiting steps; their losses [] in order (up to and including the first
        non-finite one, whose rows are left as they were: the trainer then raises)."""
        if not self.items:
            return []
        users, items = np.stack(self.users), np.stack(self.items)  # [S, B], [S, B, W]
        self.users, self.items = [], []
        step = self.step
        group, optimizer = step.group, step.optimizer
        n_steps, n_rows, width = items.shape
        betas = group.get("betas", (0.0, 0.0))
        corrections = np.ones((n_steps, 4))  # [S, 4]: (c1, c2) of users, of items
        if step.adam:
            assert isinstance(optimizer, LazyAdam)
            states = [optimizer.row_state(t) for t in step.tables]
            first: tuple[int, ...] = (states[0]["step"], states[0].get("base", 0))
            first += (states[1]["step"], states[1].get("base", 0))
            for s in range(n_steps):  # (the history grows here: views taken after)
                corrections[s, :2] = optimizer.count_step(step.tables[0], betas)
                corrections[s, 2:] = optimizer.count_step(step.tables[1], betas)
        else:  # SGD: the moments are never read; the scratch stands in for them
            states, first = step.scratch, (0, 0, 0, 0)
        kind = ROWWISE_ADAM if step.rowwise else LAZY_ADAM if step.adam else SGD
        user_p, item_p, user_state, item_state = step._arrays(states)  # (m, v, buffer, touched)
        tables = [(user_p, *user_state), (item_p, *item_state)]
        if kind == ROWWISE_ADAM:  # RowwiseAdam's views: (.., (p, m, v, last), history, powers)
            assert isinstance(optimizer, RowwiseAdam)
            views = [optimizer._view(t) for t in step.tables]
            lasts = [view[2][3] for view in views]
            histories = [view[3] for view in views]
            powers = views[0][4]
        else:  # unused
            lasts = [np.zeros(1, np.int64)] * 2
            histories = [(np.zeros(1), np.zeros(1))] * 2
            powers = np.zeros((4, 1))
        dim = tables[0][0].shape[1]
        chunks = mf_chunks(n_rows * width * dim)
        if self.chooser is not None:
            chunks = self.chooser.pick(chunks)
        row_loss = np.zeros((n_steps, n_rows))  # [S, B]
        start = time.perf_counter()
        done = run_block(
            chunks, users, items, tables[0], tables[1], lasts[0], lasts[1],
            histories[0], histories[1], first, powers, kind, group["lr"], betas[0], betas[1],
            group.get("eps", 0.0), group["weight_decay"], corrections, self.mean, step.l2,
            np.empty((n_rows, width), np.float32), np.empty((n_rows, dim), np.float32),
            np.empty((n_rows, dim), np.float32), row_loss, row_loss.view(np.int64),
        )  # fmt: skip
        if self.chooser is not None:
            self.chooser.record(chunks, (time.perf_counter() - start) / n_steps)
        ran = min(done + 1, n_steps)  # the steps done, and a non-finite one
        return list(torch.from_numpy(row_loss[:ran].sum(axis=1)).float().unbind())


#: the ids (batch rows x (1 + K)) a block holds at most: 64 Ki ids is 32 steps of 1,024
#: pairs at K = 1, one step at K = 100
BLOCK_IDS = 1 << 16

#: whether the step chooses between numba's threads and one by timing them (ChunkChooser);
#: False: always numba's threads (tests set it to force the threaded path)
ADAPTIVE_THREADS = True

#: SGD's stand-ins for (m, v, buffer, touched): the moments are never read
_SGD_KEYS = ("buffer", "buffer", "buffer", "touched")


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
