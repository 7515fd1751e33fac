"""Conversion between a model and the document and arrays of a file.

The document (member ``nnfast.json``) of format version 1 has these keys:

    format            "nnfast"
    format_version    1
    nnfast_version    the nnfast version that wrote the file
    kind              "model" (written by save_model) or "weights" (save_weights)
    architecture      {"class_name", "config", optional "registered_name"}
    weights           [{"name", "member", "shape", "dtype"}] in model.weights order

and, for kind "model" only:

    compile           null, or {"loss": object entry, "metrics": [name or entry]}
    optimizer         null, or an object entry plus "iterations" and "slots"
                      (a list like "weights", one flat array per state slot)
    training          {"step": the optimizer's iteration count}
    random_state      {"global": state of nnfast's global generator,
                       "layers": {layer name: {attribute: generator state}}}

An object entry is {"class_name", "config", optional "registered_name"}.
Generator states are NumPy ``bit_generator.state`` dicts.
"""

import contextlib
import math
import numbers
from dataclasses import dataclass

import numpy as np

from nnfast import _rng
from nnfast.saving import format as file_format
from nnfast.saving import registry
from nnfast.saving.format import FormatError

# Exceptions that constructors and from_config raise on a bad config. Loading
# reports them as FormatError, chained to the original.
_CONFIG_ERRORS = (TypeError, ValueError, LookupError, AttributeError,
                  ArithmeticError, RecursionError, ImportError)


@dataclass(frozen=True)
class ArrayEntry:
    """One array of a file: its weight or slot name, member, shape and dtype."""

    name: str
    member: str
    shape: tuple
    dtype: str

    @property
    def nbytes(self):
        return math.prod(self.shape) * file_format.ARRAY_DTYPES[self.dtype].itemsize


# Saving ----------------------------------------------------------------------


def object_entry(obj):
    """Return {"class_name", "config"} for a layer, loss, optimizer or metric."""
    entry = {"class_name": type(obj).__name__, "config": obj.get_config()}
    registered_name = registry.get_registered_name(type(obj))
    if registered_name != entry["class_name"]:
        entry["registered_name"] = registered_name
    return entry


def architecture_entry(model):
    """Return the architecture of ``model`` as an object entry."""
    if not hasattr(model, "get_config"):
        raise TypeError(
            f"save: model of type {type(model).__name__} has no get_config(), so "
            "its architecture cannot be saved"
        )
    entry = object_entry(model)
    layer_entries = entry["config"].get("layers")
    if isinstance(layer_entries, list):
        # Sequential.get_config() writes bare class names. Adding the
        # registered name of user classes lets loading find the right one.
        layers_by_name = {layer.name: layer for layer in getattr(model, "layers", [])}
        for layer_entry in layer_entries:
            layer = layers_by_name.get(layer_entry.get("config", {}).get("name"))
            if layer is None:
                continue
            registered_name = registry.get_registered_name(type(layer))
            if registered_name != layer_entry.get("class_name"):
                layer_entry["registered_name"] = registered_name
    return entry


def _array_manifest(prefix, named_arrays):
    manifest = []
    arrays = []
    for index, (name, array) in enumerate(named_arrays):
        member = f"{prefix}/{index}.npy"
        manifest.append({"name": name, "member": member, "shape": list(array.shape),
                         "dtype": array.dtype.name})
        arrays.append((member, array))
    return manifest, arrays


def _generator_states(model):
    """Return {layer name: {attribute: state}} for layers that own a generator."""
    states = {}
    for layer in getattr(model, "layers", []):
        for attribute, value in vars(layer).items():
            if isinstance(value, np.random.Generator):
                states.setdefault(layer.name, {})[attribute] = value.bit_generator.state
    return states


