"""Public saving and loading functions. docs/saving.md describes the file format."""

import io
import json

from nnfast.saving import serialization
from nnfast.saving.format import ArchiveReader, FormatError, write_archive


def _check_custom_objects(custom_objects, where):
    if custom_objects is None:
        return None
    if not isinstance(custom_objects, dict):
        raise TypeError(
            f"{where}: `custom_objects` must be a dict of name -> class, got "
            f"{type(custom_objects).__name__}"
        )
    for name, value in custom_objects.items():
        if not isinstance(name, str) or not isinstance(value, type):
            raise TypeError(
                f"{where}: `custom_objects` must map names to classes, got "
                f"{name!r}: {value!r}"
            )
    return custom_objects


def _check_flag(value, name, where):
    if not isinstance(value, bool):
        raise TypeError(f"{where}: `{name}` must be True or False, got {value!r}")


def save_model(model, filepath, overwrite=True):
    """Save a model to one file: architecture, weights, compile and training state.

    The file is a zip archive in nnfast's own format, whatever its ending.
    ``.nnf`` is the documented ending. A name ending in ``.keras`` is accepted
    too, but the file is still nnfast's format, not a Keras file. It contains
    the architecture, the weights, the compile configuration, the optimizer's
    configuration and state, the training step and the state of nnfast's
    global random generator.

    The write is atomic: the data goes to a temporary file in the same folder,
    which is flushed, fsynced and renamed over ``filepath``. If the process
    dies during the save, ``filepath`` keeps its previous content, and a
    temporary file named ``.<name>.<random>.nnfast-tmp`` may remain.

    Args:
        model: the model to save.
        filepath: path of the file to write.
        overwrite: when False, raise FileExistsError if ``filepath`` exists.
    """
    document, arrays = serialization.model_document(model, kind="model")
    write_archive(filepath, document, arrays, overwrite=overwrite)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True,
               restore_random_state=True):
    """Return the model saved in ``filepath`` by :func:`save_model`.

    The file is read as JSON and raw arrays only, never with pickle. Class
    names are looked up among nnfast's own classes, those registered with
    :func:`register_serializable` and ``custom_objects``, and an unknown name
    raises FormatError instead of causing an import.

    Args:
        filepath: path of the file.
        custom_objects: optional dict of class name -> class for user classes
            that are not registered.
        compile: whether to compile the model as saved and restore its
            optimizer state. When False the model is returned uncompiled.
        safe_mode: accepted for Keras compatibility and ignored. Keras's
            ``load_model`` documents it as disallowing the deserialization of
            lambdas. An nnfast file has no field that can contain code.
        restore_random_state: whether to set nnfast's global random generator
            (shuffling, dropout, initializers) to its state at save time, so
            that training resumed from a file saved at the end of an epoch
            repeats the uninterrupted run. When False the global generator is
            left exactly as it was. Generators owned by layers (a Dropout with
            a seed) are part of the model and are always restored.

    Raises:
        FormatError: the content is not a valid nnfast file (not a zip,
            truncated, corrupted, missing member, unsupported format version,
            unknown class, or arrays that do not match the architecture).
        OSError: the file cannot be opened, for example FileNotFoundError.
    """
    custom_objects = _check_custom_objects(custom_objects, "load_model")
    for value, name in ((compile, "compile"), (safe_mode, "safe_mode"),
                        (restore_random_state, "restore_random_state")):
        _check_flag(value, name, "load_model")
    with ArchiveReader.open_path(filepath) as reader:
        return serialization.load_model_from(reader, custom_objects, compile,
                                             restore_random_state)


def save_weights(model, filepath, overwrite=True):
    """Save the model's weights (and its architecture, for checking) to one file.

    Same format and atomic write as :func:`save_model`, without compile,
    optimizer or random state.
    """
    document, arrays = serialization.model_document(model, kind="weights")
    write_archive(filepath, document, arrays, overwrite=overwrite)


def load_weights(model, filepath):
    """Load weights from a file written by :func:`save_weights` or :func:`save_model`.

    Weights are matched by position (``model.weights`` order) and must have
    the same shapes and dtypes. Every array is read and checked before the
    first weight changes, so on any error the model keeps all its weights.
    An unbuilt model is first built for the input shape recorded in the file.

    Raises:
        FormatError: the file is invalid or does not match the model.
        OSError: the file cannot be opened.
    """
    with ArchiveReader.open_path(filepath) as reader:
        serialization.load_weights_from(reader, model)


def model_to_bytes(model):
    """Return the bytes that :func:`save_model` would write for ``model``."""
    document, arrays = serialization.model_document(model, kind="model")
    buffer = io.BytesIO()
    write_archive(buffer, document, arrays)
    return buffer.getvalue()


def model_from_bytes(data, custom_objects=None, compile=True,
                     restore_random_state=False):
    """Return the model in ``data``, bytes made by :func:`model_to_bytes`.

    Unpickling a model calls this. It leaves nnfast's global random generator
    alone unless ``restore_random_state`` is True.
    """
    custom_objects = _check_custom_objects(custom_objects, "model_from_bytes")
    _check_flag(compile, "compile", "model_from_bytes")
    _check_flag(restore_random_state, "restore_random_state", "model_from_bytes")
    with ArchiveReader.from_bytes(data) as reader:
        return serialization.load_model_from(reader, custom_objects, compile,
                                             restore_random_state)


def model_to_json(model, **kwargs):
    """Return the model's architecture as a JSON string.

    Keyword arguments go to ``json.dumps`` (for example ``indent=2``).
    """
    from nnfast import __version__

    document = serialization.architecture_entry(model)
    document["nnfast_version"] = __version__
    return json.dumps(document, **kwargs)


def model_from_json(json_string, custom_objects=None):
    """Return a new, uncompiled model from :func:`model_to_json`'s string.

    Raises:
        FormatError: the string is not valid JSON or names an unknown class.
    """
    custom_objects = _check_custom_objects(custom_objects, "model_from_json")
    if not isinstance(json_string, (str, bytes, bytearray)):
        raise TypeError(
            f"model_from_json: expected a JSON string, got "
            f"{type(json_string).__name__}"
        )
    try:
        document = json.loads(json_string)
    except (ValueError, RecursionError) as err:
        raise FormatError("model JSON", f"not valid JSON ({err})") from None
    return serialization.model_from_config_document(document, "model JSON",
                                                    custom_objects)
