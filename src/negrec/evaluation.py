"""Batched exact full-ranking evaluation.

For each batch of users: score every item, mask the user's training items (and validation
items when testing), and compute every metric of :mod:`negrec.metrics` for several K in one
pass. Top-K metrics and MRR need a target's rank only up to max K (exactly only for each
user's best target), so on CPU each target is counted until max K items beat it; AUC and
OPAUC count, per positive, the negatives scoring above and tied with it, in chunks that
bound memory. Users are batched in order of their number of targets so padding stays small;
per-user values are returned in user-id order. Never materialises users x items beyond one
batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from negrec._fast.kernels import count_above_capped, count_above_equal, mask_seen_items
from negrec.config_base import require
from negrec.data.interactions import Interactions
from negrec.data.splits import Split
from negrec.distributed import World
from negrec.metrics import (
    metric_names,
    opauc_name,
    partial_auc,
    positions_from_ranks,
    reciprocal_rank,
    topk_metrics,
)

INF = float("inf")
#: elements of a [B, P, n_items] comparison block processed at once (bounds memory)
COMPARE_BLOCK = 1 << 26


@dataclass
class EvalConfig:
    """What the evaluator computes."""

    ks: list[int] = field(default_factory=lambda: [10, 20])
    auc: bool = True  # also AUC and OPAUC(beta) for each beta
    betas: list[float] = field(default_factory=lambda: [0.01, 0.05])
    batch_size: int = 512  # users per batch

    def validate(self, prefix: str) -> None:
        require(len(self.ks) > 0 and min(self.ks) >= 1, f"{prefix}.ks", "need K values >= 1")
        require(all(0 < b <= 1 for b in self.betas), f"{prefix}.betas", "betas lie in (0, 1]")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")


@dataclass
class EvalResult:
    """Per-user metric values (``users`` [U] in id order) and their means.

    AUC and OPAUC are NaN for a user with no candidate negative (every item seen in train or
    held out): they are undefined there, and :attr:`summary` averages each metric over the
    users where it is defined, so one such user cannot turn the dataset's AUC into NaN."""

    users: np.ndarray
    per_user: dict[str, np.ndarray]

    @property
    def summary(self) -> dict[str, float]:
        return {k: _mean_where_defined(v) for k, v in self.per_user.items()}


