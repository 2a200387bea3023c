"""The fused MF step's row passes on several threads, with the same bits on any number.

A batch repeats rows (a user with several positives in it, a popular item drawn as a
negative many times), so a row's gradient is a sum over its occurrences, and two threads
summing into one row would race; summing per thread and then across threads would change
the last bits with the thread count. Here every row has an owner chunk (:func:`_owner`):
each chunk scans the whole batch in batch order and does the work of its own rows only, so
every row's sum is taken in batch order whichever thread takes it, and one seed gives the
same bits on any number of threads (1, 2 and 3 in ``tests/test_fused.py``,
``test_training_is_identical_across_thread_counts``). A chunk reads every id of the batch
(B (1 + K) integers) but touches only its own rows' d floats. Work that reads rows without
writing them (the scores) splits the batch instead.

A step at ``chunks > 1`` runs four parallel regions: RowwiseAdam's catch-up of the rows read
(owned), the scores (by batch row), the row gradients (owned) and the row update (owned).
The update needs its own region: a row's gradient reads the other table's rows as they were
before the step, and their owners update them. One thread runs serial kernels with the
same arithmetic: narrow rows in one pass that updates each row at its last occurrence
(``_row_step_one_pass``), wide rows in the two passes without owner tests. Whether a step
runs on the threads at all is chosen by timing both ways (:class:`ChunkChooser`).

Threads: numba's (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``), as every parallel
kernel of :mod:`negrec._fast.kernels`; ``chunks`` is that count (:func:`mf_chunks`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from negrec._fast.kernels import (
    _GATHER_DOT_FORWARD,
    PREFETCH_AHEAD,
    PREFETCH_MAX_WIDTH,
    _adam_touched_rows,
    _catch_up_row,
    _fetch_row,
    _fetch_stale,
    _serial_and_parallel,
    _sgd_touched_rows,
    _update_order,
    wide_ahead,
)

#: below this much work (batch ids x d) a step stays serial whatever the thread count:
#: starting a parallel region costs ~10-100 us, and a tiny batch takes less than that
MF_PARALLEL_MIN_WORK = 1 << 14


#: rows are owned in blocks of 2^OWNER_SHIFT consecutive ids: a block of 64 rows fills
#: whole cache lines of the per-row flags (bool) and step counters (int64), so two threads
#: never write one line (owning row by row, they did: 2x slower, not faster)
OWNER_SHIFT = 6


@njit(cache=True, nogil=True, inline="always")
def _owner(row: int, chunks: int) -> int:
    """The chunk that owns ``row``: its block, hashed (Knuth's multiplicative hash, 32
    bits) and scaled to [0, chunks) by a multiply and a shift. Every chunk asks this for
    every id of the batch, so no division (with ``block % chunks`` a K = 100 row step on 2
    chunks took 6.4 ms, with the hash 2.3 ms; one chunk 2.2 ms)."""
    mixed = ((row >> OWNER_SHIFT) * 2654435761) & 0xFFFFFFFF
    return (mixed * chunks) >> 32


def mf_chunks(work: int) -> int:
    """How many owner chunks a step of ``work`` (batch ids x d) is split into: numba's
    thread count, or 1 (serial) for small work or one thread."""
    threads = numba.get_num_threads()
    return 1 if threads == 1 or work < MF_PARALLEL_MIN_WORK else threads


class ChunkChooser:
    """Whether a step runs on numba's threads or on one, chosen by timing the step both
    ways: every ``every`` steps, ``probe`` steps run on the threads and ``probe`` on one,
    and the faster median wins until the next probe. Starting a parallel region costs
    ~10 us on a quiet machine but ~0.1 ms when other jobs hold the cores, and the threads
    then wait for each other (two threads measured 0.54x on a loaded 2-core machine). The
    choice never changes a result: any chunk count gives the same bits."""

    def __init__(self, probe: int = 8, every: int = 1024):
        self.probe, self.every = probe, every
        self.count = 0
        self.times: dict[bool, list[float]] = {True: [], False: []}
        self.threaded = True
        self.many = 0  # the thread count probed; another one starts a new probe

    def pick(self, many: int) -> int:
        """The chunk count of the next step, given ``many`` (:func:`mf_chunks`)."""
        if many != self.many:
            self.many, self.count = many, 0
            self.times = {True: [], False: []}
        if many == 1:
            return 1
        phase = self.count % self.every
        if phase < 2 * self.probe:
            return many if phase < self.probe else 1
        return many if self.threaded else 1

    def record(self, chunks: int, seconds: float) -> None:
        """The step just run took ``seconds`` on ``chunks`` chunks."""
        phase = self.count % self.every
        self.count += 1
        if phase >= 2 * self.probe or self.many == 1:
            return
        self.times[chunks > 1].append(seconds)
        if phase == 2 * self.probe - 1:
            threaded, serial = self.times[True], self.times[False]
            if threaded and serial:
                self.threaded = float(np.median(threaded)) < float(np.median(serial))
            self.times = {True: [], False: []}


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _catch_up_owned(
    table: tuple[np.ndarray, np.ndarray, np.ndarray],  # float32 [n, d]: p, m, v
    last: np.ndarray,  # int64 [n]: the step each row is current at; updated
    history: tuple[np.ndarray, np.ndarray],  # float64: hist_a, hist_sc2
    steps: tuple[int, int, int],  # (until, mark, base) as in adam_catch_up_rows
    powers: np.ndarray,
    beta1: float,
    beta2: float,
    eps: float,
    rows: np.ndarray,  # int64 [R], repeats allowed
    chunk: int,
    chunks: int,
) -> None:
    """:func:`negrec._fast.kernels.adam_catch_up_rows` of the rows chunk ``chunk`` owns."""
    param, exp_avg, exp_avg_sq = table
    hist_a, hist_sc2 = history
    until, mark, base = steps
    n = rows.shape[0]
    for t in range(n):
        if t + PREFETCH_AHEAD < n:
            ahead = rows[t + PREFETCH_AHEAD]
            if chunks == 1 or _owner(ahead, chunks) == chunk:
                _fetch_stale(table, last, ahead, until)
        row = rows[t]
        if chunks > 1 and _owner(row, chunks) != chunk:
            continue
        since = last[row]
        if since < until:
            _catch_up_row(
                param[row], exp_avg[row], exp_avg_sq[row], since, until,
                hist_a, hist_sc2, base, powers, beta1, beta2, eps,
            )  # fmt: skip
        last[row] = mark


def _catch_up_both(
    user_table: tuple[np.ndarray, np.ndarray, np.ndarray],  # float32 [n_users, d]: p, m, v
    user_last: np.ndarray,  # int64 [n_users]
    user_history: tuple[np.ndarray, np.ndarray],
    user_steps: tuple[int, int, int],
    item_table: tuple[np.ndarray, np.ndarray, np.ndarray],  # float32 [n_items, d]
    item_last: np.ndarray,  # int64 [n_items]
    item_history: tuple[np.ndarray, np.ndarray],
    item_steps: tuple[int, int, int],
    powers: np.ndarray,
    beta1: float,
    beta2: float,
    eps: float,
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B * W]: the batch's item ids, flattened
    chunks: int,
) -> None:
    for chunk in prange(chunks):
        _catch_up_owned(
            user_table, user_last, user_history, user_steps,
            powers, beta1, beta2, eps, users, chunk, chunks,
        )  # fmt: skip
        _catch_up_owned(
            item_table, item_last, item_history, item_steps,
            powers, beta1, beta2, eps, items, chunk, chunks,
        )  # fmt: skip


_CATCH_UP_BOTH = _serial_and_parallel(_catch_up_both, fastmath=True)


def catch_up_both(*args: object, chunks: int) -> None:
    """RowwiseAdam's catch-up of a step's users and items (see ``_catch_up_both``'s
    arguments), each row by its owner chunk: the same bits as
    :func:`negrec._fast.kernels.adam_catch_up_rows` on the users then the items, since a
    row's catch-up reads only that row and its table's history."""
    _CATCH_UP_BOTH[chunks > 1](*args, chunks)


def scores(
    user_table: np.ndarray,  # float32 [n_users, d]
    item_table: np.ndarray,  # float32 [n_items, d]
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]
    out: np.ndarray,  # float32 [B, W] out: <p_u, q_i>
    chunks: int,
) -> None:
    """:func:`negrec._fast.kernels.gather_dot_forward`, on numba's threads when ``chunks >
    1`` (its parallel twin: the same bits; each score is one batch row's own dot)."""
    _GATHER_DOT_FORWARD[chunks > 1](user_table, users, item_table, items, out)


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _accumulate_owned(
    user_table: np.ndarray,  # float32 [n_users, d], read
    item_table: np.ndarray,  # float32 [n_items, d], read
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]
    grad: np.ndarray,  # float32 [B, W]: d loss / d score[b, w]
    scale: np.float32,  # d penalty / d row per occurrence (0: no penalty)
    user_buf: np.ndarray,  # float32 [n_users, d]: += each owned user row's gradient
    user_touched: np.ndarray,  # bool [n_users]: set at the owned users
    item_buf: np.ndarray,  # float32 [n_items, d]
    item_touched: np.ndarray,  # bool [n_items]
    chunk: int,
    chunks: int,
) -> None:
    """Pass 1 of the row step for the rows chunk ``chunk`` owns, in batch order:
    ``d/dp_u = sum_w g[b, w] q_i``, ``d/dq_i = g[b, w] p_u``, plus the L2 term."""
    n_rows, width = items.shape
    dim = user_table.shape[1]
    penalty = scale != 0.0
    # prefetching pays for a few rows per b; with many negatives per row the row loop's own
    # misses overlap, and 8 rows x K prefetches ahead only cost (K = 100: ~1.3x slower)
    prefetch = width <= PREFETCH_MAX_WIDTH
    for b in range(n_rows):
        if prefetch and b + PREFETCH_AHEAD < n_rows:
            ahead = users[b + PREFETCH_AHEAD]
            _fetch_row(user_table, ahead)
            if chunks == 1 or _owner(ahead, chunks) == chunk:
                _fetch_row(user_buf, ahead)
            for w in range(width):
                ahead = items[b + PREFETCH_AHEAD, w]
                _fetch_row(item_table, ahead)
                if chunks == 1 or _owner(ahead, chunks) == chunk:
                    _fetch_row(item_buf, ahead)
        u = users[b]
        own_user = chunks == 1 or _owner(u, chunks) == chunk
        p = user_table[u]
        gp = user_buf[u]
        if own_user:
            user_touched[u] = True
        for w in range(width):
            i = items[b, w]
            q = item_table[i]
            g = grad[b, w]
            own_item = chunks == 1 or _owner(i, chunks) == chunk
            gq = item_buf[i]
            if own_user and own_item:  # one loop for both (two cost ~1.5x at K = 100)
                for j in range(dim):
                    gp[j] += g * q[j]
                    gq[j] += g * p[j]
            elif own_user:
                for j in range(dim):
                    gp[j] += g * q[j]
            elif own_item:
                for j in range(dim):
                    gq[j] += g * p[j]
            if own_item:
                item_touched[i] = True
                if penalty:
                    for j in range(dim):
                        gq[j] += scale * q[j]
        if own_user and penalty:
            for j in range(dim):
                gp[j] += scale * p[j]


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _adam_row(
    p: np.ndarray,  # float32 [d], updated in place
    m: np.ndarray,  # float32 [d], Adam's first moment, updated in place
    v: np.ndarray,  # float32 [d], second moment, updated in place
    g: np.ndarray,  # float32 [d]: the row's summed gradient; zeroed here
    constants: tuple[np.float32, ...],  # see _adam_constants
) -> None:
    """Adam's update of one row (every row update of the step takes this one body)."""
    step_size, keep1, keep2, take1, take2, wd, eps32, inv_c2 = constants
    for j in range(p.shape[0]):
        gj = g[j] + wd * p[j]
        g[j] = 0.0
        mj = keep1 * m[j] + take1 * gj
        vj = keep2 * v[j] + take2 * gj * gj
        m[j] = mj
        v[j] = vj
        p[j] -= step_size * mj / (np.sqrt(vj * inv_c2) + eps32)


