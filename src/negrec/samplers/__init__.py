"""Negative samplers; each registers itself in :data:`SAMPLERS` under its config name."""

from negrec.samplers.base import SAMPLERS, Negatives, Sampler, SamplerConfig
from negrec.samplers.full import FullCatalogue
from negrec.samplers.uniform import UniformSampler

__all__ = ["SAMPLERS", "FullCatalogue", "Negatives", "Sampler", "SamplerConfig", "UniformSampler"]
