"""The bound monitor: how often each sampled loss upper-bounds ``-ln NDCG`` during training.

Paper (a), Di Teodoro et al., "A Theoretical Analysis of Recommendation Loss Functions under
Negative Sampling" (arXiv 2411.07770), shows that with K sampled negatives a loss ``L``
bounds ``-ln NDCG(r+)`` of the full ranking only with some probability, and that this
probability is ordered ``p_BCE >= p_BPR >= p_CCE`` (docs/theory.md#theorem-1). :class:`BoundMonitor`
watches that claim on a real model as it trains. On every epoch where the validation
callback ran (``valid/...`` keys in ``state.log``), for a fixed seeded sample of validation
users with one fixed held-out positive each, it:

1. scores every item with ``state.model.score_all(ctx)`` (no gradient);
2. takes the user's negatives ``I-`` = every item that is neither a training nor a
   validation positive of the user (test items are unknown at validation time, so they
   count as negatives, as in the validation ranking), and the full pessimistic rank
   ``r+ = 1 + #{j in I- : s_j >= s+}`` (docs/theory.md#notation);
3. draws ``S_K`` uniformly without replacement from ``I-`` for every monitored ``K``
   (random keys on the negatives, then ``topk``: no loop over users);
4. records, per ``K``: ``|Gamma_K|``, ``|Gamma_K^0|``, and for each of CCE, BPR and BCE
   (whatever loss is being trained) the sampled loss (a sum over negatives,
   docs/theory.md#sampled-losses), the fraction of users with ``-ln NDCG(r+) <= L``
   ("holds"), and the theory's lower bound ``p_L`` on that probability
   (:func:`negrec.theory.bound_probability`).

For BCE the prediction uses each user's actual ``n0 = #{j in I- : s_j >= 0}`` and actual
``s+`` (docs/theory.md#theorem-1 allows both; the worst case would be ``n0 = r+ - 1``,
``s+ -> inf``). Each ``p_L`` is a per-user lower bound on the probability over the draw of
``S_K``, so the mean "holds" should sit at or above the mean "predicted" up to sampling
noise; the two meet in the worst case of docs/theory.md#worst-case.

The monitor has its own seeded NumPy and torch generators, scores under
``torch.no_grad()`` and restores the model's train/eval mode, so a run with it trains
exactly like a run without it. Its statistics land in ``state.log`` and hence in
``history.csv`` (keys listed in :meth:`BoundMonitor.measure`). One draw is made per epoch
with the largest ``K``; the first ``K`` items of that random order are the sample for each
smaller ``K`` (each is uniform without replacement; samples for different ``K`` are
nested, not independent).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from negrec.data.splits import Split
from negrec.errors import NegrecError
from negrec.losses import Loss, make_loss
from negrec.theory.bounds import BOUND_LOSSES, bound_probability
from negrec.train import Callback, TrainState

#: prefix of every history column the monitor writes
PREFIX = "bound/"


def monitor_key(k: int, *parts: str) -> str:
    """History column name, e.g. ``monitor_key(100, "bce", "holds") == "bound/k=100/bce/holds"``."""
    return "/".join([f"{PREFIX}k={k}", *parts])


@dataclass
class KRecord:
    """Per-user results for one monitored ``K`` (U = monitored users)."""

    k: int
    ids: np.ndarray  # int64 [U, K] sampled negative item ids (valid where ``drawn``)
    drawn: np.ndarray  # bool [U, K] False where a user has fewer than K negatives
    k_eff: np.ndarray  # int64 [U] min(K, N_-)
    gamma: np.ndarray  # int64 [U] |Gamma_K|
    gamma0: np.ndarray  # int64 [U] |Gamma_K^0|
    loss: dict[str, np.ndarray] = field(default_factory=dict)  # loss -> float [U]
    holds: dict[str, np.ndarray] = field(default_factory=dict)  # loss -> bool [U]
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # loss -> float [U]


@dataclass
class MonitorRecord:
    """Everything one monitored epoch measured, per user (kept for tests and inspection)."""

    users: np.ndarray  # int64 [U]
    positives: np.ndarray  # int64 [U] the held-out positive of each user
    s_pos: np.ndarray  # float64 [U]
    n_neg: np.ndarray  # int64 [U] N_-
    rank: np.ndarray  # int64 [U] pessimistic full rank r+
    n0: np.ndarray  # int64 [U] negatives scoring >= 0
    neg_log_ndcg: np.ndarray  # float64 [U] ln log2(1 + r+)
    by_k: dict[int, KRecord] = field(default_factory=dict)


class BoundMonitor(Callback):
    """Training callback recording how often each loss's sampled bound on ``-ln NDCG`` holds.

    See the module docstring (paper (a), Di Teodoro et al., arXiv 2411.07770). Put it after
    :class:`negrec.train.ValidationEval` in the callback list: it runs on exactly the epochs
    where ``valid/...`` keys are already in ``state.log``.

    Args:
        ks: sample sizes ``K`` to monitor (each ``>= 1``; a user with fewer negatives uses
            all of them).
        users: how many validation users to monitor (a seeded sample; all when fewer).
        seed: seed of the user / positive choice and of the per-epoch draws of ``S_K``.
        batch_size: users scored at once (bounds memory at ``batch_size x n_items``).
        losses: losses whose bounds are recorded (default: CCE, BPR and BCE).
    """

    def __init__(
        self,
        ks: Sequence[int],
        *,
        users: int = 256,
        seed: int = 0,
        batch_size: int = 256,
        losses: Sequence[str] = BOUND_LOSSES,
    ):
        ks = sorted({int(k) for k in ks})
        if not ks or ks[0] < 1:
            raise NegrecError(f"bound monitor: K values must be >= 1, got {list(ks)}")
        if users < 1 or batch_size < 1:
            raise NegrecError("bound monitor: users and batch_size must be >= 1")
        unknown = [name for name in losses if name not in BOUND_LOSSES]
        if unknown:
            raise NegrecError(f"bound monitor: unknown losses {unknown}; expected {BOUND_LOSSES}")
        self.ks: list[int] = ks
        self.n_users = int(users)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.losses: tuple[str, ...] = tuple(losses)
        #: the losses as trained (negrec.losses, summed over negatives), by name
        self.loss_fns: dict[str, Loss] = {name: make_loss(name) for name in self.losses}
        self.users: torch.Tensor | None = None  # int64 [U]
        self.positives: torch.Tensor | None = None  # int64 [U]
        self.generator: torch.Generator | None = None
        self.last: MonitorRecord | None = None

    # ------------------------------------------------------------------ callback hooks
    def on_train_start(self, state: TrainState) -> None:
        self.setup(state.split, state.device)

    def on_epoch_end(self, state: TrainState) -> None:
        if not any(key.startswith("valid/") for key in state.log):
            return
        state.log.update(self.measure(state.model, state.split, state.contexts))

    # ------------------------------------------------------------------ the work
    def setup(self, split: Split, device: torch.device | str = "cpu") -> None:
        """Choose the users and their held-out positives (seeded), and seed the draws.

        Candidates are users with at least one validation item and at least one negative.
        """
        rng = np.random.default_rng(self.seed)
        valid = split.valid
        n_neg = split.n_items - split.train.user_degrees - valid.user_degrees  # [n_users]
        candidates = np.flatnonzero((valid.user_degrees > 0) & (n_neg > 0))
        if candidates.size == 0:
            raise NegrecError("bound monitor: no user has a validation item and a negative")
        count = min(self.n_users, candidates.size)
        chosen = np.sort(rng.choice(candidates, size=count, replace=False))  # [U]
        offset = rng.integers(0, valid.user_degrees[chosen])  # [U], one item each
        positives = valid.indices[valid.indptr[chosen] + offset]  # [U]
        self.users = torch.as_tensor(chosen, dtype=torch.int64, device=device)
        self.positives = torch.as_tensor(positives, dtype=torch.int64, device=device)
        self.generator = torch.Generator(device=device).manual_seed(self.seed)

    @torch.no_grad()
    def measure(
        self,
        model: Any,
        split: Split,
        contexts: Callable[[torch.Tensor], Any] | None = None,
    ) -> dict[str, float]:
        """One monitoring pass; returns the history entries and keeps :attr:`last`.

        Keys (``K`` each monitored sample size, ``L`` in cce / bpr / bce):

        - ``bound/k=K/gamma``, ``bound/k=K/gamma0``: mean ``|Gamma_K|``, ``|Gamma_K^0|``;
        - ``bound/k=K/L/value``: mean sampled loss (sum over the K negatives);
        - ``bound/k=K/L/holds``: fraction of users with ``-ln NDCG(r+) <= L``;
        - ``bound/k=K/L/predicted``: mean theory lower bound ``p_L`` on that probability;
        - ``bound/rank_median``, ``bound/rank_mean``: the positive's full rank ``r+``;
        - ``bound/neg_log_ndcg``: mean ``-ln NDCG(r+)``; ``bound/pos_nonneg``: share of
          users with ``s+ >= 0`` (where the chain CCE <= BPR <= BCE holds,
          docs/theory.md#loss-chain);
        - ``bound/users``: users monitored; ``bound/seconds``: time of this pass.
        """
        if self.users is None or self.positives is None or self.generator is None:
            self.setup(split, next(iter(model.parameters())).device)
        assert self.users is not None and self.positives is not None
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            parts = [
                self._measure_batch(
                    model,
                    split,
                    contexts,
                    self.users[i : i + self.batch_size],
                    self.positives[i : i + self.batch_size],
                )
                for i in range(0, self.users.numel(), self.batch_size)
            ]
        finally:
            if was_training:
                model.train()
        record = _concat(parts)
        self.last = record
        return self._summarise(record, time.perf_counter() - start)

    def _measure_batch(
        self,
        model: Any,
        split: Split,
        contexts: Callable[[torch.Tensor], Any] | None,
        users: torch.Tensor,
        positives: torch.Tensor,
    ) -> MonitorRecord:
        """Ranks, draws and losses for one batch of users [B] (vectorised, float64)."""
        assert self.generator is not None
        ctx = users if contexts is None else contexts(users)
        scores = model.score_all(ctx).to(torch.float64)  # [B, n_items]
        b, n_items = scores.shape
        rows = torch.arange(b, device=scores.device)
        s_pos = scores[rows, positives]  # [B]
        negative = ~(split.train.dense_mask(users) | split.valid.dense_mask(users))  # [B, n]
        n_neg = negative.sum(dim=1)  # [B]
        rank = 1 + (negative & (scores >= s_pos.unsqueeze(1))).sum(dim=1)  # [B]
        n0 = (negative & (scores >= 0)).sum(dim=1)  # [B]
        neg_log_ndcg = torch.log(torch.log2(1.0 + rank.to(torch.float64)))  # [B]

        # one uniform random order of each user's negatives: keys in [0, 1) on negatives,
        # -1 elsewhere; the top K keys are a uniform K-subset without replacement
        k_max = min(self.ks[-1], n_items)
        keys = torch.rand(b, n_items, generator=self.generator, device=scores.device)
        keys = keys.masked_fill(~negative, -1.0)
        top_keys, top_ids = keys.topk(k_max, dim=1, sorted=True)  # [B, k_max]

        record = MonitorRecord(
            users=users.cpu().numpy(),
            positives=positives.cpu().numpy(),
            s_pos=s_pos.cpu().numpy(),
            n_neg=n_neg.cpu().numpy(),
            rank=rank.cpu().numpy(),
            n0=n0.cpu().numpy(),
            neg_log_ndcg=neg_log_ndcg.cpu().numpy(),
        )
        for k in self.ks:
            kk = min(k, k_max)
            ids = top_ids[:, :kk]  # [B, K]
            drawn = top_keys[:, :kk] >= 0  # [B, K] False past the user's N_- negatives
            s_neg = scores.gather(1, ids)  # [B, K]
            # the training losses' own per-positive forms (sums over the drawn negatives,
            # the rest at -inf contribute nothing)
            padded = s_neg.masked_fill(~drawn, float("-inf"))  # [B, K]
            values = {name: self.loss_fns[name].rows(s_pos, padded) for name in self.losses}
            k_eff = torch.minimum(n_neg, torch.full_like(n_neg, k))
            kr = KRecord(
                k=k,
                ids=ids.cpu().numpy(),
                drawn=drawn.cpu().numpy(),
                k_eff=k_eff.cpu().numpy(),
                gamma=(drawn & (s_neg >= s_pos.unsqueeze(1))).sum(dim=1).cpu().numpy(),
                gamma0=(drawn & (s_neg >= 0)).sum(dim=1).cpu().numpy(),
            )
            for name in self.losses:
                value = values[name]
                kr.loss[name] = value.cpu().numpy()
                kr.holds[name] = (neg_log_ndcg <= value).cpu().numpy()
                kr.predicted[name] = bound_probability(
                    name,
                    record.n_neg,
                    kr.k_eff,
                    record.rank,
                    s_pos=record.s_pos if name == "bce" else None,
                    n0=record.n0 if name == "bce" else None,
                )
            record.by_k[k] = kr
        return record

    def _summarise(self, record: MonitorRecord, seconds: float) -> dict[str, float]:
        """Means over users of a :class:`MonitorRecord`, keyed as in :meth:`measure`."""
        out: dict[str, float] = {}
        for k, kr in record.by_k.items():
            out[monitor_key(k, "gamma")] = float(kr.gamma.mean())
            out[monitor_key(k, "gamma0")] = float(kr.gamma0.mean())
            for name in self.losses:
                out[monitor_key(k, name, "value")] = float(kr.loss[name].mean())
                out[monitor_key(k, name, "holds")] = float(kr.holds[name].mean())
                out[monitor_key(k, name, "predicted")] = float(kr.predicted[name].mean())
        out[f"{PREFIX}rank_median"] = float(np.median(record.rank))
        out[f"{PREFIX}rank_mean"] = float(record.rank.mean())
        out[f"{PREFIX}neg_log_ndcg"] = float(record.neg_log_ndcg.mean())
        out[f"{PREFIX}pos_nonneg"] = float((record.s_pos >= 0).mean())
        out[f"{PREFIX}users"] = float(record.users.size)
        out[f"{PREFIX}seconds"] = seconds
        return out


def _concat(parts: list[MonitorRecord]) -> MonitorRecord:
    """Join the per-batch records along the user axis."""
    if len(parts) == 1:
        return parts[0]

    def cat(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays, axis=0)

    first = parts[0]
    out = MonitorRecord(
        users=cat([p.users for p in parts]),
        positives=cat([p.positives for p in parts]),
        s_pos=cat([p.s_pos for p in parts]),
        n_neg=cat([p.n_neg for p in parts]),
        rank=cat([p.rank for p in parts]),
        n0=cat([p.n0 for p in parts]),
        neg_log_ndcg=cat([p.neg_log_ndcg for p in parts]),
    )
    for k, kr in first.by_k.items():
        krs = [p.by_k[k] for p in parts]
        out.by_k[k] = KRecord(
            k=k,
            ids=cat([r.ids for r in krs]),
            drawn=cat([r.drawn for r in krs]),
            k_eff=cat([r.k_eff for r in krs]),
            gamma=cat([r.gamma for r in krs]),
            gamma0=cat([r.gamma0 for r in krs]),
            loss={n: cat([r.loss[n] for r in krs]) for n in kr.loss},
            holds={n: cat([r.holds[n] for r in krs]) for n in kr.holds},
            predicted={n: cat([r.predicted[n] for r in krs]) for n in kr.predicted},
        )
    return out
