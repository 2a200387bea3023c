"""Compiled CPU kernels (numba) for the one loop torch cannot fuse on CPU.

Counting, for every test positive, how many candidate items score strictly above it and
equal to it is a compare-and-add over each user's row. As separate torch ops it costs a
[B, P, n_items] temporary per block; as one fused loop it is a SIMD pass per positive, so
exact ranks, MRR, AUC and OPAUC cost about as much as the score matrix itself. On CUDA the
evaluator uses the torch path instead.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import njit, prange

# numba's default OpenMP layer leaves busy-waiting worker threads behind that make every
# later small torch op up to ~80x slower on a 2-core machine (seen here: evaluation every
# epoch slowed training ~10x). The workqueue layer has no spinning workers.
numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]

#: below this many inner-loop steps a kernel runs serially: starting numba's parallel
#: region costs 0.1-0.5 ms (measured on this 2-core machine), more than a whole training
#: batch of 1,024 binary searches or dot products takes on one core.
PARALLEL_MIN_WORK = 1 << 18


def _serial_and_parallel(body: Callable[..., None], fastmath: bool = False) -> tuple[Any, Any]:
    """Compile ``body`` twice: serially and with ``prange`` spread over numba's threads.

    The serial copy gets its own qualified name so the two on-disk caches never collide.
    ``fastmath`` lets LLVM reorder a float sum so that it vectorises (dot products: ~5x
    faster here); the result changes only in the last bits, the same way on every call.
    """
    serial_body = types.FunctionType(
        body.__code__, body.__globals__, body.__name__ + "_serial", body.__defaults__
    )
    serial_body.__qualname__ = body.__qualname__ + "_serial"
    return (
        njit(cache=True, nogil=True, fastmath=fastmath)(serial_body),
        njit(parallel=True, cache=True, nogil=True, fastmath=fastmath)(body),
    )


def _pick(kernels: tuple[Any, Any], work: int) -> Any:
    """The serial kernel for small work or one thread, else the parallel one."""
    serial, parallel = kernels
    if work < PARALLEL_MIN_WORK or numba.get_num_threads() == 1:
        return serial
    return parallel


def _count_above_equal(
    scores: np.ndarray,  # float32 [B, n_items], masked items at -inf
    pos_ptr: np.ndarray,  # int64 [B + 1], CSR pointers into pos_scores
    pos_scores: np.ndarray,  # float32 [T], the targets' scores, row by row
    above: np.ndarray,  # int64 [T] out: items strictly above each target
    equal: np.ndarray,  # int64 [T] out: items equal to it (itself included)
    pos_above: np.ndarray,  # int64 [T] out: targets of the same user strictly above
    pos_equal: np.ndarray,  # int64 [T] out: targets of the same user equal (itself included)
) -> None:
    n_rows, n_items = scores.shape
    for b in prange(n_rows):
        row = scores[b]
        start, end = pos_ptr[b], pos_ptr[b + 1]
        for t in range(start, end):
            p = pos_scores[t]
            a = 0
            e = 0
            for j in range(n_items):
                v = row[j]
                a += v > p
                e += v == p
            above[t] = a
            equal[t] = e
            a = 0
            e = 0
            for s in range(start, end):
                v = pos_scores[s]
                a += v > p
                e += v == p
            pos_above[t] = a
            pos_equal[t] = e


_COUNT_ABOVE_EQUAL = _serial_and_parallel(_count_above_equal)


def count_above_equal(
    scores: np.ndarray,
    pos_ptr: np.ndarray,
    pos_scores: np.ndarray,
    above: np.ndarray,
    equal: np.ndarray,
    pos_above: np.ndarray,
    pos_equal: np.ndarray,
) -> None:
    """Items (and same-user targets) strictly above and equal to each target's score."""
    work = pos_scores.size * scores.shape[1]
    _pick(_COUNT_ABOVE_EQUAL, work)(scores, pos_ptr, pos_scores, above, equal, pos_above, pos_equal)


