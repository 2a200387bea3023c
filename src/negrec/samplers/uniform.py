"""Uniform negatives over the items a user has not interacted with in training.

Exact and loop-free: a uniform rank ``r`` in ``[0, n_items - deg(u))`` is mapped to the
``r``-th item missing from the user's sorted positives ``p_0 < p_1 < ...`` by
``item = r + #{i : p_i - i <= r}``. With ``q_i = p_i - i`` non-decreasing inside each row,
the count is one ``searchsorted`` over the global sorted keys ``u * (n_items + 1) + q_i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from negrec._fast.kernels import complement_items, uniform_complement_draw
from negrec.data.interactions import Interactions
from negrec.errors import ConfigError
from negrec.samplers.base import SAMPLERS, Negatives, Sampler, SamplerConfig


class ComplementIndex:
    """Draws items uniformly from each user's complement of training positives."""

    def __init__(self, train: Interactions, device: torch.device):
        users, items = train.to_coo()
        indptr = torch.tensor(train.indptr, device=device)
        local = torch.arange(train.nnz, device=device) - torch.repeat_interleave(
            indptr[:-1], torch.from_numpy(train.user_degrees).to(device)
        )
        q = torch.tensor(items, device=device) - local  # [nnz], non-decreasing per row
        self.stride = train.n_items + 1
        self.keys = torch.from_numpy(users).to(device) * self.stride + q  # [nnz], sorted
        self.q = q
        self.indptr = indptr
        self.available = train.n_items - (indptr[1:] - indptr[:-1])  # [n_users]
        if device.type == "cpu":  # numpy views for the compiled draws (made once, not per batch)
            # q as int32 where it and every row offset fit: half the bytes for the binary
            # searches' random loads, twice the lanes of the draw's SIMD compares
            small = q.numel() < 2**31 and (q.numel() == 0 or int(q.abs().max()) < 2**31)
            q_search = q.to(torch.int32) if small else q
            self._arrays = (self.available.numpy(), self.indptr.numpy(), q_search.numpy())

    def draw(self, users: torch.Tensor, shape: tuple[int, int], generator: torch.Generator):
        """Uniform items [B, K] outside each user's positives, with replacement."""
        u = torch.rand(shape, generator=generator, device=users.device)  # [B, K]
        if users.device.type == "cpu":  # compiled: ranks and items_at_cpu in one pass
            available, indptr, q = self._arrays
            out = torch.empty(shape, dtype=torch.int64)
            uniform_complement_draw(
                available, indptr, q, users.contiguous().numpy(), u.numpy(), out.numpy()
            )
            return out
        return self.items_at(users, self.ranks(users, u))

    def ranks(self, users: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """Uniform ranks [B, K] in ``[0, available(user))`` from uniforms [B, K] in [0, 1)
        (the float32 product, truncated; ``uniform_ranks`` computes the same on CPU)."""
        avail = self.available[users].unsqueeze(1)  # [B, 1]
        return torch.minimum((uniforms * avail).long(), avail - 1)

    def items_at(self, users: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
        """The ``rank``-th [B, K] non-positive item of each user [B]: one searchsorted over
        all stored interactions (any device)."""
        query = users.unsqueeze(1) * self.stride + rank
        below = torch.searchsorted(self.keys, query, right=True) - self.indptr[users].unsqueeze(1)
        return rank + below

    def items_at_cpu(self, users: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
        """Same result as :meth:`items_at`, by a compiled binary search inside each user's
        own row: ~5x faster on CPU, where the global search is cache-bound."""
        _, indptr, q = self._arrays
        out = torch.empty_like(rank)
        complement_items(
            indptr, q, users.contiguous().numpy(), rank.contiguous().numpy(), out.numpy()
        )
        return out


@dataclass
class UniformConfig(SamplerConfig):
    replacement: bool = True  # may a row repeat a negative?


@SAMPLERS.register("uniform")
class UniformSampler(Sampler):
    """Uniform negatives, excluding the user's training positives (by default)."""

    Config = UniformConfig
    config: UniformConfig

    def __init__(self, config: UniformConfig, train: Interactions):
        super().__init__(config, train)
        self._index: dict[str, ComplementIndex] = {}
        min_available = train.n_items - (int(train.user_degrees.max()) if train.n_users else 0)
        if not config.exclude_positives:
            min_available = train.n_items
        if not config.replacement and config.k > min_available:
            raise ConfigError(
                "sampler.k",
                f"k={config.k} distinct negatives asked, but a user has only {min_available} "
                "non-positive items",
            )
        if min_available < 1:
            raise ConfigError("sampler", "a user has interacted with every item: no negatives")

    @property
    def draws_rows_in_order(self) -> bool:
        # [B, K] uniforms (or ids) in row-major order, each row mapped on its own; making
        # rows distinct redraws repeated entries in rounds, which is not row by row
        return self.config.replacement or self.config.k == 1

    def index(self, device: torch.device) -> ComplementIndex:
        if str(device) not in self._index:
            self._index[str(device)] = ComplementIndex(self.train, device)
        return self._index[str(device)]

    def _draw(self, users: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        if self.config.exclude_positives:
            return self.index(users.device).draw(users, (users.numel(), k), generator)
        return torch.randint(
            self.n_items, (users.numel(), k), generator=generator, device=users.device
        )

    def sample(
        self,
        users: torch.Tensor,
        pos_items: torch.Tensor,
        k: int,
        *,
        model: Any = None,
        generator: torch.Generator,
    ) -> Negatives:
        ids = self._draw(users, k, generator)
        if not self.config.replacement and k > 1:
            ids = self._make_distinct(users, ids, generator)
        return Negatives(ids=ids)

    def _make_distinct(
        self, users: torch.Tensor, ids: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Redraw repeated entries of each row until all are distinct (rows are few draws
        away from distinct when K is small against the catalogue; dense fallback if not)."""
        k = ids.shape[1]
        avail = (
            self.index(users.device).available[users]
            if self.config.exclude_positives
            else torch.full_like(users, self.n_items)
        )
        if bool((avail < 4 * k).any()):
            return self._dense_without_replacement(users, k, generator)
        for _ in range(100):
            sorted_ids, order = ids.sort(dim=1)
            repeat = torch.zeros_like(ids, dtype=torch.bool)
            repeat[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
            if not bool(repeat.any()):
                return ids
            dup = torch.zeros_like(repeat).scatter_(1, order, repeat)  # back to row order
            rows = dup.nonzero()[:, 0]
            fresh = self._draw(users[rows], 1, generator).squeeze(1)
            ids = ids.masked_scatter(dup, fresh)
        return self._dense_without_replacement(users, k, generator)

    def _dense_without_replacement(
        self, users: torch.Tensor, k: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Top-k of uniform keys over the allowed items: exact uniform sampling without
        replacement, [B, n_items] memory, used only when K is close to the catalogue."""
        keys = torch.rand(users.numel(), self.n_items, generator=generator, device=users.device)
        if self.config.exclude_positives:
            keys = keys.masked_fill(self.train.dense_mask(users), -1.0)
        return keys.topk(k, dim=1).indices
