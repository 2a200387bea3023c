"""Sequential models (SASRec, GRU4Rec) and their plumbing in :mod:`negrec.models.sequential`.

- training rows: every position of every user's time-ordered training sequence exactly
  once per epoch, the next item as the positive, the history cut into ``max_len`` windows;
- evaluation contexts: leave-one-out by time, the history up to the held-out item;
- the encoders are causal and ignore padding: the state after a prefix is a function of
  that prefix alone, the same in training windows and evaluation contexts;
- dropout is seeded by the model's generator; both models learn a sequential rule that
  no user-id model can;
- impossible configurations fail at config or build time, naming the fields.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from negrec.data.interactions import Interactions
from negrec.data.splits import Split, leave_one_out_split
from negrec.errors import ConfigError
from negrec.evaluation import evaluate
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import build_components, run_experiment
from negrec.models import MODELS
from negrec.models.sequential import (
    HistoryContexts,
    SequenceBatches,
    SequenceContext,
    SequentialModel,
    contexts_for,
    time_ordered,
)
from negrec.train import fit

SEQUENTIAL = ["sasrec", "gru4rec"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def from_sequences(sequences: list[list[int]], n_items: int) -> Interactions:
    """Interactions whose timestamps are each item's position in its user's sequence."""
    users = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    times = np.concatenate([np.arange(len(s), dtype=np.float64) for s in sequences])
    return Interactions.from_arrays(
        users, items, n_users=len(sequences), n_items=n_items, timestamps=times
    )


def make(name: str, train: Interactions, seed: int = 0, **options) -> SequentialModel:
    config = MODELS.config(name, {"name": name, "dim": 8, **options}, "model")
    model = MODELS.get(name, "model.name")(config, train, torch.Generator().manual_seed(seed))
    assert isinstance(model, SequentialModel)
    return model


def decode(ctx: SequenceContext, pad: int) -> list[tuple[int, ...]]:
    """The history each scored row reads: its window up to and including ``cols``."""
    rows = ctx.items[ctx.rows].tolist()
    out = []
    for row, col in zip(rows, ctx.cols.tolist(), strict=True):
        history = tuple(row[: col + 1])
        assert pad not in history
        out.append(history)
    return out


# ------------------------------------------------------------------ time order, training rows
def test_time_order_of_the_fixture(tiny_interactions: Interactions) -> None:
    seq, indptr = time_ordered(tiny_interactions), tiny_interactions.indptr
    rows = [seq[indptr[u] : indptr[u + 1]].tolist() for u in range(4)]
    assert rows == [[0, 2, 5, 1], [3, 4, 7, 6, 1], [2, 0, 7], [4]]


SEQS = [[5, 3, 9, 1, 0, 2, 8, 7], [4, 6], [1], [2, 9, 3]]


def epoch_rows(batches: SequenceBatches, seed: int = 0) -> list[tuple[int, tuple[int, ...], int]]:
    rows = []
    for batch in batches.epoch(torch.Generator().manual_seed(seed)):
        histories = decode(batch.ctx, batches.pad)
        rows += list(zip(batch.users.tolist(), histories, batch.pos.tolist(), strict=True))
    return rows


def test_every_position_trains_exactly_once_with_max_len_windows() -> None:
    """User 0 has 8 items, so 7 targets; max_len = 3 cuts them from the end into windows
    [s4 s5 s6 -> s5 s6 s7], [s1 s2 s3 -> s2 s3 s4] and [s0 -> s1]."""
    train = from_sequences(SEQS, 10)
    batches = SequenceBatches(train, 4, torch.device("cpu"), max_len=3)
    rows = epoch_rows(batches)
    expected = [
        (0, (5,), 3),  # window [s0]
        (0, (3,), 9),  # window [s1 s2 s3]
        (0, (3, 9), 1),
        (0, (3, 9, 1), 0),
        (0, (0,), 2),  # window [s4 s5 s6]
        (0, (0, 2), 8),
        (0, (0, 2, 8), 7),
        (1, (4,), 6),
        (3, (2,), 9),
        (3, (2, 9), 3),
    ]
    assert Counter(rows) == Counter(expected)
    assert len(batches) == 3 and [len(b.pos) for b in batches.epoch(torch.Generator())] == [4, 4, 2]


def test_windows_last_keeps_the_last_max_len_positions() -> None:
    train = from_sequences(SEQS, 10)
    batches = SequenceBatches(train, 64, torch.device("cpu"), max_len=3, windows="last")
    users = [u for u, _, _ in epoch_rows(batches)]
    assert Counter(users) == Counter({0: 3, 1: 1, 3: 2})


def test_long_max_len_gives_full_prefixes() -> None:
    train = from_sequences(SEQS, 10)
    batches = SequenceBatches(train, 5, torch.device("cpu"), max_len=200)
    rows = [(u, h, p) for u, h, p in epoch_rows(batches, seed=3) if u == 0]
    assert sorted(rows, key=lambda r: len(r[1])) == [
        (0, tuple(SEQS[0][:t]), SEQS[0][t]) for t in range(1, 8)
    ]


def test_batches_are_shuffled_by_the_generator() -> None:
    train = from_sequences(SEQS * 5, 10)
    batches = SequenceBatches(train, 4, torch.device("cpu"), max_len=3)
    assert epoch_rows(batches, seed=1) == epoch_rows(batches, seed=1)
    assert epoch_rows(batches, seed=1) != epoch_rows(batches, seed=2)


# ------------------------------------------------------------------ evaluation contexts
def test_leave_one_out_contexts_are_the_history_before_the_held_out_item(
    tiny_interactions: Interactions,
) -> None:
    """User 1's time order is 3 4 7 6 1: test 1, validation 6, train 3 4 7."""
    split = leave_one_out_split(tiny_interactions)
    assert split.test.items_of(1).tolist() == [1] and split.valid.items_of(1).tolist() == [6]
    model = make("sasrec", split.train, max_len=200)
    users = torch.tensor([0, 1, 2, 3])
    valid = decode(contexts_for(model, split, "valid")(users), 8)
    test = decode(contexts_for(model, split, "test")(users), 8)
    assert valid == [(0, 2), (3, 4, 7), (2,), (4,)]
    assert test == [(0, 2, 5), (3, 4, 7, 6), (2, 0), (4,)]
    short = HistoryContexts(split.train, max_len=2)(users)  # only the last max_len items
    assert decode(short, 8) == [(0, 2), (4, 7), (2,), (4,)]