@njit(cache=True, nogil=True, inline="always")
def _adam_constants(
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    correction1: float,
    correction2: float,
) -> tuple[np.float32, ...]:
    """float32 constants keep the row update in float32 (vectorised; float64 is ~4x
    slower): step size, beta1, beta2, 1 - beta1, 1 - beta2, weight decay, eps, 1 / c2."""
    return (
        np.float32(lr / correction1), np.float32(beta1), np.float32(beta2),
        np.float32(1.0 - beta1), np.float32(1.0 - beta2), np.float32(weight_decay),
        np.float32(eps), np.float32(1.0 / correction2),
    )  # fmt: skip


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _sgd_row(p: np.ndarray, g: np.ndarray, rate: np.float32) -> None:
    """``p -= lr * g`` on one row; zeroes ``g``."""
    for j in range(p.shape[0]):
        p[j] -= rate * g[j]
        g[j] = 0.0


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _update_at(
    p: np.ndarray,  # float32 [d]: the row, updated in place
    exp_avg: np.ndarray,  # float32 [n, d]: the table's first moments (Adam only)
    exp_avg_sq: np.ndarray,  # float32 [n, d]
    row: int,
    g: np.ndarray,  # float32 [d]: the row's summed gradient; zeroed here
    adam: bool,  # Adam's update (with ``constants``); False: SGD's (with ``rate``)
    constants: tuple[np.float32, ...],
    rate: np.float32,
) -> None:
    """The update of a row once its gradient is complete (one-pass row steps)."""
    if adam:
        _adam_row(p, exp_avg[row], exp_avg_sq[row], g, constants)
    else:
        _sgd_row(p, g, rate)


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def adam_owned_rows(
    param: np.ndarray,  # float32 [n, d], updated in place
    exp_avg: np.ndarray,  # float32 [n, d], Adam's first moment, updated in place
    exp_avg_sq: np.ndarray,  # float32 [n, d], second moment, updated in place
    rows: np.ndarray,  # int64 [R]: the rows to walk (see _update_order), repeats allowed
    buffer: np.ndarray,  # float32 [n, d]: each touched row's summed gradient; zeroed here
    touched: np.ndarray,  # bool [n]: True at the touched rows; cleared here
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    correction1: float,
    correction2: float,
    chunk: int,
    chunks: int,
) -> None:
    """The Adam update of each touched row chunk ``chunk`` owns, once per row however often
    it repeats."""
    constants = _adam_constants(lr, beta1, beta2, eps, weight_decay, correction1, correction2)
    n = rows.shape[0]
    for t in range(n):
        if t + PREFETCH_AHEAD < n:
            ahead = rows[t + PREFETCH_AHEAD]
            if chunks == 1 or _owner(ahead, chunks) == chunk:
                for table in (param, exp_avg, exp_avg_sq, buffer):
                    _fetch_row(table, ahead)
        row = rows[t]
        if (chunks > 1 and _owner(row, chunks) != chunk) or not touched[row]:
            continue  # a repeat of a row already updated, or another chunk's
        touched[row] = False
        _adam_row(param[row], exp_avg[row], exp_avg_sq[row], buffer[row], constants)


