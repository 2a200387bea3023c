"""negrec: recommender training and evaluation under negative sampling, with the theory
of losses and samplers as code you can compute, test and watch during training."""

__version__ = "0.1.0"

from negrec.data.frames import from_pandas
from negrec.data.interactions import Interactions
from negrec.data.splits import (
    Split,
    carve_validation,
    leave_one_out_split,
    random_split,
)
from negrec.data.synthetic import synthetic_interactions
from negrec.errors import ConfigError, DataError, NegrecError
from negrec.evaluation import EvalConfig, EvalResult, evaluate
from negrec.losses import LOSSES, Loss, LossConfig, bce, bpr, cce, hinge, make_loss, simce
from negrec.models import MF, MODELS, Model, ModelConfig
from negrec.recommend import Embeddings, Recommender, load
from negrec.samplers import SAMPLERS, Negatives, Sampler, SamplerConfig
from negrec.train import Callback, TrainConfig, TrainState, fit

__all__ = [
    "LOSSES",
    "MF",
    "MODELS",
    "SAMPLERS",
    "Callback",
    "ConfigError",
    "DataError",
    "Embeddings",
    "EvalConfig",
    "EvalResult",
    "Interactions",
    "Loss",
    "LossConfig",
    "Model",
    "ModelConfig",
    "Negatives",
    "NegrecError",
    "Recommender",
    "Sampler",
    "SamplerConfig",
    "Split",
    "TrainConfig",
    "TrainState",
    "__version__",
    "bce",
    "bpr",
    "carve_validation",
    "cce",
    "evaluate",
    "fit",
    "from_pandas",
    "hinge",
    "leave_one_out_split",
    "load",
    "make_loss",
    "random_split",
    "simce",
    "synthetic_interactions",
]