def test_user_id_context_is_refused_with_a_hint(tiny_interactions: Interactions) -> None:
    split = leave_one_out_split(tiny_interactions)
    model = make("gru4rec", split.train)
    with pytest.raises(TypeError, match="eval_contexts"):
        model.score_all(torch.tensor([0, 1]))


# ------------------------------------------------------------------ causality and padding
@pytest.mark.parametrize("name", SEQUENTIAL)
def test_state_after_a_prefix_depends_on_that_prefix_only(name: str) -> None:
    """Changing later items or the padding width changes nothing; a training window's
    state at position t equals the evaluation context of the first t + 1 items."""
    train = from_sequences(SEQS, 10)
    model = make(name, train, max_len=6).eval()
    pad = model.pad
    windows = torch.tensor(
        [
            [5, 3, 9, 1, 0, 2],  # a full window
            [5, 3, 9, 7, 7, 7],  # same first 3 items, different later ones
            [5, 3, 9, pad, pad, pad],  # the same 3 items as a padded history
            [4, pad, pad, pad, pad, pad],
        ]
    )
    rows, cols = torch.tensor([0, 1, 2, 3]), torch.tensor([2, 2, 2, 0])
    with torch.no_grad():
        scores = model.score_all(SequenceContext(windows, rows, cols))
        zero = torch.tensor([0])
        alone = model.score_all(SequenceContext(windows[2:3, :3], zero, torch.tensor([2])))
        single = model.score_all(SequenceContext(windows[3:, :1], zero, zero))
    torch.testing.assert_close(scores[1], scores[0])
    torch.testing.assert_close(scores[2], scores[0])
    torch.testing.assert_close(alone[0], scores[0])
    torch.testing.assert_close(single[0], scores[3])


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_training_windows_score_like_evaluation_contexts(name: str) -> None:
    """The hidden state a training row reads equals that of the evaluation context made of
    the same history: training and evaluation see histories the same way."""
    train = from_sequences(SEQS, 10)
    model = make(name, train, max_len=200).eval()
    batch = next(iter(model.make_batches(train, 64, torch.device("cpu")).epoch(torch.Generator())))
    histories = decode(batch.ctx, model.pad)
    width = max(len(h) for h in histories)
    items = torch.full((len(histories), width), model.pad)
    for r, h in enumerate(histories):
        items[r, : len(h)] = torch.tensor(h)
    lengths = torch.tensor([len(h) for h in histories])
    own = SequenceContext(items, torch.arange(len(histories)), lengths - 1)
    with torch.no_grad():
        torch.testing.assert_close(model.score_all(batch.ctx), model.score_all(own))


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_pad_rows_stay_zero_and_untrained(name: str, tiny_interactions: Interactions) -> None:
    split = leave_one_out_split(tiny_interactions)
    config = ExperimentConfig.from_dict(
        {
            "split": {"method": "leave_one_out"},
            "model": {"name": name, "dim": 8, "max_len": 3},
            "sampler": {"name": "uniform", "k": 2},
            "train": {"epochs": 2, "batch_size": 4, "weight_decay": 0.1, "metric": "ndcg@10"},
        }
    )
    parts = build_components(config, split)
    fit(parts.model, parts.sampler, parts.loss, split, config.train)
    model = parts.model
    assert isinstance(model, SequentialModel)
    assert torch.count_nonzero(model.input_embeddings().weight[model.pad]) == 0


