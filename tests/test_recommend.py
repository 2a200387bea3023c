"""Using a trained model (negrec.recommend): lists equal the evaluator's ranking, seen
items never come back, unknown ids behave as documented, and a run directory is a
self-contained model (loaded in a fresh process, from another folder, without its data).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import negrec
from negrec._fast.topn import _top_unseen_torch, top_unseen
from negrec.data.interactions import Interactions
from negrec.data.splits import Split, leave_one_out_split, random_split
from negrec.evaluation import EvalConfig, evaluate
from negrec.experiment import artifacts
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.runner import load_split, run_experiment
from negrec.models import MODELS
from negrec.recommend import Recommender, union
from negrec.train import Callback, TrainState

SRC = str(Path(negrec.__file__).resolve().parents[1])


# ---------------------------------------------------------------------------- the kernel
@settings(max_examples=60, deadline=None)
@given(st.data())
def test_top_unseen_matches_a_sort_by_score_then_id(data):
    """Both paths (compiled, torch) give each row's best n unseen, allowed, non-NaN items,
    score descending and ties by id ascending."""
    rows = data.draw(st.integers(1, 4))
    n_items = data.draw(st.integers(1, 12))
    n = data.draw(st.integers(1, 14))
    values = st.sampled_from([0.0, 1.0, 2.0, float("nan"), float("-inf")])
    scores = torch.tensor(
        data.draw(
            st.lists(
                st.lists(values, min_size=n_items, max_size=n_items), min_size=rows, max_size=rows
            )
        ),
        dtype=torch.float32,
    )
    seen_rows = [sorted(data.draw(st.sets(st.integers(0, n_items - 1)))) for _ in range(rows)]
    lengths = torch.tensor([len(r) for r in seen_rows])
    end = lengths.cumsum(0)
    seen = torch.tensor([i for r in seen_rows for i in r] or [0], dtype=torch.int64)
    allowed = data.draw(st.none() | st.lists(st.booleans(), min_size=n_items, max_size=n_items))
    mask = None if allowed is None else torch.tensor(allowed)
    for items, _, count in (
        top_unseen(scores, end - lengths, end, seen, n, mask),
        _top_unseen_torch(scores, end - lengths, end, seen, n, mask),
    ):
        for r in range(rows):
            row = scores[r].tolist()
            expected = sorted(
                (
                    j
                    for j in range(n_items)
                    if j not in seen_rows[r]
                    and (allowed is None or allowed[j])
                    and row[j] == row[j]
                    and row[j] != float("-inf")
                ),
                key=lambda j: (-row[j], j),
            )[:n]
            assert items[r, : count[r]].tolist() == expected
            assert (items[r, count[r] :] == -1).all()


# ---------------------------------------------------------------------------- vs the evaluator
def _tiny_split(timed: bool) -> Split:
    data = negrec.synthetic_interactions(24, 18, 5.0, n_clusters=3, seed=3)
    if timed:  # a time order for the sequential model: a seeded permutation of positions
        rng = np.random.default_rng(0)
        users, items = data.to_coo()
        data = Interactions.from_arrays(
            users,
            items,
            n_users=data.n_users,
            n_items=data.n_items,
            timestamps=rng.permutation(data.nnz).astype(float),
        )
        return leave_one_out_split(data)
    return random_split(data, 0.2, 0.1, seed=0)


def _model(name: str, split: Split, tied: bool) -> negrec.Model:
    options = {"name": name, "dim": 4}
    if name == "sasrec":
        options |= {"max_len": 5, "blocks": 1}
    config = MODELS.config(name, options, "model")
    model = MODELS.get(name, "model.name")(config, split.train, torch.Generator().manual_seed(1))
    if tied:  # small integer factors, items repeated: many exactly tied scores
        with torch.no_grad():
            rng = torch.Generator().manual_seed(2)
            model.user.weight.copy_(torch.randint(-1, 2, model.user.weight.shape, generator=rng))
            table = torch.randint(-1, 2, (6, 4), generator=rng).float()
            model.item.weight.copy_(table[torch.arange(split.n_items) % 6])
    return model.eval()


def evaluator_ranks(model, split: Split) -> np.ndarray:
    """[U, I] rank of every item for every user by negrec.evaluation (validation: train
    masked): each item in turn is every user's single target, whose MRR is 1 / rank."""
    ranks = np.full((split.n_users, split.n_items), np.inf)
    contexts = model.eval_contexts(split, "valid")
    for item in range(split.n_items):
        users = np.flatnonzero(
            ~split.train.dense_mask(torch.arange(split.n_users))[:, item].numpy()
        )
        target = Interactions.from_arrays(
            users, np.full(users.size, item), n_users=split.n_users, n_items=split.n_items
        )
        probe = Split(train=split.train, valid=target, test=split.test)
        result = evaluate(model, probe, "valid", EvalConfig(ks=[1], auc=False), contexts=contexts)
        ranks[result.users, item] = 1.0 / result.per_user["mrr"]
    return ranks


