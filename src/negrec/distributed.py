"""Data-parallel training over the ranks torchrun starts (``negrec run CONFIG --distributed``).

Launch with ``torchrun --nproc-per-node N -m negrec.cli run CONFIG --distributed``: each
rank reads torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` and joins one process group (gloo on CPU, nccl on CUDA, where rank r uses
``cuda:LOCAL_RANK``). The aim is that N ranks train like one process with the same global
batch, up to float rounding:

- **Batches.** Every rank draws the same global shuffle from ``train.seed`` and cuts the
  same global batches of ``train.batch_size`` rows; rank r keeps the r-th of N contiguous
  slices (sizes differ by at most one row), so the ranks' slices make up exactly the
  one-process batch.
- **Negatives.** Samplers that do not score with the model (uniform, popularity, in-batch,
  full) draw for the whole global batch with the shared training generator and each rank
  keeps its rows: the negatives are exactly those one process draws, and the generator
  stays in step on every rank. Hard-negative samplers (``needs_model``: dns, softmax_v)
  score candidates with the model, which repeating on every rank would waste; they draw
  for the rank's own rows with a per-rank generator seeded, at the start of each epoch,
  from ``numpy.random.SeedSequence([train.seed, rank, epoch])`` (independent streams per
  rank, and a resumed run needs no per-rank state). Their negatives are distributed like
  one process's but not the same numbers.
- **Gradients.** Each rank's loss is a mean over its rows; it is scaled by the rank's share
  of the global batch's rows before ``backward``, and gradients are summed over ranks (one
  flat all_reduce of the dense gradients; row-sparse ``lazy_adam`` gradients are
  all-gathered as (row, value) pairs). The sum is the gradient of the global batch mean,
  also for a ragged last batch; a rank with no rows of a last batch smaller than the world
  contributes zero. The batch loss travels in the same all_reduce, so a NaN on any rank
  stops every rank at the same step. This explicit reduction is used rather than
  ``DistributedDataParallel`` because models score through ``score`` / ``score_all`` /
  ``score_candidates`` / ``l2_penalty`` rather than one ``forward`` per backward, and DDP
  reduces sparse gradients on gloo only.
- **Evaluation.** Validation and test users, ordered by number of targets, are dealt
  round robin to the ranks; per-user metrics are all-gathered and put back in user-id
  order, so every rank holds the one-process result and takes the same early-stopping
  decision (a stop wanted by any rank is also agreed on explicitly each epoch).
- **Output.** Rank 0 alone writes the run directory, checkpoints, history and progress
  bar and prints; the other ranks train and evaluate in step and write nothing.

In one process every helper here is the identity and no collective is called, so
``fit`` and ``evaluate`` behave exactly as without this module.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from negrec.errors import NegrecError, first_line

#: what torchrun sets for every rank
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
LAUNCH = "torchrun --nproc-per-node N -m negrec.cli run CONFIG --distributed"

# gradient kinds, ordered so that an all_reduce MAX gives the kind every rank must use
_NONE, _SPARSE, _DENSE = 0, 1, 2


class DistributedError(NegrecError):
    """``--distributed`` without torchrun's environment, or a rank lost its peers."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; ``World()`` is a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group (one process)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank, so collectives are needed."""
        return self.size > 1

    @property
    def comm_device(self) -> torch.device:
        """Where tensors for collectives live: the rank's GPU for nccl, else the CPU."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def place(self, device: torch.device) -> torch.device:
        """The training device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
        if self.backend == "nccl" and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    # ------------------------------------------------------------------ training
    def rows(self, n: int) -> slice:
        """This rank's contiguous slice of a global batch of ``n`` rows: N slices in rank
        order, the first ``n % N`` one row longer (all ``n`` rows in one process)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + int(self.rank < extra))

    def rank_generator(self, generator: torch.Generator, seed: int, epoch: int) -> torch.Generator:
        """The generator of this rank's own draws (hard negatives) in ``epoch``: the
        training ``generator`` itself in one process, else a fresh one seeded from
        ``SeedSequence([seed, rank, epoch])``."""
        if not self.distributed:
            return generator
        entropy = [seed % 2**64, self.rank, epoch]
        derived = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
        return torch.Generator(device=generator.device).manual_seed(derived)

    def broadcast_parameters(self, model: torch.nn.Module) -> None:
        """Copy rank 0's parameters to every rank (ranks build the model from the same
        seed; this makes an identical start a guarantee rather than an assumption)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for param in model.parameters():
                dist.broadcast(param.data, src=0)

    def all_reduce_gradients(self, model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
        """Sum every parameter's gradient and ``loss`` over ranks; returns the summed loss.

        Each rank scaled its loss by its share of the global batch, so the sums are the
        global batch's loss and gradient. A gradient missing on some ranks counts as zero;
        missing on all ranks it stays ``None`` (as in one process, so Adam skips it).
        """
        if not self.distributed:
            return loss
        params = list(model.parameters())
        kinds = [_kind(p.grad) for p in params]
        if _may_be_sparse(model):  # lazy_adam: agree on each gradient's kind first
            agreed = torch.tensor(kinds, dtype=torch.int64, device=self.comm_device)
            dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
            kinds = agreed.tolist()
        else:  # dense or missing only: the presence flags below are enough
            kinds = [_DENSE] * len(params)
        dense = [p for p, kind in zip(params, kinds, strict=True) if kind == _DENSE]
        loss = self._reduce_dense(dense, loss)
        sparse = [p for p, kind in zip(params, kinds, strict=True) if kind == _SPARSE]
        if sparse:
            self._gather_sparse(sparse)
        return loss

    def _reduce_dense(self, params: list[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
        """One all_reduce of [every gradient, flattened | a presence flag each | loss]."""
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.to_dense() for p in params]
        flags = [float(p.grad is not None) for p in params]
        device, dtype = loss.device, loss.dtype
        for grad in grads:
            dtype = torch.promote_types(dtype, grad.dtype)
        flat = torch.cat(
            [
                *(g.reshape(-1).to(dtype) for g in grads),
                torch.tensor(flags, dtype=dtype, device=device),
                loss.reshape(1).to(dtype),
            ]
        ).to(self.comm_device)
        dist.all_reduce(flat)
        flat = flat.to(device)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()
        present = flat[offset : offset + len(params)]
        for param, grad, seen in zip(params, grads, present.tolist(), strict=True):
            param.grad = grad if seen else None
        return flat[-1].to(loss.dtype)

    def _gather_sparse(self, params: list[torch.nn.Parameter]) -> None:
        """Row-sparse gradients: all_gather every rank's (row, value) pairs, padded to the
        longest; the concatenation (rows may repeat, as in one process) is the sum."""
        parts = []
        for param in params:
            grad = param.grad
            if grad is None:
                rows = torch.empty(0, dtype=torch.int64, device=param.device)
                values = param.new_empty((0, *param.shape[1:]))
            else:
                rows, values = grad._indices()[0], grad._values()
            parts.append((rows, values))
        counts = torch.tensor(
            [rows.numel() for rows, _ in parts], dtype=torch.int64, device=self.comm_device
        )
        all_counts = [torch.empty_like(counts) for _ in range(self.size)]
        dist.all_gather(all_counts, counts)
        per_rank = torch.stack(all_counts).tolist()  # [ranks][params]
        for i, (param, (rows, values)) in enumerate(zip(params, parts, strict=True)):
            sizes = [per_rank[r][i] for r in range(self.size)]
            width = max(1, *sizes)
            got_rows = self._all_gather_padded(rows, width)
            got_values = self._all_gather_padded(values, width)
            keep_rows = torch.cat([g[:n] for g, n in zip(got_rows, sizes, strict=True)])
            keep_values = torch.cat([g[:n] for g, n in zip(got_values, sizes, strict=True)])
            param.grad = torch.sparse_coo_tensor(
                keep_rows.unsqueeze(0).to(param.device),
                keep_values.to(param.device),
                param.shape,
                check_invariants=False,  # rows may repeat: an uncoalesced sum, as in one process
            )

    def _all_gather_padded(self, tensor: torch.Tensor, width: int) -> list[torch.Tensor]:
        """all_gather of tensors whose first dimension differs by rank (padded to ``width``)."""
        padded = tensor.new_zeros((width, *tensor.shape[1:]), device=self.comm_device)
        padded[: tensor.shape[0]] = tensor
        out = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(out, padded)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on some rank (e.g. stop training)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=self.comm_device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    # ------------------------------------------------------------------ evaluation
    def my_share(self, ordered: np.ndarray) -> np.ndarray:
        """This rank's elements of ``ordered``: every N-th, from position ``rank`` (users
        ordered by cost get equal work)."""
        return ordered[self.rank :: self.size] if self.distributed else ordered

    def all_gather_columns(self, table: np.ndarray) -> np.ndarray:
        """Columns of a float64 [C, n_rank] table from every rank, concatenated in rank
        order ([C, sum of n]); ranks may hold different numbers of columns."""
        if not self.distributed:
            return table
        tensor = torch.from_numpy(np.ascontiguousarray(table.T, dtype=np.float64))
        counts = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=self.comm_device)
        all_counts = [torch.empty_like(counts) for _ in range(self.size)]
        dist.all_gather(all_counts, counts)
        sizes = [int(c.item()) for c in all_counts]
        got = self._all_gather_padded(tensor, max(1, *sizes))
        rows = torch.cat([g[:n] for g, n in zip(got, sizes, strict=True)])
        return np.ascontiguousarray(rows.cpu().numpy().T)

    # ------------------------------------------------------------------ plumbing
    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.comm_device)
        return box[0]


