"""Many fused MF+BPR steps in one compiled call, on several threads with the same bits.

The fused MF step (:mod:`negrec._fast.fused`) still returns to Python after every batch:
~0.1 ms of glue per 1,024-pair step (the loss in torch, the optimizer's bookkeeping, the
kernel calls), a fifth of a default ML-1M step, and every parallel region it starts costs
~10-100 us, so its threaded passes never paid (1 -> 2 threads: 0.98x). Here a block of
consecutive steps (their negatives drawn beforehand: only for samplers that do not read
the model) runs in one compiled loop per thread, and the threads meet at a spin barrier
between the phases of each step instead of starting a region per pass:

1. (RowwiseAdam) each thread brings the rows it owns up to date (:func:`_owner` of
   :mod:`negrec._fast.owned`);
2. barrier; each thread takes a contiguous slice of the batch rows: scores
   ``<p_u, q_i>`` [W], BPR's gradient ``g`` [W] in closed form, the user row's gradient
   ``sum_w g[w] q_i`` (``partial`` [B, d]) and a copy of ``p_u`` (``snapshot`` [B, d]);
3. barrier; each thread sums the gradient of the rows it owns in batch order (an item's
   ``sum g[b, w] p_u`` from the snapshot, a user's ``sum_b partial[b]``) and applies the
   optimizer's update to them (Adam, LazyAdam or SGD, as the fused step).

Every row's gradient is summed in batch order by its one owner and every batch row's
arithmetic is its own, so one seed gives the same bits on any number of threads
(``tests/test_blocked.py``). One thread runs :func:`block_one_thread`: the same sums and
updates, with phase 3 as one pass that updates each row right after its last occurrence.
Against the per-step fused path the result agrees up to float rounding: the user gradient
is summed per batch row first, and BPR's sigmoid is numba's.

The barrier is a flag per thread in its own cache line, written with a release store and
read with acquire loads (LLVM atomics: correct on any CPU, not only x86's ordered stores);
a waiting thread spins a little, then yields its core (``sched_yield``), so more threads
than free cores slows the block down but never deadlocks it. A thread that fails raises
the abort flag and the others leave their barriers.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit
from numba import types as nbtypes
from numba.core import cgutils
from numba.extending import intrinsic

from negrec._fast.kernels import PREFETCH_AHEAD, PREFETCH_MAX_WIDTH, _fetch_row
from negrec._fast.owned import (
    _LAST,
    _ONCE,
    OWNER_SHIFT,
    _adam_constants,
    _adam_row,
    _catch_up_owned,
    _owner,
    _sgd_row,
    _update_at,
    occurrence_kinds,
)

#: int64 slots per barrier flag: one 64-byte cache line each, so that two threads never
#: write one line
LINE = 8
#: spins on a flag before the waiting thread yields its core
SPINS = 2000
#: optimizer kinds of the block
ROWWISE_ADAM, LAZY_ADAM, SGD = 0, 1, 2


@intrinsic
def _load_acquire(typingctx: Any, flags: Any, index: Any) -> Any:
    """``flags[index]`` (int64, C-contiguous 1-D) as an atomic acquire load: the read is
    never hoisted out of a spin loop, and what its writer stored before sees it too."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        view = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(view.data, [args[1]]), "acquire", 8)

    return nbtypes.int64(flags, nbtypes.int64), codegen


@intrinsic
def _store_release(typingctx: Any, flags: Any, index: Any, value: Any) -> Any:
    """``flags[index] = value`` as an atomic release store (pairs with _load_acquire)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        view = context.make_array(signature.args[0])(context, builder, args[0])
        builder.store_atomic(args[2], builder.gep(view.data, [args[1]]), "release", 8)
        return context.get_dummy_value()

    return nbtypes.none(flags, nbtypes.int64, nbtypes.int64), codegen


@intrinsic
def _yield_core(typingctx: Any) -> Any:
    """``sched_yield()`` (POSIX): let another runnable thread have this core. Windows has
    no such symbol: the wait there only spins."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        if sys.platform != "win32":
            kind = ir.FunctionType(ir.IntType(32), [])
            function = cgutils.get_or_insert_function(builder.module, kind, "sched_yield")
            builder.call(function, [])
        return context.get_dummy_value()

    return nbtypes.none(), codegen


