"""Optional experiment tracking: every run logged to TensorBoard and/or MLflow.

Both are training callbacks (:class:`negrec.train.Callback`) switched on by the config's
``[logging]`` section (:class:`negrec.experiment.config.LoggingConfig`), off by default.
They log the same things, so a run reads alike in either tool and in its run directory:

- at the start: the resolved config (TensorBoard: as text and as HParams; MLflow: as
  params and a ``config.toml`` artifact);
- after every epoch: the epoch's ``history.csv`` row (loss, validation metrics, timings
  and the bound monitor's columns), with the epoch as the step; the tracker runs after
  every callback that writes to the row, so the two always agree;
- at the end (:meth:`Tracker.on_run_end`, called by the runner after the single test
  evaluation): the test metrics as ``test/<metric>`` at the selected epoch, plus the
  best epoch and the total training time.

tensorboard and mlflow are imported only when enabled; a missing package is a
:class:`ConfigError` naming the key that asked for it, raised before training starts.
Resuming (``negrec run --resume``) continues the same logs: TensorBoard drops what an
interrupted attempt wrote after the checkpoint (``purge_step``), and the MLflow run id is
stored in the checkpoint so the same MLflow run goes on.
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from negrec.errors import ConfigError
from negrec.experiment.config import ExperimentConfig
from negrec.experiment.grid import flatten
from negrec.experiment.rundir import unique_path
from negrec.train import Callback, TrainState


def _scalars(log: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a history row, except the epoch (which is the step)."""
    return {
        key: float(value)
        for key, value in log.items()
        if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
    }


def _final_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """What a finished run adds: test metrics, the selected epoch, total training time."""
    out = {f"test/{k}": float(v) for k, v in summary.get("test", {}).items()}
    for key in ("best_epoch", "epochs_run", "train_seconds"):
        if key in summary:
            out[f"run/{key}"] = float(summary[key])
    return out


def _config_toml(config: ExperimentConfig) -> str:
    import tomli_w

    return tomli_w.dumps(config.to_toml_dict())


def flat_params(config: ExperimentConfig) -> dict[str, str | int | float | bool]:
    """The config as dotted keys -> scalars (lists shown as text), for HParams and MLflow."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in flatten(config.to_toml_dict()):
        out[key] = value if isinstance(value, str | int | float | bool) else str(value)
    return out


class Tracker(Callback):
    """A callback that also hears about the finished run (test metrics and summary)."""

    def on_run_end(self, summary: dict[str, Any]) -> None:
        """Called once, after the test evaluation, with the run's ``summary.json``."""

    def on_run_failed(self, error: BaseException) -> None:
        """Called instead of :meth:`on_run_end` when training or testing raised ``error``
        (Ctrl-C included): the tracker records how the run ended. It must not raise."""


