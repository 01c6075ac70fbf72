"""lcf.nn: the networks and training-time likelihoods (torch only; never sees bytes). See docs/DESIGN.md."""

from .integer import IntegerEntropyNet, exact_mode
from .likelihood import SCALE_MAX, SCALE_MIN
from .model import LcfModel, ModelConfig
from .pen import MixtureTensors

__all__ = ["IntegerEntropyNet", "LcfModel", "MixtureTensors", "ModelConfig", "SCALE_MAX", "SCALE_MIN", "exact_mode"]