@njit(cache=True, nogil=True)
def _meet(flags: np.ndarray, chunk: int, chunks: int, generation: int) -> bool:
    """Barrier ``generation`` of ``chunks`` threads: publish this thread's arrival, wait
    for everyone's. False when a thread raised the abort flag (slot ``chunks * LINE``)."""
    if chunks == 1:
        return True
    _store_release(flags, chunk * LINE, generation)  # type: ignore[call-arg]
    for other in range(chunks):
        spins = 0
        while _load_acquire(flags, other * LINE) < generation:
            if _load_acquire(flags, chunks * LINE) != 0:
                return False
            spins += 1
            if spins >= SPINS:
                _yield_core()
                spins = 0
    return _load_acquire(flags, chunks * LINE) == 0


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _bpr_row(
    p: np.ndarray,  # float32 [d]: the user row
    item_p: np.ndarray,  # float32 [n_items, d]
    row_items: np.ndarray,  # int64 [W]: the positive, then K negatives
    scale: float,  # 1 / (B (K if mean else 1))
    penalty: float,  # l2 / B (0: none)
    grads: np.ndarray,  # float32 [W] out: d loss / d score
    scores: np.ndarray,  # float32 [W]: scratch
) -> float:
    """One batch row's scores, BPR's gradient ``sum_k softplus(s_k - s+)`` (as
    :func:`negrec.losses.functions.bpr_value_and_grad`) and its share of the step's loss
    (with the L2 term of its rows before the step)."""
    width = row_items.shape[0]
    dim = p.shape[0]
    for w in range(width):
        q = item_p[row_items[w]]
        acc = np.float32(0.0)
        for j in range(dim):
            acc += p[j] * q[j]
        scores[w] = acc
    loss = 0.0
    total = np.float32(0.0)
    for w in range(1, width):
        x = float(scores[w] - scores[0])  # s_k - s+ (float32, as the torch path)
        if x >= 0.0:  # softplus and sigmoid without overflow
            e = np.exp(-x)
            softplus, slope = x + np.log1p(e), 1.0 / (1.0 + e)
        else:
            e = np.exp(x)
            softplus, slope = np.log1p(e), e / (1.0 + e)
        loss += softplus
        g = np.float32(slope * scale)
        grads[w] = g
        total += g
    grads[0] = -total
    loss *= scale
    if penalty != 0.0:  # the L2 term of every occurrence's rows, before the step
        square = 0.0
        for j in range(dim):
            square += p[j] * p[j]
        for w in range(width):
            q = item_p[row_items[w]]
            for j in range(dim):
                square += q[j] * q[j]
        loss += penalty * square
    return loss


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _user_gradient(
    item_p: np.ndarray,  # float32 [n_items, d]
    row_items: np.ndarray,  # int64 [W]
    grads: np.ndarray,  # float32 [W]: d loss / d score
    out: np.ndarray,  # float32 [d] out: sum_w grads[w] q_w, from the rows before the step
) -> None:
    for j in range(out.shape[0]):
        out[j] = np.float32(0.0)
    for w in range(row_items.shape[0]):
        q = item_p[row_items[w]]
        g = grads[w]
        for j in range(out.shape[0]):
            out[j] += g * q[j]


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _bpr_rows(
    user_p: np.ndarray,  # float32 [n_users, d]
    item_p: np.ndarray,  # float32 [n_items, d]
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]: the positive, then K negatives
    lo: int,
    hi: int,  # the batch rows [lo, hi) of this thread
    mean: bool,  # BPR's neg_reduction = "mean": also divide by K
    l2: float,  # the penalty's weight (0: none)
    grads: np.ndarray,  # float32 [B, W] out: d loss / d score
    partial: np.ndarray,  # float32 [B, d] out: sum_w grads[b, w] q_i
    snapshot: np.ndarray,  # float32 [B, d] out: p_u before the step
    row_loss: np.ndarray,  # float64 [B] out: each batch row's share of the step's loss
    scores: np.ndarray,  # float32 [W]: scratch
) -> None:
    """Phase 2 on batch rows [lo, hi): :func:`_bpr_row` of each, the user row's gradient
    ``partial`` and a copy of the user row."""
    n_rows, width = items.shape
    dim = user_p.shape[1]
    scale = 1.0 / (n_rows * ((width - 1) if mean else 1))
    penalty = l2 / n_rows
    for b in range(lo, hi):
        if b + PREFETCH_AHEAD < hi:
            _fetch_row(user_p, users[b + PREFETCH_AHEAD])
            for w in range(width):
                _fetch_row(item_p, items[b + PREFETCH_AHEAD, w])
        p = user_p[users[b]]
        row_loss[b] = _bpr_row(p, item_p, items[b], scale, penalty, grads[b], scores)
        _user_gradient(item_p, items[b], grads[b], partial[b])
        kept = snapshot[b]
        for j in range(dim):
            kept[j] = p[j]


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _bpr_losses(
    user_p: np.ndarray,  # float32 [n_users, d]
    item_p: np.ndarray,  # float32 [n_items, d]
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]
    mean: bool,
    l2: float,
    grads: np.ndarray,  # float32 [B, W] out
    row_loss: np.ndarray,  # float64 [B] out
    scores: np.ndarray,  # float32 [W]: scratch
) -> None:
    """Phase 2 on one thread: :func:`_bpr_row` of every batch row (the user row's
    gradient is left to :func:`_sum_and_update_rows`, which reads the rows again while
    they are in cache, instead of a [B, d] store and load)."""
    n_rows, width = items.shape
    scale = 1.0 / (n_rows * ((width - 1) if mean else 1))
    penalty = l2 / n_rows
    for b in range(n_rows):
        if b + PREFETCH_AHEAD < n_rows:
            _fetch_row(user_p, users[b + PREFETCH_AHEAD])
            for w in range(width):
                _fetch_row(item_p, items[b + PREFETCH_AHEAD, w])
        row_loss[b] = _bpr_row(user_p[users[b]], item_p, items[b], scale, penalty, grads[b], scores)


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _sum_and_update_rows(
    user_table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],  # p, m, v, buffer
    item_table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]
    grads: np.ndarray,  # float32 [B, W]
    user_kind: np.ndarray,  # int8 [B]: see negrec._fast.owned.occurrence_kinds
    item_kind: np.ndarray,  # int8 [B, W]
    l2_scale: np.float32,  # d penalty / d row per occurrence: 2 l2 / B (0: none)
    kind: int,  # ROWWISE_ADAM, LAZY_ADAM or SGD
    user_constants: tuple[np.float32, ...],
    item_constants: tuple[np.float32, ...],
    rate: np.float32,  # SGD's lr
    scratch: np.ndarray,  # float32 [3, d], zero: the user row's gradient, two local rows
) -> None:
    """Phase 3 on one thread, in one pass over the batch rows: each row's gradient summed
    in batch order (as :func:`_sum_owned`) and its update right after its last occurrence,
    while its rows are in cache (as :func:`negrec._fast.owned._row_step_one_pass`). Exact:
    a row's gradient is complete at its last occurrence, and no later occurrence reads it;
    the sums and updates are the owned passes', in the same order: the same bits. A row
    that occurs once sums its gradient in a local row (zero again after its update)
    instead of its [n, d] buffer row: one random read and write fewer."""
    user_p, user_m, user_v, user_buf = user_table
    item_p, item_m, item_v, item_buf = item_table
    n_rows, width = items.shape
    dim = user_p.shape[1]
    penalty = l2_scale != 0.0
    adam = kind != SGD
    partial, user_local, item_local = scratch[0], scratch[1], scratch[2]
    prefetch = width <= PREFETCH_MAX_WIDTH
    for b in range(n_rows):
        if prefetch and b + PREFETCH_AHEAD < n_rows:
            ahead = users[b + PREFETCH_AHEAD]
            if user_kind[b + PREFETCH_AHEAD] != _ONCE:
                _fetch_row(user_buf, ahead)
            if adam and user_kind[b + PREFETCH_AHEAD] & _LAST:
                _fetch_row(user_m, ahead)
                _fetch_row(user_v, ahead)
            for w in range(width):
                ahead = items[b + PREFETCH_AHEAD, w]
                if item_kind[b + PREFETCH_AHEAD, w] != _ONCE:
                    _fetch_row(item_buf, ahead)
                if adam and item_kind[b + PREFETCH_AHEAD, w] & _LAST:
                    _fetch_row(item_m, ahead)
                    _fetch_row(item_v, ahead)
        u = users[b]
        p = user_p[u]
        _user_gradient(item_p, items[b], grads[b], partial)  # before any update
        for w in range(width):
            i = items[b, w]
            q = item_p[i]
            gq = item_local if item_kind[b, w] == _ONCE else item_buf[i]
            g = grads[b, w]
            for j in range(dim):
                gq[j] += g * p[j]
            if penalty:
                for j in range(dim):
                    gq[j] += l2_scale * q[j]
            if item_kind[b, w] & _LAST:
                _update_at(q, item_m, item_v, i, gq, adam, item_constants, rate)
        gp = user_local if user_kind[b] == _ONCE else user_buf[u]
        for j in range(dim):
            gp[j] += partial[j]
        if penalty:
            for j in range(dim):
                gp[j] += l2_scale * p[j]
        if user_kind[b] & _LAST:
            _update_at(p, user_m, user_v, u, gp, adam, user_constants, rate)


