"""Models, with Keras's names."""

from nnfast.models.model import Model
from nnfast.models.sequential import Sequential

__all__ = ["Model", "Sequential"]
