"""The training loop, readable top to bottom; everything optional is a callback.

``fit`` combines a model (scores), a sampler (proposes negatives) and a loss (a pure tensor
function): for each batch of (user, positive) pairs it draws K negatives, scores the
positive and its negatives in one model call, applies the loss (plus the optional explicit
L2 term) and takes an Adam step (:func:`score_and_loss`; with the whole catalogue as
negatives the loss reads the [B, n_items] score matrix itself). Evaluation on the validation
split, early stopping with best-weight restore, checkpoints, progress bars and the bound
monitor are callbacks.

MF on one CPU process takes a fused step instead of the autograd one
(:mod:`negrec._fast.fused`): same update up to float rounding, fewer passes. With the default
``optimizer = "adam"`` it uses :class:`negrec._fast.optim.RowwiseAdam`, dense Adam's update
applied to each row when it is next read, so an MF step costs the rows a batch touches, not
the whole catalogue. With BPR and a sampler that does not read the model, the fused steps
run a block at a time in compiled code on numba's threads (:class:`BlockedMFSteps`); the
loop flushes them before anything reads the model.

Regularisation, two documented knobs:
- ``weight_decay``: PyTorch Adam's coupled L2 (``grad += wd * param``) on every parameter.
- ``l2``: the explicit per-batch penalty of LightGCN / the SimCE paper,
  ``l2 * (|p_u|^2 + |q_pos|^2 + sum_j |q_j|^2) / B`` over the rows the batch touched.

Data-parallel training (``world``, see :mod:`negrec.distributed`): each rank takes its
contiguous slice of every global batch, weights its loss by its share of the rows, and the
gradients are summed over ranks before the step; in one process those steps do nothing.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numba
import torch
from tqdm.auto import tqdm

from negrec._fast.fused import BlockedMFSteps, fused_step
from negrec._fast.kernels import numba_layer
from negrec._fast.optim import LazyAdam, RowwiseAdam
from negrec.config_base import require
from negrec.data.batches import Batch
from negrec.data.splits import Split
from negrec.distributed import LOCAL, World
from negrec.errors import ConfigError, NegrecError, first_line
from negrec.evaluation import EvalConfig, evaluate
from negrec.losses import Loss, catalogue_scores
from negrec.models.base import Model
from negrec.models.mf import MF
from negrec.samplers.base import Negatives, Sampler

NEG_INF = float("-inf")


@dataclass
class TrainConfig:
    """Optimisation and model-selection settings."""

    epochs: int = 50
    batch_size: int = 1024
    lr: float = 1e-3
    # step decay: the lr is multiplied by lr_decay every lr_decay_every epochs (1.0: constant).
    # The schedule of the hard-negative paper's code (Shi et al., WWW 2023): 0.95 every 5.
    lr_decay: float = 1.0
    lr_decay_every: int = 1
    # "plateau": the lr is multiplied by lr_factor after lr_patience validation evaluations
    # without improvement of `metric` (torch's ReduceLROnPlateau, see PlateauSchedule);
    # "none": constant, or the step decay above
    lr_schedule: Literal["none", "plateau"] = "none"
    lr_factor: float = 0.5
    lr_patience: int = 3
    weight_decay: float = 0.0  # Adam's coupled L2 on all parameters
    l2: float = 0.0  # explicit L2 on the embeddings a batch touched (see module doc)
    eval_every: int = 1  # evaluate on validation every N epochs
    patience: int = 10  # evaluations without improvement before stopping (0: never stop)
    metric: str = "ndcg@20"  # validation metric for early stopping and model selection
    seed: int = 0
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto"
    # "adam": Adam (MF on one CPU process: dense Adam's update, computed per row when the row
    # is next read, negrec._fast.optim.RowwiseAdam; elsewhere torch's fused Adam);
    # "lazy_adam": row-sparse embedding gradients, only touched rows updated, moments of
    # untouched rows left alone (a different optimizer; negrec._fast.optim.LazyAdam);
    # "sgd": plain minibatch SGD, p -= lr * grad (the optimizer of the BPR paper and of
    # `implicit`; the loss is a batch mean, so it needs a far larger lr than Adam)
    optimizer: Literal["adam", "lazy_adam", "sgd"] = "adam"
    # "bf16": the model's scoring runs under bfloat16 autocast (matrix products in bf16;
    # the loss, the weights and evaluation stay float32). Pays for SASRec / NCF / full
    # softmax on GPUs; MF's gather-and-dot has no matrix product to speed up.
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False  # torch.compile the scoring + loss of a step (see loss_step)
    # MF on one CPU process (adam, lazy_adam, or sgd without weight decay): scores, row
    # gradients and the update of the touched rows in compiled passes (negrec._fast.fused);
    # the autograd path's update up to float rounding, several times faster at K = 1
    fused: bool = True

    def validate(self, prefix: str) -> None:
        require(self.epochs >= 1, f"{prefix}.epochs", "must be >= 1")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
        require(self.lr > 0, f"{prefix}.lr", "must be > 0")
        require(0 < self.lr_decay <= 1, f"{prefix}.lr_decay", "must be in (0, 1]")
        require(self.lr_decay_every >= 1, f"{prefix}.lr_decay_every", "must be >= 1")
        require(0 < self.lr_factor < 1, f"{prefix}.lr_factor", "must be in (0, 1)")
        require(self.lr_patience >= 1, f"{prefix}.lr_patience", "must be >= 1")
        require(
            not (self.lr_schedule == "plateau" and self.lr_decay != 1.0),
            f"{prefix}.lr_schedule",
            "'plateau' cannot be combined with the step decay (lr_decay != 1): choose one",
        )
        require(self.weight_decay >= 0, f"{prefix}.weight_decay", "must be >= 0")
        require(self.l2 >= 0, f"{prefix}.l2", "must be >= 0")
        require(self.eval_every >= 1, f"{prefix}.eval_every", "must be >= 1")
        require(self.patience >= 0, f"{prefix}.patience", "must be >= 0")
        require(
            not (self.compile and self.optimizer == "lazy_adam"),
            f"{prefix}.compile",
            "cannot be combined with optimizer = 'lazy_adam' (torch.compile does not "
            "trace row-sparse gradients)",
        )


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU. A name torch does not know, or a
    device this machine lacks (``cuda`` on a CPU-only build), is a ConfigError on
    ``train.device``, not torch's traceback from deep inside the first tensor op."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        torch.empty(0, device=device)  # fails here if the machine has no such device
    except (RuntimeError, AssertionError) as err:
        raise ConfigError("train.device", f"{name}: {first_line(err)}") from None
    return device


class TrainingDiverged(NegrecError):
    """The loss became NaN or infinite at ``epoch``, ``batch`` (1-based; None when not
    known). At batch 1 the loss was computed from the weights the previous epoch ended
    with -- the last checkpoint -- before any step of this epoch, so resuming from that
    checkpoint cannot avoid it, whatever the learning rate."""

    def __init__(self, message: str, *, epoch: int | None = None, batch: int | None = None):
        super().__init__(message)
        self.epoch, self.batch = epoch, batch


# ---------------------------------------------------------------------------- callbacks
@dataclass
class TrainState:
    """What callbacks see and may change."""

    model: Model
    split: Split
    config: TrainConfig
    device: torch.device
    contexts: Callable[[torch.Tensor], Any] | None = None  # user ids -> model ctx
    epoch: int = 0
    log: dict[str, Any] = field(default_factory=dict)  # this epoch's record
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False
    optimizer: torch.optim.Optimizer | None = None
    generator: torch.Generator | None = None  # the training generator (sampling, shuffling)
    world: World = LOCAL  # the ranks of a distributed run (one process by default)


class Callback:
    """Hooks into :func:`fit`; override what you need."""

    def on_train_start(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue exactly (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class ValidationEval(Callback):
    """Evaluates on the validation split every ``every`` epochs; logs ``valid/<metric>``."""

    def __init__(self, config: EvalConfig, every: int = 1):
        self.config = config
        self.every = every

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch % self.every and state.epoch != state.config.epochs:
            return
        start = time.perf_counter()
        result = evaluate(
            state.model,
            state.split,
            "valid",
            self.config,
            contexts=state.contexts,
            world=state.world,  # users split over ranks, every rank gets all metrics
        )
        state.log.update({f"valid/{k}": v for k, v in result.summary.items()})
        state.log["eval_seconds"] = time.perf_counter() - start


class EarlyStopping(Callback):
    """Keeps the best weights by a validation metric, stops after ``patience`` evaluations
    without improvement, restores the best weights at the end, and optionally saves them."""

    def __init__(self, metric: str, patience: int, checkpoint: Path | None = None):
        self.key = f"valid/{metric}"
        self.patience = patience
        self.checkpoint = checkpoint
        self.best_value = NEG_INF
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_evals = 0
        self.stopped = False  # True once patience ran out (the run converged on validation)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.key not in state.log:
            return
        value = state.log[self.key]
        if value > self.best_value:
            self.best_value, self.best_epoch, self.bad_evals = value, state.epoch, 0
            self.best_state = copy.deepcopy(state.model.state_dict())
            if self.checkpoint is not None:
                torch.save(self.best_state, self.checkpoint)
        else:
            self.bad_evals += 1
            if self.patience and self.bad_evals >= self.patience:
                state.stop = self.stopped = True

    def on_train_end(self, state: TrainState) -> None:
        if self.best_state is not None:
            state.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "bad_evals": self.bad_evals,
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self.best_state, self.bad_evals = state["best_state"], state["bad_evals"]
        self.stopped = bool(state.get("stopped", False))

    @property
    def budget_bound(self) -> bool:
        """True when the run ended on its epoch budget with its best evaluation among the
        last ``patience`` ones (the last one when ``patience = 0``): the metric may still
        have been improving, so more epochs could change the result. Meaningful after
        training ended."""
        return not self.stopped and self.bad_evals < max(self.patience, 1)


class PlateauSchedule(Callback):
    """Learning rate on plateau: multiplies every parameter group's lr by
    ``config.lr_factor`` once ``config.lr_patience`` validation evaluations in a row have
    not improved ``valid/<metric>`` (:class:`torch.optim.lr_scheduler.ReduceLROnPlateau`,
    mode ``max``, its default relative threshold 1e-4). Logs the epoch's ``lr``.

    Place it after :class:`ValidationEval` (it reads the value that callback logs) and
    before :class:`Checkpoint`: the scheduler's state is part of the checkpoint, and the
    optimizer's state restores the lr it had reached, so a resumed run keeps its schedule.
    """

    def __init__(self, config: TrainConfig):
        self.key = f"valid/{config.metric}"
        self.factor = config.lr_factor
        self.patience = config.lr_patience
        self.scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self._saved: dict[str, Any] | None = None  # restored before the optimizer exists

    def on_train_start(self, state: TrainState) -> None:
        assert state.optimizer is not None
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            state.optimizer,
            mode="max",
            factor=self.factor,
            patience=self.patience - 1,  # torch lowers after patience + 1 bad steps
        )
        if self._saved is not None:
            self.scheduler.load_state_dict(self._saved)

    def on_epoch_end(self, state: TrainState) -> None:
        assert self.scheduler is not None and state.optimizer is not None
        state.log["lr"] = state.optimizer.param_groups[0]["lr"]  # the lr this epoch trained at
        if self.key in state.log:
            self.scheduler.step(state.log[self.key])

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved = state or None


class Checkpoint(Callback):
    """Saves everything needed to resume after each epoch: model, optimizer, training
    generator, the models' own generators, history and the other callbacks' state.

    Written atomically (temp file, then rename), so a kill mid-write leaves the previous
    epoch's checkpoint intact. ``negrec run --resume`` continues from it and ends with the
    same numbers as an uninterrupted run with the same seed. ``path = None`` writes
    nothing and only restores (ranks > 0 of a distributed run, which load rank 0's file).

    Only a good epoch is saved: weights that have exploded (:func:`check_weights`) raise
    :class:`TrainingDiverged` instead, on every rank, and the previous checkpoint stays --
    a resume from exploded weights would diverge again at once.
    """

    def __init__(self, path: Path | None, callbacks: Sequence[Callback]):
        self.path = path
        self.callbacks = callbacks  # the run's other callbacks, in order

    def on_epoch_end(self, state: TrainState) -> None:
        assert state.optimizer is not None and state.generator is not None
        check_weights(state.model, state.epoch)  # (every rank: their weights are the same)
        if self.path is None:
            return
        payload = {
            "epoch": state.epoch,
            "stop": state.stop,
            "history": [*state.history, state.log],
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "generator": state.generator.get_state(),
            "model_generators": {k: g.get_state() for k, g in model_generators(state.model)},
            "callbacks": [callback.state_dict() for callback in self.callbacks],
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, self.path)


def model_generators(model: torch.nn.Module) -> Iterator[tuple[str, torch.Generator]]:
    """Generators a model owns (e.g. for dropout masks), named for checkpoints."""
    for module_name, module in model.named_modules():
        for attr, value in vars(module).items():
            items = value.items() if isinstance(value, dict) else [("", value)]
            for key, generator in items:
                if isinstance(generator, torch.Generator):
                    yield f"{module_name}.{attr}.{key}", generator


def interactive() -> bool:
    """Whether a person is watching: stderr is a terminal, or this runs in a Jupyter
    kernel (whose stderr is no terminal, but shows tqdm's notebook bar)."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # a replaced or closed stream
        pass
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    kernel = get_ipython() if get_ipython is not None else None
    return kernel is not None and hasattr(kernel, "kernel")


class ProgressBar(Callback):
    """A tqdm bar over epochs showing the loss and the validation metric.

    ``enabled``: True always shows it, False never; None (the default) shows it when
    stderr is a terminal (not in CI logs or when output is redirected).
    """

    def __init__(self, metric: str, description: str = "train", enabled: bool | None = None):
        self.key = f"valid/{metric}"
        self.description = description
        self.enabled = enabled
        self.bar: Any = None

    def on_train_start(self, state: TrainState) -> None:
        self.bar = tqdm(
            total=state.config.epochs,
            desc=self.description,
            unit="epoch",
            leave=False,
            disable=None if self.enabled is None else not self.enabled,
        )

    def on_epoch_end(self, state: TrainState) -> None:
        shown = {"loss": f"{state.log['loss']:.4f}"}
        if self.key in state.log:
            shown[self.key.removeprefix("valid/")] = f"{state.log[self.key]:.4f}"
        self.bar.set_postfix(shown)
        self.bar.update(1)

    def on_train_end(self, state: TrainState) -> None:
        self.bar.close()


# ---------------------------------------------------------------------------- the loop
def score_batch(
    model: Model, batch: Batch, negatives: Negatives
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores of the positives [B] and negatives [B, K] in one model call; also the item
    ids [B, 1 + K] whose embeddings the batch touched (for the L2 penalty).

    The whole catalogue (``negatives.ids is None``) gives ``neg`` [B, n_items] with the
    items ``negatives.valid`` masks at -inf (:func:`negrec.losses.catalogue_scores`);
    :func:`score_and_loss` does not build it for CCE / softmax."""
    pos = batch.pos.unsqueeze(1)  # [B, 1]
    if negatives.ids is None:  # the whole catalogue
        pos_scores, neg = catalogue_scores(model.score_all(batch.ctx), batch.pos, negatives.valid)
        return pos_scores, neg, pos
    if negatives.shared:  # one candidate list for all rows (in-batch negatives)
        candidates = negatives.ids[0]  # [K]
        width = candidates.numel()
        scores = model.score_candidates(batch.ctx, torch.cat([candidates, batch.pos]))
        neg = scores[:, :width]  # [B, K]
        pos_scores = scores[:, width:].diagonal()  # row b's own positive, [B]
        touched = pos  # L2 on the batch's own rows only (candidates are other rows' positives)
    else:
        touched = torch.cat([pos, negatives.ids], dim=1)  # [B, 1 + K]
        scores = model.score(batch.ctx, touched)
        pos_scores, neg = scores[:, 0], scores[:, 1:]
    if negatives.valid is not None:
        neg = neg.masked_fill(~negatives.valid, NEG_INF)
    return pos_scores, neg, touched


def score_and_loss(
    model: Model,
    loss: Loss,
    batch: Batch,
    negatives: Negatives,
    precision: Literal["fp32", "bf16"] = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of one batch, and the item ids its L2 penalty covers (see :func:`score_batch`).

    One special case: with the whole catalogue as negatives (``negatives.ids is None``) the
    loss gets the score matrix [B, n_items] itself (:meth:`Loss.catalogue`; the positive is
    a column of it), so CCE / softmax skips the [B, n_items] copies of the (pos, neg) form.
    Same value and gradients either way.

    ``precision = "bf16"``: scoring runs under bfloat16 autocast and the scores are cast
    back to float32 before the loss (log-sum-exp and softplus stay accurate).
    """
    device_type = batch.pos.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        if negatives.ids is None:
            scores = model.score_all(batch.ctx)  # [B, n_items]
        else:
            pos_scores, neg_scores, touched = score_batch(model, batch, negatives)
    if negatives.ids is None:
        value = loss.catalogue(
            scores.float(),
            batch.pos,
            valid=negatives.valid,
            log_q=negatives.log_q,
            weights=negatives.weights,
        )
        return value, batch.pos.unsqueeze(1)
    value = loss(
        pos_scores.float(), neg_scores.float(), log_q=negatives.log_q, weights=negatives.weights
    )
    return value, touched


#: (batch, negatives) -> (loss value, item ids the L2 penalty covers)
LossStep = Callable[[Batch, Negatives], tuple[torch.Tensor, torch.Tensor]]


def loss_step(model: Model, loss: Loss, config: TrainConfig) -> LossStep:
    """:func:`score_and_loss` for this run's precision, compiled when ``config.compile``.

    ``torch.compile`` fuses the gather, the dot products and the loss into a few kernels
    (on GPUs: fewer launches and one pass over the [B, K, d] rows); the sampler stays
    outside the compiled graph, it draws with a generator. Shapes vary only in the last
    batch of an epoch, which compiles once more.
    """

    def step(batch: Batch, negatives: Negatives) -> tuple[torch.Tensor, torch.Tensor]:
        return score_and_loss(model, loss, batch, negatives, config.precision)

    if not config.compile:
        return step
    compiled: LossStep = torch.compile(step)
    return compiled


def fit(
    model: Model,
    sampler: Sampler,
    loss: Loss,
    split: Split,
    config: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
    contexts: Callable[[torch.Tensor], Any] | None = None,
    resume: dict[str, Any] | None = None,
    world: World = LOCAL,
    progress: bool | None = None,
) -> TrainState:
    """Train ``model`` on ``split.train``; returns the final state with the history.

    ``progress``: a tqdm bar over the epochs (loss, and the validation metric where a
    callback computes it). None (the default) shows it when someone is watching -- stderr
    is a terminal, or a Jupyter notebook -- and stays silent otherwise (logs, pipes,
    tests); True always, False never. A :class:`ProgressBar` among ``callbacks`` replaces
    it.

    ``resume`` is a payload written by the :class:`Checkpoint` callback: training continues
    after its epoch with every generator, optimizer and callback state restored.
    ``world``: the ranks of a data-parallel run; every rank calls ``fit`` with the same
    arguments (see :mod:`negrec.distributed` for what is sharded and how).
    """
    device = world.place(resolve_device(config.device))
    model.to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    optimizer = make_optimizer(model, config, world=world)
    in_place = grads_accumulate_in_place(model, sampler.config.k, optimizer, config, device, world)
    with row_sparse_embeddings(model, config.optimizer == "lazy_adam" or in_place):
        return _fit(
            model,
            sampler,
            loss,
            split,
            config,
            optimizer,
            generator,
            device,
            callbacks=callbacks,
            contexts=contexts,
            resume=resume,
            world=world,
            progress=progress,
            in_place=in_place,
        )


def _fit(
    model: Model,
    sampler: Sampler,
    loss: Loss,
    split: Split,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
    *,
    callbacks: Sequence[Callback],
    contexts: Callable[[torch.Tensor], Any] | None,
    resume: dict[str, Any] | None,
    world: World,
    progress: bool | None,
    in_place: bool,
) -> TrainState:
    """The body of :func:`fit`, with the optimizer built; ``in_place``: see
    :func:`grads_accumulate_in_place`."""
    # RowwiseAdam leaves a row's pending momentum-only steps until the row is read: bring
    # everything up to date before anything reads rows the step does not catch up itself
    rowwise = optimizer if isinstance(optimizer, RowwiseAdam) else None
    step_loss = loss_step(model, loss, config)
    fused = fused_step(
        model,
        loss,
        optimizer,
        enabled=config.fused,
        l2=config.l2,
        precision=config.precision,
        device=device,
        world=world,
    )  # None unless MF + adam, lazy_adam or sgd on one CPU process
    # MF + BPR whose negatives can be drawn ahead: steps run a block at a time
    blocked = None
    if fused is not None and not sampler.needs_model and BlockedMFSteps.applies(loss):
        blocked = BlockedMFSteps(fused)
    batches = model.make_batches(split.train, config.batch_size, device)
    k = sampler.config.k
    # a block's negatives in one sampler call where that draws the same ones (drawn_ahead)
    ahead = 0
    if blocked is not None and sampler.draws_rows_in_order:  # (blocks: one process only)
        ahead = blocked.steps_per_block(config.batch_size * (1 + k))
    # one gradient buffer per embedding table for the whole run, zeroed every step: the
    # tables' row-sparse gradients are added into it (see grads_accumulate_in_place)
    buffers = {p: torch.zeros_like(p) for p in embedding_tables(model)} if in_place else {}
    state = TrainState(model, split, config, device, contexts, world=world)
    state.optimizer, state.generator = optimizer, generator
    plateau = config.lr_schedule == "plateau"
    if plateau and not any(isinstance(c, PlateauSchedule) for c in callbacks):
        raise ValueError("train.lr_schedule = 'plateau' needs a PlateauSchedule callback")
    first_epoch = 1
    if resume is not None:
        first_epoch = _restore(state, callbacks, resume)
    world.broadcast_parameters(model)  # every rank starts from rank 0's weights
    callbacks = _with_progress(callbacks, progress, world)
    for callback in callbacks:
        callback.on_train_start(state)

    for epoch in range(first_epoch, config.epochs + 1):
        state.epoch, state.log = epoch, {"epoch": epoch}
        if not plateau:  # (on plateau, PlateauSchedule owns the lr)
            # the lr is a function of the epoch alone, so a resumed run keeps its schedule
            lr = scheduled_lr(config, epoch)
            set_learning_rate(optimizer, lr)
            if config.lr_decay != 1.0:
                state.log["lr"] = lr  # (a history column only when it changes)
        model.train()
        start = time.perf_counter()
        step_losses: list[torch.Tensor] = []  # [] per step, on the device
        own_generator = world.rank_generator(generator, config.seed, epoch)  # hard negatives
        epoch_batches = batches.epoch(generator)
        pairs = (
            drawn_ahead(epoch_batches, sampler, k, generator, ahead)
            if ahead > 1
            else ((batch, None) for batch in epoch_batches)
        )
        for step, (batch, drawn) in enumerate(pairs, start=1):
            rows = world.rows(len(batch.users))  # this rank's slice of the global batch
            if rowwise is not None and sampler.needs_model:
                rowwise.synchronize()  # the sampler scores candidates with the model
            negatives = (
                drawn
                if drawn is not None
                else draw_negatives(sampler, model, batch, rows, k, generator, own_generator)
            )
            if blocked is not None and blocked.accepts(negatives):
                # the batch waits and runs with the next ones in one compiled block; the
                # losses of the steps run come back (the model is current after a flush)
                _extend_checked(step_losses, blocked(batch.users, batch.pos, negatives), epoch)
                continue
            if blocked is not None:  # the step below reads the model
                _extend_checked(step_losses, blocked.flush(), epoch)
            if fused is not None and fused.accepts(negatives):
                # loss, row gradients and the optimizer's update of the touched rows at once
                batch_loss = fused(batch.users, batch.pos, negatives)
                step_losses.append(batch_loss)
                if not math.isfinite(batch_loss):  # (a float check: ~1 us, not ~30)
                    check_finite(batch_loss.reshape(1), epoch, first_step=step)
                continue
            if rowwise is not None:
                rowwise.synchronize()  # e.g. the whole catalogue as negatives reads every row
            mine = batch_rows(batch, rows)
            share = len(mine.users) / len(batch.users)  # of the global batch; 1 in one process
            optimizer.zero_grad(set_to_none=True)
            for table, buffer in buffers.items():
                table.grad = buffer.zero_()
            value = torch.zeros((), device=device)
            if share:  # (a rank gets no rows of a last batch smaller than the world)
                value, touched = step_loss(mine, negatives)
                if config.l2:
                    value = value + config.l2 * model.l2_penalty(mine.ctx, touched)
                (value * share).backward()
            # summed over ranks: the global batch's loss and gradient (as is, in one process)
            batch_loss = world.all_reduce_gradients(model, value.detach() * share)
            step_losses.append(batch_loss)
            if device.type == "cpu":  # free here; on a GPU it would stall the launch queue
                check_finite(batch_loss.reshape(1), epoch, first_step=step)
            optimizer.step()
        if blocked is not None:
            _extend_checked(step_losses, blocked.flush(), epoch)
        if rowwise is not None:
            rowwise.synchronize()  # evaluation and checkpoints read every row
        losses = torch.stack(step_losses).double()  # [steps]
        check_finite(losses, epoch)  # (GPUs: once per epoch, naming the first bad batch)
        state.log["loss"] = float(losses.sum()) / len(batches)
        state.log["train_seconds"] = time.perf_counter() - start
        for callback in callbacks:
            callback.on_epoch_end(state)
        state.history.append(state.log)
        state.stop = world.any(state.stop)  # ranks stop together
        if state.stop:
            break

    for callback in callbacks:
        callback.on_train_end(state)
    return state


def _extend_checked(step_losses: list[torch.Tensor], new: list[torch.Tensor], epoch: int) -> None:
    """Append the losses [] of steps just run, raising at a non-finite one."""
    if new:
        check_finite(torch.stack(new), epoch, first_step=len(step_losses) + 1)
        step_losses.extend(new)


def _with_progress(
    callbacks: Sequence[Callback], progress: bool | None, world: World
) -> Sequence[Callback]:
    """``callbacks`` plus a progress bar where ``progress`` (None: :func:`interactive`)
    asks for one, unless they hold one already; in a distributed run rank 0 alone."""
    show = interactive() if progress is None else progress
    if not show or world.rank != 0 or any(isinstance(c, ProgressBar) for c in callbacks):
        return callbacks
    stopper = next((c for c in callbacks if isinstance(c, EarlyStopping)), None)
    metric = "" if stopper is None else stopper.key.removeprefix("valid/")
    return [*callbacks, ProgressBar(metric, "train", enabled=True)]


def scheduled_lr(config: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based) under the step decay of ``config``:
    ``lr * lr_decay ** ((epoch - 1) // lr_decay_every)``."""
    return config.lr * config.lr_decay ** ((epoch - 1) // config.lr_decay_every)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set ``lr`` on every parameter group (the optimizers and the fused step read it per step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_finite(losses: torch.Tensor, epoch: int, first_step: int = 1) -> None:
    """Raise :class:`TrainingDiverged` naming the first non-finite batch loss of an epoch
    (``losses`` [steps] are the batch losses from step ``first_step`` on)."""
    finite = torch.isfinite(losses)
    if bool(finite.all()):
        return
    index = int((~finite).nonzero()[0, 0])
    batch = first_step + index
    raise TrainingDiverged(
        f"loss became {losses[index].item()} at epoch {epoch}, batch {batch}; "
        "lower train.lr or add regularisation",
        epoch=epoch,
        batch=batch,
    )


#: The largest |weight| a checkpoint may hold. Embedding-model weights sit near 1 (a
#: score is a dot product of two rows); far beyond this the weights are exploding, and a
#: score (|w|^2 * dim) heads for float32's overflow at ~3e38 within a few steps, so an
#: epoch ending there counts as diverged even though its losses were finite.
EXPLODED_WEIGHT = 1e6


def check_weights(model: torch.nn.Module, epoch: int) -> None:
    """Raise :class:`TrainingDiverged` when a parameter of ``model`` is non-finite or
    larger in magnitude than :data:`EXPLODED_WEIGHT` at the end of ``epoch``."""
    named = [(name, p) for name, p in model.named_parameters() if p.numel()]
    if not named:
        return
    peaks = torch.stack([p.detach().abs().amax().float() for _, p in named]).tolist()  # [P]
    for (name, _), peak in zip(named, peaks, strict=True):
        if not peak <= EXPLODED_WEIGHT:  # (NaN fails this too)
            raise TrainingDiverged(
                f"weights exploded by the end of epoch {epoch}: max |{name}| = {peak:.3g} "
                f"(above {EXPLODED_WEIGHT:g}), so this epoch is not checkpointed; "
                "lower train.lr or add regularisation (train.l2, train.weight_decay)",
                epoch=epoch,
            )


def draw_negatives(
    sampler: Sampler,
    model: Model,
    batch: Batch,
    rows: slice,
    k: int,
    generator: torch.Generator,
    own_generator: torch.Generator,
) -> Negatives:
    """Negatives for the rows ``rows`` of the global ``batch`` (all of them in one process).

    Samplers that do not score with the model draw for the whole batch with the shared
    training ``generator`` and keep ``rows``: every rank holds exactly the negatives one
    process would draw, and the generator stays in step on every rank. Hard-negative
    samplers score candidates with the model, so they draw for ``rows`` only, with
    ``own_generator`` (the training generator in one process, a per-rank one otherwise):
    the scoring is split between ranks instead of repeated on each.
    """
    if not sampler.needs_model:
        return negative_rows(sampler.sample(batch.users, batch.pos, k, generator=generator), rows)
    mine = batch_rows(batch, rows)
    if not len(mine.users):
        return Negatives(ids=mine.pos.new_empty((0, k)))
    scorer = _scorer(model, mine.ctx)
    return sampler.sample(mine.users, mine.pos, k, model=scorer, generator=own_generator)


def drawn_ahead(
    batches: Iterator[Batch],
    sampler: Sampler,
    k: int,
    generator: torch.Generator,
    group: int,
) -> Iterator[tuple[Batch, Negatives]]:
    """Each of ``batches`` with its negatives, drawn for ``group`` batches at a time in one
    sampler call over their concatenated rows. For a sampler whose ``draws_rows_in_order``
    these are the very negatives one call per batch draws (the generator's stream is read
    in the same order; ``tests/test_blocked.py``), with one call instead of ``group``.
    The trainer does this only for blocked steps, which wait for a block of batches anyway.

    On numba's OpenMP threading layer the draw runs on one numba thread: a block on 2
    threads that followed the draw's parallel pass there ran at one thread's speed (ML-1M,
    median block 15.7 ms against 9.0 ms after a serial draw). negrec asks numba for its
    workqueue layer (:mod:`negrec._fast.kernels`), which has no such effect, but a pool
    started before negrec was imported (``numba.set_num_threads`` launches it) keeps
    the layer it got."""
    while chunk := list(itertools.islice(batches, group)):
        users = torch.cat([batch.users for batch in chunk])  # [sum of B]
        pos = torch.cat([batch.pos for batch in chunk])
        with _one_numba_thread() if numba_layer() == "omp" else contextlib.nullcontext():
            negatives = sampler.sample(users, pos, k, generator=generator)  # [sum of B, K]
        start = 0
        for batch in chunk:
            stop = start + len(batch.users)
            yield batch, negative_rows(negatives, slice(start, stop))
            start = stop


@contextlib.contextmanager
def _one_numba_thread() -> Iterator[None]:
    """numba's parallel kernels run serially inside (the same results: see
    :mod:`negrec._fast.kernels`), and get their thread count back on the way out."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _covers(rows: slice, n: int) -> bool:
    return rows.start == 0 and rows.stop == n


def batch_rows(batch: Batch, rows: slice) -> Batch:
    """Rows ``rows`` of ``batch`` (the batch itself when they are all of it). A sequential
    context keeps only the history windows those rows read."""
    if _covers(rows, len(batch.users)):
        return batch
    ctx = batch.ctx
    if isinstance(ctx, torch.Tensor):
        ctx = ctx[rows]
    else:  # a SequenceContext: windows items [R, W], rows [B] -> window, cols [B]
        windows, inverse = torch.unique(ctx.rows[rows], return_inverse=True)
        ctx = dataclasses.replace(ctx, items=ctx.items[windows], rows=inverse, cols=ctx.cols[rows])
    return Batch(ctx=ctx, users=batch.users[rows], pos=batch.pos[rows])


def negative_rows(negatives: Negatives, rows: slice) -> Negatives:
    """Rows ``rows`` of every [B, ...] field of ``negatives`` (itself when all rows)."""
    sized = [t for t in (negatives.ids, negatives.valid) if t is not None]
    if not sized or _covers(rows, sized[0].shape[0]):
        return negatives

    def cut(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor[rows]

    return dataclasses.replace(
        negatives,
        ids=cut(negatives.ids),
        log_q=cut(negatives.log_q),
        weights=cut(negatives.weights),
        valid=cut(negatives.valid),
    )


def _restore(state: TrainState, callbacks: Sequence[Callback], resume: dict[str, Any]) -> int:
    """Load a Checkpoint payload into ``state`` and ``callbacks``; returns the next epoch."""
    assert state.optimizer is not None and state.generator is not None
    state.model.load_state_dict(resume["model"])
    try:  # checkpoints written before negrec refused exploded weights may hold them
        check_weights(state.model, resume["epoch"])
    except TrainingDiverged as exploded:
        raise NegrecError(
            f"the checkpoint of epoch {resume['epoch']} cannot be resumed: {exploded}. "
            "Its weights had already diverged when it was written: start the run again "
            "with a lower train.lr"
        ) from None
    state.optimizer.load_state_dict(resume["optimizer"])
    state.generator.set_state(resume["generator"])
    state.model.dropout_generator(state.device)  # created lazily on first use: create it now
    owned = dict(model_generators(state.model))
    for name, rng_state in resume["model_generators"].items():
        if name not in owned:
            raise NegrecError(f"the checkpoint has generator {name!r} that this model lacks")
        owned[name].set_state(rng_state)
    checkpoints = [c for c in callbacks if isinstance(c, Checkpoint)]
    if len(checkpoints) != 1:
        raise ValueError("resuming needs exactly one Checkpoint callback")
    for callback, saved in zip(checkpoints[0].callbacks, resume["callbacks"], strict=True):
        callback.load_state_dict(saved)
    state.history = list(resume["history"])
    state.epoch = resume["epoch"]
    state.stop = resume["stop"]
    return state.config.epochs + 1 if state.stop else state.epoch + 1


def make_optimizer(
    model: Model, config: TrainConfig, *, world: World = LOCAL
) -> torch.optim.Optimizer:
    """The optimizer of ``config.optimizer`` over ``model``'s parameters; changes nothing on
    the model (``lazy_adam``'s row-sparse gradients are switched on by :func:`fit`, see
    :func:`row_sparse_embeddings`).

    ``"adam"`` builds :class:`RowwiseAdam` (dense Adam's update, each row brought up to date
    when read) where the fused MF step runs it (see :func:`rowwise_adam_applies`), else
    torch's Adam, fused over all tensors (on CPU ~3x faster than the per-tensor loop)."""
    if config.optimizer == "sgd":  # (momentum-free: untouched rows never move)
        return torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "lazy_adam":
        return LazyAdam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if rowwise_adam_applies(model, config, world):
        return RowwiseAdam(model.parameters(), lr=config.lr)
    params = list(model.parameters())
    fused = all(p.dtype in (torch.float32, torch.float64) for p in params) and all(
        p.device.type in ("cpu", "cuda") for p in params
    )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def rowwise_adam_applies(model: Model, config: TrainConfig, world: World = LOCAL) -> bool:
    """Whether ``"adam"`` runs as :class:`RowwiseAdam` in the fused MF step: exactly MF,
    ``train.fused``, fp32, no ``compile``, no weight decay (coupled decay moves every row
    every step), one process, float32 contiguous CPU tables."""
    return (
        type(model) is MF
        and config.optimizer == "adam"
        and config.fused
        and not config.compile
        and config.precision == "fp32"
        and config.weight_decay == 0
        and not world.distributed
        and all(
            p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous()
            for p in model.parameters()
        )
    )


def _embeddings(model: torch.nn.Module) -> list[torch.nn.Embedding]:
    """Every ``nn.Embedding`` module of ``model``."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]


def embedding_tables(model: torch.nn.Module) -> list[torch.Tensor]:
    """The weights of every ``nn.Embedding`` of ``model`` that is trained."""
    return [m.weight for m in _embeddings(model) if m.weight.requires_grad]


def grads_accumulate_in_place(
    model: Model,
    k: int,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    world: World,
) -> bool:
    """Whether the embedding tables' gradients are added into buffers kept for the whole
    run: with torch's ``adam`` and ``sgd`` on one CPU process, not compiled, when a step
    gathers fewer item rows (``batch_size * (1 + k)``) than the catalogue has. The tables
    then give row-sparse gradients (:func:`row_sparse_embeddings`), which autograd adds
    into each table's zeroed ``.grad``; the optimizer reads it as a dense gradient.

    Why: a dense embedding gradient is a new [n, d] tensor every step (Gowalla MF: 18 MB),
    freed by the next ``zero_grad``, and glibc's heap does not always reuse those holes: an
    MF epoch on this path peaked at 2.6-4.7 GB in 3 of 10 runs, 0.82-0.84 GB in the others
    (``benchmarks/RESULTS.md``, "Peak memory"); with the buffers it stays flat at its size
    after the first step (the epoch up to ~6% slower). The update is the same: dense Adam
    reads the same dense gradient (each row summed in batch order, as before, up to float
    rounding of the embedding lookups' sums). A table that gets no gradient in a step takes a
    zero-gradient step, as its untouched rows always did. Not when a step gathers more
    rows than the table has (large K): adding the row-sparse gradient into the buffer then
    costs more than a fresh dense one (the K = 100 Gowalla epoch took 1.3x as long). GPUs
    keep freed blocks in torch's caching allocator: not needed there."""
    return (
        type(optimizer) in (torch.optim.Adam, torch.optim.SGD)
        and device.type == "cpu"
        and not config.compile
        and not world.distributed
        and config.batch_size * (1 + k) < model.n_items
    )


@contextlib.contextmanager
def row_sparse_embeddings(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Every ``nn.Embedding`` of ``model`` gives row-sparse gradients while inside (what
    ``lazy_adam`` updates), and gets its own setting back on the way out."""
    tables = _embeddings(model)
    before = [table.sparse for table in tables]
    try:
        if enabled:
            for table in tables:
                table.sparse = True
        yield
    finally:
        for table, sparse in zip(tables, before, strict=True):
            table.sparse = sparse


def _scorer(model: Model, ctx: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Candidate scorer for hard-negative samplers: item ids [B, N] -> scores [B, N], no grad."""

    def score(items: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.score(ctx, items)

    return score
