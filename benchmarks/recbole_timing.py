"""RecBole side of the benchmark suite: a warm RecBole 1.2.1 process that times whole
training epochs and full-ranking evaluations on command.

Run by the benchmark venv's python (RecBole is never installed into the main venv);
``benchmarks/suite.py recbole`` and ``recbole-memory`` start it and talk to it:

    benchmarks/.venv-recbole/bin/python benchmarks/recbole_timing.py --job '<json>'

Making that venv (RecBole 1.2.1 uses ``np.float`` / ``np.long``, removed in numpy 1.24, so
numpy stays at 1.23.5; it imports ray only in ``recbole.quick_start``, which is not used
here, so ray and plotly are left out and recbole itself goes in with ``--no-deps``). Use
pip for torch: it takes the machine's local CPU build:

    python3 -m venv benchmarks/.venv-recbole
    benchmarks/.venv-recbole/bin/pip install torch==2.13.0
    benchmarks/.venv-recbole/bin/pip install --no-deps recbole==1.2.1
    benchmarks/.venv-recbole/bin/pip install numpy==1.23.5 scipy==1.10.1 pandas==2.0.3 \
        scikit-learn==1.2.2 colorlog==4.7.2 colorama==0.4.4 tqdm pyyaml tensorboard thop \
        tabulate texttable psutil

(pip then warns that recbole wants plotly and ray; neither is imported here.)

Protocol: the process loads the job's dataset and builds model and trainer, prints one JSON
line ``{"ready": true, "n_users": .., "n_items": .., "n_train_rows": .., "train_batches":
.., "versions": {..}}``, then reads one JSON command per line on stdin and answers each with
one JSON line on stdout (RecBole's own prints go to stderr):

- ``{"cmd": "epoch"}``: one whole training epoch, ``Trainer._train_epoch`` (its dataloader
  shuffles and draws the negatives inside the timed loop, as negrec's sampler does) ->
  ``{"seconds": s, "loss": l}``;
- ``{"cmd": "eval", "eval_batch_size": n}``: one full-ranking evaluation of the test split,
  ``Trainer.evaluate``, with a test dataloader of ``n`` rows per batch (RecBole's full-sort
  loader takes ``n // item_num`` users per batch; absent or null: the job's own
  ``eval_batch_size``, RecBole's default 4096 unless the job sets one) ->
  ``{"seconds": s, "users_per_batch": b, "result": {..}}``;
- ``{"cmd": "quit"}``: exits.

Every answer also carries ``peak_mb``, the process's peak RSS so far (``ru_maxrss``).

Job keys: ``model`` (BPR, LightGCN), ``dataset``, ``data_path``, ``config`` (RecBole config
overrides), ``threads``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
import warnings
from typing import Any


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Session:
    """One RecBole dataset, model and trainer, kept warm between commands."""

    def __init__(self, job: dict[str, Any]):
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
        self.config = Config(model=job["model"], dataset=job["dataset"], config_dict=config_dict)
        init_seed(self.config["seed"], self.config["reproducibility"])
        torch.set_num_threads(threads)
        logging.getLogger().setLevel(logging.ERROR)
        self.dataset = create_dataset(self.config)
        self.train_data, _valid, self.test_data = data_preparation(self.config, self.dataset)
        model_class = get_model(self.config["model"])
        model = model_class(self.config, self.train_data._dataset).to(self.config["device"])
        self.trainer = Trainer(self.config, model)
        self.loaders = {int(self.config["eval_batch_size"]): self.test_data}
        self.epoch = 0

    def ready(self) -> dict[str, Any]:
        import numpy as np
        import recbole
        import torch

        return {
            "ready": True,
            "n_users": int(self.dataset.user_num - 1),  # RecBole's id 0 is padding
            "n_items": int(self.dataset.item_num - 1),
            "n_train_rows": len(self.train_data._dataset),
            "train_batches": len(self.train_data),
            "train_batch_rows": self.train_data.step,
            "eval_batch_size": int(self.config["eval_batch_size"]),
            "threads": torch.get_num_threads(),
            "versions": {
                "recbole": recbole.__version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "python": sys.version.split()[0],
            },
        }

    def train_epoch(self) -> dict[str, Any]:
        import numpy as np

        start = time.perf_counter()
        loss = self.trainer._train_epoch(self.train_data, self.epoch, show_progress=False)
        seconds = time.perf_counter() - start
        self.epoch += 1
        if not np.isfinite(np.sum(loss)):
            raise SystemExit(f"RecBole loss is {loss} at epoch {self.epoch}")
        return {"seconds": seconds, "loss": float(np.sum(loss)) / len(self.train_data)}

    def loader(self, eval_batch_size: int | None) -> Any:
        """The full-sort test dataloader with ``eval_batch_size`` rows per batch (a torch
        DataLoader's batch size is fixed at construction, so one loader per size)."""
        size = int(eval_batch_size or self.config["eval_batch_size"])
        if size not in self.loaders:
            default = self.config["eval_batch_size"]
            self.config["eval_batch_size"] = size
            self.loaders[size] = type(self.test_data)(
                self.config, self.test_data._dataset, self.test_data._sampler, shuffle=False
            )
            self.config["eval_batch_size"] = default
        return self.loaders[size]

    def evaluate(self, eval_batch_size: int | None) -> dict[str, Any]:
        loader = self.loader(eval_batch_size)
        start = time.perf_counter()
        result = self.trainer.evaluate(loader, load_best_model=False, show_progress=False)
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "users_per_batch": loader.step,
            "result": {k: float(v) for k, v in result.items()},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--job", required=True, help="the job as a JSON object")
    job = json.loads(parser.parse_args().job)
    warnings.filterwarnings("ignore")
    # answers go to the real stdout; anything RecBole prints goes to stderr
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr

    def answer(record: dict[str, Any]) -> None:
        answers.write(json.dumps({**record, "peak_mb": peak_mb()}) + "\n")
        answers.flush()

    session = Session(job)
    answer(session.ready())
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "epoch":
            answer(session.train_epoch())
        elif command["cmd"] == "eval":
            answer(session.evaluate(command.get("eval_batch_size")))
        elif command["cmd"] == "quit":
            break
        else:
            raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