@njit(cache=True, nogil=True, fastmath=True)
def _sgd_owned_rows(
    param: np.ndarray,  # float32 [n, d], updated in place
    rows: np.ndarray,  # int64 [R]: the rows to walk, repeats allowed
    buffer: np.ndarray,  # float32 [n, d]: each touched row's summed gradient; zeroed here
    touched: np.ndarray,  # bool [n]: True at the touched rows; cleared here
    lr: float,
    chunk: int,
    chunks: int,
) -> None:
    """``p -= lr * g`` on each touched row chunk ``chunk`` owns, once per row."""
    rate = np.float32(lr)
    for row in rows:
        if (chunks > 1 and _owner(row, chunks) != chunk) or not touched[row]:
            continue
        touched[row] = False
        _sgd_row(param[row], buffer[row], rate)


@njit(cache=True, nogil=True, fastmath=True)
def _row_squares(
    user_table: np.ndarray,  # float32 [n_users, d]
    item_table: np.ndarray,  # float32 [n_items, d]
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]
) -> float:
    """The L2 penalty's sum of squared rows, one per occurrence (as ``MF.l2_penalty``), of
    the rows before the step. Every path of the step calls this one function before it
    updates a row, so the loss has the same bits however the rows were split."""
    total = 0.0
    for b in range(users.shape[0]):
        for w in range(items.shape[1]):
            q = item_table[items[b, w]]
            square = 0.0
            for j in range(q.shape[0]):
                square += q[j] * q[j]
            total += square
        p = user_table[users[b]]
        square = 0.0
        for j in range(p.shape[0]):
            square += p[j] * p[j]
        total += square
    return total


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _row_step_serial(
    user_table: np.ndarray,  # float32 [n_users, d], updated in place
    item_table: np.ndarray,  # float32 [n_items, d], updated in place
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]
    grad: np.ndarray,  # float32 [B, W]: d loss / d score[b, w]
    l2_scale: float,
    user_state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],  # m, v, buffer, touched
    item_state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    adam: bool,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    user_corrections: tuple[float, float],
    item_corrections: tuple[float, float],
    total: np.ndarray,  # float64 [1] out: the sum of squared rows
    ahead: int,  # prefetch the item rows this many ids ahead (0: not; kernels.wide_ahead)
) -> None:
    """The two passes on one thread, for wide rows (more than ``PREFETCH_MAX_WIDTH`` ids):
    the owned passes' sums and updates (the same bits) without their owner tests; the row
    step as it was before the threaded one (storing each occurrence's squared norm in this
    loop had made it 1.2-1.5x slower at K = 100: the squares are :func:`_row_squares`)."""
    user_m, user_v, user_buf, user_touched = user_state
    item_m, item_v, item_buf, item_touched = item_state
    n_rows, width = items.shape
    dim = user_table.shape[1]
    scale = np.float32(l2_scale)
    total[0] = _row_squares(user_table, item_table, users, items) if l2_scale != 0.0 else 0.0
    flat = items.reshape(-1)  # [B W]: the prefetch runs ``ahead`` ids ahead of the loop
    n_ids = flat.shape[0]
    for b in range(n_rows):
        u = users[b]
        p = user_table[u]
        gp = user_buf[u]
        user_touched[u] = True
        for w in range(width):
            at = b * width + w + ahead
            if ahead > 0 and at < n_ids:
                _fetch_row(item_table, flat[at])
                _fetch_row(item_buf, flat[at])
            i = items[b, w]
            q = item_table[i]
            gq = item_buf[i]
            item_touched[i] = True
            g = grad[b, w]
            for j in range(dim):
                gp[j] += g * q[j]
                gq[j] += g * p[j]
            if l2_scale != 0.0:
                for j in range(dim):
                    gq[j] += scale * q[j]
        if l2_scale != 0.0:
            for j in range(dim):
                gp[j] += scale * p[j]
    if not adam:
        _sgd_touched_rows(user_table, users, user_buf, user_touched, lr)
        _sgd_touched_rows(item_table, items.reshape(-1), item_buf, item_touched, lr)
        return
    _adam_touched_rows(
        user_table, user_m, user_v, users, user_buf, user_touched,
        lr, beta1, beta2, eps, weight_decay, user_corrections[0], user_corrections[1],
    )  # fmt: skip
    _adam_touched_rows(
        item_table, item_m, item_v, items.reshape(-1), item_buf, item_touched,
        lr, beta1, beta2, eps, weight_decay, item_corrections[0], item_corrections[1],
    )  # fmt: skip