def model_document(model, kind):
    """Return (document, [(member, array)]) for ``model``.

    ``kind`` is "model" (everything) or "weights" (architecture and weights).
    """
    weight_manifest, arrays = _array_manifest(
        "weights", [(weight.name, weight.value) for weight in model.weights])
    from nnfast import __version__

    document = {
        "format": file_format.FORMAT_NAME,
        "format_version": file_format.FORMAT_VERSION,
        "nnfast_version": __version__,
        "kind": kind,
        "architecture": architecture_entry(model),
        "weights": weight_manifest,
    }
    if kind == "weights":
        return document, arrays

    compile_section = None
    optimizer_section = None
    step = 0
    if model.optimizer is not None and model.loss is not None:
        metrics = [spec if isinstance(spec, str) else object_entry(spec)
                   for spec in getattr(model, "_metric_specs", [])]
        compile_section = {"loss": object_entry(model.loss), "metrics": metrics}
        state = model.optimizer.get_state()
        slot_manifest, slot_arrays = _array_manifest(
            "optimizer", sorted(state["slots"].items()))
        optimizer_section = object_entry(model.optimizer)
        optimizer_section["iterations"] = int(state["iterations"])
        optimizer_section["slots"] = slot_manifest
        arrays.extend(slot_arrays)
        step = int(state["iterations"])
    document["compile"] = compile_section
    document["optimizer"] = optimizer_section
    document["training"] = {"step": step}
    document["random_state"] = {"global": _rng.get_state(),
                                "layers": _generator_states(model)}
    return document, arrays


# Loading ---------------------------------------------------------------------


@contextlib.contextmanager
def preserved_global_generator():
    """Restore nnfast's global generator state on exit.

    Building layers draws initial weights from the global generator. Loading
    overwrites those weights, so it should not consume the draws.
    """
    state = _rng.get_state()
    try:
        yield
    finally:
        _rng.set_state(state)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _shape_of(value):
    """Return ``value`` as a tuple of ints >= 0, or None when it is not one."""
    if not isinstance(value, (list, tuple)):
        return None
    if not all(_is_int(dim) and dim >= 0 for dim in value):
        return None
    return tuple(int(dim) for dim in value)


def estimated_weight_bytes(layers, input_shape=None):
    """Return a lower bound on the bytes of weights that building ``layers`` creates.

    Computed from the configs alone, before anything is allocated, so a
    forged architecture (a Dense layer with 10**12 units) is caught before it
    is built. Counts nnfast's own layers and stops at the first other class,
    whose weights it cannot know.
    """
    from nnfast.layers import activation_layers, convolutional, core, normalization
    from nnfast.layers import pooling, reshaping

    weightless = (core.Activation, core.Dropout, core.Flatten, pooling._Pooling,
                  pooling._GlobalPooling, reshaping.Reshape, reshaping.ZeroPadding2D,
                  activation_layers.ReLU, activation_layers.Softmax,
                  activation_layers._KernelActivation)
    total = 0
    shape = input_shape
    for layer in layers:
        if type(layer) is core.InputLayer:
            shape = tuple(layer.shape)
            continue
        if shape is None:
            batch_shape = getattr(layer, "_batch_input_shape", None)
            if batch_shape is None:
                return total
            shape = _shape_of(list(batch_shape[1:]))
            if shape is None:
                raise ValueError(
                    f"layer {layer.name!r} has input shape {batch_shape[1:]}, but "
                    "dimensions must be ints >= 0"
                )
        count = _weight_count(layer, shape, core, convolutional, normalization)
        if count is None:
            if not isinstance(layer, weightless):
                # A class whose weights cannot be known from its config.
                return total
        else:
            total += count * np.dtype(layer.dtype).itemsize
        shape = tuple(layer.compute_output_shape(shape))
    return total


