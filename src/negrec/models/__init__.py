"""Models; each registers itself in :data:`MODELS` under its config name."""

from negrec.models.base import MODELS, Model, ModelConfig
from negrec.models.mf import MF

__all__ = ["MF", "MODELS", "Model", "ModelConfig"]
