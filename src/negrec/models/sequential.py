"""Sequential models' plumbing: time-ordered histories, training windows, evaluation contexts.

A sequential model (SASRec, GRU4Rec) reads a user's history in time order and scores the
*next* item. negrec feeds it the same (user, positive) rows as every other model, so the
trainer loop, the samplers and the losses stay unchanged:

- **Training** (:class:`SequenceBatches`): every position ``t >= 1`` of a user's
  time-ordered training sequence ``s_0 .. s_{n-1}`` is one row, with history
  ``s_0 .. s_{t-1}`` (cut by its window, see below) and positive ``s_t``. Rows are grouped into
  *windows*: runs of up to ``max_len`` consecutive positions of one user that share one
  encoder pass (a causal encoder gives the hidden state after every prefix of its input
  at once). A batch is ``batch_size`` rows, not users, so B means "positives per step" for
  every model and the in-batch sampler's [B, B] matrix stays the size it is for MF.
  ``Batch.users`` [B] holds each row's user id, so samplers exclude all of that user's
  training items, as for any other model.
- **Evaluation** (:meth:`SequentialModel.eval_contexts`): the context of a user is the
  history up to the held-out item: the training sequence for validation, the training
  sequence plus the validation item for test (leave-one-out by time: last item test,
  second-last validation), cut to its last ``max_len`` items. The evaluator masks the
  user's training (and, for test, validation) items, which under leave-one-out is exactly
  the history, for every model alike. That masking is not optional: ``Interactions`` holds
  each (user, item) pair once, so a held-out item is never in its history and masking the
  history only removes candidates that can never be correct.

The context is a :class:`SequenceContext`: right-padded windows ``items`` [R, W] (pad id =
``n_items``, so item tables have ``n_items + 1`` rows, the pad row zero and masked) and, per
scored row, which window (``rows`` [B]) and which position in it (``cols`` [B]) to read the
hidden state from. Right padding means a causal encoder never sees padding from a real
position; models also zero the pad embeddings.

Windows for a user with ``n`` training items cover targets ``1 .. n-1``; with
``windows = "all"`` (default) they are cut from the end in runs of ``max_len``, so every
position trains and the last window is the classic SASRec input (the last ``max_len + 1``
items); ``"last"`` keeps only that last window (SASRec's original truncation). A target in
an earlier window sees the history since its window's start (at least one item).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from negrec.config_base import require
from negrec.data.batches import Batch
from negrec.data.interactions import Interactions
from negrec.data.splits import Split
from negrec.errors import ConfigError
from negrec.models.base import Model, ModelConfig, squared_norms


# ---------------------------------------------------------------------------- the context
@dataclass(frozen=True)
class SequenceContext:
    """A batch of histories for a sequential model.

    ``items`` [R, W]: right-padded item ids (pad = ``n_items``), one window per row;
    ``rows`` [B], ``cols`` [B]: scored row ``b`` reads the hidden state at
    ``items[rows[b], cols[b]]``, i.e. it scores the item following ``items[rows[b], :cols[b]+1]``.
    """

    items: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor

    def __len__(self) -> int:
        return int(self.rows.numel())


def time_ordered(data: Interactions) -> np.ndarray:
    """Items [nnz] of ``data`` in CSR row layout but each row in time order (ties by item
    id): row ``u`` is ``out[indptr[u]:indptr[u+1]]``, the user's sequence. One lexsort."""
    if data.timestamps is None:
        raise ValueError("sequential models need timestamps (a time order of each user's items)")
    users, items = data.to_coo()
    order = np.lexsort((items, data.timestamps, users))
    return np.ascontiguousarray(items[order])


def merge(a: Interactions, b: Interactions) -> Interactions:
    """The union of two disjoint parts over one id space, timestamps kept (train + valid)."""
    ua, ia = a.to_coo()
    ub, ib = b.to_coo()
    times = None
    if a.timestamps is not None and b.timestamps is not None:
        times = np.concatenate([a.timestamps, b.timestamps])
    return Interactions.from_arrays(
        np.concatenate([ua, ub]),
        np.concatenate([ia, ib]),
        n_users=a.n_users,
        n_items=a.n_items,
        timestamps=times,
        user_ids=a.user_ids,
        item_ids=a.item_ids,
    )


def gather_windows(
    seq: torch.Tensor, start: torch.Tensor, length: torch.Tensor, pad: int
) -> torch.Tensor:
    """Right-padded windows [R, W]: row r is ``seq[start[r] : start[r] + length[r]]``, then
    ``pad``; ``W = max(length, 1)``. Loop-free gather."""
    width = max(int(length.max()) if length.numel() else 0, 1)
    col = torch.arange(width, device=seq.device)
    valid = col.unsqueeze(0) < length.unsqueeze(1)  # [R, W]
    where = (start.unsqueeze(1) + col).clamp(max=max(seq.numel() - 1, 0))
    if seq.numel() == 0:
        return torch.full(valid.shape, pad, dtype=torch.int64, device=seq.device)
    return torch.where(valid, seq[where], pad)


