"""Compiled CPU kernels (numba) for the one loop torch cannot fuse on CPU.

Counting, for every test positive, how many candidate items score strictly above it and
equal to it is a compare-and-add over each user's row. As separate torch ops it costs a
[B, P, n_items] temporary per block; as one fused loop it is a SIMD pass per positive, so
exact ranks, MRR, AUC and OPAUC cost about as much as the score matrix itself. On CUDA the
evaluator uses the torch path instead.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba import types as nbtypes
from numba.extending import intrinsic

# numba's default OpenMP layer leaves busy-waiting worker threads behind that make every
# later small torch op up to ~80x slower on a 2-core machine (seen here: evaluation every
# epoch slowed training ~10x). The workqueue layer has no spinning workers.
numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]


def numba_layer() -> str | None:
    """The threading layer numba's pool runs on, or None while the pool has not started
    (it then starts on the layer set above)."""
    try:
        return str(numba.threading_layer())
    except ValueError:  # "Threading layer is not initialized."
        return None


def _warn_if_pool_started_elsewhere() -> None:
    """numba's pool keeps the layer it started with: one started before negrec was
    imported (``numba.set_num_threads`` or a parallel kernel start it) may be OpenMP, where
    a blocked MF step on 2 threads ran at one thread's speed after a parallel pass."""
    layer = numba_layer()
    if layer not in (None, "workqueue"):
        warnings.warn(
            f"numba's thread pool was started on its {layer!r} threading layer before "
            "negrec was imported; negrec's kernels expect 'workqueue' (OpenMP's spinning "
            "workers slow its threaded steps). Import negrec before calling "
            "numba.set_num_threads or running numba's parallel code.",
            RuntimeWarning,
            stacklevel=3,
        )


_warn_if_pool_started_elsewhere()

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


def _mask_seen_items(
    scores: np.ndarray,  # float32 [B, n_items], masked in place
    users: np.ndarray,  # int64 [B]
    indptr: np.ndarray,  # int64 [n_users + 1]: the masked part's CSR (sorted rows)
    indices: np.ndarray,  # int64 [nnz]
    target_ptr: np.ndarray,  # int64 [n_users + 1]: the targets' CSR (sorted rows)
    target_indices: np.ndarray,  # int64 [nnz_targets]
    n_masked: np.ndarray,  # int64 [B]: += the items masked in each row
) -> None:
    """Set ``scores[b, i] = -inf`` for every item ``i`` of user ``users[b]`` in the masked
    part, except the user's targets (a target is never masked); count them in
    ``n_masked``. Both rows are sorted, so one merge walk per user finds the targets."""
    for b in prange(users.shape[0]):
        u = users[b]
        t, t_end = target_ptr[u], target_ptr[u + 1]
        masked = 0
        for position in range(indptr[u], indptr[u + 1]):
            item = indices[position]
            while t < t_end and target_indices[t] < item:
                t += 1
            if t < t_end and target_indices[t] == item:
                continue  # a target stays a candidate
            scores[b, item] = -np.inf
            masked += 1
        n_masked[b] += masked


_MASK_SEEN_ITEMS = _serial_and_parallel(_mask_seen_items)


def mask_seen_items(
    scores: np.ndarray,
    users: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    target_ptr: np.ndarray,
    target_indices: np.ndarray,
    n_masked: np.ndarray,
) -> None:
    """Mask each user's items of one part except its targets (see the kernel)."""
    work = int(indptr[-1]) * users.shape[0] // max(1, indptr.shape[0] - 1)  # ~items masked
    _pick(_MASK_SEEN_ITEMS, work)(
        scores, users, indptr, indices, target_ptr, target_indices, n_masked
    )


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

#: searches run in lockstep across rows by :func:`_complement_items_across_rows`
SEARCH_CHUNK = 16