def _mean_where_defined(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN when there are none (no users, or none defined)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def padded_rows(data: Interactions, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Items of ``users`` [B] as a padded [B, P] tensor and its validity mask."""
    indptr, indices = data.torch_csr(users.device)
    start, counts = indptr[users], indptr[users + 1] - indptr[users]
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    col = torch.arange(width, device=users.device)
    valid = col.unsqueeze(0) < counts.unsqueeze(1)  # [B, P]
    where = (start.unsqueeze(1) + col).clamp(max=max(indices.numel() - 1, 0))
    if indices.numel() == 0:  # an empty part (e.g. no validation items): nothing to gather
        return torch.zeros_like(where), valid
    items = torch.where(valid, indices[where], 0)
    return items, valid


def _count_torch(scores: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per positive [B, P]: items scoring strictly above it, and equal to it, over [B, n]
    (torch path, for accelerators: a blocked [B, c, n] comparison)."""
    b, p = pos.shape
    chunk = max(1, COMPARE_BLOCK // max(1, b * scores.shape[1]))
    above, equal = [], []
    for start in range(0, p, chunk):  # loop over positive columns only, in blocks
        block = pos[:, start : start + chunk].unsqueeze(2)  # [B, c, 1]
        above.append((scores.unsqueeze(1) > block).sum(dim=2))
        equal.append((scores.unsqueeze(1) == block).sum(dim=2))
    return torch.cat(above, dim=1), torch.cat(equal, dim=1)


def _target_counts(
    scores: torch.Tensor, pos_scores: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per target [B, P]: all items strictly above / equal, and targets above / equal
    (equal counts include the target itself). numba kernel on CPU, torch elsewhere."""
    if scores.device.type == "cpu":
        return _target_counts_numba(scores, pos_scores, valid)
    return _target_counts_torch(scores, pos_scores, valid)


def _flat_targets(
    pos_scores: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid targets' scores as a flat [T] array, row by row, with CSR pointers
    [B + 1] into it: the layout of the numba counting kernels."""
    counts = valid.sum(dim=1)
    ptr = torch.zeros(counts.numel() + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr, pos_scores[valid].contiguous()


def _target_counts_numba(
    scores: torch.Tensor, pos_scores: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    ptr, flat = _flat_targets(pos_scores, valid)
    out = [np.empty(flat.numel(), dtype=np.int64) for _ in range(4)]
    count_above_equal(scores.contiguous().numpy(), ptr.numpy(), flat.numpy(), *out)
    padded = []
    for values in out:
        full = torch.zeros(valid.shape, dtype=torch.int64)
        full[valid] = torch.from_numpy(values)
        padded.append(full)
    return padded[0], padded[1], padded[2], padded[3]


def _target_counts_torch(
    scores: torch.Tensor, pos_scores: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    above, equal = _count_torch(scores, pos_scores)
    pair_above = (pos_scores.unsqueeze(1) > pos_scores.unsqueeze(2)) & valid.unsqueeze(1)
    pair_equal = (pos_scores.unsqueeze(1) == pos_scores.unsqueeze(2)) & valid.unsqueeze(1)
    return above, equal, pair_above.sum(dim=2), pair_equal.sum(dim=2)


def _topk_ranks(
    scores: torch.Tensor, pos_scores: torch.Tensor, valid: torch.Tensor, k_max: int
) -> torch.Tensor:
    """Ranks [B, P] (float64) exact up to ``k_max``, inf beyond; the best-scored targets of
    each row exactly (MRR). Enough for every top-K metric with K <= ``k_max``.

    CPU: each target is counted only until ``k_max`` items beat it
    (:func:`negrec._fast.kernels.count_above_capped`). Elsewhere: only targets scoring at least
    the K-th highest score are counted, the others rank beyond K."""
    k_max = min(k_max, scores.shape[1])
    best = valid & (pos_scores == pos_scores.max(dim=1, keepdim=True).values)  # [B, P]
    if scores.device.type == "cpu":
        ptr, flat = _flat_targets(pos_scores, valid)
        caps = torch.where(best[valid], scores.shape[1] + 1, k_max)  # [T]
        counted = np.empty(flat.numel(), dtype=np.int64)
        count_above_capped(
            scores.contiguous().numpy(), ptr.numpy(), flat.numpy(), caps.numpy(), counted
        )
        above = torch.full(valid.shape, INF, dtype=torch.float64)
        exact = torch.from_numpy(counted) < caps
        above[valid] = torch.where(exact, torch.from_numpy(counted).double(), INF)
        return 1.0 + above
    threshold = scores.topk(k_max, dim=1).values[:, -1:]  # [B, 1]
    near = valid & ((pos_scores >= threshold) | best)  # the targets that may rank <= k_max
    above, _, _, _ = _target_counts_torch(scores, pos_scores, near)
    return (1.0 + above.double()).masked_fill(valid & ~near, INF)


def _owned_float32(scores: torch.Tensor, model: Any) -> torch.Tensor:
    """``scores`` as a float32 tensor the evaluator may mask in place: copied when it is
    a view or shares memory with the model's parameters or buffers (e.g. a popularity
    model returning an expanded parameter), used as is when it is a fresh result."""
    shared = {t.data_ptr() for t in (*model.parameters(), *model.buffers())}
    if scores.dtype != torch.float32 or scores._is_view() or scores.data_ptr() in shared:
        return scores.to(torch.float32, copy=True)
    return scores


def mask_items_(scores: torch.Tensor, data: Interactions, users: torch.Tensor) -> None:
    """Set the scores [B, n_items] of each user's items in ``data`` to -inf, in place."""
    items, valid = padded_rows(data, users)
    rows, cols = valid.nonzero(as_tuple=True)
    scores[rows, items[rows, cols]] = -INF


def mask_seen_(
    scores: torch.Tensor,
    masked: Sequence[Interactions],
    targets: Interactions,
    users: torch.Tensor,
    pos_items: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """Mask in place the scores [B, n_items] of each user's items in the ``masked`` parts,
    except its targets (``pos_items`` [B, P] where ``valid``), which stay candidates.
    Returns the number of items masked per user [B]. On CPU one compiled merge walk per
    part and user; elsewhere a scatter, then the targets' scores are put back."""
    n_masked = torch.zeros(users.numel(), dtype=torch.int64, device=scores.device)
    if scores.device.type == "cpu" and scores.is_contiguous():
        target_ptr, target_indices = targets.torch_csr("cpu")
        for part in masked:
            indptr, indices = part.torch_csr("cpu")
            mask_seen_items(
                scores.numpy(),
                users.contiguous().numpy(),
                indptr.numpy(),
                indices.numpy(),
                target_ptr.numpy(),
                target_indices.numpy(),
                n_masked.numpy(),
            )
        return n_masked
    pos_scores = scores.gather(1, pos_items)
    for part in masked:
        mask_items_(scores, part, users)
        indptr, _ = part.torch_csr(users.device)
        n_masked += indptr[users + 1] - indptr[users]
        # a target that also sits in a masked part stays a candidate
        n_masked -= (part.contains(users.unsqueeze(1), pos_items) & valid).sum(dim=1)
    rows, cols = valid.nonzero(as_tuple=True)
    scores[rows, pos_items[rows, cols]] = pos_scores[rows, cols]  # targets stay candidates
    return n_masked


@torch.no_grad()
def evaluate(
    model: Any,
    split: Split,
    part: str = "valid",
    config: EvalConfig | None = None,
    *,
    users: Sequence[int] | np.ndarray | None = None,
    contexts: Callable[[torch.Tensor], Any] | None = None,
    device: torch.device | str | None = None,
    world: World | None = None,
) -> EvalResult:
    """Full-ranking metrics of ``model`` on ``split.valid`` or ``split.test``.

    Masks each user's training items, plus validation items when ``part == "test"``
    (a target is never masked). ``contexts`` maps user ids [B] to the model's ``ctx``
    (default: the ids themselves). ``users`` restricts evaluation to those users.
    ``world`` (a distributed run; every rank calls this): each rank scores every N-th
    user of the by-degree order, and the per-user values are all-gathered, so every rank
    returns the same result as one process.
    """
    config = config or EvalConfig()
    if part not in ("valid", "test"):
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")
    targets = split.valid if part == "valid" else split.test
    masked = [split.train] if part == "valid" else [split.train, split.valid]
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()

    degrees = targets.user_degrees
    candidates = np.flatnonzero(degrees > 0) if users is None else np.asarray(users, np.int64)
    candidates = candidates[degrees[candidates] > 0]
    order = candidates[np.argsort(degrees[candidates], kind="stable")]
    if world is not None:
        order = world.my_share(order)  # round robin over the by-degree order: equal work
    names = metric_names(config.ks, config.betas, config.auc)
    out = {name: np.empty(order.size, dtype=np.float64) for name in names}

    for start in range(0, order.size, config.batch_size):
        batch = torch.from_numpy(order[start : start + config.batch_size]).to(device)
        ctx = batch if contexts is None else contexts(batch)
        scores = _owned_float32(model.score_all(ctx), model)  # [B, n_items], ours to mask
        pos_items, valid = padded_rows(targets, batch)  # [B, P]
        pos_scores = scores.gather(1, pos_items).masked_fill(~valid, -INF)  # [B, P]
        n_masked = mask_seen_(scores, masked, targets, batch, pos_items, valid)  # [B]

        if config.auc:
            above, equal, pos_above, pos_equal = _target_counts(scores, pos_scores, valid)
            # 1 + items strictly higher (docs/architecture.md#contracts)
            ranks = 1.0 + above.double()
        else:  # top-K and MRR only: ranks beyond max K need not be exact
            ranks = _topk_ranks(scores, pos_scores, valid, max(config.ks))
        n_pos = valid.sum(dim=1)
        positions = positions_from_ranks(ranks, valid)
        values: dict[str, torch.Tensor] = {}
        for k in config.ks:
            values.update(topk_metrics(positions, n_pos, k))
        values["mrr"] = reciprocal_rank(ranks.masked_fill(~valid, INF).min(dim=1).values)

        if config.auc:
            n_neg = scores.shape[1] - n_masked - n_pos
            above, equal = above.to(device), equal.to(device)
            pos_above, pos_equal = pos_above.to(device), pos_equal.to(device)
            neg_above = above - pos_above  # negatives strictly above each target
            neg_tied = equal - pos_equal  # negatives tied with it
            values["auc"] = partial_auc(neg_above, neg_tied, valid, n_neg, 1.0)
            for beta in config.betas:
                values[opauc_name(beta)] = partial_auc(neg_above, neg_tied, valid, n_neg, beta)

        rows_out = slice(start, start + batch.numel())
        for name in names:
            out[name][rows_out] = values[name].cpu().numpy()

    if was_training:
        model.train()
    if world is not None and world.distributed:  # every rank gets every user's values
        table = world.all_gather_columns(np.vstack([order.astype(np.float64), *out.values()]))
        order = table[0].astype(np.int64)  # user ids are exact in float64
        out = dict(zip(out, table[1:], strict=True))
    back = np.argsort(order, kind="stable")
    return EvalResult(users=order[back], per_user={k: v[back] for k, v in out.items()})