class HistoryContexts:
    """``users [B] -> SequenceContext`` of each user's last ``max_len`` items of ``data``
    in time order (the evaluator's ``contexts`` argument). Tensors cached per device."""

    def __init__(self, data: Interactions, max_len: int):
        self.indptr = np.array(data.indptr, dtype=np.int64)  # a writable copy for torch
        self.seq = time_ordered(data)
        self.max_len = max_len
        self.pad = data.n_items
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._cache:
            self._cache[key] = (
                torch.from_numpy(self.indptr).to(device),
                torch.from_numpy(self.seq).to(device),
            )
        return self._cache[key]

    def __call__(self, users: torch.Tensor) -> SequenceContext:
        indptr, seq = self._tensors(users.device)
        end = indptr[users + 1]  # [B]
        length = (end - indptr[users]).clamp(max=self.max_len)  # [B]
        items = gather_windows(seq, end - length, length, self.pad)  # [B, W]
        rows = torch.arange(users.numel(), device=users.device)
        cols = (length - 1).clamp(min=0)  # hidden state after the last history item
        return SequenceContext(items=items, rows=rows, cols=cols)


# ---------------------------------------------------------------------------- training batches
class SequenceBatches:
    """Every (user, position) of the time-ordered training sequences, ``batch_size`` rows a
    batch, encoded window by window (see the module docstring).

    Windows are shuffled each epoch with the trainer's generator; rows of one window stay
    together, so a batch holds few windows and each is encoded once (a window cut by a
    batch boundary is encoded in both batches).
    """

    def __init__(
        self,
        train: Interactions,
        batch_size: int,
        device: torch.device,
        *,
        max_len: int,
        windows: Literal["all", "last"] = "all",
    ):
        seq = time_ordered(train)
        degrees = train.user_degrees  # [U]
        n_targets = np.maximum(degrees - 1, 0)  # positions 1..n-1 of each user
        # windows per user: ceil(n_targets / max_len), or one ("last")
        per_user = -(-n_targets // max_len) if windows == "all" else np.minimum(n_targets, 1)
        user = np.repeat(np.arange(train.n_users, dtype=np.int64), per_user)  # [Wn]
        # j-th window from the end of its user: local index 0 is the last window
        first = np.repeat(np.cumsum(per_user) - per_user, per_user)
        j = np.arange(user.size, dtype=np.int64) - first
        last_target = n_targets[user] - j * max_len  # sequence position of its last target
        length = np.minimum(last_target, max_len)  # targets (= inputs) in the window
        start = train.indptr[user] + last_target - length  # offset of its first input
        if user.size == 0:
            raise ConfigError(
                "model.name",
                "a sequential model trains on next items, but no user has two or more "
                "training items",
            )
        self.seq = torch.from_numpy(seq).to(device)
        self.user = torch.from_numpy(user).to(device)
        self.start = torch.from_numpy(start).to(device)
        self.length = torch.from_numpy(length).to(device)
        self.pad = train.n_items
        self.batch_size = batch_size
        self.n_rows = int(length.sum())

    def __len__(self) -> int:
        return math.ceil(self.n_rows / self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:

        device = self.seq.device
        order = torch.randperm(self.user.numel(), generator=generator, device=device)  # windows
        counts = self.length[order]
        window = torch.repeat_interleave(order, counts)  # [T] window of each row
        offset = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        col = torch.arange(window.numel(), device=device) - offset  # [T] position in window
        for lo in range(0, window.numel(), self.batch_size):
            win, cols = window[lo : lo + self.batch_size], col[lo : lo + self.batch_size]
            ids, rows = torch.unique_consecutive(win, return_inverse=True)  # [R], [B]
            items = gather_windows(self.seq, self.start[ids], self.length[ids], self.pad)
            pos = self.seq[self.start[win] + cols + 1]  # [B] the next item
            ctx = SequenceContext(items=items, rows=rows, cols=cols)
            yield Batch(ctx=ctx, users=self.user[win], pos=pos)


# ---------------------------------------------------------------------------- model base
@dataclass
class SequentialConfig(ModelConfig):
    """Options shared by the sequential models."""

    max_len: int = 200  # history length the model reads (older items are dropped)
    windows: Literal["all", "last"] = "all"  # train every position, or the last max_len only

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(self.max_len >= 1, f"{prefix}.max_len", f"must be >= 1, got {self.max_len}")


def seeded_dropout(
    x: torch.Tensor, p: float, training: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """Inverted dropout whose mask comes from ``generator`` (not the global RNG)."""
    if not training or p <= 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= p
    return x * keep / (1.0 - p)


class SequentialModel(Model):
    """Base of next-item models over :class:`SequenceContext` histories.

    Subclasses implement :meth:`encode` (hidden states [R, W, d] of every window position),
    :meth:`input_embeddings` and :meth:`output_items`; scoring is ``<h, e_i> (+ b_i)``.

    Randomness: dropout masks come from a generator owned by the model, seeded from the
    ``generator`` passed at construction, so a run is reproducible without global seeds.

    ``l2_penalty(ctx, items)``: squared norm of the item-embedding rows the batch touched
    (every history item of the windows, once per window, plus the scored ``items``), over B;
    dense network weights (attention, feed-forward, GRU, positions) are not in it: use
    ``train.weight_decay`` and the models' dropout for those.
    """

    Config: ClassVar[type[ModelConfig]] = SequentialConfig
    input_kind: ClassVar[str] = "sequence"
    config: SequentialConfig

    def __init__(self, config: SequentialConfig, train: Interactions, generator: torch.Generator):
        super().__init__(config, train, generator)
        self.pad = self.n_items
        self.max_len = config.max_len
        self._dropout_seed = int(torch.randint(2**62, (1,), generator=generator))
        self._dropout_generators: dict[str, torch.Generator] = {}

    # ------------------------------------------------------------------ hooks
    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states [R, W, d] after each prefix of the right-padded windows [R, W]."""
        raise NotImplementedError  # abstract

    def input_embeddings(self) -> nn.Embedding:
        """The input item table ([n_items + 1, d], pad row last)."""
        raise NotImplementedError  # abstract

    def output_items(self) -> tuple[nn.Embedding, nn.Embedding | None]:
        """Output item table ([n_items(+1), d]) and optional bias table ([n_items, 1]);
        called as modules so ``lazy_adam`` gets row-sparse gradients."""
        raise NotImplementedError  # abstract

    # ------------------------------------------------------------------ plumbing
    def dropout_generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._dropout_generators:
            gen = torch.Generator(device=device)
            self._dropout_generators[key] = gen.manual_seed(self._dropout_seed)
        return self._dropout_generators[key]

    def dropout(self, x: torch.Tensor, p: float) -> torch.Tensor:
        if not self.training or p <= 0.0:
            return x
        return seeded_dropout(x, p, True, self.dropout_generator(x.device))

    def make_batches(
        self, train: Interactions, batch_size: int, device: torch.device
    ) -> SequenceBatches:
        """The trainer's batch factory for this model (every position, ``max_len`` windows)."""
        return SequenceBatches(
            train, batch_size, device, max_len=self.max_len, windows=self.config.windows
        )

    def eval_contexts(self, split: Split, part: str) -> Callable[[torch.Tensor], SequenceContext]:
        """``users -> ctx`` for evaluating on ``part``: the history before the held-out item
        (train for ``"valid"``, train + valid for ``"test"``), last ``max_len`` items."""
        if part == "valid":
            return HistoryContexts(split.train, self.max_len)
        if part == "test":
            return HistoryContexts(merge(split.train, split.valid), self.max_len)
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")

    def _check(self, ctx: Any) -> SequenceContext:
        if not isinstance(ctx, SequenceContext):
            raise TypeError(
                f"{type(self).__name__} scores histories (a SequenceContext), not user ids; "
                "evaluate with contexts=model.eval_contexts(split, part)"
            )
        return ctx

    def hidden(self, ctx: SequenceContext) -> torch.Tensor:
        """The hidden state [B, d] of every scored row."""
        states = self.encode(ctx.items)  # [R, W, d]
        return states[ctx.rows, ctx.cols]  # [B, d]

    # ------------------------------------------------------------------ the model contract
    def score(self, ctx: Any, items: torch.Tensor) -> torch.Tensor:
        # ctx: B histories; items [B, K] -> [B, K]
        h = self.hidden(self._check(ctx))  # [B, d]
        table, bias = self.output_items()
        scores = torch.bmm(table(items), h.unsqueeze(2)).squeeze(2)  # [B, K]
        return scores if bias is None else scores + bias(items).squeeze(2)

    def score_candidates(self, ctx: Any, items: torch.Tensor) -> torch.Tensor:
        # one candidate list items [C] for every row: [B, d] @ [d, C] -> [B, C]
        h = self.hidden(self._check(ctx))
        table, bias = self.output_items()
        scores = h @ table(items).T
        return scores if bias is None else scores + bias(items).squeeze(1)

    def score_all(self, ctx: Any) -> torch.Tensor:
        # [B, d] @ [d, n_items] -> [B, n_items]
        h = self.hidden(self._check(ctx))
        table, bias = self.output_items()
        scores = h @ table.weight[: self.n_items].T
        return scores if bias is None else scores + bias.weight[: self.n_items, 0]

    def embeddings(self) -> tuple[None, torch.Tensor, torch.Tensor | None]:
        """No user table (a user is a history); the output item table, and its bias."""
        table, bias = self.output_items()
        items = table.weight[: self.n_items].detach()
        return None, items, None if bias is None else bias.weight[: self.n_items, 0].detach()

    def l2_penalty(self, ctx: Any, items: torch.Tensor) -> torch.Tensor:
        ctx = self._check(ctx)
        history = squared_norms(self.input_embeddings(), ctx.items)  # the pad row is zero
        rows = squared_norms(self.output_items()[0], items)
        return (history + rows) / items.shape[0]


def contexts_for(model: Model, split: Split, part: str) -> Callable[[torch.Tensor], Any] | None:
    """The evaluator's ``contexts`` for ``model`` on ``part`` (None for user-id models)."""
    return model.eval_contexts(split, part)
