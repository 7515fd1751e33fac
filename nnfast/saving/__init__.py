"""Saving and loading models in nnfast's single-file format.

A file is a zip archive holding one JSON document (format version, nnfast
version, architecture, compile configuration, optimizer configuration and
state, training step, random generator state) and the arrays as ``.npy``
members. Loading reads only JSON and raw arrays, never pickle, and turns class
names into classes only through a registry (see :func:`register_serializable`).
docs/saving.md describes the format and its guarantees.
"""

from nnfast.saving.api import (
    load_model,
    load_weights,
    model_from_bytes,
    model_from_json,
    model_to_bytes,
    model_to_json,
    save_model,
    save_weights,
)
from nnfast.saving.format import (
    FORMAT_VERSION,
    MAX_ARRAY_BYTES,
    MAX_DOCUMENT_BYTES,
    SUPPORTED_VERSIONS,
    FormatError,
)
from nnfast.saving.registry import (
    get_registered_name,
    get_registered_object,
    register_serializable,
)

__all__ = [
    "FORMAT_VERSION",
    "MAX_ARRAY_BYTES",
    "MAX_DOCUMENT_BYTES",
    "SUPPORTED_VERSIONS",
    "FormatError",
    "get_registered_name",
    "get_registered_object",
    "load_model",
    "load_weights",
    "model_from_bytes",
    "model_from_json",
    "model_to_bytes",
    "model_to_json",
    "register_serializable",
    "save_model",
    "save_weights",
]