# ------------------------------------------------------------------ randomness
@pytest.mark.parametrize("name", SEQUENTIAL)
def test_dropout_is_seeded_by_the_model_generator(name: str) -> None:
    train = from_sequences(SEQS, 10)
    options = {"sasrec": {"dropout": 0.5}, "gru4rec": {"dropout_hidden": 0.5}}[name]
    a, b = make(name, train, **options).train(), make(name, train, **options).train()
    ctx = HistoryContexts(train, 5)(torch.arange(4))
    torch.manual_seed(0)
    first = a.score_all(ctx)
    torch.manual_seed(1)  # the global RNG plays no part
    assert torch.equal(first, b.score_all(ctx))
    assert not torch.equal(first, a.score_all(ctx))  # a fresh mask on each call
    a.eval()
    assert torch.equal(a.score_all(ctx), a.score_all(ctx))  # no dropout in evaluation


# ------------------------------------------------------------------ they model sequences
def successor_split(n_users: int = 48, n_items: int = 16, length: int = 7) -> Split:
    """Every user walks the item cycle 0 -> 1 -> ... -> n-1 -> 0 from a random start:
    the next item is the successor of the last one, which no user-id model can know."""
    rng = np.random.default_rng(0)
    starts = rng.integers(n_items, size=n_users)
    seqs = [[(int(s) + t) % n_items for t in range(length)] for s in starts]
    return leave_one_out_split(from_sequences(seqs, n_items))


@pytest.mark.parametrize(
    ("name", "lowest", "highest"),
    [
        ("sasrec", 0.9, 1.0),
        ("gru4rec", 0.9, 1.0),
        ("mf", 0.0, 0.3),  # the control: a user-id model cannot know the last item
    ],
)
def test_learns_the_successor_rule(name: str, lowest: float, highest: float) -> None:
    split = successor_split()
    model = {"name": name, "dim": 16, **({} if name == "mf" else {"max_len": 10})}
    config = ExperimentConfig.from_dict(
        {
            "split": {"method": "leave_one_out"},
            "model": model,
            "sampler": {"name": "full"},
            "loss": {"name": "softmax"},
            "train": {"epochs": 15, "batch_size": 64, "lr": 0.02, "metric": "hit@1"},
            "eval": {"ks": [1], "auc": False},
        }
    )
    parts = build_components(config, split)
    fit(parts.model, parts.sampler, parts.loss, split, config.train)
    contexts = contexts_for(parts.model, split, "test")
    result = evaluate(parts.model, split, "test", config.eval, contexts=contexts)
    assert lowest <= result.summary["hit@1"] <= highest, result.summary


# ------------------------------------------------------------------ impossible configs
def sequential_config(**sections) -> dict:
    return {"model": {"name": "sasrec"}, "split": {"method": "leave_one_out"}, **sections}


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"split": {"method": "random"}}, "split.method"),
        (
            {
                "data": {"source": "presplit", "train": "a.txt", "test": "b.txt"},
                "split": {"method": "given", "valid": 0.1},
            },
            "split.valid",
        ),
        ({"data": {"source": "file", "path": "x.txt", "format": "lightgcn"}}, "data.format"),
    ],
)
def test_config_rejects_sequential_models_without_a_time_order(sections: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict(sequential_config(**sections))
    assert err.value.key == key
    assert "model.name = 'sasrec'" in str(err.value)


def test_data_without_timestamps_fails_at_build_time(tmp_path: Path) -> None:
    """A LightGCN-style file (format guessed from its content) has no timestamps: the run
    stops with a ConfigError naming the fields, before any run directory exists."""
    path = tmp_path / "train.txt"
    path.write_text("".join(f"{u} {u % 5} {(u + 1) % 5} {(u + 2) % 5}\n" for u in range(8)))
    raw = sequential_config(data={"source": "file", "path": str(path)})
    raw["output"] = str(tmp_path / "runs")
    with pytest.raises(ConfigError) as err:
        run_experiment(ExperimentConfig.from_dict(raw), progress=False)
    assert err.value.key == "split.method"
    assert "data.path" in str(err.value) and "timestamps" in str(err.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_given_split_without_timestamps_names_the_model(tiny_split: Split) -> None:
    """run_experiment with a ready split: the model check names model.name."""
    raw = sequential_config()
    with pytest.raises(ConfigError) as err:
        run_experiment(ExperimentConfig.from_dict(raw), split=tiny_split, progress=False)
    assert err.value.key == "model.name" and "timestamps" in str(err.value)