def _count_above_capped(
    scores: np.ndarray,  # float32 [B, n_items], masked items at -inf
    pos_ptr: np.ndarray,  # int64 [B + 1], CSR pointers into pos_scores
    pos_scores: np.ndarray,  # float32 [T], the targets' scores, row by row
    caps: np.ndarray,  # int64 [T]: stop counting a target once this many items beat it
    above: np.ndarray,  # int64 [T] out: items strictly above (exact when < its cap)
) -> None:
    n_rows, n_items = scores.shape
    for b in prange(n_rows):
        row = scores[b]
        for t in range(pos_ptr[b], pos_ptr[b + 1]):
            p = pos_scores[t]
            cap = caps[t]
            a = 0
            for block in range(0, n_items, COUNT_BLOCK):  # SIMD inside a block
                for j in range(block, min(block + COUNT_BLOCK, n_items)):
                    a += row[j] > p
                if a >= cap:  # ranked beyond the cap: the exact count is not needed
                    break
            above[t] = a


#: items scanned between two checks of a target's cap in :func:`count_above_capped`
COUNT_BLOCK = 128
_COUNT_ABOVE_CAPPED = _serial_and_parallel(_count_above_capped)


def count_above_capped(
    scores: np.ndarray,
    pos_ptr: np.ndarray,
    pos_scores: np.ndarray,
    caps: np.ndarray,
    above: np.ndarray,
) -> None:
    """Items strictly above each target's score, counted until ``caps`` of them are found.

    Top-K metrics need a target's rank only when it is at most K, so a target stops being
    counted once K items beat it: a target ranked in the middle of the catalogue is done
    after one block of ``COUNT_BLOCK`` items. The result is exact where it is below the
    cap and at least the cap elsewhere. Replaces a ``topk`` threshold pass, which cost as
    much as the score matrix product itself on CPU."""
    work = pos_scores.size * COUNT_BLOCK
    _pick(_COUNT_ABOVE_CAPPED, work)(scores, pos_ptr, pos_scores, caps, above)


def _complement_items(
    indptr: np.ndarray,  # int64 [n_users + 1]
    q: np.ndarray,  # int64 [nnz]: p_i - i within each user's sorted positives (non-decreasing)
    users: np.ndarray,  # int64 [B]
    ranks: np.ndarray,  # int64 [B, K]: uniform ranks in [0, n_items - deg(user))
    out: np.ndarray,  # int64 [B, K] out: the rank-th item missing from the user's positives
) -> None:
    """``item = rank + #{i : q_i <= rank}``, by binary search inside the user's own row.

    The K searches of a row all take the same number of halving steps, so they run in
    lockstep, one level at a time across all K (``out`` holds each search's base): the K
    loads of a level are independent, and the compare becomes a select instead of an
    unpredictable branch. A pool of 200 candidates per row draws ~4x faster than K
    separate branchy searches (33 -> 6-11 ns per draw on ML-1M rows, this machine).
    """
    n_rows, width = ranks.shape
    for b in prange(n_rows):
        lo_row, hi_row = indptr[users[b]], indptr[users[b] + 1]
        length = hi_row - lo_row
        rank = ranks[b]
        base = out[b]  # [K] scratch: the search bases, then the answers
        if length == 0:
            for k in range(width):
                base[k] = rank[k]
            continue
        for k in range(width):
            base[k] = lo_row
        n = length  # invariant: each answer lies in [base, base + n]
        while n > 1:
            half = n >> 1
            for k in range(width):
                probe = base[k] + half
                base[k] = probe if q[probe] <= rank[k] else base[k]
            n -= half
        for k in range(width):
            found = base[k]
            base[k] = rank[k] + (found - lo_row) + (1 if q[found] <= rank[k] else 0)


_COMPLEMENT_ITEMS = _serial_and_parallel(_complement_items)


def complement_items(
    indptr: np.ndarray, q: np.ndarray, users: np.ndarray, ranks: np.ndarray, out: np.ndarray
) -> None:
    """The ``ranks``-th item [B, K] missing from each user's sorted positives."""
    work = ranks.size * 8  # ~8 lockstep binary-search steps per draw
    _pick(_COMPLEMENT_ITEMS, work)(indptr, q, users, ranks, out)


def _gather_dot_forward(
    vectors: np.ndarray,  # float32 [B, d]
    table: np.ndarray,  # float32 [n, d]
    rows: np.ndarray,  # int64 [B, K]
    out: np.ndarray,  # float32 [B, K] out: <table[rows[b, k]], vectors[b]>
) -> None:
    n_rows, width = rows.shape
    dim = vectors.shape[1]
    for b in prange(n_rows):
        for k in range(width):
            row = table[rows[b, k]]
            acc = np.float32(0.0)
            for j in range(dim):
                acc += row[j] * vectors[b, j]
            out[b, k] = acc


