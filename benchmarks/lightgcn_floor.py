"""How close a LightGCN training step is to its sparse-product floor (issue 7).

A LightGCN step with L layers runs 2L products of the normalised adjacency Â with an
[N, d] embedding matrix (L forward, L backward); the rest (scores, loss, Adam) is small.
This script times, in one process on the same data:

- negrec's training step (the speed suite's setting: 3 layers, dim 64, BPR, K = 1, batch
  1024, explicit L2 1e-5; the first ``--steps`` batches of an epoch after a warm-up epoch),
- one product ``Â @ X`` with torch's CSR kernel (what negrec calls; also with int64
  indices, which torch's CPU kernel converts on every call) and with a plain numba CSR
  kernel (a reference for the single-thread floor: every non-zero reads one d-float row
  of X),

and prints the step, 2L products, and their share of the step. With ``--recbole-step-ms``
(RecBole's step on the same data, e.g. from ``benchmarks/suite.py --only lgcn_ml1m``)
it also prints the largest speed-up over RecBole a step made of the 2L products alone
could reach:

    OMP_NUM_THREADS=1 python benchmarks/lightgcn_floor.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np


@numba.njit(fastmath=True, boundscheck=False, cache=False)
def csr_spmm(crow, col, value, x, out):  # pragma: no cover - timed, not tested
    """out[i] = sum_p value[p] * x[col[p]] over row i's non-zeros (out [N, d])."""
    n, d = out.shape
    for i in range(n):
        acc = np.zeros(d, np.float32)
        for p in range(crow[i], crow[i + 1]):
            j, v = col[p], value[p]
            for k in range(d):
                acc[k] += v * x[j, k]
        out[i, :] = acc


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (numba compiles on the first call)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding ml-1m/, gowalla/")
    parser.add_argument("--dataset", default="ml-1m", choices=["ml-1m", "gowalla"])
    parser.add_argument("--steps", type=int, default=40, help="batches timed per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after a warm-up)")
    parser.add_argument("--repeats", type=int, default=20, help="timed products per kernel")
    parser.add_argument(
        "--recbole-step-ms", type=float, help="RecBole's step on the same data, for the bound"
    )
    args = parser.parse_args()

    import torch
    from suite import load_splits, negrec_epochs

    from negrec.models.lightgcn import LightGCN, LightGCNConfig
    from negrec.samplers.uniform import UniformConfig, UniformSampler

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    split = load_splits(args.data)[args.dataset]
    layers = 3
    model = LightGCN(LightGCNConfig(dim=64, layers=layers), split.train, torch.Generator())
    sampler = UniformSampler(UniformConfig(k=1), split.train)
    timed = negrec_epochs(
        model, sampler, "bpr", split, epochs=args.epochs, max_steps=args.steps, l2=1e-5
    )
    step_ms = 1000 * float(np.median(timed["seconds"])) / timed["steps"]

    adjacency = model.adjacency
    x = torch.randn(adjacency.shape[0], 64, generator=torch.Generator().manual_seed(0))
    crow, col = adjacency.crow_indices().numpy(), adjacency.col_indices().numpy()
    value, xn, out = adjacency.values().numpy(), x.numpy(), np.empty_like(x.numpy())
    csr_spmm(crow, col, value, xn, out)
    assert np.allclose(out, (adjacency @ x).numpy(), atol=1e-5)  # the reference is right
    torch_ms = median_ms(lambda: adjacency @ x, args.repeats)
    wide = torch.sparse_csr_tensor(  # the same Â with int64 indices (negrec stores int32)
        adjacency.crow_indices().long(),
        adjacency.col_indices().long(),
        adjacency.values(),
        adjacency.shape,
        check_invariants=False,
    )
    wide_ms = median_ms(lambda: wide @ x, args.repeats)
    numba_ms = median_ms(lambda: csr_spmm(crow, col, value, xn, out), args.repeats)

    products = 2 * layers
    nnz = adjacency.values().numel()
    print(f"{args.dataset}: Â {adjacency.shape[0]:,} nodes, {nnz:,} non-zeros; dim 64")
    print(f"negrec training step (median of {args.epochs} epochs): {step_ms:.1f} ms")
    print(
        f"one Â @ X: torch CSR {torch_ms:.2f} ms, numba reference {numba_ms:.2f} ms "
        f"({nnz * 64 * 4 / torch_ms / 1e6:.1f} GB/s of rows read by torch's); "
        f"torch with int64 indices {wide_ms:.2f} ms"
    )
    floor = products * min(torch_ms, numba_ms)
    print(
        f"{products} products per step: {products * torch_ms:.1f} ms with torch's kernel "
        f"({products * torch_ms / step_ms:.0%} of the step); floor {floor:.1f} ms"
    )
    if args.recbole_step_ms:
        print(
            f"RecBole step {args.recbole_step_ms:.1f} ms: "
            f"now {args.recbole_step_ms / step_ms:.1f}x; "
            f"a step of the {products} products alone would be "
            f"{args.recbole_step_ms / floor:.1f}x"
        )


if __name__ == "__main__":
    main()