def _complement_items_across_rows(
    indptr: np.ndarray,  # int64 [n_users + 1]
    q: np.ndarray,  # int64 [nnz], as in _complement_items
    users: np.ndarray,  # int64 [B]
    ranks: np.ndarray,  # int64 [B, K]
    out: np.ndarray,  # int64 [B, K] out
) -> None:
    """:func:`_complement_items` for narrow rows (K = 1 ... 7): the lockstep runs over
    ``SEARCH_CHUNK`` consecutive draws of the flattened [B * K] batch, across rows.

    With one draw per row there is nothing to interleave inside a row, and each halving
    step is a dependent load that misses the cache (~330 us per 1,024 draws on ML-1M);
    16 searches in flight at once take ~120 us. A search of a shorter row reaches n = 1
    first and then stands still (``half = 0``) until the longest one is done."""
    n_rows, width = ranks.shape
    total = n_rows * width
    for chunk in prange((total + SEARCH_CHUNK - 1) // SEARCH_CHUNK):
        start = chunk * SEARCH_CHUNK
        count = min(SEARCH_CHUNK, total - start)
        lo = np.empty(SEARCH_CHUNK, np.int64)  # each search's row start
        base = np.empty(SEARCH_CHUNK, np.int64)  # answers lie in [base, base + n]
        n = np.empty(SEARCH_CHUNK, np.int64)  # 0 marks an empty row
        rank = np.empty(SEARCH_CHUNK, np.int64)
        longest = 0
        for c in range(count):
            b, k = divmod(start + c, width)
            lo[c] = indptr[users[b]]
            n[c] = indptr[users[b] + 1] - lo[c]
            base[c] = lo[c] if n[c] else 0  # (an empty row probes q[0], harmlessly)
            rank[c] = ranks[b, k]
            longest = max(longest, n[c])
        while longest > 1:
            for c in range(count):
                half = n[c] >> 1
                probe = base[c] + half
                base[c] = probe if q[probe] <= rank[c] else base[c]
                n[c] -= half
            longest -= longest >> 1
        for c in range(count):
            b, k = divmod(start + c, width)
            if n[c] == 0:
                out[b, k] = rank[c]
            else:
                found = base[c]
                out[b, k] = rank[c] + (found - lo[c]) + (1 if q[found] <= rank[c] else 0)


_COMPLEMENT_ITEMS_ACROSS_ROWS = _serial_and_parallel(_complement_items_across_rows)


def complement_items(
    indptr: np.ndarray, q: np.ndarray, users: np.ndarray, ranks: np.ndarray, out: np.ndarray
) -> None:
    """The ``ranks``-th item [B, K] missing from each user's sorted positives."""
    work = ranks.size * 8  # ~8 lockstep binary-search steps per draw
    narrow = ranks.shape[1] < 8  # too few draws per row to interleave within it
    kernels = _COMPLEMENT_ITEMS_ACROSS_ROWS if narrow else _COMPLEMENT_ITEMS
    _pick(kernels, work)(indptr, q, users, ranks, out)


@njit(cache=True, nogil=True)
def uniform_ranks(
    available: np.ndarray,  # int64 [n_users]: items outside each user's positives
    users: np.ndarray,  # int64 [B]
    uniforms: np.ndarray,  # float32 [B, K] in [0, 1)
    out: np.ndarray,  # int64 [B, K] out: min(trunc(u * available), available - 1)
) -> None:
    """Uniform ranks into each user's complement, as the torch expression
    ``minimum((u * avail).long(), avail - 1)`` computes them (float32 product)."""
    n_rows, width = uniforms.shape
    for b in range(n_rows):
        avail = available[users[b]]
        scale = np.float32(avail)
        for k in range(width):
            out[b, k] = min(np.int64(uniforms[b, k] * scale), avail - 1)


#: rows with at most this many positives count them by a direct scan instead of a binary
#: search (ML-1M and Gowalla, K = 100: 96-128 best, 0 and 256 ~1.5x slower)
SCAN_MAX_ROW = 96
#: batch rows per task of the parallel draw (the scratch is allocated once per task)
DRAW_CHUNK = 64


def _uniform_complement_draw(
    available: np.ndarray,  # int64 [n_users]: items outside each user's positives
    indptr: np.ndarray,  # int64 [n_users + 1]
    q: np.ndarray,  # int32 or int64 [nnz]: p_i - i within each row (non-decreasing);
    # int32 only when every q and nnz itself fit (the scratch below takes its type)
    users: np.ndarray,  # int64 [B]
    uniforms: np.ndarray,  # float32 [B, K] in [0, 1)
    out: np.ndarray,  # int64 [B, K] out: uniform non-positive items
) -> None:
    """:func:`uniform_ranks` and :func:`_complement_items` in one pass per row, without
    the [B, K] rank array: a row's ranks go to a K-long scratch of ``q``'s type (int32: 16
    lanes per AVX-512 compare), then either

    - a short row (at most ``SCAN_MAX_ROW`` positives) counts ``#{i : q_i <= rank}`` by a
      direct scan: for each positive, one compare against all K ranks (a SIMD loop over
      contiguous ranks, no gathers, no dependent loads), or
    - a longer row runs :func:`_complement_items`' lockstep binary search.

    Same ranks and items as the two kernels, bit for bit (ML-1M / Gowalla, K = 100: ~0.6-0.7x
    the time of the two)."""
    n_rows, width = uniforms.shape
    one, zero = q.dtype.type(1), q.dtype.type(0)
    for chunk in prange((n_rows + DRAW_CHUNK - 1) // DRAW_CHUNK):
        rank = np.empty(width, q.dtype)  # [K] this row's ranks
        count = np.empty(width, q.dtype)  # [K] rank + #{q_i <= rank}, or the search bases
        for b in range(chunk * DRAW_CHUNK, min(n_rows, (chunk + 1) * DRAW_CHUNK)):
            user = users[b]
            avail = available[user]
            scale = np.float32(avail)
            for k in range(width):
                rank[k] = min(np.int64(uniforms[b, k] * scale), avail - 1)
            lo_row, hi_row = indptr[user], indptr[user + 1]
            length = hi_row - lo_row
            if length <= SCAN_MAX_ROW:
                for k in range(width):
                    count[k] = rank[k]
                for i in range(lo_row, hi_row):
                    qi = q[i]
                    for k in range(width):
                        count[k] += one if qi <= rank[k] else zero
                for k in range(width):
                    out[b, k] = count[k]
                continue
            lo = q.dtype.type(lo_row)
            for k in range(width):
                count[k] = lo
            n = length  # invariant: each answer lies in [base, base + n]
            while n > 1:
                half = q.dtype.type(n >> 1)
                for k in range(width):
                    probe = count[k] + half
                    count[k] = probe if q[probe] <= rank[k] else count[k]
                n -= half
            for k in range(width):
                found = count[k]
                above = 1 if q[found] <= rank[k] else 0
                out[b, k] = np.int64(rank[k]) + (found - lo) + above


_UNIFORM_COMPLEMENT_DRAW = _serial_and_parallel(_uniform_complement_draw)


def uniform_complement_draw(
    available: np.ndarray,
    indptr: np.ndarray,
    q: np.ndarray,
    users: np.ndarray,
    uniforms: np.ndarray,
    out: np.ndarray,
) -> None:
    """Uniform items [B, K] outside each user's positives from uniforms [B, K]: the
    ``uniform_ranks``-th item missing from the row (:func:`complement_items` of
    :func:`uniform_ranks`), in one compiled pass for wide rows (K >= 8); narrow rows
    search across rows (:func:`_complement_items_across_rows`)."""
    if uniforms.shape[1] < 8:
        rank = np.empty(uniforms.shape, dtype=np.int64)
        uniform_ranks(available, users, uniforms, rank)
        complement_items(indptr, q, users, rank, out)
        return
    work = uniforms.size * 8  # as complement_items
    _pick(_UNIFORM_COMPLEMENT_DRAW, work)(available, indptr, q, users, uniforms, out)


def _gather_dot_forward(
    vectors: np.ndarray,  # float32 [V, d]
    vector_rows: np.ndarray,  # int64 [B]: the vector of each batch row
    table: np.ndarray,  # float32 [n, d]
    rows: np.ndarray,  # int64 [B, K]
    out: np.ndarray,  # float32 [B, K] out: <table[rows[b, k]], vectors[vector_rows[b]]>
) -> None:
    n_rows, width = rows.shape
    dim = vectors.shape[1]
    for b in prange(n_rows):
        vector = vectors[vector_rows[b]]
        for k in range(width):
            row = table[rows[b, k]]
            acc = np.float32(0.0)
            for j in range(dim):
                acc += row[j] * vector[j]
            out[b, k] = acc


_GATHER_DOT_FORWARD = _serial_and_parallel(_gather_dot_forward, fastmath=True)


def gather_dot_forward(
    vectors: np.ndarray,
    table: np.ndarray,
    rows: np.ndarray,
    out: np.ndarray,
    vector_rows: np.ndarray | None = None,
) -> None:
    """``out[b, k] = <table[rows[b, k]], vectors[vector_rows[b]]>`` (``vector_rows``
    defaults to ``b``: one vector per batch row). MF's scores read the user table through
    the user ids, without gathering a [B, d] copy first."""
    if vector_rows is None:
        vector_rows = np.arange(rows.shape[0], dtype=np.int64)
    work = rows.size * vectors.shape[1]
    _pick(_GATHER_DOT_FORWARD, work)(vectors, vector_rows, table, rows, out)


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


@njit(cache=True, nogil=True)
def distinct_rows(
    rows: np.ndarray,  # int64 [B, K], values in [0, n)
    slot: np.ndarray,  # int64 [n], all -1: scratch; out: each distinct row's position
    unique: np.ndarray,  # int64 [>= U] out: the distinct rows, ascending
) -> int:
    """The U distinct values of ``rows``, ascending, into ``unique[:U]``, and
    ``slot[row]`` = its position there. Returns U. Ascending by a scan of the marks, not a
    sort (O(B K + n)): torch adds a sorted ("coalesced") row-sparse gradient into a dense
    one ~1.7x faster than one in first-seen order."""
    for row in rows.ravel():
        slot[row] = 0  # mark
    count = 0
    for row in range(slot.shape[0]):
        if slot[row] == 0:
            slot[row] = count
            unique[count] = row
            count += 1
    return count


@njit(cache=True, nogil=True)
def gather_dot_backward_rows(
    grad: np.ndarray,  # float32 [B, K]
    vectors: np.ndarray,  # float32 [B, d]
    rows: np.ndarray,  # int64 [B, K]
    slot: np.ndarray,  # int64 [n]: from distinct_rows
    unique: np.ndarray,  # int64 [U]: from distinct_rows
    values: np.ndarray,  # float32 [U, d] out: sum of grad[b, k] * vectors[b] per row
) -> None:
    """:func:`gather_dot_backward_table` as a row-sparse gradient over the distinct rows:
    each row's sum in the same (batch) order, so the same bits. A [U, d] gradient
    (U <= min(B K, n)) instead of [n, d] zeros, or a [B K, d] slice per gathered row."""
    n_rows, width = rows.shape
    dim = vectors.shape[1]
    values[:] = np.float32(0.0)
    for b in range(n_rows):
        for k in range(width):
            g = grad[b, k]
            target = values[slot[rows[b, k]]]
            for j in range(dim):
                target[j] += g * vectors[b, j]


@intrinsic
def _prefetch(typingctx: Any, array: Any, row: Any, col: Any) -> Any:
    """``llvm.prefetch`` of ``array[row, col]``'s cache line (read, keep in all levels).

    The row updates below touch a few thousand random rows of 4-5 tables per step; each
    first touch of a row misses the cache. Asking for the rows a few iterations ahead
    overlaps those misses (the MF step: 0.30 -> 0.21 s per ML-1M epoch of kernel time)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        view = context.make_array(signature.args[0])(context, builder, args[0])
        itemsize = ir.Constant(ir.IntType(64), signature.args[0].dtype.bitwidth // 8)
        row_stride = builder.udiv(builder.extract_value(view.strides, 0), itemsize)
        offset = builder.add(builder.mul(args[1], row_stride), args[2])
        address = builder.bitcast(builder.gep(view.data, [offset]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        kind = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32])
        module = builder.module
        prefetch = module.globals.get("llvm.prefetch.p0i8") or ir.Function(
            module, kind, name="llvm.prefetch.p0i8"
        )
        builder.call(prefetch, [address, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return nbtypes.none(array, nbtypes.int64, nbtypes.int64), codegen


#: how many rows ahead the row updates prefetch (8-32 measured alike on ML-1M)
PREFETCH_AHEAD = 8
#: the widest [B, W] id rows (positive + K negatives) the MF step prefetches for
PREFETCH_MAX_WIDTH = 16
#: how many ids ahead the passes over wider rows prefetch their item rows (a batch row
#: ahead would be 101 rows at K = 100); the K = 100 Gowalla epoch: 0.78x as long at 16,
#: 0.95x of that at 32
WIDE_AHEAD = 32
#: ... for item tables of at least this many bytes: on ML-1M's 0.95 MB table, which stays
#: in cache, the prefetches made the K = 100 epoch 1.48x slower
WIDE_PREFETCH_MIN_BYTES = 4 << 20


def wide_ahead(item_table: np.ndarray) -> int:
    """How far ahead the wide-row passes prefetch ``item_table``'s rows (0: not at all)."""
    return WIDE_AHEAD if item_table.nbytes >= WIDE_PREFETCH_MIN_BYTES else 0


@njit(cache=True, nogil=True)
def _fetch_row(array: np.ndarray, row: int) -> None:
    """Prefetch every 64-byte line of ``array[row]`` (float32: 16 values per line)."""
    for col in range(0, array.shape[1], 16):
        _prefetch(array, row, col)  # type: ignore[call-arg]  # (typingctx is numba's)


@njit(cache=True, nogil=True)
def _update_order(index: np.ndarray, touched: np.ndarray) -> np.ndarray:
    """The rows a row update walks: ``index`` itself (repeats are skipped by their cleared
    flag), or, when ``index`` is at least as long as the table, the flagged rows in table
    order. With K negatives a step's index repeats rows many times (1,024 x 101 ids over
    1,682 items on ML-100K); walking it, with a prefetch per entry, cost ~40x the update of
    the distinct rows, which the scan visits once each and in memory order."""
    if index.shape[0] >= touched.shape[0]:
        return np.nonzero(touched)[0]
    return index


# error_model="numpy": float division without numba's Python-style zero check, whose
# branch keeps LLVM from vectorising the row update (3x slower)
@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _adam_touched_rows(
    param: np.ndarray,  # float32 [n, d], updated in place
    exp_avg: np.ndarray,  # float32 [n, d], Adam's first moment, updated in place
    exp_avg_sq: np.ndarray,  # float32 [n, d], second moment, updated in place
    index: np.ndarray,  # int64 [nnz]: rows the step touched, with repeats
    buffer: np.ndarray,  # float32 [n, d]: each touched row's summed gradient; zeroed here
    touched: np.ndarray,  # bool [n]: True at the touched rows; cleared here
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    correction1: float,
    correction2: float,
) -> None:
    """The Adam update of each touched row, once per row however often it repeats."""
    rows = _update_order(index, touched)
    dim = param.shape[1]
    # float32 constants keep the inner loop in float32 (vectorised; float64 is ~4x slower)
    step_size = np.float32(lr / correction1)
    keep1, keep2 = np.float32(beta1), np.float32(beta2)
    take1, take2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)
    wd, eps32 = np.float32(weight_decay), np.float32(eps)
    inv_c2 = np.float32(1.0 / correction2)
    n = rows.shape[0]
    for t in range(n):
        if t + PREFETCH_AHEAD < n:
            ahead = rows[t + PREFETCH_AHEAD]
            for table in (param, exp_avg, exp_avg_sq, buffer):
                _fetch_row(table, ahead)
        row = rows[t]
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


@njit(cache=True, nogil=True, fastmath=True)
def _sgd_touched_rows(
    param: np.ndarray,  # float32 [n, d], updated in place
    index: np.ndarray,  # int64 [nnz]: rows the step touched, with repeats
    buffer: np.ndarray,  # float32 [n, d]: each touched row's summed gradient; zeroed here
    touched: np.ndarray,  # bool [n]: True at the touched rows; cleared here
    lr: float,
) -> None:
    """``p -= lr * g`` on each touched row, once per row however often it repeats."""
    dim = param.shape[1]
    rate = np.float32(lr)
    for row in _update_order(index, touched):
        if not touched[row]:
            continue  # a repeat of a row already updated
        touched[row] = False
        g = buffer[row]
        p = param[row]
        for j in range(dim):
            p[j] -= rate * g[j]
            g[j] = 0.0


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
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
    _adam_touched_rows(
        param, exp_avg, exp_avg_sq, index, buffer, touched,
        lr, beta1, beta2, eps, weight_decay, correction1, correction2,
    )  # fmt: skip


#: the momentum-only steps a row catches up in full; beyond this many the contributions
#: shrink as ~0.9^s (beta1 / beta2^2.5 for the last series term): 0.903^256 < 5e-12 of the
#: first, far below float32 rounding, so only the moments' decay continues in closed form
CATCH_UP_CAP = 256


def catch_up_powers(beta1: float, beta2: float) -> np.ndarray:
    """float64 [4, CATCH_UP_CAP + 1]: ``r^s``, ``beta2^(-s/2)``, ``beta1^s``, ``beta2^s`` for
    s = 0..CATCH_UP_CAP, with ``r = beta1 / sqrt(beta2)`` (tables, so the catch-up's loop over
    the skipped steps has no recurrence and vectorises)."""
    s = np.arange(CATCH_UP_CAP + 1, dtype=np.float64)
    return np.stack([(beta1 / np.sqrt(beta2)) ** s, beta2 ** (-s / 2), beta1**s, beta2**s]).copy()


#: the eps series below is used while eps * x_s / sqrt(v) <= this; its 5-term remainder is
#: then <= 0.05^5 = 3e-7 of the (already small) catch-up drift; smaller sqrt(v) loop exactly
EPS_SERIES_MAX = 0.05


# inline="always": numba inlines it in its IR, so the callers' loops see its body (as a
# call, its arrays passed field by field, it cost ~20% more per row); never inline it into
# a prange body, whose lowering would compile it differently (other bits): call
# _catch_up_one there
@njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _catch_up_row(
    p: np.ndarray,  # float32 [d], updated in place
    m: np.ndarray,  # float32 [d]
    v: np.ndarray,  # float32 [d]
    since: int,  # the step the row is current at
    until: int,  # the step to bring it to (> since)
    hist_a: np.ndarray,  # float64 [steps]: lr_u * sqrt(c2_u) / c1_u of step u = base + 1 + i
    hist_sc2: np.ndarray,  # float64 [steps]: sqrt(c2_u) of the same steps
    base: int,
    powers: np.ndarray,  # float64 [4, CATCH_UP_CAP + 1]: see catch_up_powers
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """Apply to one row the ``until - since`` Adam steps in which it got no gradient.

    Dense Adam still moves such a row: ``m <- b1 m``, ``v <- b2 v``,
    ``p -= lr_u / c1_u * m / (sqrt(v / c2_u) + eps)``. After ``s`` such steps from
    (m0, v0), with ``w = sqrt(v0)``, ``a_u = lr_u sqrt(c2_u) / c1_u``, ``r = b1 / sqrt(b2)``,
    ``x_s = sqrt(c2_u) b2^(-s/2)``, step s moves p by
    ``-a_u r^s (m0 / w) / (1 + (eps / w) x_s)``. Expanding ``1 / (1 + e)`` to fifth order
    gives the whole drift as five row scalars ``S_k = sum_s a_u r^s x_s^k``:
    ``-(m0 / w) sum_k (-eps / w)^k S_k`` per element, exact to float32 rounding while
    ``e <= EPS_SERIES_MAX``; elements with a smaller ``sqrt(v0)`` sum their steps one by one.
    Cost: ``min(n, CATCH_UP_CAP)`` scalar iterations per row plus O(d), not O(n d)."""
    n = until - since
    steps = min(n, CATCH_UP_CAP)
    s0 = s1 = s2 = s3 = s4 = 0.0
    first = np.uint64(since - base)  # history index of step since + 1
    # unsigned indices: with signed ones numba checks each for a negative (wraparound)
    # index; a row's catch-up over 256 steps took 2x as long in isolation (the same bits)
    for s in range(steps):  # (no recurrence: vectorises)
        at = np.uint64(s)
        x = hist_sc2[first + at] * powers[1, at + np.uint64(1)]
        t = hist_a[first + at] * powers[0, at + np.uint64(1)]
        s0 += t
        t *= x
        s1 += t
        t *= x
        s2 += t
        t *= x
        s3 += t
        t *= x
        s4 += t
    offset = since - base - 1  # history index of step since + s: offset + s
    x_max = hist_sc2[offset + steps] * powers[1, steps]  # x_s grows with s
    decay1 = powers[2, steps]  # the moments' decay over the gap: beta1^n, beta2^n
    decay2 = powers[3, steps]
    w_min = eps * x_max / EPS_SERIES_MAX  # below this sqrt(v0) the series is not used
    f0, f1, f2 = np.float32(s0), np.float32(s1), np.float32(s2)
    f3, f4, feps = np.float32(s3), np.float32(s4), np.float32(eps)
    if n > steps:  # (beyond the cap: no pow in the common case)
        decay1 *= beta1 ** (n - steps)
        decay2 *= beta2 ** (n - steps)
    d1, d2 = np.float32(decay1), np.float32(decay2)
    dim = p.shape[0]
    # one branch-free, vectorised pass over the elements with sqrt(v0) >= w_min (all of
    # them, nearly always); the others are left as they were and counted, then summed step
    # by step below. (A separate counting pass before this one made a catch-up ~1.5x as
    # slow: 2026-12-05, benchmarks/out/2026-12-05-catch-up-one-pass.md)
    w_min_sq = np.float32(w_min * w_min)
    small = 0
    for j in range(dim):
        vj = v[j]
        tiny = vj < w_min_sq
        small += tiny
        inv_w = np.float32(1.0) / np.sqrt(max(vj, w_min_sq))  # (max: no inf in a tiny lane)
        rho = feps * inv_w
        series = f0 - rho * (f1 - rho * (f2 - rho * (f3 - rho * f4)))
        mj = m[j]
        p[j] -= np.float32(0.0) if tiny else mj * inv_w * series
        m[j] = mj if tiny else mj * d1
        v[j] = vj if tiny else vj * d2
    if small == 0:
        return
    for j in range(dim):  # tiny sqrt(v0): the steps one by one (rare)
        m0 = m[j]
        if v[j] >= w_min_sq:
            continue
        w = np.sqrt(v[j])
        if m0 != 0.0:
            drift = 0.0
            for s in range(1, steps + 1):
                u = offset + s
                drift += hist_a[u] * powers[2, s] / (w / powers[1, s] + eps * hist_sc2[u])
            p[j] -= np.float32(m0 * drift)
        m[j] = m0 * d1
        v[j] = v[j] * d2


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def adam_catch_up_rows(
    param: np.ndarray,  # float32 [n, d], updated in place
    exp_avg: np.ndarray,  # float32 [n, d]
    exp_avg_sq: np.ndarray,  # float32 [n, d]
    last: np.ndarray,  # int64 [n]: the step each row is current at; updated
    rows: np.ndarray,  # int64 [R]: the rows to bring up to date, repeats allowed
    until: int,  # the step to bring them to
    mark: int,  # the step to record as current (``until``, or the step about to run)
    hist_a: np.ndarray,
    hist_sc2: np.ndarray,
    base: int,
    powers: np.ndarray,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """:func:`_catch_up_row` for each of ``rows`` not yet current (serial: repeats). The
    rows are prefetched a few ahead (random rows of three tables miss the cache)."""
    n = rows.shape[0]
    for t in range(n):
        if t + PREFETCH_AHEAD < n:
            ahead = rows[t + PREFETCH_AHEAD]
            if last[ahead] < until:
                for table in (param, exp_avg, exp_avg_sq):
                    _fetch_row(table, ahead)
        row = rows[t]
        since = last[row]
        if since < until:
            _catch_up_row(
                param[row], exp_avg[row], exp_avg_sq[row], since, until,
                hist_a, hist_sc2, base, powers, beta1, beta2, eps,
            )  # fmt: skip
        last[row] = mark


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _catch_up_one(
    p: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    since: int,
    until: int,
    hist_a: np.ndarray,
    hist_sc2: np.ndarray,
    base: int,
    powers: np.ndarray,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """:func:`_catch_up_row` as a function of its own, for prange bodies (see there)."""
    _catch_up_row(p, m, v, since, until, hist_a, hist_sc2, base, powers, beta1, beta2, eps)


def _adam_catch_up_all(
    param: np.ndarray,  # float32 [n, d], updated in place
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    last: np.ndarray,  # int64 [n]; all set to ``until`` here
    until: int,
    hist_a: np.ndarray,
    hist_sc2: np.ndarray,
    base: int,
    powers: np.ndarray,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    for row in prange(param.shape[0]):  # rows are independent: parallel-safe
        since = last[row]
        if since < until:
            _catch_up_one(
                param[row], exp_avg[row], exp_avg_sq[row], since, until,
                hist_a, hist_sc2, base, powers, beta1, beta2, eps,
            )  # fmt: skip
            last[row] = until


_ADAM_CATCH_UP_ALL = _serial_and_parallel(_adam_catch_up_all, fastmath=True)


def adam_catch_up_all(
    param: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    last: np.ndarray,
    until: int,
    hist_a: np.ndarray,
    hist_sc2: np.ndarray,
    base: int,
    powers: np.ndarray,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """Bring every row of a table up to step ``until`` (before evaluation, a checkpoint, a
    dense step). Rows are independent, so the parallel copy gives the same bits."""
    _pick(_ADAM_CATCH_UP_ALL, param.size)(
        param, exp_avg, exp_avg_sq, last, until, hist_a, hist_sc2, base, powers, beta1, beta2, eps
    )


@njit(cache=True, nogil=True)
def _fetch_stale(
    table: tuple[np.ndarray, np.ndarray, np.ndarray], last: np.ndarray, row: int, until: int
) -> None:
    """Prefetch a row's p, m, v when it has steps to catch up."""
    if last[row] < until:
        param, exp_avg, exp_avg_sq = table
        _fetch_row(param, row)
        _fetch_row(exp_avg, row)
        _fetch_row(exp_avg_sq, row)


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def adam_catch_up_and_score(
    user_table: tuple[np.ndarray, np.ndarray, np.ndarray],  # float32 [n_users, d]: p, m, v
    user_last: np.ndarray,  # int64 [n_users]: the step each row is current at; updated
    user_history: tuple[np.ndarray, np.ndarray],  # float64: hist_a, hist_sc2
    user_steps: tuple[int, int, int],  # (until, mark, base) as in adam_catch_up_rows
    item_table: tuple[np.ndarray, np.ndarray, np.ndarray],  # float32 [n_items, d]: p, m, v
    item_last: np.ndarray,  # int64 [n_items]
    item_history: tuple[np.ndarray, np.ndarray],
    item_steps: tuple[int, int, int],
    powers: np.ndarray,  # float64 [4, CATCH_UP_CAP + 1]: see catch_up_powers
    beta1: float,
    beta2: float,
    eps: float,
    users: np.ndarray,  # int64 [B]
    items: np.ndarray,  # int64 [B, W]: each row's positive and negatives
    out: np.ndarray,  # float32 [B, W] out: <p_u, q_i> after the catch-up
    ahead: int,  # wide rows: prefetch item rows this many ids ahead (0: not; wide_ahead)
) -> None:
    """RowwiseAdam's catch-up of a fused MF step's rows and the step's scores in one pass.

    The same result, bit for bit, as :func:`adam_catch_up_rows` on the users, then on the
    items (b-major), then :func:`gather_dot_forward`: a row's catch-up reads only that row
    and its table's history, so interleaving the two tables changes no value, and each
    score reads the rows just brought up to date, still in cache (three passes over the
    batch's random rows become one). Prefetches the rows ``PREFETCH_AHEAD`` batch rows
    ahead for narrow rows (``PREFETCH_MAX_WIDTH``), as the row step does, and wider rows'
    item rows ``ahead`` ids ahead. Serial: rows
    repeat within a batch."""
    n_rows, width = items.shape
    dim = user_table[0].shape[1]
    user_until, user_mark, user_base = user_steps
    item_until, item_mark, item_base = item_steps
    user_p, user_m, user_v = user_table
    item_p, item_m, item_v = item_table
    user_a, user_sc2 = user_history
    item_a, item_sc2 = item_history
    prefetch = width <= PREFETCH_MAX_WIDTH
    wide = not prefetch and ahead > 0
    flat = items.reshape(-1)  # [B W]: wide rows prefetch ``ahead`` ids ahead
    n_ids = flat.shape[0]
    for b in range(n_rows):
        if prefetch and b + PREFETCH_AHEAD < n_rows:
            _fetch_stale(user_table, user_last, users[b + PREFETCH_AHEAD], user_until)
            for w in range(width):
                _fetch_stale(item_table, item_last, items[b + PREFETCH_AHEAD, w], item_until)
        elif wide and b + 1 < n_rows:
            _fetch_stale(user_table, user_last, users[b + 1], user_until)
        u = users[b]
        if user_last[u] < user_until:
            _catch_up_row(
                user_p[u], user_m[u], user_v[u], user_last[u], user_until,
                user_a, user_sc2, user_base, powers, beta1, beta2, eps,
            )  # fmt: skip
        user_last[u] = user_mark
        vector = user_p[u]
        for w in range(width):
            at = b * width + w + ahead
            if wide and at < n_ids:  # the score reads p; a stale row m, v too
                _fetch_row(item_p, flat[at])
                _fetch_stale(item_table, item_last, flat[at], item_until)
            i = items[b, w]
            if item_last[i] < item_until:
                _catch_up_row(
                    item_p[i], item_m[i], item_v[i], item_last[i], item_until,
                    item_a, item_sc2, item_base, powers, beta1, beta2, eps,
                )  # fmt: skip
            item_last[i] = item_mark
            row = item_p[i]
            acc = np.float32(0.0)
            for j in range(dim):
                acc += row[j] * vector[j]
            out[b, w] = acc
