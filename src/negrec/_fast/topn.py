"""Top-N items per row of a score matrix, skipping each row's seen items: one pass.

The order is the recommender's (:mod:`negrec.recommend`): score descending, ties by item
id ascending; items scored NaN or -inf are never returned. On CPU a compiled kernel scans
each row once, keeping the best N in a sorted buffer; an item is checked against the
row's seen items (a binary search in its sorted CSR row) and the allowed set only when
its score would enter the buffer, so masking costs nothing for the bulk of the catalogue.
Elsewhere
(CUDA) a torch path: mask, ``topk``, then a stable sort of the items tied at the cut.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange

from negrec._fast.kernels import _pick, _serial_and_parallel


def _top_unseen(
    scores: np.ndarray,  # float32 [B, I]
    seen_start: np.ndarray,  # int64 [B]: row b's seen items are seen[seen_start[b]:seen_end[b]]
    seen_end: np.ndarray,  # int64 [B]
    seen: np.ndarray,  # int64 [nnz], sorted within each row
    allowed: np.ndarray,  # bool [I] (or [1] when every item is allowed)
    use_allowed: bool,
    out_items: np.ndarray,  # int64 [B, N], filled
    out_scores: np.ndarray,  # float32 [B, N], filled
    out_count: np.ndarray,  # int64 [B]: how many of the N slots are real
) -> None:
    n = out_items.shape[1]
    for b in prange(scores.shape[0]):
        row = scores[b]
        count = 0
        worst = -np.inf  # the buffer's last score once it is full
        lo0, hi0 = seen_start[b], seen_end[b]
        for j in range(row.shape[0]):
            v = row[j]
            if count == n and not v > worst:
                continue  # the bulk: cannot enter (ties go to the earlier item)
            if v != v or v == -np.inf:
                continue  # NaN or -inf: never recommended
            if use_allowed and not allowed[j]:
                continue
            lo, hi = lo0, hi0
            while lo < hi:  # binary search in the row's seen items
                mid = (lo + hi) >> 1
                if seen[mid] < j:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < hi0 and seen[lo] == j:
                continue
            p = count if count < n else n - 1
            while p > 0 and out_scores[b, p - 1] < v:  # equal scores stay ahead
                out_scores[b, p] = out_scores[b, p - 1]
                out_items[b, p] = out_items[b, p - 1]
                p -= 1
            out_scores[b, p] = v
            out_items[b, p] = j
            if count < n:
                count += 1
            worst = out_scores[b, n - 1]
        out_count[b] = count


_TOP_UNSEEN = _serial_and_parallel(_top_unseen)


def top_unseen(
    scores: torch.Tensor,
    seen_start: torch.Tensor,
    seen_end: torch.Tensor,
    seen: torch.Tensor,
    n: int,
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(items [B, N] int64, scores [B, N] float32, count [B]) of each row's best N items
    outside ``seen[seen_start[b]:seen_end[b]]`` (sorted rows) and inside ``allowed``
    [I] (bool, None: all); slots past ``count`` hold item -1 and score -inf."""
    if scores.device.type != "cpu":
        return _top_unseen_torch(scores, seen_start, seen_end, seen, n, allowed)
    scores = scores.detach().to(torch.float32).contiguous()
    b = scores.shape[0]
    items = np.full((b, n), -1, dtype=np.int64)
    values = np.full((b, n), -np.inf, dtype=np.float32)
    count = np.zeros(b, dtype=np.int64)
    mask = np.ones(1, dtype=bool) if allowed is None else allowed.numpy()
    _pick(_TOP_UNSEEN, scores.numel())(
        scores.numpy(),
        seen_start.numpy(),
        seen_end.numpy(),
        seen.numpy(),
        mask,
        allowed is not None,
        items,
        values,
        count,
    )
    return torch.from_numpy(items), torch.from_numpy(values), torch.from_numpy(count)


def _top_unseen_torch(
    scores: torch.Tensor,
    seen_start: torch.Tensor,
    seen_end: torch.Tensor,
    seen: torch.Tensor,
    n: int,
    allowed: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same result with torch ops (any device; the test of the kernel's order)."""
    device = scores.device
    scores = scores.detach().to(torch.float32, copy=True)  # [B, I], ours to mask
    b, n_items = scores.shape
    counts = seen_end - seen_start
    rows = torch.repeat_interleave(torch.arange(b, device=device), counts)
    offsets = torch.arange(int(counts.sum()), device=device) - torch.repeat_interleave(
        counts.cumsum(0) - counts, counts
    )
    scores[rows, seen[torch.repeat_interleave(seen_start, counts) + offsets]] = -torch.inf
    if allowed is not None:
        scores[:, ~allowed.to(device)] = -torch.inf
    scores.masked_fill_(scores.isnan(), -torch.inf)
    masked = torch.isinf(scores) & (scores < 0)  # seen, not allowed, NaN or -inf
    k = min(n, n_items)
    cut = scores.topk(k, dim=1).values[:, -1:]  # [B, 1] the N-th best score
    keep = (scores >= cut) & ~masked  # [B, I]: every item that may enter, ties at the cut
    width = int(keep.sum(dim=1).max()) if b else 0
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :width]  # by id
    kept_scores = scores.gather(1, order).masked_fill(~keep.gather(1, order), -torch.inf)
    k = min(k, width)
    best = torch.argsort(-kept_scores, dim=1, stable=True)[:, :k]  # ties keep id order
    items = order.gather(1, best)
    values = kept_scores.gather(1, best)
    valid = torch.isfinite(values) | (values > 0)
    items = items.masked_fill(~valid, -1)
    out_items = torch.full((b, n), -1, dtype=torch.int64, device=device)
    out_values = torch.full((b, n), -torch.inf, dtype=torch.float32, device=device)
    out_items[:, :k], out_values[:, :k] = items, values
    return out_items, out_values, valid.sum(dim=1)
