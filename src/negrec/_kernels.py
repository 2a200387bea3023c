"""Compiled CPU kernels (numba) for the one loop torch cannot fuse on CPU.

Counting, for every test positive, how many candidate items score strictly above it and
equal to it is a compare-and-add over each user's row. As separate torch ops it costs a
[B, P, n_items] temporary per block; as one fused loop it is a SIMD pass per positive, so
exact ranks, MRR, AUC and OPAUC cost about as much as the score matrix itself. On CUDA the
evaluator uses the torch path instead.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

# numba's default OpenMP layer leaves busy-waiting worker threads behind that make every
# later small torch op up to ~80x slower on a 2-core machine (seen here: evaluation every
# epoch slowed training ~10x). The workqueue layer has no spinning workers.
numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]


@njit(parallel=True, cache=True, nogil=True)
def count_above_equal(
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


@njit(parallel=True, cache=True, nogil=True)
def complement_items(
    indptr: np.ndarray,  # int64 [n_users + 1]
    q: np.ndarray,  # int64 [nnz]: p_i - i within each user's sorted positives (non-decreasing)
    users: np.ndarray,  # int64 [B]
    ranks: np.ndarray,  # int64 [B, K]: uniform ranks in [0, n_items - deg(user))
    out: np.ndarray,  # int64 [B, K] out: the rank-th item missing from the user's positives
) -> None:
    """``item = rank + #{i : q_i <= rank}``, by binary search inside the user's own row
    (a few cache-friendly steps instead of a search over every stored interaction)."""
    n_rows, width = ranks.shape
    for b in prange(n_rows):
        lo_row, hi_row = indptr[users[b]], indptr[users[b] + 1]
        for k in range(width):
            r = ranks[b, k]
            lo, hi = lo_row, hi_row
            while lo < hi:  # first position with q > r
                mid = (lo + hi) >> 1
                if q[mid] <= r:
                    lo = mid + 1
                else:
                    hi = mid
            out[b, k] = r + (lo - lo_row)


@njit(parallel=True, cache=True, nogil=True)
def gather_dot_forward(
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


@njit(parallel=True, cache=True, nogil=True)
def gather_dot_backward_vectors(
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