def _weight_count(layer, shape, core, convolutional, normalization):
    """Return the number of weight values ``layer`` creates, or None if unknown."""
    if not shape:
        return None
    if type(layer) is core.Dense:
        return shape[-1] * layer.units + (layer.units if layer.use_bias else 0)
    if isinstance(layer, convolutional._Conv):
        kernel = math.prod(layer.kernel_size) * shape[-1] * layer.filters
        return kernel + (layer.filters if layer.use_bias else 0)
    if isinstance(layer, normalization.BatchNormalization):
        channels = shape[layer.axis] if -len(shape) - 1 < layer.axis < len(shape) else 0
        # gamma and beta when enabled, plus the two moving statistics.
        return channels * (2 + int(layer.center) + int(layer.scale))
    if isinstance(layer, normalization.LayerNormalization):
        axes = layer.axis if isinstance(layer.axis, list) else [layer.axis]
        size = 1
        for axis in axes:
            if -len(shape) - 1 < axis < len(shape):
                size *= shape[axis]
        return size * (int(layer.center) + int(layer.scale))
    return None


def input_shape_of(architecture):
    """Return the input shape (no batch axis) recorded in a Sequential config."""
    try:
        first = architecture["config"]["layers"][0]
        if first["class_name"] != "InputLayer":
            return None
        return _shape_of(first["config"]["shape"])
    except (TypeError, LookupError):
        return None


