"""Training batches: what one step of the training loop reads.

A batch factory has ``len()`` (batches per epoch) and ``epoch(generator)`` yielding
:class:`Batch` objects. User-id models use :class:`PairBatches` (shuffled (user, positive)
pairs); sequential models cut histories into windows (``negrec.models.sequential``). A
model picks its factory through ``Model.make_batches``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from negrec.data.interactions import Interactions


@dataclass
class Batch:
    """One training batch: model context, user ids [B] and positive item ids [B]."""

    ctx: Any  # user ids [B] for user-id models; a batch of histories for sequential ones
    users: torch.Tensor  # [B]
    pos: torch.Tensor  # [B]


class Batches(Protocol):
    """A batch factory: the number of batches per epoch and one epoch's batches."""

    def __len__(self) -> int: ...

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]: ...


class PairBatches:
    """Shuffled (user, positive item) pairs of the training split, for user-id models."""

    def __init__(self, train: Interactions, batch_size: int, device: torch.device):
        users, items = train.to_coo()
        self.users = torch.from_numpy(users).to(device)
        self.items = torch.from_numpy(items.copy()).to(device)
        self.batch_size = batch_size
        # each epoch's order and shuffled copy, rewritten in place (see epoch)
        self._order = torch.empty_like(self.users)
        self._shuffled = (torch.empty_like(self.users), torch.empty_like(self.items))

    def __len__(self) -> int:
        return math.ceil(self.users.numel() / self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        """The epoch's batches: views of one shuffled copy of the pairs, written into the
        same three buffers every epoch (fresh [n] tensors per epoch kept the last epoch's
        alive through its last batch and grew the heap by their size in epochs 2-3). A batch
        is valid until the next epoch starts."""
        order = self._order
        torch.randperm(order.numel(), generator=generator, out=order)
        # one gather per epoch; the batches are views (two index ops per batch cost ~0.1 ms)
        shuffled_users, shuffled_items = self._shuffled
        torch.index_select(self.users, 0, order, out=shuffled_users)
        torch.index_select(self.items, 0, order, out=shuffled_items)
        for start in range(0, order.numel(), self.batch_size):
            users = shuffled_users[start : start + self.batch_size]
            yield Batch(ctx=users, users=users, pos=shuffled_items[start : start + self.batch_size])
