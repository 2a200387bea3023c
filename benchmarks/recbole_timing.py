"""RecBole side of the benchmark suite: times RecBole 1.2.1 training epochs and evaluation.

Run by the benchmark venv's python (RecBole is never installed into the main venv):

    benchmarks/.venv-recbole/bin/python benchmarks/recbole_timing.py --job '<json>'

Making that venv (RecBole 1.2.1 uses ``np.float`` / ``np.long``, removed in numpy 1.24, and
imports ray only in ``recbole.quick_start``, which is not used here, so ray is left out):

    python3 -m venv benchmarks/.venv-recbole
    benchmarks/.venv-recbole/bin/pip install torch==2.13.0
    benchmarks/.venv-recbole/bin/pip install --no-deps recbole==1.2.1
    benchmarks/.venv-recbole/bin/pip install numpy==1.23.5 scipy==1.10.1 pandas==2.0.3 \
        scikit-learn==1.2.2 colorlog==4.7.2 colorama==0.4.4 tqdm pyyaml tensorboard thop \
        tabulate texttable psutil

``benchmarks/suite.py`` writes the data as RecBole atomic ``.inter`` files (from the same
negrec splits it trains on) and builds the job; this script prints one JSON line last:
``{"epoch_seconds": [...], "steps_per_epoch": n, "steps_timed": m, "eval_seconds": [...],
"n_users": .., "n_items": .., "n_train_rows": .., "versions": {..}}``.

Job keys: ``model`` (BPR, LightGCN, SASRec), ``dataset``, ``data_path``, ``config`` (RecBole
config overrides), ``epochs`` (timed epochs; one untimed warm-up epoch is run first),
``max_steps`` (time only the first N batches of each epoch, 0 = the whole epoch),
``eval_repeats`` (full-sort evaluations of the test split, after one warm-up; 0 = none),
``threads``.

Timing uses RecBole's own trainer internals: ``Trainer._train_epoch`` (its dataloader
draws the negatives inside the timed loop, as negrec's sampler does) and
``Trainer.evaluate`` on the full-sort test dataloader.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings


class FirstBatches:
    """A RecBole dataloader cut to its first ``n`` batches (for partial-epoch timing)."""

    def __init__(self, loader, n: int):
        self.loader = loader
        self.n = n

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i >= self.n:
                break
            yield batch

    def __len__(self) -> int:
        return min(self.n, len(self.loader))

    def __getattr__(self, name):
        return getattr(self.loader, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--job", required=True, help="the job as a JSON object")
    job = json.loads(parser.parse_args().job)
    warnings.filterwarnings("ignore")

    import numpy as np
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    threads = int(job.get("threads", 1))
    torch.set_num_threads(threads)
    config_dict = {
        "data_path": job["data_path"],
        "use_gpu": False,
        "worker": 0,
        "seed": 0,
        "reproducibility": True,
        "show_progress": False,
        "state": "ERROR",
        "checkpoint_dir": job.get("checkpoint_dir", "saved"),
        "embedding_size": 64,
        "learner": "adam",
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "metrics": ["Recall", "NDCG"],
        "topk": [10, 20],
        "valid_metric": "NDCG@20",
        **job.get("config", {}),
    }
    config = Config(model=job["model"], dataset=job["dataset"], config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    torch.set_num_threads(threads)
    logging.getLogger().setLevel(logging.ERROR)

    start = time.perf_counter()
    dataset = create_dataset(config)
    train_data, _valid_data, test_data = data_preparation(config, dataset)
    load_seconds = time.perf_counter() - start
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)

    steps_per_epoch = len(train_data)
    max_steps = int(job.get("max_steps", 0)) or steps_per_epoch
    loader = FirstBatches(train_data, max_steps) if max_steps < steps_per_epoch else train_data
    epoch_seconds = []
    for epoch in range(1 + int(job.get("epochs", 1))):
        start = time.perf_counter()
        loss = trainer._train_epoch(loader, epoch, show_progress=False)
        epoch_seconds.append(time.perf_counter() - start)
        if not np.isfinite(np.sum(loss)):
            raise SystemExit(f"RecBole loss is {loss} at epoch {epoch}")

    eval_seconds, result = [], None
    for _ in range(int(job.get("eval_repeats", 0)) + (1 if job.get("eval_repeats") else 0)):
        start = time.perf_counter()
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        eval_seconds.append(time.perf_counter() - start)

    out = {
        "epoch_seconds_warmup": epoch_seconds[0],
        "epoch_seconds": epoch_seconds[1:],
        "steps_per_epoch": steps_per_epoch,
        "steps_timed": min(max_steps, steps_per_epoch),
        "batch_rows": train_data.batch_size,
        "eval_seconds_warmup": eval_seconds[0] if eval_seconds else None,
        "eval_seconds": eval_seconds[1:],
        "eval_result": {k: float(v) for k, v in (result or {}).items()},
        "eval_users": int(test_data._dataset.user_num) if eval_seconds else None,
        "eval_batch_rows": test_data.batch_size if eval_seconds else None,
        "load_seconds": load_seconds,
        "n_users": int(dataset.user_num - 1),  # RecBole's id 0 is padding
        "n_items": int(dataset.item_num - 1),
        "n_train_rows": len(train_data._dataset),
        "threads": torch.get_num_threads(),
        "versions": {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