class Loader:
    """Validation and reconstruction steps shared by the loading functions.

    Every check raises FormatError naming ``source``.
    """

    def __init__(self, source, custom_objects=None):
        self.source = source
        self.custom_objects = custom_objects

    def fail(self, reason):
        raise FormatError(self.source, reason)

    def call(self, description, function, *args, **kwargs):
        """Call ``function``, reporting errors of a bad config as FormatError."""
        try:
            return function(*args, **kwargs)
        except FormatError:
            raise
        except _CONFIG_ERRORS as err:
            raise FormatError(
                self.source,
                f"invalid {description}: {type(err).__name__}: {err}") from err

    def require(self, mapping, key, types, where):
        """Return ``mapping[key]``, which must be an instance of ``types``."""
        if not isinstance(mapping, dict):
            self.fail(f"{where} must be an object, got {type(mapping).__name__}")
        value = mapping.get(key)
        if not isinstance(value, types):
            self.fail(f"{where} must have {key!r} of type {types.__name__}, got "
                      f"{value!r:.80}")
        return value

    # Document ----------------------------------------------------------------

    def check_header(self, document):
        """Check the format name, version and kind, and return the kind."""
        if document.get("format") != file_format.FORMAT_NAME:
            self.fail(f"the document's 'format' is {document.get('format')!r:.80}, "
                      f"expected {file_format.FORMAT_NAME!r}")
        version = document.get("format_version")
        if not _is_int(version) or version not in file_format.SUPPORTED_VERSIONS:
            from nnfast import __version__

            supported = ", ".join(str(v) for v in file_format.SUPPORTED_VERSIONS)
            self.fail(
                f"unsupported format version {version!r:.80}. nnfast {__version__} "
                f"reads version {supported}. A file from a newer nnfast needs that "
                "version to load."
            )
        kind = document.get("kind")
        if kind not in ("model", "weights"):
            self.fail(f"the document's 'kind' is {kind!r:.80}, expected 'model' or "
                      "'weights'")
        return kind

    def array_entries(self, entries, where):
        """Return ArrayEntry items for a manifest list such as "weights"."""
        if not isinstance(entries, list):
            self.fail(f"{where} must be a list, got {type(entries).__name__}")
        result = []
        for index, entry in enumerate(entries):
            label = f"{where}[{index}]"
            name = self.require(entry, "name", str, label)
            member = self.require(entry, "member", str, label)
            shape = _shape_of(entry.get("shape"))
            if shape is None:
                self.fail(f"{label} must have 'shape' as a list of ints >= 0, got "
                          f"{entry.get('shape')!r:.80}")
            dtype = entry.get("dtype")
            if not isinstance(dtype, str) or dtype not in file_format.ARRAY_DTYPES:
                self.fail(f"{label} has dtype {dtype!r:.80}, expected one of "
                          f"{', '.join(file_format.ARRAY_DTYPES)}")
            array = ArrayEntry(name, member, shape, dtype)
            if array.nbytes > file_format.MAX_ARRAY_BYTES:
                self.fail(f"{label} declares {array.nbytes} bytes, more than the "
                          f"limit of {file_format.MAX_ARRAY_BYTES}")
            result.append(array)
        return result

    def optimizer_entries(self, document):
        """Return the ArrayEntry items of the optimizer's slots (maybe empty)."""
        section = document.get("optimizer")
        if section is None:
            return []
        if not isinstance(section, dict):
            self.fail("'optimizer' must be an object or null")
        return self.array_entries(section.get("slots"), "optimizer.slots")

    def check_members(self, reader, entries):
        """Check that the archive contains exactly the document and ``entries``.

        Also reads every array header, so that shapes and dtypes are known to
        be right before anything is built or allocated.
        """
        declared = {file_format.DOCUMENT_MEMBER}
        for entry in entries:
            if entry.member in declared:
                self.fail(f"member {entry.member!r} is listed twice")
            declared.add(entry.member)
        present = reader.member_names
        missing = sorted(declared - present)
        if missing:
            self.fail(f"missing member {missing[0]!r}")
        unexpected = sorted(present - declared)
        if unexpected:
            self.fail(f"unexpected member {unexpected[0]!r:.120}")
        for entry in entries:
            reader.check_array_header(entry.member, entry.shape, entry.dtype)

    # Architecture ------------------------------------------------------------

    def resolve(self, kind, entry, where):
        """Return (class, config) for an object entry of ``kind``."""
        if not isinstance(entry, dict):
            self.fail(f"{where} must be an object, got {type(entry).__name__}")
        class_name = self.require(entry, "class_name", str, where)
        registered_name = entry.get("registered_name")
        if registered_name is not None and not isinstance(registered_name, str):
            self.fail(f"{where} has a 'registered_name' that is not a string")
        config = entry.get("config", {})
        if not isinstance(config, dict):
            self.fail(f"{where} must have 'config' as an object")
        try:
            cls = registry.resolve_class(kind, class_name, registered_name,
                                         self.custom_objects)
        except LookupError as err:
            self.fail(f"{where}: {err}")
        return cls, config

    def instantiate(self, kind, entry, where):
        cls, config = self.resolve(kind, entry, where)
        return self.call(f"{where} ({cls.__name__})", cls.from_config, dict(config))

    def build_model(self, architecture, max_weight_bytes):
        """Return the model described by ``architecture``, built but not loaded.

        Raises FormatError when nnfast's own layers would allocate more than
        ``max_weight_bytes`` of weights.
        """
        cls, config = self.resolve("model", architecture, "architecture")
        custom_objects = dict(self.custom_objects or {})
        layer_entries = config.get("layers")
        if isinstance(layer_entries, list):
            layers = []
            for index, entry in enumerate(layer_entries):
                layer = self.instantiate("layer", entry, f"architecture layer {index}")
                known = custom_objects.get(entry["class_name"])
                if known is not None and known is not type(layer):
                    self.fail(f"two different layer classes are named "
                              f"{entry['class_name']!r}")
                custom_objects[entry["class_name"]] = type(layer)
                layers.append(layer)
            needed = self.call("architecture", estimated_weight_bytes, layers)
            if needed > max_weight_bytes:
                self.fail(f"the architecture needs at least {needed} bytes of "
                          f"weights, but at most {max_weight_bytes} are allowed here")
        with preserved_global_generator():
            return self.call("architecture", cls.from_config, config,
                             custom_objects=custom_objects)

    def check_weights(self, model, entries, match_names, owner="the architecture"):
        """Check that the weights of ``model`` match ``entries`` one to one."""
        weights = model.weights
        if len(weights) != len(entries):
            self.fail(f"{owner} has {len(weights)} weights, but the file stores "
                      f"{len(entries)}")
        for index, (weight, entry) in enumerate(zip(weights, entries)):
            if match_names and weight.name != entry.name:
                self.fail(f"weight {index} of {owner} is {weight.name!r}, but the "
                          f"file stores {entry.name!r:.80} there")
            if tuple(weight.shape) != entry.shape:
                self.fail(f"weight {weight.name!r} of {owner} has shape "
                          f"{tuple(weight.shape)}, but the file stores shape "
                          f"{entry.shape}")
            if weight.value.dtype.name != entry.dtype:
                self.fail(f"weight {weight.name!r} of {owner} has dtype "
                          f"{weight.value.dtype.name}, but the file stores "
                          f"{entry.dtype}")

    # Compile and optimizer ---------------------------------------------------

    def compile_model(self, model, document, reader, slot_entries):
        """Compile ``model`` as saved and restore its optimizer state."""
        section = document.get("compile")
        if section is None:
            return
        if not isinstance(section, dict):
            self.fail("'compile' must be an object or null")
        loss = self.instantiate("loss", section.get("loss"), "compile.loss")
        metric_specs = section.get("metrics", [])
        if not isinstance(metric_specs, list):
            self.fail("compile.metrics must be a list")
        metrics = []
        for index, spec in enumerate(metric_specs):
            if isinstance(spec, str):
                metrics.append(spec)
            else:
                metrics.append(self.instantiate("metric", spec,
                                                f"compile.metrics[{index}]"))
        optimizer_section = document.get("optimizer")
        optimizer = self.instantiate("optimizer", optimizer_section, "optimizer")
        iterations = optimizer_section.get("iterations", 0)
        if not _is_int(iterations) or iterations < 0:
            self.fail(f"optimizer.iterations must be an int >= 0, got "
                      f"{iterations!r:.80}")
        self.call("compile configuration", model.compile, optimizer=optimizer,
                  loss=loss, metrics=metrics)

        n_trainable = sum(weight.value.size for weight in model.trainable_weights)
        slots = {}
        for entry in slot_entries:
            if entry.name in slots:
                self.fail(f"optimizer slot {entry.name!r} appears twice")
            if entry.shape != (n_trainable,) or entry.dtype != model.dtype:
                self.fail(
                    f"optimizer slot {entry.name!r} has shape {entry.shape} and "
                    f"dtype {entry.dtype}, expected ({n_trainable},) and "
                    f"{model.dtype} for the model's trainable weights"
                )
            slots[entry.name] = reader.read_array(entry.member, entry.shape,
                                                  entry.dtype)
        self.call("optimizer state", optimizer.set_state,
                  {"iterations": int(iterations), "slots": slots})

    # Random state ------------------------------------------------------------

    def _check_generator_state(self, generator, state, where):
        probe = type(generator.bit_generator)()
        try:
            probe.state = state
        except (TypeError, ValueError, LookupError, OverflowError) as err:
            self.fail(f"{where} is not a valid {type(probe).__name__} state "
                      f"({type(err).__name__}: {err})")

    def random_states(self, document, model):
        """Return (global state or None, [(generator, state)]) after checking all.

        Nothing is changed here, so a bad state leaves every generator as it was.
        """
        section = document.get("random_state")
        if section is None:
            return None, []
        if not isinstance(section, dict):
            self.fail("'random_state' must be an object or null")
        global_state = section.get("global")
        if global_state is not None:
            self._check_generator_state(_rng.generator(), global_state,
                                        "random_state.global")
        layer_states = section.get("layers", {})
        if not isinstance(layer_states, dict):
            self.fail("random_state.layers must be an object")
        layers_by_name = {layer.name: layer for layer in getattr(model, "layers", [])}
        assignments = []
        for layer_name, states in layer_states.items():
            layer = layers_by_name.get(layer_name)
            if layer is None or not isinstance(states, dict):
                self.fail(f"random_state.layers names {layer_name!r:.80}, which is "
                          "not a layer of the model")
            for attribute, state in states.items():
                generator = getattr(layer, attribute, None)
                if not isinstance(generator, np.random.Generator):
                    self.fail(f"layer {layer_name!r} has no generator "
                              f"{attribute!r:.80}")
                self._check_generator_state(
                    generator, state, f"random_state.layers.{layer_name}.{attribute}")
                assignments.append((generator, state))
        return global_state, assignments


