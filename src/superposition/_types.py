"""Tensor type aliases with named axes.

Every tensor in the library names its axes with the project's words: ``inst`` (independently
trained models), ``batch`` (samples), ``feat`` (input features), ``hidden`` (the bottleneck) and
``neuron``.
The annotations are checked at run time under pytest (jaxtyping's import hook with beartype).
"""

from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["Bool", "Float", "Int", "Tensor"]