@pytest.mark.parametrize(
    "name,tied",
    [("mf", False), ("mf", True), ("lightgcn", False), ("ncf", False), ("sasrec", False)],
)
def test_recommend_is_the_evaluators_ranking(name, tied):
    """Every user's full list is the candidates sorted by the evaluator's rank (1 + items
    strictly above), equal ranks (tied scores) by item id: same items, same order."""
    split = _tiny_split(timed=name == "sasrec")
    model = _model(name, split, tied)
    ranks = evaluator_ranks(model, split)
    rec = Recommender.from_split(model, split, history="train")
    table = rec.recommend(None, n=split.n_items)
    if tied:
        assert (np.diff(np.sort(ranks[np.isfinite(ranks)])) == 0).sum() > 100  # many ties
    for user in range(split.n_users):
        candidates = np.flatnonzero(np.isfinite(ranks[user]))
        expected = sorted(candidates, key=lambda i: (ranks[user, i], i))
        got = table.loc[table.user == rec.user_ids[user], "item"].to_numpy()
        assert got.tolist() == [rec.item_ids[i] for i in expected]
    top10 = rec.recommend(None, n=10)
    assert top10.groupby("user").size().max() == 10
    assert (
        top10.groupby("user")["rank"].apply(list)
        == top10.groupby("user")["rank"].apply(lambda r: list(range(1, len(r) + 1)))
    ).all()


def test_scores_and_histories_agree_with_the_model():
    """score() is score_all's entry; a sequential model's list for a known user equals the
    list for that user's stored history given as raw ids."""
    split = _tiny_split(timed=True)
    model = _model("sasrec", split, tied=False)
    rec = Recommender.from_split(model, split)  # history "all": train + valid + test
    users = rec.user_ids[:5]
    full = rec.recommend(users, n=6)
    seqs = [rec.item_ids[s].tolist() for s in rec.history.sequences()[:5]]
    by_history = rec.recommend_history(seqs, n=6)
    assert by_history["item"].tolist() == full["item"].tolist()
    assert np.allclose(by_history["score"], full["score"])
    contexts = rec._user_contexts(torch.arange(3))
    expected = model.score_all(contexts)[:, [2, 7]].detach().numpy()
    got = rec.score(np.repeat(rec.user_ids[:3], 2), np.tile(rec.item_ids[[2, 7]], 3))
    assert np.allclose(got.reshape(3, 2), expected, atol=1e-6)
    with pytest.raises(negrec.NegrecError, match="unknown item id: 'nope'"):
        rec.recommend_history(["nope"])
    emb = rec.embeddings()
    assert emb.users is None and emb.items.shape == (split.n_items, 4)


def test_seen_items_unknown_users_and_candidates():
    split = _tiny_split(timed=False)
    model = _model("mf", split, tied=False)
    rec = Recommender.from_split(model, split)
    everything = union([split.train, split.valid, split.test])
    table = rec.recommend(None, n=18)
    pairs = set(zip(*everything.to_coo(), strict=True))
    internal = pd.Index(rec.item_ids).get_indexer(table["item"])
    assert not any((u, i) in pairs for u, i in zip(table["user"], internal, strict=True))
    with_seen = rec.recommend([0], n=18, exclude_seen=False)
    assert len(with_seen) == 18  # every item, seen ones too
    only = rec.recommend([0, 1], n=5, items=[0, 1, 2, 3, 4, 5], exclude_seen=False)
    assert set(only["item"]) <= set(range(6)) and len(only) == 10
    with pytest.raises(negrec.NegrecError, match=r"unknown user ids: 99, 'x' \(this run has 24"):
        rec.recommend([0, 99, "x"])
    cold = rec.recommend([99, 0], n=3, unknown="popular")
    popular = np.argsort(-split.train.item_degrees, kind="stable")[:3]
    assert cold.loc[cold.user == 99, "item"].tolist() == popular.tolist()
    assert cold.loc[cold.user == 99, "score"].tolist() == split.train.item_degrees[popular].tolist()
    assert cold.loc[cold.user == 0, "item"].tolist() == rec.recommend(0, n=3)["item"].tolist()


def test_similar_items_are_cosine_neighbours_and_ncf_has_none():
    split = _tiny_split(timed=False)
    rec = Recommender.from_split(_model("lightgcn", split, tied=False), split)
    items = rec.embeddings().items.to_numpy()
    unit = items / np.linalg.norm(items, axis=1, keepdims=True)
    cosine = unit @ unit.T
    got = rec.similar_items([3], n=4)
    order = [j for j in np.argsort(-cosine[3], kind="stable") if j != 3][:4]
    assert got["similar"].tolist() == order and (got["item"] == 3).all()
    assert np.allclose(got["score"], cosine[3, order], atol=1e-5)
    ncf = Recommender.from_split(_model("ncf", split, tied=False), split)
    with pytest.raises(negrec.NegrecError, match="no embeddings"):
        ncf.similar_items([3])
    with pytest.raises(negrec.NegrecError, match="not item histories"):
        ncf.recommend_history([1, 2])