#: kinds of an occurrence in ``_row_step_one_pass``
_LAST, _FIRST = 1, 2
_ONCE = _LAST | _FIRST


@njit(cache=True, nogil=True)
def occurrence_kinds(
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]
    user_touched: np.ndarray,  # bool [n_users], all False: scratch, left all False
    item_touched: np.ndarray,  # bool [n_items], all False
    user_kind: np.ndarray,  # int8 [B] out, zero: _LAST, _FIRST or both (_ONCE) per id
    item_kind: np.ndarray,  # int8 [B, W] out, zero
) -> None:
    """Mark each id's occurrence in the step: ``_LAST`` where no later occurrence follows
    (a one-pass step updates the row there), ``_FIRST`` where none precedes."""
    n_rows, width = items.shape
    for b in range(n_rows - 1, -1, -1):  # backward: the last occurrence is the first seen
        u = users[b]
        if not user_touched[u]:
            user_touched[u] = True
            user_kind[b] = _LAST
        for w in range(width - 1, -1, -1):
            i = items[b, w]
            if not item_touched[i]:
                item_touched[i] = True
                item_kind[b, w] = _LAST
    for b in range(n_rows):  # forward: the first occurrence; leaves every flag False again
        u = users[b]
        if user_touched[u]:
            user_touched[u] = False
            user_kind[b] |= _FIRST
        for w in range(width):
            i = items[b, w]
            if item_touched[i]:
                item_touched[i] = False
                item_kind[b, w] |= _FIRST


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _row_step_one_pass(
    user_table: np.ndarray,  # float32 [n_users, d], updated in place
    item_table: np.ndarray,  # float32 [n_items, d], updated in place
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]
    grad: np.ndarray,  # float32 [B, W]: d loss / d score[b, w]
    l2_scale: float,
    user_state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],  # m, v, buffer, touched
    item_state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    adam: bool,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    user_corrections: tuple[float, float],
    item_corrections: tuple[float, float],
    total: np.ndarray,  # float64 [1] out: the sum of squared rows
) -> None:
    """The serial row step in one pass over the batch: each row is updated right after its
    last occurrence, while its gradient and moments are still in cache, instead of in a
    second pass. Exact: a row's gradient is complete at its last occurrence, and no later
    occurrence reads it (each (b, w) reads only rows that occur at b). The same sums in the
    same order and the same row update as the owned passes: the same bits."""
    user_m, user_v, user_buf, user_touched = user_state
    item_m, item_v, item_buf, item_touched = item_state
    n_rows, width = items.shape
    dim = user_table.shape[1]
    scale = np.float32(l2_scale)
    penalty = l2_scale != 0.0
    # each occurrence's kind: LAST (no later occurrence: update the row there), FIRST; a
    # row seen once is both and never touches its [n, d] gradient buffer, whose row would
    # be one more random read and write: its gradient is summed in ``local`` (zero between
    # uses: the update zeroes it), with the same operations as in the buffer
    user_kind = np.zeros(n_rows, np.int8)  # [B]
    item_kind = np.zeros((n_rows, width), np.int8)  # [B, W]
    occurrence_kinds(users, items, user_touched, item_touched, user_kind, item_kind)
    user_constants = _adam_constants(
        lr, beta1, beta2, eps, weight_decay, user_corrections[0], user_corrections[1]
    )
    item_constants = _adam_constants(
        lr, beta1, beta2, eps, weight_decay, item_corrections[0], item_corrections[1]
    )
    rate = np.float32(lr)
    total[0] = _row_squares(user_table, item_table, users, items) if penalty else 0.0
    user_local = np.zeros(dim, np.float32)  # [d]
    item_local = np.zeros(dim, np.float32)  # [d]
    prefetch = width <= PREFETCH_MAX_WIDTH
    for b in range(n_rows):
        if prefetch and b + PREFETCH_AHEAD < n_rows:
            ahead = users[b + PREFETCH_AHEAD]
            kind = user_kind[b + PREFETCH_AHEAD]
            _fetch_row(user_table, ahead)
            if kind != _ONCE:
                _fetch_row(user_buf, ahead)
            if adam and kind & _LAST:
                _fetch_row(user_m, ahead)
                _fetch_row(user_v, ahead)
            for w in range(width):
                ahead = items[b + PREFETCH_AHEAD, w]
                kind = item_kind[b + PREFETCH_AHEAD, w]
                _fetch_row(item_table, ahead)
                if kind != _ONCE:
                    _fetch_row(item_buf, ahead)
                if adam and kind & _LAST:
                    _fetch_row(item_m, ahead)
                    _fetch_row(item_v, ahead)
        u = users[b]
        p = user_table[u]
        gp = user_local if user_kind[b] == _ONCE else user_buf[u]
        for w in range(width):
            i = items[b, w]
            q = item_table[i]
            gq = item_local if item_kind[b, w] == _ONCE else item_buf[i]
            g = grad[b, w]
            for j in range(dim):
                gp[j] += g * q[j]
                gq[j] += g * p[j]
            if penalty:
                for j in range(dim):
                    gq[j] += scale * q[j]
            if item_kind[b, w] & _LAST:
                _update_at(q, item_m, item_v, i, gq, adam, item_constants, rate)
        if penalty:
            for j in range(dim):
                gp[j] += scale * p[j]
        if user_kind[b] & _LAST:
            _update_at(p, user_m, user_v, u, gp, adam, user_constants, rate)