# --------------------------------------------------------------------------- TensorBoard
class TensorBoardTracker(Tracker):
    """Event files for TensorBoard (``torch.utils.tensorboard.SummaryWriter``).

    Scalars are tagged with the ``history.csv`` column names (``loss``,
    ``valid/ndcg@20``, ``train_seconds``, ``bound/k=8/cce/holds``...), the epoch as step.
    """

    def __init__(self, config: ExperimentConfig, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ConfigError(
                "logging.tensorboard",
                f"needs the tensorboard package ({err}); install it with "
                "pip install 'negrec[tensorboard]', or set logging.tensorboard = false",
            ) from None
        self._writer_cls = SummaryWriter
        self.config = config
        base = config.logging.dir
        # None: inside the run directory, so the events travel with the run
        self.folder: Path | None = run_dir / "tensorboard" if base is None else None
        self.writer: Any = None

    def on_train_start(self, state: TrainState) -> None:
        resumed = state.epoch > 0
        if self.folder is None:  # a fresh run in a shared folder: its own subfolder
            self.folder = unique_path(Path(self.config.logging.dir or "."), self.config.name)
        # resuming: drop whatever an interrupted attempt logged after the checkpoint
        purge = state.epoch + 1 if resumed else None
        self.writer = self._writer_cls(str(self.folder), purge_step=purge)
        if not resumed:
            self._log_config()
        self.writer.flush()

    def _log_config(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        text = _config_toml(self.config)
        self.writer.add_text("config", "```toml\n" + text + "\n```", global_step=0)
        selection = self.config.train.metric  # the HParams table's metric columns
        metrics = dict.fromkeys(["loss", f"valid/{selection}", f"test/{selection}"], math.nan)
        experiment, start, _ = hparams(flat_params(self.config), metrics)
        self.writer.file_writer.add_summary(experiment)
        self.writer.file_writer.add_summary(start)

    def on_epoch_end(self, state: TrainState) -> None:
        for tag, value in _scalars(state.log).items():
            self.writer.add_scalar(tag, value, global_step=state.epoch)
        self.writer.flush()  # a crashed or watched run shows every finished epoch

    def on_run_end(self, summary: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        step = int(summary.get("best_epoch") or summary.get("epochs_run") or 0)
        for tag, value in _final_scalars(summary).items():
            self.writer.add_scalar(tag, value, global_step=step)
        *_, end = hparams(flat_params(self.config), {})  # status: success
        self.writer.file_writer.add_summary(end)
        self.writer.close()

    def on_run_failed(self, error: BaseException) -> None:
        if self.writer is not None:  # every finished epoch is on disk already; release it
            self.writer.close()

    def state_dict(self) -> dict[str, Any]:
        return {"folder": None if self.folder is None else str(self.folder)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("folder"):
            self.folder = Path(state["folder"])


# -------------------------------------------------------------------------------- MLflow
_MLFLOW_BAD = re.compile(r"[^\w./\- ]")


def mlflow_key(name: str) -> str:
    """A metric name MLflow accepts: ``@`` becomes ``_at_``, other characters outside
    letters, digits, ``_ - . / space`` become ``_`` (``valid/ndcg@20`` ->
    ``valid/ndcg_at_20``, ``bound/k=8/cce/holds`` -> ``bound/k_8/cce/holds``)."""
    return _MLFLOW_BAD.sub("_", name.replace("@", "_at_"))


class MLflowTracker(Tracker):
    """One MLflow run per negrec run, through ``MlflowClient`` (no global active run, so
    sweeps in one process and failed runs cannot leak into each other).

    Metric names pass through :func:`mlflow_key`; params are the flattened config.
    """

    BATCH = 100  # params per log_batch call (MLflow's limit)

    def __init__(self, config: ExperimentConfig):
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise ConfigError(
                "logging.mlflow",
                f"needs the mlflow package ({err}); install it with "
                "pip install 'negrec[mlflow]', or set logging.mlflow = false",
            ) from None
        self._metric, self._param = Metric, Param
        self.config = config
        self.run_id: str | None = None
        try:  # reach the tracking store now: a bad URI fails before training
            self.client = MlflowClient(tracking_uri=config.logging.mlflow_uri)
            self.experiment_id = self._experiment(config.logging.mlflow_experiment)
        except Exception as err:  # MLflow raises many kinds; name the setting involved
            raise ConfigError(
                "logging.mlflow_uri",
                f"MLflow tracking store {config.logging.mlflow_uri or '(default)'!r} failed: {err}",
            ) from None

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception:  # created meanwhile by a parallel sweep worker
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def on_train_start(self, state: TrainState) -> None:
        if self.run_id is not None:  # resumed: the same MLflow run goes on
            self.client.update_run(self.run_id, status="RUNNING")
            return
        run = self.client.create_run(
            self.experiment_id,
            run_name=self.config.name,
            tags={"negrec.output": self.config.output},
        )
        self.run_id = run.info.run_id
        params = [self._param(k, str(v)) for k, v in flat_params(self.config).items()]
        for start in range(0, len(params), self.BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + self.BATCH])
        self.client.log_text(self.run_id, _config_toml(self.config), "config.toml")

    def _log(self, values: dict[str, float], step: int) -> None:
        assert self.run_id is not None
        now = int(time.time() * 1000)
        metrics = [self._metric(mlflow_key(k), v, now, step) for k, v in values.items()]
        for start in range(0, len(metrics), 1000):  # MLflow's limit per call
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def on_epoch_end(self, state: TrainState) -> None:
        self._log(_scalars(state.log), state.epoch)

    def on_run_end(self, summary: dict[str, Any]) -> None:
        assert self.run_id is not None
        step = int(summary.get("best_epoch") or summary.get("epochs_run") or 0)
        self._log(_final_scalars(summary), step)
        self.client.set_terminated(self.run_id, "FINISHED")

    def on_run_failed(self, error: BaseException) -> None:
        """The MLflow run ends KILLED (Ctrl-C) or FAILED instead of staying RUNNING; a
        resumed run sets it back to RUNNING and goes on in the same MLflow run."""
        if self.run_id is None:
            return
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception as err:  # the tracking server may be what failed
            message = f"negrec: could not mark MLflow run {self.run_id} {status}: {err}"
            print(message, file=sys.stderr)

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id")


def tracking_callbacks(config: ExperimentConfig, run_dir: Path) -> list[Tracker]:
    """The trackers ``[logging]`` asks for (none by default); ``run_dir`` is the run's
    (staging) directory, where TensorBoard writes unless ``logging.dir`` is set."""
    trackers: list[Tracker] = []
    if config.logging.tensorboard:
        trackers.append(TensorBoardTracker(config, run_dir))
    if config.logging.mlflow:
        trackers.append(MLflowTracker(config))
    return trackers