_GATHER_DOT_FORWARD = _serial_and_parallel(_gather_dot_forward, fastmath=True)


def gather_dot_forward(
    vectors: np.ndarray, table: np.ndarray, rows: np.ndarray, out: np.ndarray
) -> None:
    """``out[b, k] = <table[rows[b, k]], vectors[b]>``."""
    _pick(_GATHER_DOT_FORWARD, rows.size * vectors.shape[1])(vectors, table, rows, out)


def _gather_dot_backward_vectors(
    grad: np.ndarray,  # float32 [B, K]
    table: np.ndarray,  # float32 [n, d]
    rows: np.ndarray,  # int64 [B, K]
    out: np.ndarray,  # float32 [B, d] out: sum_k grad[b, k] * table[rows[b, k]]
) -> None:
    n_rows, width = rows.shape
    dim = table.shape[1]
    for b in prange(n_rows):
        for j in range(dim):
            out[b, j] = 0.0
        for k in range(width):
            g = grad[b, k]
            row = table[rows[b, k]]
            for j in range(dim):
                out[b, j] += g * row[j]


_GATHER_DOT_BACKWARD_VECTORS = _serial_and_parallel(_gather_dot_backward_vectors, fastmath=True)


def gather_dot_backward_vectors(
    grad: np.ndarray, table: np.ndarray, rows: np.ndarray, out: np.ndarray
) -> None:
    """``out[b] = sum_k grad[b, k] * table[rows[b, k]]``."""
    _pick(_GATHER_DOT_BACKWARD_VECTORS, rows.size * table.shape[1])(grad, table, rows, out)


@njit(cache=True, nogil=True)
def gather_dot_backward_table(
    grad: np.ndarray,  # float32 [B, K]
    vectors: np.ndarray,  # float32 [B, d]
    rows: np.ndarray,  # int64 [B, K]
    out: np.ndarray,  # float32 [n, d] out (zeroed): += grad[b, k] * vectors[b] at rows[b, k]
) -> None:
    # serial: rows repeat across b, and a parallel loop would race on them
    n_rows, width = rows.shape
    dim = vectors.shape[1]
    for b in range(n_rows):
        for k in range(width):
            g = grad[b, k]
            target = out[rows[b, k]]
            for j in range(dim):
                target[j] += g * vectors[b, j]


@njit(cache=True, nogil=True, fastmath=True)
def lazy_adam_rows(
    param: np.ndarray,  # float32 [n, d], updated in place
    exp_avg: np.ndarray,  # float32 [n, d], Adam's first moment, updated in place
    exp_avg_sq: np.ndarray,  # float32 [n, d], second moment, updated in place
    index: np.ndarray,  # int64 [nnz]: the row of each gradient slice, with repeats
    values: np.ndarray,  # float32 [nnz, d]: gradient slices, summed per row
    buffer: np.ndarray,  # float32 [n, d] scratch, all zero on entry and on exit
    touched: np.ndarray,  # bool [n] scratch, all False on entry and on exit
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    correction1: float,
    correction2: float,
) -> None:
    """One Adam step on the rows a row-sparse gradient touched (LazyAdam), in two passes:
    sum the repeated slices per row, then update each touched row once. Serial: repeated
    rows would race in a parallel loop, and a batch touches only thousands of rows."""
    dim = param.shape[1]
    for t in range(index.shape[0]):
        row = index[t]
        touched[row] = True
        for j in range(dim):
            buffer[row, j] += values[t, j]
    # float32 constants keep the inner loop in float32 (vectorised; float64 is ~4x slower)
    step_size = np.float32(lr / correction1)
    keep1, keep2 = np.float32(beta1), np.float32(beta2)
    take1, take2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)
    wd, eps32 = np.float32(weight_decay), np.float32(eps)
    inv_c2 = np.float32(1.0 / correction2)
    for t in range(index.shape[0]):
        row = index[t]
        if not touched[row]:
            continue  # a repeat of a row already updated
        touched[row] = False
        g = buffer[row]
        p = param[row]
        m = exp_avg[row]
        v = exp_avg_sq[row]
        for j in range(dim):
            gj = g[j] + wd * p[j]
            g[j] = 0.0
            mj = keep1 * m[j] + take1 * gj
            vj = keep2 * v[j] + take2 * gj * gj
            m[j] = mj
            v[j] = vj
            p[j] -= step_size * mj / (np.sqrt(vj * inv_c2) + eps32)