def _mf_row_step(
    user_table: np.ndarray,  # float32 [n_users, d], updated in place
    item_table: np.ndarray,  # float32 [n_items, d], updated in place
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]: each row's positive and negatives
    grad: np.ndarray,  # float32 [B, W]: d loss / d score[b, w]
    l2_scale: float,  # d penalty / d row, per occurrence: 2 * l2 / B (0: no penalty)
    user_state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],  # m, v, buffer, touched
    item_state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    adam: bool,  # LazyAdam's update; False: SGD's p -= lr * g (m, v unused)
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    user_corrections: tuple[float, float],  # Adam's bias corrections 1 - beta^step
    item_corrections: tuple[float, float],
    chunks: int,
    total: np.ndarray,  # float64 [1] out: the sum of squared rows
) -> None:
    user_m, user_v, user_buf, user_touched = user_state
    item_m, item_v, item_buf, item_touched = item_state
    scale = np.float32(l2_scale)
    total[0] = _row_squares(user_table, item_table, users, items) if l2_scale != 0.0 else 0.0
    for chunk in prange(chunks):  # region 1: every row's gradient, from the old rows
        _accumulate_owned(
            user_table, item_table, users, items, grad, scale,
            user_buf, user_touched, item_buf, item_touched,
            chunk, chunks,
        )  # fmt: skip
    flat = items.reshape(-1)
    user_rows = _update_order(users, user_touched)
    item_rows = _update_order(flat, item_touched)
    for chunk in prange(chunks):  # region 2: the update of each touched row
        if adam:
            adam_owned_rows(
                user_table, user_m, user_v, user_rows, user_buf, user_touched,
                lr, beta1, beta2, eps, weight_decay,
                user_corrections[0], user_corrections[1], chunk, chunks,
            )  # fmt: skip
            adam_owned_rows(
                item_table, item_m, item_v, item_rows, item_buf, item_touched,
                lr, beta1, beta2, eps, weight_decay,
                item_corrections[0], item_corrections[1], chunk, chunks,
            )  # fmt: skip
        else:
            _sgd_owned_rows(user_table, user_rows, user_buf, user_touched, lr, chunk, chunks)
            _sgd_owned_rows(item_table, item_rows, item_buf, item_touched, lr, chunk, chunks)


