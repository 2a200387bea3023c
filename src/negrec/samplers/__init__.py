"""Negative samplers; each registers itself in :data:`SAMPLERS` under its config name."""

from negrec.samplers.base import SAMPLERS, Negatives, Sampler, SamplerConfig
from negrec.samplers.dns import DNSSampler
from negrec.samplers.full import FullCatalogue
from negrec.samplers.inbatch import InBatchSampler
from negrec.samplers.popularity import PopularitySampler
from negrec.samplers.softmax_v import SoftmaxTauSampler, SoftmaxVSampler
from negrec.samplers.uniform import UniformSampler

__all__ = [
    "SAMPLERS",
    "DNSSampler",
    "FullCatalogue",
    "InBatchSampler",
    "Negatives",
    "PopularitySampler",
    "Sampler",
    "SamplerConfig",
    "SoftmaxTauSampler",
    "SoftmaxVSampler",
    "UniformSampler",
]