# ---------------------------------------------------------------------------- run directories
USERS = ["007", "7", "ü-ser", "user β", "u1", "u2", "u3", "u4", "u5", "u6"]
ITEMS = ["007", "i1", "🎬", "é", "i4", "i5", "i6", "i7", "i8", "i9", "i10", "i11"]


def write_inter(path: Path) -> None:
    """A RecBole .inter file with string ids ('007' twice: a user and an item; unicode);
    for a ``.csv`` path, the same rows as a plain ``user,item,rating,timestamp`` CSV."""
    rng = np.random.default_rng(0)
    sep = "," if path.suffix == ".csv" else "\t"
    header = (
        "user,item,rating,timestamp"
        if sep == ","
        else ("user_id:token\titem_id:token\trating:float\ttimestamp:float")
    )
    lines = [header]
    t = 0
    for user in USERS:
        for item in rng.choice(ITEMS, size=7, replace=False):
            t += 1
            lines.append(sep.join([user, str(item), "5", str(t)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


#: the data file a run trains on, by kind: its name and the [data] keys that read it
DATA_FILES = {
    "inter": ("events.inter", {}),
    "csv": (
        "events.csv",
        {
            "format": "delimited",
            "columns": {
                "user": "user",
                "item": "item",
                "rating": "rating",
                "timestamp": "timestamp",
            },
        },
    ),
}


class Keep(Callback):
    """Holds the trained model object (its best weights are restored into it at the end)."""

    def on_train_end(self, state: TrainState) -> None:
        self.model = state.model


def train_run(
    folder: Path, model: dict, split: dict, data: str = "inter"
) -> tuple[Path, Recommender]:
    """Train from ``folder`` as the working directory on ``events.inter`` (or
    ``events.csv``) given relative."""
    name, keys = DATA_FILES[data]
    write_inter(folder / name)
    raw = {
        "name": model["name"],
        "data": {"source": "file", "path": name, **keys},
        "split": split,
        "model": model,
        "sampler": {"name": "uniform", "k": 2},
        "train": {"epochs": 2, "batch_size": 16, "metric": "ndcg@10", "lr": 0.05},
        "eval": {"ks": [10], "auc": False},
    }
    keep = Keep()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        config = ExperimentConfig.from_dict(raw)
        path = run_experiment(config, progress=False, extra_callbacks=(keep,))
        memory = Recommender.from_split(keep.model, load_split(config))
    finally:
        os.chdir(cwd)
    return folder / path, memory


def fresh_process(code: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,split,data",
    [
        ({"name": "mf", "dim": 8}, {"method": "random"}, "inter"),
        ({"name": "mf", "dim": 8}, {"method": "random"}, "csv"),
        (
            {"name": "sasrec", "dim": 8, "max_len": 4, "blocks": 1},
            {"method": "leave_one_out"},
            "inter",
        ),
    ],
)
def test_a_run_is_a_self_contained_model(tmp_path, model, split, data):
    """Trained on string ids (a RecBole file, or a plain CSV with a header), loaded in a
    fresh process from another folder with the data file deleted: the same top-10 per user
    in raw ids as the in-memory model."""
    (tmp_path / "train").mkdir()
    (tmp_path / "elsewhere").mkdir()
    name = DATA_FILES[data][0]
    run, memory = train_run(tmp_path / "train", model, split, data)
    expected = memory.recommend(None, n=10)
    assert {"007", "ü-ser", "user β"} <= set(expected["user"]) and "007" in set(memory.item_ids)
    (tmp_path / "train" / name).unlink()
    code = (
        "import negrec, sys\n"
        f"rec = negrec.load({str(run)!r})\n"
        "rec.recommend(None, n=10).to_json(sys.stdout, orient='records', force_ascii=False)\n"
    )
    loaded = pd.DataFrame(json.loads(fresh_process(code, tmp_path / "elsewhere")))
    assert loaded["user"].tolist() == expected["user"].tolist()  # '007' stays '007'
    assert loaded["item"].tolist() == expected["item"].tolist()
    assert np.allclose(loaded["score"], expected["score"], atol=1e-6)
    seen = {(u, i) for u, i in zip(*memory.history.to_coo(), strict=True)}
    users = pd.Index(memory.user_ids).get_indexer(loaded["user"])
    items = pd.Index(memory.item_ids).get_indexer(loaded["item"])
    assert not any(pair in seen for pair in zip(users, items, strict=True))
    stored = (run / "config.toml").read_text(encoding="utf-8")
    assert f'root = "{tmp_path / "train"}"' in stored
    assert f'path = "{tmp_path / "train" / name}"' in stored
    given = json.loads((run / "environment.json").read_text())["data_given"]
    assert given["data.path"] == name and given["data.root"] == "."


def test_old_run_directories_still_report_and_load_from_their_data(tmp_path, monkeypatch, capsys):
    """A run made before runs stored their ids (no interactions.npz, relative data root)
    still reports; load() re-reads the data from where the config points, and says
    clearly when that data is gone."""
    run, memory = train_run(tmp_path, {"name": "mf", "dim": 4}, {"method": "random"})
    (run / artifacts.INTERACTIONS).unlink()
    text = (run / "config.toml").read_text(encoding="utf-8")
    text = text.replace(f'root = "{tmp_path}"', 'root = "."')
    text = text.replace(f'path = "{tmp_path / "events.inter"}"', 'path = "events.inter"')
    (run / "config.toml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    from negrec.cli import main

    assert main(["report", str(run), "--plot", str(tmp_path / "p.png")]) == 0
    assert "mf" in capsys.readouterr().out
    again = negrec.load(run).recommend(None, n=5)
    assert again.equals(memory.recommend(None, n=5))
    (tmp_path / "events.inter").unlink()
    with pytest.raises(negrec.NegrecError, match="made before runs stored their ids"):
        negrec.load(run)


def test_data_paths_are_stored_absolute(tmp_path, monkeypatch):
    """DataConfig.absolute: root and file paths from the working directory (".." folded),
    the given spelling returned; sources without files unchanged."""
    from negrec.experiment.config import DataConfig

    monkeypatch.chdir(tmp_path)
    data = DataConfig(source="file", root="x/../data", path="events.inter")
    absolute, given = data.absolute()
    assert absolute.root == str(tmp_path / "data")
    assert absolute.path == str(tmp_path / "data" / "events.inter")
    assert given == {"root": "x/../data", "path": "events.inter"}
    assert absolute.absolute() == (absolute, {})
    assert DataConfig().absolute() == (DataConfig(), {})
    elsewhere = DataConfig(source="presplit", root=".", train="/d/train.txt", test="t.txt")
    moved, given = elsewhere.absolute()
    assert moved.train == "/d/train.txt" and moved.test == str(tmp_path / "t.txt")
    assert given == {"root": ".", "test": "t.txt"}


@pytest.mark.parametrize("name", ["mf", "lightgcn", "sasrec", "gru4rec"])
def test_embeddings_reproduce_the_scores(name):
    """Model.embeddings(): the vectors whose dot product (plus the item bias) is score_all."""
    split = _tiny_split(timed=name in ("sasrec", "gru4rec"))
    options = {"name": name, "dim": 4} | ({"max_len": 5} if name in ("sasrec", "gru4rec") else {})
    config = MODELS.config(name, options, "model")
    model = MODELS.get(name, "model.name")(config, split.train, torch.Generator().manual_seed(1))
    model.eval()
    users, items, bias = model.embeddings()
    with torch.no_grad():
        if users is None:  # a history's hidden state plays the user
            contexts = model.eval_contexts(split, "valid")(torch.arange(split.n_users))
            users = model.hidden(contexts)
            scores = model.score_all(contexts)
        else:
            scores = model.score_all(torch.arange(split.n_users))
        expected = users @ items.T + (0 if bias is None else bias)
    assert torch.allclose(scores, expected, atol=1e-5)
    assert (bias is not None) == (name == "gru4rec")


@pytest.mark.parametrize("n", [2.5, True, "3", None])
def test_a_non_integer_n_is_a_negrec_error_not_a_type_error(n):
    """Regression: recommend(n=2.5) or n=True raised numpy's TypeError from deep inside
    (`'float' object cannot be interpreted as an integer`)."""
    split = _tiny_split(False)
    rec = Recommender.from_split(_model("mf", split, False), split)
    user, item = rec.user_ids[0], rec.item_ids[0]
    for call in (
        lambda: rec.recommend(user, n=n),
        lambda: rec.similar_items(item, n=n),
    ):
        with pytest.raises(negrec.NegrecError, match="n must be an integer >= 1"):
            call()
    assert len(rec.recommend(user, n=np.int64(2))) == 2


def test_load_with_a_bad_device_names_the_argument_not_a_config_key(tmp_path):
    """Regression: negrec.load(run, device="tpu") said "config key 'train.device'", a key
    the caller never wrote."""
    run, _ = train_run(tmp_path, {"name": "mf", "dim": 4}, {"method": "random"})
    with pytest.raises(negrec.NegrecError, match=r"^device ") as err:
        negrec.load(run, device="tpu")
    assert "config key" not in str(err.value)
