"""LazyAdam: Adam that updates only the embedding rows a batch touched.

Dense Adam walks every row of every embedding table at every step, although a batch of
1,024 (user, item) pairs touches a few thousand rows; on large catalogues that is most of
the step time. LazyAdam (as TensorFlow Addons' ``LazyAdam``) takes the row-sparse
gradients of ``nn.Embedding(sparse=True)`` and applies the Adam update to the touched rows
only, with the moments of untouched rows left as they are. Unlike ``torch.optim.SparseAdam``
it never sorts the gradient indices: duplicates are summed into a dense buffer with
``index_add_`` and the touched rows are found from a flag vector. Dense gradients (any
non-embedding parameter) get the ordinary Adam update, so one optimizer serves a whole
model. ``weight_decay`` is Adam's coupled L2, applied to the rows updated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from negrec._fast.kernels import (
    PREFETCH_MAX_WIDTH,
    adam_catch_up_all,
    adam_catch_up_and_score,
    adam_catch_up_rows,
    catch_up_powers,
    gather_dot_forward,
    lazy_adam_rows,
    wide_ahead,
)
from negrec._fast.owned import catch_up_both, scores


class LazyAdam(torch.optim.Optimizer):
    """Adam with lazy (touched-rows-only) updates for sparse embedding gradients."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def,unused-ignore]
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.row_state(p) if p.grad.is_sparse else self.moments(p)
                correction1, correction2 = self.count_step(p, group["betas"])
                step_size = group["lr"] / correction1
                if p.grad.is_sparse and _compiled_ok(p):
                    grad = p.grad
                    lazy_adam_rows(
                        p.detach().numpy(),
                        state["exp_avg"].numpy(),
                        state["exp_avg_sq"].numpy(),
                        grad._indices()[0].contiguous().numpy(),
                        grad._values().contiguous().numpy(),
                        state["buffer"].numpy(),
                        state["touched"].numpy(),
                        group["lr"],
                        beta1,
                        beta2,
                        group["eps"],
                        group["weight_decay"],
                        correction1,
                        correction2,
                    )
                elif p.grad.is_sparse:
                    grad = p.grad
                    index = grad._indices()[0]  # [nnz] rows, with repeats
                    buffer, touched = state["buffer"], state["touched"]
                    buffer.index_add_(0, index, grad._values())
                    touched.index_fill_(0, index, True)
                    rows = touched.nonzero().squeeze(1)  # [R] unique touched rows
                    touched.index_fill_(0, rows, False)
                    # index_select / index_copy_: much faster than x[rows] on CPU
                    g = buffer.index_select(0, rows)  # [R, d] summed gradient per row
                    buffer.index_fill_(0, rows, 0.0)
                    param_rows = p.index_select(0, rows)
                    if group["weight_decay"]:
                        g = g.add(param_rows, alpha=group["weight_decay"])
                    m = state["exp_avg"].index_select(0, rows).lerp_(g, 1.0 - beta1)
                    v = state["exp_avg_sq"].index_select(0, rows)
                    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                    state["exp_avg"].index_copy_(0, rows, m)
                    state["exp_avg_sq"].index_copy_(0, rows, v)
                    denom = (v / correction2).sqrt_().add_(group["eps"])
                    p.index_copy_(0, rows, param_rows.addcdiv_(m, denom, value=-step_size))
                else:
                    g = p.grad
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    m, v = state["exp_avg"], state["exp_avg_sq"]
                    m.lerp_(g, 1.0 - beta1)
                    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                    denom = (v / correction2).sqrt_().add_(group["eps"])
                    p.addcdiv_(m, denom, value=-step_size)
        return loss

    def moments(self, p: torch.Tensor) -> dict[str, Any]:
        """The Adam state of ``p``: ``step``, ``exp_avg``, ``exp_avg_sq`` (made on first use)."""
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        return state

    def row_state(self, p: torch.Tensor) -> dict[str, Any]:
        """:meth:`moments` plus the scratch of a row-sparse update: ``buffer`` (the summed
        gradient per row) and ``touched`` flags, both all zero between steps. Public for
        fused steps that update rows themselves (:mod:`negrec._fast.fused`)."""
        state = self.moments(p)
        if "buffer" not in state:
            state["buffer"] = torch.zeros_like(p)
            state["touched"] = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
        elif state["touched"].dtype != torch.bool:  # load_state_dict cast it to p's dtype
            state["touched"] = state["touched"].bool()
        return state

    def count_step(self, p: torch.Tensor, betas: tuple[float, float]) -> tuple[float, float]:
        """Count one more step of ``p``; returns Adam's bias corrections 1 - beta^step."""
        state = self.state[p]
        state["step"] += 1
        return 1.0 - betas[0] ** state["step"], 1.0 - betas[1] ** state["step"]