#: the single process
LOCAL = World()


def _kind(grad: torch.Tensor | None) -> int:
    if grad is None:
        return _NONE
    return _SPARSE if grad.is_sparse else _DENSE


def _may_be_sparse(model: torch.nn.Module) -> bool:
    """Whether some parameter may get a row-sparse gradient (``lazy_adam`` embeddings)."""
    return any(isinstance(m, torch.nn.Embedding) and m.sparse for m in model.modules())


def torchrun_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; a one-line
    :class:`DistributedError` when the process was not started by torchrun."""
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise DistributedError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} "
            f"missing): launch with `{LAUNCH}`"
        )
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    except ValueError as err:
        raise DistributedError(f"torchrun's RANK / WORLD_SIZE / LOCAL_RANK: {err}") from None


def uses_cuda(device: str) -> bool:
    """Whether the configured ``train.device`` puts training on a GPU."""
    if device == "auto":
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


#: set when a ``launched`` block of this process raised: its exit must not wait for ranks
#: that may be blocked in a collective it will never join (torchrun stops them instead)
_failed = False


def _leave() -> None:
    """Leave the process group at exit, unless the program already did; after a clean
    run, once every rank is there too. Seen without that barrier, twice in CI on fresh
    checkouts: rank 1, whose `negrec run` returns as soon as training ends, died with
    SIGABRT ("terminate called without an active exception") at exit while rank 0 was
    still writing the report and plot, failing the whole torchrun; a rank leaving its
    gloo group alone is the suspected cause. A rank that cannot reach the others leaves
    anyway."""
    if not dist.is_initialized():
        return
    if not _failed:
        with suppress(Exception):
            dist.barrier()
    dist.destroy_process_group()


@contextmanager
def launched(device: str) -> Iterator[World]:
    """This process's place in torchrun's process group, for the block.

    The group is joined on first use (nccl when ``device`` is a GPU, else gloo) and kept
    until the process exits: leaving and rejoining within one process races with the
    rendezvous keys the first join left in torchrun's store, so a program that runs
    several configs (``negrec run`` without CONFIG, or calling ``negrec.cli.main`` more
    than once) keeps one group. A group the program created itself is used as it is.

    A collective that fails because another rank died (its own error is printed by that
    rank) becomes a one-line :class:`DistributedError` here rather than a traceback.
    """
    rank, size, local_rank = torchrun_rank()
    if not dist.is_initialized():
        backend = "nccl" if uses_cuda(device) else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, rank=rank, world_size=size)
        atexit.register(_leave)
    world = World(
        rank=dist.get_rank(),
        size=dist.get_world_size(),
        local_rank=local_rank,
        backend=str(dist.get_backend()),
    )
    global _failed
    try:
        yield world
    except dist.DistError as err:
        _failed = True
        raise DistributedError(
            f"rank {rank}: a collective failed, most likely because another rank stopped "
            f"(see its message): {first_line(err)}"
        ) from err
    except BaseException:
        _failed = True
        raise