# Entry points ----------------------------------------------------------------


def load_model_from(reader, custom_objects, compile, restore_random_state):
    """Return the model stored in the archive of ``reader``."""
    loader = Loader(reader.source, custom_objects)
    document = reader.read_document()
    kind = loader.check_header(document)
    if kind != "model":
        loader.fail("it contains only weights, written by save_weights. Build "
                    "the model and call model.load_weights(path) instead")
    weight_entries = loader.array_entries(document.get("weights"), "weights")
    slot_entries = loader.optimizer_entries(document)
    loader.check_members(reader, weight_entries + slot_entries)
    training = document.get("training", {})
    if not isinstance(training, dict) or not _is_int(training.get("step", 0)):
        loader.fail("'training' must be an object with an int 'step'")

    budget = sum(entry.nbytes for entry in weight_entries)
    model = loader.build_model(document.get("architecture"), budget)
    loader.check_weights(model, weight_entries, match_names=True)
    if weight_entries:
        model._assemble()
    # The model is new, so reading straight into its flat buffer is safe: on
    # an error the caller never receives it.
    for weight, entry in zip(model.weights, weight_entries):
        reader.read_array(entry.member, entry.shape, entry.dtype, out=weight.value)
    if compile:
        loader.compile_model(model, document, reader, slot_entries)
    global_state, assignments = loader.random_states(document, model)
    for generator, state in assignments:
        generator.bit_generator.state = state
    if restore_random_state and global_state is not None:
        _rng.set_state(global_state)
    return model