#: a float64's exponent bits: all set for +-inf and NaN
_EXPONENT = 0x7FF0000000000000


@njit(cache=True, nogil=True)
def _all_finite(bits: np.ndarray, lo: int, hi: int) -> bool:
    """Whether the float64 values whose bits are ``bits[lo:hi]`` (int64) are all finite.
    On the bits: under ``fastmath`` LLVM may assume no value is NaN or infinite and fold
    ``np.isfinite`` to True."""
    for b in range(lo, hi):  # noqa: SIM110  (numba: no generator in all())
        if bits[b] & _EXPONENT == _EXPONENT:
            return False
    return True


@njit(cache=True, nogil=True)
def _mine(ids: np.ndarray, chunk: int, chunks: int, out: np.ndarray) -> int:
    """The positions in ``ids`` (int64 [n]) of the rows chunk ``chunk`` owns, in order,
    into ``out`` [n]; returns their count. Branch-free: a branch per id on a random owner
    mispredicts half the time, which had cost as much as the owned rows' arithmetic (the
    owned passes of a 1,024-pair step scaled 1.08x on 2 threads)."""
    count = 0
    for t in range(ids.shape[0]):
        out[count] = t
        count += _owner(ids[t], chunks) == chunk
    return count


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _sum_owned(
    user_p: np.ndarray,  # float32 [n_users, d]
    item_p: np.ndarray,  # float32 [n_items, d]
    users: np.ndarray,  # int64 [B]
    flat: np.ndarray,  # int64 [B * W]: the batch's item ids
    mine_users: np.ndarray,  # int64 [U]: positions in ``users`` of the owned rows
    mine_items: np.ndarray,  # int64 [I]: positions in ``flat`` of the owned rows
    grads: np.ndarray,  # float32 [B * W]
    partial: np.ndarray,  # float32 [B, d]
    snapshot: np.ndarray,  # float32 [B, d]
    l2_scale: np.float32,  # d penalty / d row per occurrence: 2 l2 / B (0: none)
    user_buf: np.ndarray,  # float32 [n_users, d]: += each owned user row's gradient
    user_touched: np.ndarray,  # bool [n_users]
    item_buf: np.ndarray,  # float32 [n_items, d]
    item_touched: np.ndarray,  # bool [n_items]
    width: int,
) -> None:
    """Phase 3a: the gradient of the owned rows, in batch order, from the rows as they
    were before the step (the snapshot; an owned item row is not yet updated)."""
    dim = user_p.shape[1]
    penalty = l2_scale != 0.0
    n = mine_items.shape[0]
    for t in range(n):
        if t + PREFETCH_AHEAD < n:
            _fetch_row(item_buf, flat[mine_items[t + PREFETCH_AHEAD]])
        at = mine_items[t]
        i = flat[at]
        pu = snapshot[at // width]
        gq = item_buf[i]
        g = grads[at]
        for j in range(dim):
            gq[j] += g * pu[j]
        if penalty:
            q = item_p[i]
            for j in range(dim):
                gq[j] += l2_scale * q[j]
        item_touched[i] = True
    n = mine_users.shape[0]
    for t in range(n):
        if t + PREFETCH_AHEAD < n:
            _fetch_row(user_buf, users[mine_users[t + PREFETCH_AHEAD]])
        b = mine_users[t]
        u = users[b]
        gp = user_buf[u]
        part = partial[b]
        for j in range(dim):
            gp[j] += part[j]
        if penalty:
            pu = snapshot[b]
            for j in range(dim):
                gp[j] += l2_scale * pu[j]
        user_touched[u] = True


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _update_owned(
    table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],  # p m v buf touched
    rows: np.ndarray,  # int64 [R]: the step's ids of this table, repeats allowed
    mine: np.ndarray,  # int64 [M]: positions in ``rows`` of the owned rows
    kind: int,  # ROWWISE_ADAM, LAZY_ADAM or SGD
    constants: tuple[np.float32, ...],  # _adam_constants of this table's step
    rate: np.float32,  # SGD's lr
    chunk: int,
    chunks: int,
) -> None:
    """Phase 3b: the update of each touched owned row, once per row. Rows are walked in
    the batch's order, or, when the batch repeats them more than the table is long (many
    negatives per row: see ``_update_order``), in table order, owned block by block."""
    param, exp_avg, exp_avg_sq, buffer, touched = table
    n_table = param.shape[0]
    if rows.shape[0] >= n_table:
        step = 1 << OWNER_SHIFT
        for first in range(0, n_table, step):
            if chunks > 1 and _owner(first, chunks) != chunk:
                continue
            for row in range(first, min(first + step, n_table)):
                if touched[row]:
                    touched[row] = False
                    _update_row(param, exp_avg, exp_avg_sq, buffer, row, kind, constants, rate)
        return
    n = mine.shape[0]
    for t in range(n):
        if t + PREFETCH_AHEAD < n:
            ahead = rows[mine[t + PREFETCH_AHEAD]]
            if touched[ahead]:
                _fetch_row(param, ahead)
                if kind != SGD:
                    _fetch_row(exp_avg, ahead)
                    _fetch_row(exp_avg_sq, ahead)
        row = rows[mine[t]]
        if touched[row]:
            touched[row] = False
            _update_row(param, exp_avg, exp_avg_sq, buffer, row, kind, constants, rate)


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _update_row(
    param: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    buffer: np.ndarray,
    row: int,
    kind: int,
    constants: tuple[np.float32, ...],
    rate: np.float32,
) -> None:
    if kind == SGD:
        _sgd_row(param[row], buffer[row], rate)
    else:
        _adam_row(param[row], exp_avg[row], exp_avg_sq[row], buffer[row], constants)


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def block_worker(
    chunk: int,
    chunks: int,
    flags: np.ndarray,  # int64 [(chunks + 2) * LINE], zero: barrier flags, abort, stop
    users: np.ndarray,  # int64 [S, B]
    items: np.ndarray,  # int64 [S, B, W]
    user_table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    item_table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    user_last: np.ndarray,  # int64 [n_users] (RowwiseAdam; else unused)
    item_last: np.ndarray,  # int64 [n_items]
    user_history: tuple[np.ndarray, np.ndarray],  # float64 hist_a, hist_sc2
    item_history: tuple[np.ndarray, np.ndarray],
    first_steps: tuple[int, int, int, int],  # user step, user base, item step, item base
    powers: np.ndarray,  # float64 [4, CATCH_UP_CAP + 1]: see catch_up_powers
    kind: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,  # Adam's coupled L2 (LazyAdam only; RowwiseAdam needs 0)
    corrections: np.ndarray,  # float64 [S, 4]: each step's (c1, c2) of users, of items
    mean: bool,
    l2: float,
    grads: np.ndarray,  # float32 [B, W]: shared scratch
    partial: np.ndarray,  # float32 [B, d]: shared scratch
    snapshot: np.ndarray,  # float32 [B, d]: shared scratch
    row_loss: np.ndarray,  # float64 [S, B] out
    row_bits: np.ndarray,  # int64 [S, B]: row_loss's bits (the same memory)
) -> int:
    """The work of thread ``chunk`` of ``chunks`` for every step of the block (module
    doc). Returns the number of steps done: all, or up to the first whose loss is not
    finite (that step's rows left as they were), or -1 when the block was aborted."""
    n_steps, n_rows, width = items.shape
    scores = np.empty(width, np.float32)  # [W]
    lo, hi = n_rows * chunk // chunks, n_rows * (chunk + 1) // chunks
    user_step, user_base, item_step, item_base = first_steps
    mine_users = np.empty(n_rows, np.int64)  # [B]: positions of the owned rows
    mine_items = np.empty(n_rows * width, np.int64)  # [B * W]
    rate = np.float32(lr)
    l2_scale = np.float32(2.0 * l2 / n_rows)
    stop_slot = (chunks + 1) * LINE
    generation = 0
    for s in range(n_steps):
        step_users, step_items = users[s], items[s]
        flat = step_items.reshape(-1)
        my_users = mine_users[: _mine(step_users, chunk, chunks, mine_users)]
        my_items = mine_items[: _mine(flat, chunk, chunks, mine_items)]
        if kind == ROWWISE_ADAM:  # phase 1: the owned rows, already picked (one chunk)
            until = user_step + s
            _catch_up_owned(
                user_table[:3], user_last, user_history, (until, until + 1, user_base),
                powers, beta1, beta2, eps, step_users[my_users], 0, 1,
            )  # fmt: skip
            until = item_step + s
            _catch_up_owned(
                item_table[:3], item_last, item_history, (until, until + 1, item_base),
                powers, beta1, beta2, eps, flat[my_items], 0, 1,
            )  # fmt: skip
        generation += 1
        if not _meet(flags, chunk, chunks, generation):
            return -1
        _bpr_rows(
            user_table[0], item_table[0], step_users, step_items, lo, hi, mean, l2,
            grads, partial, snapshot, row_loss[s], scores,
        )  # fmt: skip
        if not _all_finite(row_bits[s], lo, hi):
            _store_release(flags, stop_slot, 1)  # type: ignore[call-arg]
        generation += 1
        if not _meet(flags, chunk, chunks, generation):
            return -1
        if _load_acquire(flags, stop_slot) != 0:  # type: ignore[call-arg]
            return s
        _sum_owned(
            user_table[0], item_table[0], step_users, flat, my_users, my_items,
            grads.reshape(-1), partial, snapshot, l2_scale,
            user_table[3], user_table[4], item_table[3], item_table[4], width,
        )  # fmt: skip
        user_constants = _adam_constants(
            lr, beta1, beta2, eps, weight_decay, corrections[s, 0], corrections[s, 1]
        )
        item_constants = _adam_constants(
            lr, beta1, beta2, eps, weight_decay, corrections[s, 2], corrections[s, 3]
        )
        _update_owned(user_table, step_users, my_users, kind, user_constants, rate, chunk, chunks)
        _update_owned(item_table, flat, my_items, kind, item_constants, rate, chunk, chunks)
    return n_steps


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def block_one_thread(
    users: np.ndarray,  # int64 [S, B]
    items: np.ndarray,  # int64 [S, B, W]
    user_table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    item_table: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    user_last: np.ndarray,
    item_last: np.ndarray,
    user_history: tuple[np.ndarray, np.ndarray],
    item_history: tuple[np.ndarray, np.ndarray],
    first_steps: tuple[int, int, int, int],
    powers: np.ndarray,
    kind: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    corrections: np.ndarray,
    mean: bool,
    l2: float,
    grads: np.ndarray,
    partial: np.ndarray,  # (unused here: the threads' scratch)
    snapshot: np.ndarray,  # (unused here)
    row_loss: np.ndarray,
    row_bits: np.ndarray,
) -> int:
    """:func:`block_worker` on one thread (its arguments, without the threads'): per step
    the catch-up, the scores and losses (:func:`_bpr_losses`), then one pass that sums
    each row's gradient and updates the row after its last occurrence
    (:func:`_sum_and_update_rows`), instead of the threads' separate sum and update passes
    and their [B, d] scratch. The same bits as on any number of threads
    (``tests/test_blocked.py``). Block time against the threads' passes run on one thread
    (2026-12-05, ``benchmarks/out/2026-12-05-one-thread-block-ab.md``): Gowalla default
    0.91x, ML-1M default 1.00x, ML-1M ``sgd`` 0.87x."""
    n_steps, n_rows, width = items.shape
    dim = user_table[0].shape[1]
    scores = np.empty(width, np.float32)  # [W]
    scratch = np.zeros((3, dim), np.float32)  # [3, d]
    user_kind = np.zeros(n_rows, np.int8)  # [B]
    item_kind = np.zeros((n_rows, width), np.int8)  # [B, W]
    user_step, user_base, item_step, item_base = first_steps
    rate = np.float32(lr)
    l2_scale = np.float32(2.0 * l2 / n_rows)
    for s in range(n_steps):
        step_users, step_items = users[s], items[s]
        user_until, item_until = user_step + s, item_step + s
        if kind == ROWWISE_ADAM:
            _catch_up_owned(
                user_table[:3], user_last, user_history, (user_until, user_until + 1, user_base),
                powers, beta1, beta2, eps, step_users, 0, 1,
            )  # fmt: skip
            _catch_up_owned(
                item_table[:3], item_last, item_history, (item_until, item_until + 1, item_base),
                powers, beta1, beta2, eps, step_items.reshape(-1), 0, 1,
            )  # fmt: skip
        _bpr_losses(
            user_table[0], item_table[0], step_users, step_items, mean, l2, grads,
            row_loss[s], scores,
        )  # fmt: skip
        if not _all_finite(row_bits[s], 0, n_rows):
            return s
        user_kind[:] = 0
        item_kind[:] = 0
        occurrence_kinds(step_users, step_items, user_table[4], item_table[4], user_kind, item_kind)
        _sum_and_update_rows(
            user_table[:4], item_table[:4], step_users, step_items, grads, user_kind,
            item_kind, l2_scale, kind,
            _adam_constants(
                lr, beta1, beta2, eps, weight_decay, corrections[s, 0], corrections[s, 1]
            ),
            _adam_constants(
                lr, beta1, beta2, eps, weight_decay, corrections[s, 2], corrections[s, 3]
            ),
            rate, scratch,
        )  # fmt: skip
    return n_steps


def run_block(chunks: int, *args: Any) -> int:
    """:func:`block_worker` on ``chunks`` threads (this one and ``chunks - 1`` started
    here); ``args`` are its arguments after ``flags``. Returns its step count."""
    if chunks == 1:
        return int(block_one_thread(*args))
    flags = np.zeros((chunks + 2) * LINE, dtype=np.int64)
    failures: list[BaseException] = []

    def work(chunk: int) -> None:
        try:
            block_worker(chunk, chunks, flags, *args)
        except BaseException as error:  # (compilation, memory): release the others
            failures.append(error)
            flags[chunks * LINE] = 1

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in range(1, chunks)]
    for thread in threads:
        thread.start()
    try:
        done = int(block_worker(0, chunks, flags, *args))
    except BaseException:
        flags[chunks * LINE] = 1  # the started threads leave their barriers
        raise
    finally:
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    if done < 0:
        raise RuntimeError("a thread of the blocked MF step stopped without finishing")
    return done
