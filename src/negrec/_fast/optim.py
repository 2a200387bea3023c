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

from collections.abc import Iterable
from typing import Any

import torch

from negrec._fast.kernels import lazy_adam_rows


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
