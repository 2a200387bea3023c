"""How hard are a sampler's negatives? Its sampling distribution over the model's ranks.

For a trained model and a sampler, draw negatives for a set of users, rank every drawn
negative among the user's non-positive items by the model's scores (rank 1 = the
highest-scored negative), and report the cumulative probability ``P(rank <= r)`` of drawing
one of the top-r negatives against uniform sampling: Figure 7 of Shi et al., "On the
Theories Behind Hard Negative Sampling for Recommendation" (WWW 2023).

Weighted samplers (DNS's 1/M, Softmax-v's softmax weights) contribute each negative with its
weight, every (user, positive) row with total weight 1: the distribution is that of the
negative the loss effectively sees. Padding (``valid`` False) contributes nothing.

The beta of OPAUC(beta) a sampler implies, two ways:

- ``beta_theory``: the paper's relations. DNS(M, N): ``M / N`` (Theorem 1; the top M of a
  uniform pool of N are the top M/N of the negatives in expectation, exactly ``M / n-`` when
  the pool is all n- negatives). Softmax-v(rho, N): ``exp(-rho)`` (DERIVED for Theorem 2:
  the OPAUC(beta) sampling distribution, uniform on the top beta fraction, is at KL
  ``ln(1/beta)`` from uniform, which is the constraint radius rho; not checked against the
  paper's text), floored at ``1 / N``: a pool of N puts at most all its weight on its
  best candidate, the top 1/N of the negatives in expectation (on Gowalla, rho = 10 and
  N = 200 gave exp(-rho) = 4.5e-5 against 0.014 measured). uniform and full: 1 (AUC).
  Others: none.
- ``beta_measured``: the beta whose OPAUC sampling distribution (uniform on the top beta
  fraction of the negatives) has the same mean rank quantile as the measured one:
  ``2 * E[(rank - 1/2) / n-]``. It is 1 for uniform sampling and ``M / n-`` for a pool of
  all negatives; for DNS(M, N) with N < n- it is about ``(M + 1) / (N + 1)``.

Ranks follow the metrics' rule: 1 + the number of non-positive items scored strictly higher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from negrec.atomic import atomic_write
from negrec.data.interactions import Interactions
from negrec.evaluation import padded_rows
from negrec.models.base import Model
from negrec.samplers.base import Sampler, SamplerConfig


def default_ranks(max_rank: int) -> list[int]:
    """1, 5, 10, 50, 100, 500, ... up to ``max_rank`` (and ``max_rank`` itself)."""
    ranks, scale = {1}, 1
    while scale <= max_rank:
        ranks.update(r for r in (5 * scale, 10 * scale) if r <= max_rank)
        scale *= 10
    ranks.add(max_rank)
    return sorted(r for r in ranks if r >= 1)


def ranks_among_negatives(
    scores: torch.Tensor, positives: torch.Tensor, candidates: torch.Tensor
) -> torch.Tensor:
    """Rank [U, C] of each candidate among its row's non-positive items.

    ``scores`` [U, n_items], ``positives`` bool [U, n_items], ``candidates`` int [U, C]. The
    rank is 1 + the number of non-positive items scored strictly higher (ties share the best
    rank). A positive candidate is ranked the same way, against the non-positives.
    """
    order = (-scores).masked_fill(positives, math.inf).sort(dim=1).values  # [U, n], best first
    query = (-scores.gather(1, candidates)).contiguous()  # [U, C]
    return torch.searchsorted(order, query) + 1  # entries < query: strictly higher scores


def row_weights(
    shape: tuple[int, int],
    weights: torch.Tensor | None,
    valid: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """Per-entry weights [R, C] normalised to sum 1 per row (0 for padding)."""
    w = torch.ones(shape, dtype=torch.float64, device=device)
    if weights is not None:
        w = w * weights.to(torch.float64)
    if valid is not None:
        w = w * valid
    total = w.sum(dim=1, keepdim=True)  # [R, 1]
    return torch.where(total > 0, w / total.clamp_min(1e-300), torch.zeros_like(w))


def cumulative_distribution(
    ranks: torch.Tensor, weights: torch.Tensor, max_rank: int
) -> np.ndarray:
    """``P(rank <= r)`` for r = 1..max_rank, [max_rank], from ranks [R, C] and row-normalised
    weights [R, C]; rows with no weight (all padding) are left out."""
    rows = float((weights.sum(dim=1) > 0).sum())
    hist = torch.bincount(
        ranks.flatten().clamp(max=max_rank), weights=weights.flatten(), minlength=max_rank + 1
    )  # [max_rank + 1], index 0 unused
    return (hist[1:].cumsum(0) / max(rows, 1.0)).cpu().numpy()


def uniform_cumulative(n_neg: torch.Tensor, max_rank: int) -> np.ndarray:
    """``P(rank <= r)`` under uniform sampling, averaged over rows with n- >= 1 negatives
    [R]: the mean over rows of ``min(r, n-) / n-``, for r = 1..max_rank.

    Computed from a histogram of n- in O(R + max_rank) memory, not as an [R, max_rank]
    matrix (64 GB at 40k rows and 200k items): at each r, the rows with n- <= r contribute 1
    and the others r / n-, so it takes the count of the first and the sum of 1 / n- of the
    second (a suffix sum, free of cancellation)."""
    n = n_neg.detach().cpu().numpy().astype(np.int64)  # [R]
    g = int(max_rank)
    bins = np.minimum(n, g + 1)  # every n- > max_rank in bin g + 1
    rows_upto = np.cumsum(np.bincount(bins, minlength=g + 2)[: g + 1])[1:]  # [G]: n- <= r
    inverse = np.bincount(bins, weights=1.0 / n, minlength=g + 2)  # [G + 2]
    inverse_above = np.cumsum(inverse[::-1])[::-1][2:]  # [G]: sum of 1/n- over n- > r
    r = np.arange(1, g + 1, dtype=np.float64)
    return (rows_upto + r * inverse_above) / n.size


def measured_beta(ranks: torch.Tensor, weights: torch.Tensor, n_neg: torch.Tensor) -> float:
    """``2 E[(rank - 1/2) / n-]``: the beta of the OPAUC(beta) distribution (uniform on the
    top beta fraction) with the same mean rank quantile. ranks, weights [R, C], n_neg [R]."""
    quantile = (ranks.to(torch.float64) - 0.5) / n_neg.to(torch.float64).unsqueeze(1)
    rows = (weights.sum(dim=1) > 0).sum().clamp_min(1)
    return float(2.0 * (weights * quantile).sum() / rows)


def theoretical_beta(config: SamplerConfig) -> float | None:
    """The beta of OPAUC(beta) the paper ties the sampler to (see the module docstring)."""
    if config.name in ("uniform", "full"):
        return 1.0
    if config.name == "dns":
        return config.k / config.pool  # type: ignore[attr-defined]
    if config.name == "softmax_v":
        # a pool of N cannot concentrate below its top 1 of N (DNS(1, N)'s beta)
        return max(math.exp(-config.rho), 1.0 / config.pool)  # type: ignore[attr-defined]
    return None


@dataclass
class Hardness:
    """A sampler's measured sampling distribution over ranks, and its implied beta."""

    sampler: str
    cumulative: np.ndarray  # [max_rank], P(rank <= r) for r = 1..max_rank
    uniform: np.ndarray  # [max_rank], the same under uniform sampling
    beta_theory: float | None
    beta_measured: float
    n_users: int
    n_rows: int  # (user, positive) rows drawn: users x draws
    # share of the drawn weight on the users' held-out positives (false negatives), and
    # what uniform draws from each user's non-training items would give; None unless
    # measure() was given held-out parts
    held_out_share: float | None = None
    held_out_uniform: float | None = None

    @property
    def max_rank(self) -> int:
        return int(self.cumulative.size)

    def table(self, ranks: list[int] | None = None) -> pd.DataFrame:
        """One row per r: the sampler's and uniform's P(rank <= r), and their ratio."""
        ranks = [r for r in (ranks or default_ranks(self.max_rank)) if 1 <= r <= self.max_rank]
        idx = np.asarray(ranks, dtype=np.int64) - 1
        sampler, uniform = self.cumulative[idx], self.uniform[idx]
        return pd.DataFrame(
            {
                "r": ranks,
                "sampler": sampler,
                "uniform": uniform,
                "ratio": np.divide(
                    sampler, uniform, out=np.full(idx.size, np.nan), where=uniform > 0
                ),
            }
        )


