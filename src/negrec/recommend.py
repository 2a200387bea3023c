"""Use a trained model: top-N items, pair scores, similar items and embeddings, in raw ids.

``negrec.load(run_dir)`` turns a run directory into a :class:`Recommender` without the
training data (the run stores its id vocabularies and each user's items:
:mod:`negrec.experiment.artifacts`); ``Recommender.from_split(model, split)`` wraps a
model trained in this process. Every method takes and returns the raw ids of the data
file (``"007"`` stays ``"007"``), never negrec's internal indices.

Order of a list: score descending, ties by the item's position in the run's sorted item
vocabulary (its internal id) ascending, so a list is the evaluator's ranking read from
the top (an item's place is at least ``1 +`` the items scoring strictly higher, the
evaluator's rank of it) and is the same on every call. Items scored NaN or ``-inf`` are
never returned; a user with fewer than N candidates gets a shorter list.

What a user "has seen" (masked by ``exclude_seen``, and a sequential model's history) is
``history="all"`` by default: every interaction the run knows of the user, in train,
validation and test, so a deployed model never re-recommends a held-out item the user
already consumed; ``history="train"`` keeps what the model was fitted on (the
evaluator's validation ranking masks exactly that).

Unknown user ids: ``unknown="error"`` (default) raises :class:`negrec.errors.NegrecError`
naming them; ``unknown="popular"`` gives them the items with the most training
interactions (the ``score`` column then holds those counts, not model scores).

Sequential models (SASRec, GRU4Rec) have no user table: a known user's context is the
last ``max_len`` items of their history in time order, and :meth:`Recommender.recommend_history`
scores any raw-id item sequence. All work is batched: one ``score_all`` per batch of users
and one compiled pass per row (:mod:`negrec._fast.topn`) that keeps the best N unseen items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import torch

from negrec._fast.topn import top_unseen
from negrec.data.interactions import Interactions
from negrec.data.splits import Split
from negrec.errors import ConfigError, NegrecError, first_line
from negrec.models.base import Model

History = Literal["all", "train"]
Unknown = Literal["error", "popular"]
#: score-matrix elements per batch of users (float32: 16 MiB; Gowalla: 102 users). Smaller
#: blocks than the evaluator's: a [B, d] x [d, n_items] product is ~1.3x faster per user
#: single-threaded here with B ~ 100 than with B ~ 400 (its output stays in cache).
BATCH_ELEMENTS = 1 << 22


class Embeddings(NamedTuple):
    """Factors indexed by raw id: ``users`` (None for sequential models, which have no
    user table), ``items`` (rows: items; columns: 0 .. d-1) and ``item_bias`` (GRU4Rec's
    per-item output bias, else None). A score is ``users.loc[u] @ items.loc[i]`` (plus the
    bias); LightGCN's are its propagated (final) embeddings."""

    users: pd.DataFrame | None
    items: pd.DataFrame
    item_bias: pd.Series | None


def union(parts: Iterable[Interactions]) -> Interactions:
    """Every (user, item) pair of ``parts`` (one id space) once, keeping the latest
    timestamp of a pair that sits in several parts (a pre-split file may repeat one)."""
    parts = list(parts)
    first = parts[0]
    coo = [p.to_coo() for p in parts]
    users = np.concatenate([u for u, _ in coo])
    items = np.concatenate([i for _, i in coo])
    timed = all(p.timestamps is not None for p in parts)
    times = (
        np.concatenate([p.timestamps for p in parts if p.timestamps is not None]) if timed else None
    )
    keys = users * np.int64(first.n_items) + items
    order = np.lexsort((times, keys)) if times is not None else np.argsort(keys, kind="stable")
    last = np.ones(order.size, dtype=bool)
    last[:-1] = keys[order][1:] != keys[order][:-1]  # the last of each key: the latest time
    keep = order[last]
    return Interactions.from_arrays(
        users[keep],
        items[keep],
        n_users=first.n_users,
        n_items=first.n_items,
        timestamps=None if times is None else times[keep],
        user_ids=first.user_ids,
        item_ids=first.item_ids,
    )