_MF_ROW_STEP = njit(parallel=True, cache=True, nogil=True, fastmath=True)(_mf_row_step)


def mf_row_step(
    user_table: np.ndarray,
    item_table: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    grad: np.ndarray,
    l2_scale: float,
    user_state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    item_state: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    adam: bool,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    user_corrections: tuple[float, float],
    item_corrections: tuple[float, float],
    chunks: int = 1,
) -> float:
    """One LazyAdam (or SGD) step of MF from the loss gradient of its scores, no autograd.

    Pass 1 sums, from the parameters before the step, each touched row's gradient
    (``d/dp_u = sum_w g[b, w] q_i``, ``d/dq_i = g[b, w] p_u``, plus the explicit L2 term)
    into the buffers; pass 2 is LazyAdam's (or SGD's) row update. Each pass splits the rows
    over ``chunks`` owners (module doc), so any ``chunks`` gives the same bits. Both prefetch
    rows a few steps ahead (pass 1 only for narrow rows, ``PREFETCH_MAX_WIDTH``). On one
    thread, narrow rows take one pass instead (``_row_step_one_pass``: each row updated at
    its last occurrence; 0.75-0.83x the two passes' time at K = 1 on ML-1M and Gowalla
    shapes; slower for wide rows, whose m and v it cannot prefetch), wide rows the two
    passes without owner tests (``_row_step_serial``). Returns the L2 penalty's sum of
    squared rows (:func:`_row_squares`, before any update), 0 when ``l2_scale`` is 0."""
    total = np.zeros(1)
    if chunks == 1 and items.shape[1] <= PREFETCH_MAX_WIDTH:
        _row_step_one_pass(
            user_table, item_table, users, items, grad, l2_scale, user_state, item_state,
            adam, lr, beta1, beta2, eps, weight_decay, user_corrections, item_corrections,
            total,
        )  # fmt: skip
        return float(total[0])
    if chunks == 1:
        _row_step_serial(
            user_table, item_table, users, items, grad, l2_scale, user_state, item_state,
            adam, lr, beta1, beta2, eps, weight_decay, user_corrections, item_corrections,
            total, wide_ahead(item_table),
        )  # fmt: skip
        return float(total[0])
    _MF_ROW_STEP(
        user_table, item_table, users, items, grad, l2_scale, user_state, item_state,
        adam, lr, beta1, beta2, eps, weight_decay, user_corrections, item_corrections,
        chunks, total,
    )  # fmt: skip
    return float(total[0])
