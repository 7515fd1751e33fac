"""Models, with Keras's names."""

from nnfast.models.model import Model
from nnfast.models.sequential import Sequential



def load_model(filepath, custom_objects=None, compile=True, safe_mode=True,
               restore_random_state=True):
    """Load a model saved by ``Model.save``.

    The file is nnfast's own format, whatever its ending. With
    ``restore_random_state`` the global generator returns to its saved state,
    so that training resumes exactly where it stopped.
    """
    from nnfast import saving
    return saving.load_model(filepath, custom_objects=custom_objects,
                             compile=compile, safe_mode=safe_mode,
                             restore_random_state=restore_random_state)


def model_from_json(json_string, custom_objects=None):
    """Return a new, uncompiled model from ``Model.to_json``'s string."""
    from nnfast import saving
    return saving.model_from_json(json_string, custom_objects=custom_objects)


__all__ = ["Model", "Sequential", "load_model", "model_from_json"]