def _listing(values: Sequence[Any] | np.ndarray, total: int, limit: int = 5) -> str:
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:limit])
    return shown + (f" and {total - limit} more" if total > limit else "")


def _count(n: Any) -> int:
    """``n`` items per list as an int >= 1; else a :class:`NegrecError` (not the
    TypeError numpy would raise deep inside for ``2.5`` or ``True``)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise NegrecError(f"n must be an integer >= 1, got {n!r}")
    return int(n)


def _as_list(ids: Any) -> tuple[np.ndarray, bool]:
    """Raw ids as a 1-d array, and whether a single id (a scalar) was given."""
    if isinstance(ids, str | bytes | int | np.integer | np.str_) or np.ndim(ids) == 0:
        return np.array([ids], dtype=object), True
    return np.asarray(list(ids), dtype=object), False


class Recommender:
    """A trained model over a known id space: see the module docstring.

    ``model``: any negrec model, trained over ``history``'s id space. ``history``: each
    user's known items (masked by ``exclude_seen``; a sequential model's contexts, in
    time order). ``popularity`` [n_items]: the counts ranking unknown users' lists
    (default: ``history``'s item degrees). Build one with :func:`load` or
    :meth:`from_split`.
    """

    def __init__(
        self, model: Model, history: Interactions, *, popularity: np.ndarray | None = None
    ):
        if (history.n_users, history.n_items) != (model.n_users, model.n_items):
            raise NegrecError(
                f"the history has {history.n_users} users x {history.n_items} items, the model "
                f"{model.n_users} x {model.n_items}"
            )
        self.model = model
        self.history = history
        self.sequential = model.input_kind == "sequence"
        if self.sequential and history.timestamps is None:
            raise NegrecError(
                f"model '{model.config.name}' reads histories in time order, but the "
                "history has no timestamps"
            )
        counts = history.item_degrees if popularity is None else np.asarray(popularity)
        self.popularity = np.asarray(counts, dtype=np.float64)
        self._users = pd.Index(history.user_ids)
        self._items = pd.Index(history.item_ids)
        self._contexts: Any = None
        model.eval()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_split(cls, model: Model, split: Split, history: History = "all") -> Recommender:
        """A model trained on ``split.train``: seen items (and sequential histories) are
        every part (``"all"``) or ``"train"`` only; unknown users ranked by training counts."""
        if history not in ("all", "train"):
            raise NegrecError(f"history must be 'all' or 'train', got {history!r}")
        known = split.train if history == "train" else union([split.train, split.valid, split.test])
        return cls(model, known, popularity=split.train.item_degrees)

    # ------------------------------------------------------------------ vocabularies
    @property
    def user_ids(self) -> np.ndarray:
        """Raw user ids [n_users], in internal-id order."""
        return self.history.user_ids

    @property
    def item_ids(self) -> np.ndarray:
        """Raw item ids [n_items], in internal-id order (the tie order of every list)."""
        return self.history.item_ids

    @property
    def device(self) -> torch.device:
        first = next(iter(self.model.parameters()), None)
        return first.device if first is not None else torch.device("cpu")

    def _lookup(self, index: pd.Index, ids: np.ndarray, what: str) -> np.ndarray:
        """Internal ids [Q] of raw ``ids``; -1 where unknown."""
        if ids.size == 0:
            return np.empty(0, dtype=np.int64)
        try:
            return index.get_indexer(ids).astype(np.int64)
        except TypeError as err:  # unhashable ids
            raise NegrecError(
                f"{what} ids must be strings or integers ({first_line(err)})"
            ) from None

    def _known(self, index: pd.Index, ids: np.ndarray, what: str) -> np.ndarray:
        found = self._lookup(index, ids, what)
        if (found < 0).any():
            missing = ids[found < 0]
            kind = "integers" if index.dtype.kind in "iu" else "strings"
            raise NegrecError(
                f"unknown {what} id{'s' if missing.size > 1 else ''}: "
                f"{_listing(missing, missing.size)} (this run has {len(index)} {what}s; "
                f"its ids are {kind})"
            )
        return found

    def _allowed(self, items: Any) -> torch.Tensor | None:
        if items is None:
            return None
        wanted, _ = _as_list(items)
        mask = torch.zeros(self.model.n_items, dtype=torch.bool)
        mask[torch.from_numpy(self._known(self._items, wanted, "item"))] = True
        return mask

    # ------------------------------------------------------------------ recommending
    def _batch(self) -> int:
        return max(1, BATCH_ELEMENTS // max(1, self.model.n_items))

    def _user_contexts(self, users: torch.Tensor) -> Any:
        if not self.sequential:
            return users
        if self._contexts is None:
            from negrec.models.sequential import HistoryContexts

            self._contexts = HistoryContexts(self.history, self.model.max_len)  # type: ignore[arg-type]
        return self._contexts(users)

    @torch.no_grad()
    def _top(
        self,
        scorer: Any,
        n_rows: int,
        seen: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        n: int,
        allowed: torch.Tensor | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items [Q, n], scores [Q, n], count [Q]) for ``n_rows`` rows; ``scorer(lo, hi)``
        gives the scores [hi - lo, n_items] of rows lo..hi; ``seen`` = (start [Q], end [Q],
        items): the CSR rows of items each row leaves out."""
        items = np.full((n_rows, n), -1, dtype=np.int64)
        scores = np.full((n_rows, n), -np.inf, dtype=np.float32)
        count = np.zeros(n_rows, dtype=np.int64)
        start, end, seen_items = seen
        step = self._batch()
        for lo in range(0, n_rows, step):  # loop over batches of users, not users
            hi = min(lo + step, n_rows)
            block = scorer(lo, hi)  # [B, n_items]
            got = top_unseen(block, start[lo:hi], end[lo:hi], seen_items, n, allowed)
            items[lo:hi], scores[lo:hi], count[lo:hi] = (t.cpu().numpy() for t in got)
        return items, scores, count

    def _frame(
        self,
        key: str,
        keys: np.ndarray,
        items: np.ndarray,
        scores: np.ndarray,
        count: np.ndarray,
        item: str = "item",
    ) -> pd.DataFrame:
        """The long table key, rank, item, score from per-row top lists."""
        n = items.shape[1]
        valid = np.arange(n) < count[:, None]  # [Q, n]
        rows = np.repeat(np.arange(count.size), count)
        return pd.DataFrame(
            {
                key: keys[rows],
                "rank": np.tile(np.arange(1, n + 1), count.size)[valid.ravel()],
                item: self.item_ids[items[valid]],
                "score": scores[valid],
            }
        )

    def recommend(
        self,
        users: Any = None,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        items: Any = None,
        unknown: Unknown = "error",
    ) -> pd.DataFrame:
        """Top-``n`` items for raw user ids (one id, a sequence, or None: every user).

        Returns a DataFrame ``user, rank, item, score`` (rank 1 = best), users in the order
        given. ``exclude_seen`` masks each user's known items; ``items`` (raw ids) limits
        the candidates; ``unknown`` = ``"error"`` or ``"popular"`` (module docstring)."""
        n = _count(n)
        if unknown not in ("error", "popular"):
            raise NegrecError(f"unknown must be 'error' or 'popular', got {unknown!r}")
        if users is None:
            raw, index = self.user_ids, np.arange(self.model.n_users, dtype=np.int64)
        else:
            raw, _ = _as_list(users)
            lookup = self._lookup if unknown == "popular" else self._known
            index = lookup(self._users, raw, "user")
        allowed = self._allowed(items)
        known = np.flatnonzero(index >= 0)
        device = self.device
        ids = torch.from_numpy(index[known]).to(device)
        if exclude_seen:
            indptr, _ = self.history.torch_csr(device)
            seen = (indptr[ids], indptr[ids + 1], self.history.torch_csr(device)[1])
        else:
            empty = torch.zeros(ids.numel(), dtype=torch.int64, device=device)
            seen = (empty, empty, torch.zeros(1, dtype=torch.int64, device=device))
        top = self._top(
            lambda lo, hi: self.model.score_all(self._user_contexts(ids[lo:hi])),
            ids.numel(),
            seen,
            n,
            allowed,
        )
        if known.size == index.size:
            return self._frame("user", raw, *top)
        # unknown users (unknown="popular"): the most interacted-with training items
        out_items = np.full((index.size, n), -1, dtype=np.int64)
        out_scores = np.full((index.size, n), -np.inf, dtype=np.float32)
        count = np.zeros(index.size, dtype=np.int64)
        out_items[known], out_scores[known], count[known] = top
        nothing = torch.zeros(1, dtype=torch.int64)
        pop = top_unseen(
            torch.from_numpy(self.popularity.astype(np.float32)).unsqueeze(0),
            nothing,
            nothing,
            nothing,
            n,
            allowed,
        )
        cold = index < 0
        out_items[cold], out_scores[cold], count[cold] = (t.numpy() for t in pop)
        return self._frame("user", raw, out_items, out_scores, count)

    def recommend_history(
        self,
        histories: Any,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        items: Any = None,
    ) -> pd.DataFrame:
        """Top-``n`` next items after raw-id item sequences (sequential models only).

        ``histories``: one sequence of raw item ids, oldest first (e.g. ``["a", "b"]``), or
        a list of them (``[["a", "b"], ["c"]]``). Only the last ``max_len`` items are read.
        Returns a DataFrame ``history, rank, item, score`` where ``history`` numbers the
        sequences from 0; ``exclude_seen`` masks each sequence's own items."""
        if not self.sequential:
            raise NegrecError(
                f"model '{self.model.config.name}' scores known users, not item histories; "
                "recommend_history needs a sequential model (sasrec, gru4rec)"
            )
        n = _count(n)
        seqs = list(histories) if not isinstance(histories, str | bytes) else [histories]
        if seqs and not all(isinstance(s, list | tuple | np.ndarray | pd.Series) for s in seqs):
            seqs = [seqs]  # one history of scalar ids
        if not seqs or any(len(s) == 0 for s in seqs):
            raise NegrecError("every history needs at least one item")
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        flat = np.asarray([v for s in seqs for v in s], dtype=object)
        codes = self._known(self._items, flat, "item")
        allowed = self._allowed(items)
        from negrec.models.sequential import SequenceContext, gather_windows

        device = self.device
        seq = torch.from_numpy(codes).to(device)
        ends = torch.from_numpy(np.cumsum(lengths)).to(device)
        starts = ends - torch.from_numpy(lengths).to(device)
        max_len = int(self.model.max_len)  # type: ignore[arg-type]

        def contexts(lo: int, hi: int) -> SequenceContext:
            length = (ends[lo:hi] - starts[lo:hi]).clamp(max=max_len)
            windows = gather_windows(seq, ends[lo:hi] - length, length, self.model.n_items)
            rows = torch.arange(hi - lo, device=device)
            return SequenceContext(items=windows, rows=rows, cols=length - 1)

        if exclude_seen:  # each sequence's items, sorted and unique, as CSR rows
            owner = np.repeat(np.arange(lengths.size), lengths)
            pairs = np.unique(owner * np.int64(self.model.n_items) + codes)
            row, item = np.divmod(pairs, self.model.n_items)
            ptr = np.searchsorted(row, np.arange(lengths.size + 1))
            seen = (
                torch.from_numpy(ptr[:-1]).to(device),
                torch.from_numpy(ptr[1:]).to(device),
                torch.from_numpy(np.append(item, 0)).to(device),
            )
        else:
            empty = torch.zeros(lengths.size, dtype=torch.int64, device=device)
            seen = (empty, empty, torch.zeros(1, dtype=torch.int64, device=device))
        top = self._top(
            lambda lo, hi: self.model.score_all(contexts(lo, hi)), lengths.size, seen, n, allowed
        )
        return self._frame("history", np.arange(lengths.size), *top)

    # ------------------------------------------------------------------ scores
    @torch.no_grad()
    def score(self, users: Any, items: Any) -> np.ndarray:
        """Model scores [P] of raw-id pairs ``(users[p], items[p])``; a single user or item
        is paired with every entry of the other. Unknown ids are an error naming them."""
        u_raw, _ = _as_list(users)
        i_raw, _ = _as_list(items)
        if u_raw.size != i_raw.size and 1 not in (u_raw.size, i_raw.size):
            raise NegrecError(
                f"score takes pairs: {u_raw.size} users and {i_raw.size} items (or one of either)"
            )
        u = self._known(self._users, u_raw, "user")
        i = self._known(self._items, i_raw, "item")
        u, i = np.broadcast_arrays(u, i)
        device = self.device
        out = np.empty(u.size, dtype=np.float32)
        step = self._batch()
        for lo in range(0, u.size, step):
            ids = torch.from_numpy(np.ascontiguousarray(u[lo : lo + step])).to(device)
            cols = torch.from_numpy(np.ascontiguousarray(i[lo : lo + step])).to(device)
            got = self.model.score(self._user_contexts(ids), cols.unsqueeze(1))  # [B, 1]
            out[lo : lo + ids.numel()] = got[:, 0].float().cpu().numpy()
        return out

    # ------------------------------------------------------------------ embeddings
    def _factors(self) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        with torch.no_grad():
            return self.model.embeddings()  # NoEmbeddings (a NegrecError) for NeuMF

    def embeddings(self) -> Embeddings:
        """User and item factors indexed by raw id (see :class:`Embeddings`). NeuMF has
        none (its score is an MLP over two embedding pairs): an error says so."""
        users, items, bias = self._factors()

        def frame(table: torch.Tensor, ids: np.ndarray, name: str) -> pd.DataFrame:
            return pd.DataFrame(table.float().cpu().numpy(), index=pd.Index(ids, name=name))

        return Embeddings(
            users=None if users is None else frame(users, self.user_ids, "user"),
            items=frame(items, self.item_ids, "item"),
            item_bias=None
            if bias is None
            else pd.Series(
                bias.float().cpu().numpy(), index=pd.Index(self.item_ids, name="item"), name="bias"
            ),
        )

    @torch.no_grad()
    def similar_items(self, items: Any, n: int = 10) -> pd.DataFrame:
        """The ``n`` items most similar to each raw item id by cosine of the model's item
        embeddings (LightGCN: propagated; SASRec / GRU4Rec: the output item table),
        the item itself left out. Returns ``item, rank, similar, score``."""
        n = _count(n)
        raw, _ = _as_list(items)
        query = self._known(self._items, raw, "item")
        _, table, _ = self._factors()
        unit = table.float() / table.float().norm(dim=1, keepdim=True).clamp(min=1e-12)
        rows = torch.from_numpy(query).to(unit.device)
        self_ptr = torch.arange(rows.numel() + 1, device=unit.device)
        seen = (self_ptr[:-1], self_ptr[1:], rows)  # each row masks its own item
        top = self._top(lambda lo, hi: unit[rows[lo:hi]] @ unit.T, rows.numel(), seen, n, None)
        return self._frame("item", raw, *top, item="similar")


def load(run_dir: str | Path, *, history: History = "all", device: str = "cpu") -> Recommender:
    """A :class:`Recommender` from a run directory (``negrec run``), without its data file.

    Rebuilds the model from the run's ``config.toml``, its ids and split from
    ``interactions.npz`` (or, for a run made before negrec stored them, from the data the
    config names), and loads the selected weights ``best.pt`` onto ``device``."""
    from negrec.experiment import artifacts
    from negrec.experiment.config import ExperimentConfig, read_toml
    from negrec.models import MODELS
    from negrec.train import resolve_device

    run = Path(run_dir)
    artifacts.require_finished(run)
    try:
        where = resolve_device(device)
    except ConfigError as err:  # not a config key here: the argument
        raise NegrecError(f"device {err.detail}") from None
    config = ExperimentConfig.from_dict(read_toml(run / "config.toml"))
    split = artifacts.read_split(run)
    generator = torch.Generator().manual_seed(config.train.seed)
    model = MODELS.get(config.model.name, "model.name")(config.model, split.train, generator)
    artifacts.load_weights(run, model, where)
    return Recommender.from_split(model, split, history=history)
