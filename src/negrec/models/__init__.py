"""Models; each registers itself in :data:`MODELS` under its config name."""

from negrec.models.base import MODELS, Model, ModelConfig
from negrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from negrec.models.lightgcn import LightGCN, LightGCNConfig
from negrec.models.mf import MF
from negrec.models.ncf import NCF, NCFConfig
from negrec.models.sasrec import SASRec, SASRecConfig

__all__ = [
    "MF",
    "MODELS",
    "NCF",
    "GRU4Rec",
    "GRU4RecConfig",
    "LightGCN",
    "LightGCNConfig",
    "Model",
    "ModelConfig",
    "NCFConfig",
    "SASRec",
    "SASRecConfig",
]
