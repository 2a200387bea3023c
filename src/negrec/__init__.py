"""negrec: recommender training and evaluation under negative sampling, with the theory
of losses and samplers as code you can compute, test and watch during training."""

__version__ = "0.1.0"

from negrec.data.interactions import Interactions  # noqa: E402
from negrec.data.splits import (  # noqa: E402
    Split,
    carve_validation,
    leave_one_out_split,
    random_split,
)
from negrec.data.synthetic import synthetic_interactions  # noqa: E402
from negrec.errors import ConfigError, DataError, NegrecError  # noqa: E402
from negrec.evaluate import EvalConfig, EvalResult, evaluate  # noqa: E402
from negrec.losses import LOSSES, Loss, LossConfig, bce, bpr, cce, hinge, simce  # noqa: E402
from negrec.models import MF, MODELS, Model, ModelConfig  # noqa: E402
from negrec.samplers import SAMPLERS, Negatives, Sampler, SamplerConfig  # noqa: E402
from negrec.train import Callback, TrainConfig, TrainState, fit  # noqa: E402

__all__ = [
    "LOSSES",
    "MF",
    "MODELS",
    "SAMPLERS",
    "Callback",
    "ConfigError",
    "DataError",
    "EvalConfig",
    "EvalResult",
    "Interactions",
    "Loss",
    "LossConfig",
    "Model",
    "ModelConfig",
    "NegrecError",
    "Negatives",
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
    "hinge",
    "leave_one_out_split",
    "random_split",
    "simce",
    "synthetic_interactions",
]