def load_weights_from(reader, model):
    """Copy the weights in the archive of ``reader`` into ``model``.

    Every array is read and checked before the first weight changes.
    """
    loader = Loader(reader.source)
    document = reader.read_document()
    loader.check_header(document)
    weight_entries = loader.array_entries(document.get("weights"), "weights")
    slot_entries = loader.optimizer_entries(document)
    loader.check_members(reader, weight_entries + slot_entries)

    if not getattr(model, "built", True) and weight_entries:
        input_shape = input_shape_of(document.get("architecture"))
        if input_shape is None:
            raise ValueError(
                f"load_weights: model {model.name!r} is not built and the "
                f"{reader.source} records no input shape. Call "
                "model.build(input_shape=(None, ...)) first"
            )
        budget = sum(entry.nbytes for entry in weight_entries)
        needed = loader.call("model", estimated_weight_bytes, model.layers,
                             input_shape)
        if needed > budget:
            loader.fail(f"the model needs at least {needed} bytes of weights for "
                        f"input shape {input_shape}, but the file stores {budget}")
        with preserved_global_generator():
            model.build((None,) + input_shape)
    loader.check_weights(model, weight_entries, match_names=False, owner="the model")
    staged = [reader.read_array(entry.member, entry.shape, entry.dtype)
              for entry in weight_entries]
    for weight, value in zip(model.weights, staged):
        weight.value[...] = value


def model_from_config_document(document, source, custom_objects):
    """Return the uncompiled model described by a parsed ``model_to_json`` document."""
    loader = Loader(source, custom_objects)
    if not isinstance(document, dict):
        loader.fail(f"expected a JSON object, got {type(document).__name__}")
    return loader.build_model(document, file_format.MAX_ARRAY_BYTES)