#: users whose [n_items] score rows are sorted at once by :func:`measure`: about 20 bytes
#: per (user, item) in flight, ~1 GB at 200k items
BLOCK_USERS = 256


def _ranks_by_user(
    model: Model,
    train: Interactions,
    users: torch.Tensor,
    candidates: torch.Tensor,
    block_users: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranks [U, C] of ``candidates`` [U, C] among each user's non-positive items, and the
    users' numbers of non-positive items [U]), ``block_users`` users at a time."""
    ranks, n_neg = [], []
    for lo in range(0, users.numel(), block_users):
        block = users[lo : lo + block_users]  # [b]
        with torch.no_grad():
            scores = model.score_all(block)  # [b, n_items]
        positives = train.dense_mask(block)  # [b, n_items]
        n_neg_block = (~positives).sum(dim=1)  # [b]
        if bool((n_neg_block == 0).any()):
            raise ValueError("every user needs a non-positive item")
        ranks.append(ranks_among_negatives(scores, positives, candidates[lo : lo + block_users]))
        n_neg.append(n_neg_block)
        del scores, positives
    return torch.cat(ranks), torch.cat(n_neg)


def held_out_counts(
    users: torch.Tensor, parts: Sequence[Interactions], train: Interactions
) -> torch.Tensor:
    """Per user of ``users`` [U]: its distinct items in ``parts`` that are not training
    items [U], the held-out positives a sampler excluding training items could draw."""
    keys = []
    for part in parts:
        items, valid = padded_rows(part, users)  # [U, P]
        row, col = valid.nonzero(as_tuple=True)
        keys.append(row * train.n_items + items[row, col])  # [T] (user slot, item) as one key
    if not keys:
        return torch.zeros(users.numel(), dtype=torch.int64, device=users.device)
    unique = torch.unique(torch.cat(keys))
    row, items = unique // train.n_items, unique % train.n_items
    fresh = ~train.contains(users[row], items)
    return torch.bincount(row[fresh], minlength=users.numel())


def measure(
    model: Model,
    train: Interactions,
    sampler: Sampler,
    users: torch.Tensor,
    *,
    draws: int = 4,
    generator: torch.Generator,
    block_users: int = BLOCK_USERS,
    held_out: Sequence[Interactions] = (),
) -> Hardness:
    """Draw ``draws`` rows per user in ``users`` [U] (each row: the user and one of their
    training positives, uniformly), sample negatives, and rank them by ``model``'s scores.

    Every user needs at least one training positive and one non-positive item. Scores are
    ranked ``block_users`` users at a time, so memory holds [block_users, n_items] score
    matrices, never [U, n_items].

    ``held_out`` (e.g. the validation and test parts): also measure how much of the drawn
    weight falls on the users' held-out positives, items they do interact with that the
    sampler may not exclude: the false negatives a hard sampler is prone to pick.
    """
    if block_users < 1:
        raise ValueError(f"block_users must be >= 1, got {block_users}")
    device = users.device
    u, c_draws = users.numel(), int(draws)
    rows = users.repeat(c_draws)  # [R], row d * U + i is user i's d-th draw
    indptr, indices = train.torch_csr(device)
    degree = indptr[rows + 1] - indptr[rows]  # [R]
    if bool((degree == 0).any()):
        raise ValueError("every user needs a training positive")
    offset = (torch.rand(rows.numel(), generator=generator, device=device) * degree).long()
    pos = indices[indptr[rows] + torch.minimum(offset, degree - 1)]  # [R]

    model.eval()

    def scorer(items: torch.Tensor) -> torch.Tensor:  # what the trainer passes as model=
        with torch.no_grad():
            return model.score(rows, items)

    neg = sampler.sample(
        rows,
        pos,
        sampler.config.k,
        model=scorer if sampler.needs_model else None,
        generator=generator,
    )
    ids = neg.ids
    if ids is None:  # the whole catalogue
        ids = torch.arange(train.n_items, device=device).expand(rows.numel(), -1)
    c = ids.shape[1]

    by_user = ids.reshape(c_draws, u, c).permute(1, 0, 2).reshape(u, c_draws * c)  # [U, D*C]
    ranks, n_neg_user = _ranks_by_user(model, train, users, by_user, block_users)
    ranks = ranks.reshape(u, c_draws, c).permute(1, 0, 2).reshape(rows.numel(), c)  # [R, C]
    n_neg = n_neg_user.repeat(c_draws)  # [R]

    weights = row_weights((rows.numel(), c), neg.weights, neg.valid, device)  # [R, C]
    max_rank = int(n_neg.max())
    held_share = held_uniform = None
    if held_out:
        held = torch.zeros(ids.shape, dtype=torch.bool, device=device)  # [R, C]
        for part in held_out:
            held |= part.contains(rows.unsqueeze(1), ids)
        counted = weights.sum(dim=1) > 0  # [R]: rows with a drawn negative
        n_held = held_out_counts(users, held_out, train).repeat(c_draws)  # [R]
        held_share = float((weights * held).sum() / counted.sum().clamp_min(1))
        held_uniform = float((n_held.double() / n_neg.double())[counted].mean())
    return Hardness(
        sampler=sampler.config.name,
        cumulative=cumulative_distribution(ranks, weights, max_rank),
        uniform=uniform_cumulative(n_neg, max_rank),
        beta_theory=theoretical_beta(sampler.config),
        beta_measured=measured_beta(ranks, weights, n_neg),
        n_users=u,
        n_rows=rows.numel(),
        held_out_share=held_share,
        held_out_uniform=held_uniform,
    )


def plot(result: Hardness, path: Path, label: str | None = None) -> Path:
    """PNG of P(rank <= r) against r (log scale) for the sampler and uniform sampling."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    r = np.arange(1, result.max_rank + 1)
    ax.step(r, result.cumulative, where="post", label=label or result.sampler, lw=1.6)
    ax.step(r, result.uniform, where="post", label="uniform", lw=1.2, ls="--", color="grey")
    ax.set_xscale("log")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("r (score rank among the user's negatives)")
    ax.set_ylabel("P(drawn negative ranks in the top r)")
    theory = "-" if result.beta_theory is None else f"{result.beta_theory:.4g}"
    ax.set_title(
        f"{label or result.sampler}: implied beta {theory} (theory), "
        f"{result.beta_measured:.4g} (measured; {result.n_users} users)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
