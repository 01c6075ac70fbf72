"""lcf.nn: the networks and training-time likelihoods (torch only; never sees bytes). See docs/DESIGN.md."""

from .integer import IntegerEntropyNet, exact_mode
from .model import LcfModel, ModelConfig
from .pen import MixtureTensors

__all__ = ["IntegerEntropyNet", "LcfModel", "MixtureTensors", "ModelConfig", "exact_mode"]