def _compiled_ok(p: torch.Tensor) -> bool:
    """The compiled row update handles contiguous float32 CPU tables (the common case);
    other devices and dtypes take the torch path below, with the same arithmetic."""
    return p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous()


class RowwiseAdam(LazyAdam):
    """Dense Adam's update, computed row by row when a row is next read: the default.

    Dense Adam moves every row at every step: a row the batch did not touch still gets its
    momentum-only step (``m <- b1 m``, ``v <- b2 v``, ``p -= lr m_hat / (sqrt(v_hat) + eps)``).
    Walking all rows of every table per step is most of an MF epoch on CPU (and a dense
    [n, d] gradient per step). This optimizer keeps, per row, the step it is current at
    (``last``) and a per-step history of ``lr sqrt(c2) / c1`` and ``sqrt(c2)``; a row's pending
    momentum-only steps are applied in closed form when it is next read
    (:func:`negrec._fast.kernels.adam_catch_up_rows`, O(d) plus a scalar loop per row), so
    the parameters equal dense Adam's up to float rounding whenever they are read.

    Contract: before a forward pass reads rows, call :meth:`catch_up` on them (the fused MF
    step does) or :meth:`synchronize` (everything; before evaluation, a checkpoint, a
    sampler that scores with the model). A dense gradient synchronizes its table first and
    is then dense Adam. Row-sparse gradients bring their rows up to date before the update;
    they are exact when the forward pass read only those rows after :meth:`catch_up`.
    Needs ``weight_decay = 0`` (coupled decay would give untouched rows a gradient),
    float32 CPU tables; anything else takes the ordinary Adam update of :class:`LazyAdam`.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=0.0)
        # per table: (group, state, numpy views of p, m, v, last; of the history): a step
        # calls the kernels several times, and building these costs more than a small kernel
        self._views: dict[int, tuple[Any, ...]] = {}

    def _group(self, p: torch.Tensor) -> dict[str, Any]:
        for group in self.param_groups:
            if any(q is p for q in group["params"]):
                return group
        raise KeyError("parameter not in this optimizer")

    def rowwise(self, p: torch.Tensor) -> bool:
        """Whether ``p`` is a table this optimizer updates lazily (2-D float32 CPU)."""
        return p.dim() == 2 and _compiled_ok(p) and not self._group(p)["weight_decay"]

    def row_state(self, p: torch.Tensor) -> dict[str, Any]:
        state = super().row_state(p)
        if "last" not in state:
            state["step"] = int(state["step"])  # (a torch Adam checkpoint stores a tensor)
            state["last"] = torch.full((p.shape[0],), state["step"], dtype=torch.int64)
            state["base"] = state["step"]
            state["hist_len"] = 0
            state["hist_a"] = torch.zeros(64, dtype=torch.float64)
            state["hist_sc2"] = torch.zeros(64, dtype=torch.float64)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # (restores the kinds of the row state too)
        self._views.clear()
        for state in self.state.values():
            if "last" in state:
                state["step"] = int(state["step"])
                for key, dtype in (
                    ("hist_a", torch.float64),
                    ("hist_sc2", torch.float64),
                    ("last", torch.int64),
                ):
                    state[key] = state[key].to(dtype)

    def _view(self, p: torch.Tensor) -> tuple[Any, ...]:
        view = self._views.get(id(p))
        if view is None:
            state = self.row_state(p)
            tables = (p.detach(), state["exp_avg"], state["exp_avg_sq"], state["last"])
            history = (state["hist_a"], state["hist_sc2"])
            group = self._group(p)
            view = (
                group,
                state,
                tuple(t.numpy() for t in tables),
                tuple(t.numpy() for t in history),
                catch_up_powers(*group["betas"]),
            )
            self._views[id(p)] = view
        return view

    def count_step(self, p: torch.Tensor, betas: tuple[float, float]) -> tuple[float, float]:
        correction1, correction2 = super().count_step(p, betas)
        if "last" in self.state[p]:  # record the step's scalars for the rows that skip it
            group, state, _, (hist_a, hist_sc2), _ = self._view(p)
            n = state["hist_len"]
            if n == hist_a.shape[0]:  # full: double the history
                for key in ("hist_a", "hist_sc2"):
                    state[key] = torch.cat([state[key], torch.zeros_like(state[key])])
                del self._views[id(p)]
                group, state, _, (hist_a, hist_sc2), _ = self._view(p)
            root = math.sqrt(correction2)
            hist_a[n] = group["lr"] * root / correction1
            hist_sc2[n] = root
            state["hist_len"] = n + 1
        return correction1, correction2

    @torch.no_grad()
    def catch_up(self, p: torch.Tensor, rows: torch.Tensor) -> None:
        """Bring ``rows`` (int64 [R], repeats allowed) of table ``p`` to the current step and
        record them as current at the next one: call right before a step that updates them."""
        self.catch_up_numpy(p, rows.contiguous().numpy())

    def catch_up_numpy(self, p: torch.Tensor, rows: np.ndarray) -> None:
        """:meth:`catch_up` with the rows as a contiguous int64 numpy array [R] (the fused
        step's per-batch path: no tensor wrapping or ``no_grad`` context per call)."""
        group, state, (param, m, v, last), (hist_a, hist_sc2), powers = self._view(p)
        step = state["step"]
        beta1, beta2 = group["betas"]
        adam_catch_up_rows(
            param, m, v, last, rows, step, step + 1,
            hist_a, hist_sc2, state["base"], powers, beta1, beta2, group["eps"],
        )  # fmt: skip

    def catch_up_and_score(
        self,
        user_p: torch.Tensor,
        item_p: torch.Tensor,
        users: np.ndarray,
        items: np.ndarray,
        out: np.ndarray,
        chunks: int = 1,
    ) -> None:
        """:meth:`catch_up_numpy` of ``users`` (int64 [B]) in ``user_p`` and of ``items``
        (int64 [B, W]) in ``item_p``, then ``out[b, w] = <user_p[users[b]], item_p[items[b,
        w]]>`` (float32 [B, W]): the fused MF step's first pass. With ``chunks > 1`` the
        catch-up splits the rows over that many owners and the scores the batch rows, on
        numba's threads (:mod:`negrec._fast.owned`). Serially, wide rows (many negatives)
        take one compiled loop (:func:`negrec._fast.kernels.adam_catch_up_and_score`),
        narrow ones the three passes. Every way gives the same bits."""
        user_group, user_state, user_arrays, user_history, powers = self._view(user_p)
        item_group, item_state, item_arrays, item_history, _ = self._view(item_p)
        if chunks > 1 and user_group is item_group:
            beta1, beta2 = user_group["betas"]
            user_step, item_step = user_state["step"], item_state["step"]
            catch_up_both(
                user_arrays[:3], user_arrays[3], user_history,
                (user_step, user_step + 1, user_state["base"]),
                item_arrays[:3], item_arrays[3], item_history,
                (item_step, item_step + 1, item_state["base"]),
                powers, beta1, beta2, user_group["eps"], users, items.reshape(-1),
                chunks=chunks,
            )  # fmt: skip
            scores(user_arrays[0], item_arrays[0], users, items, out, chunks)
            return
        # one pass pays with many negatives per row (CCE K = 100 on ML-1M: ~7% of an epoch);
        # with a few it measured ~5% slower than the separate prefetched passes: kept those
        if user_group is not item_group or items.shape[1] <= PREFETCH_MAX_WIDTH:
            self.catch_up_numpy(user_p, users)
            self.catch_up_numpy(item_p, items.reshape(-1))
            gather_dot_forward(user_arrays[0], item_arrays[0], items, out, users)
            return
        beta1, beta2 = user_group["betas"]
        user_step, item_step = user_state["step"], item_state["step"]
        adam_catch_up_and_score(
            user_arrays[:3], user_arrays[3], user_history,
            (user_step, user_step + 1, user_state["base"]),
            item_arrays[:3], item_arrays[3], item_history,
            (item_step, item_step + 1, item_state["base"]),
            powers, beta1, beta2, user_group["eps"], users, items, out,
            wide_ahead(item_arrays[0]),
        )  # fmt: skip

    @torch.no_grad()
    def synchronize(self) -> None:
        """Bring every row of every lazily updated table to the current step (dense Adam's
        parameters, up to float rounding) and clear the step history."""
        for group in self.param_groups:
            for p in group["params"]:
                self._synchronize(p)

    def _synchronize(self, p: torch.Tensor) -> None:
        state = self.state.get(p)
        if not state or "last" not in state:
            return
        group, state, (param, m, v, last), (hist_a, hist_sc2), powers = self._view(p)
        beta1, beta2 = group["betas"]
        adam_catch_up_all(
            param, m, v, last, state["step"],
            hist_a, hist_sc2, state["base"], powers, beta1, beta2, group["eps"],
        )  # fmt: skip
        state["base"], state["hist_len"] = state["step"], 0

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def,unused-ignore]
        loss = None if closure is None else closure()
        dense = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or not self.rowwise(p):
                    continue
                self.row_state(p)
                if p.grad.is_sparse:
                    self.catch_up(p, p.grad._indices()[0])
                else:
                    self._synchronize(p)
                    dense.append(p)
        super().step()
        for p in dense:  # every row took this step: all current, no history needed
            state = self.state[p]
            state["last"].fill_(state["step"])
            state["base"], state["hist_len"] = state["step"], 0
        return loss
