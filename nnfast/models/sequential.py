"""The Sequential model: a plain stack of layers."""

import numpy as np

from nnfast.layers.core import InputLayer
from nnfast.layers.layer import Layer
from nnfast.models.model import Model

_model_counter = [0]


def _default_name():
    index = _model_counter[0]
    _model_counter[0] += 1
    return "sequential" if index == 0 else f"sequential_{index}"


class Sequential(Model):
    """A linear stack of layers.

    Args:
        layers: optional list of layers, the first possibly an ``Input``.
        name: name of the model.

    Example:
        >>> model = Sequential([Input(shape=(784,)), Dense(10)])
    """

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name or _default_name())
        self._input_layer = None
        self._layers = []
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self.trainable = trainable
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self):
        """The model's layers, without the input layer (as in Keras)."""
        return list(self._layers)

    @property
    def dtype(self):
        if self._input_layer is not None:
            return self._input_layer.dtype
        if self._layers:
            return self._layers[0].dtype
        from nnfast import config
        return config.floatx()

    def add(self, layer):
        """Append a layer; an ``Input`` is only allowed first."""
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Sequential.add: expected a Layer instance, got {layer!r} of type "
                f"{type(layer).__name__}"
            )
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._layers:
                raise ValueError(
                    f"Sequential.add: an Input layer can only be the first layer of "
                    f"model '{self.name}'"
                )
            self._input_layer = layer
            self._build_now(layer._batch_input_shape)
            return
        names = {existing.name for existing in self._layers}
        if layer.name in names:
            raise ValueError(
                f"Sequential.add: model '{self.name}' already has a layer named "
                f"'{layer.name}'; layer names must be unique"
            )
        if layer in self._layers:
            raise ValueError(f"Sequential.add: layer '{layer.name}' is already in "
                             f"model '{self.name}'")
        self._layers.append(layer)
        if self.built:
            self._build_now(self.input_shape)
        elif not self._layers[:-1] and layer._batch_input_shape is not None:
            self._build_now(layer._batch_input_shape)
        self._layout_key = None

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise IndexError(f"Sequential.pop: model '{self.name}' has no layers")
        layer = self._layers.pop()
        self._layout_key = None
        if self.built and self._layers:
            self._build_now(self.input_shape)
        elif not self._layers:
            self.output_shape = self.input_shape[1:] if self.input_shape else None
        return layer

    def build(self, input_shape=None):
        """Create every layer's weights for inputs of ``input_shape``.

        ``input_shape`` includes the batch axis, which may be None.
        """
        if input_shape is None:
            if self.input_shape is None:
                raise ValueError(
                    f"Sequential.build: model '{self.name}' does not know its input "
                    "shape; pass build(input_shape=(None, ...)), start the model "
                    "with Input(shape=...), or call fit or predict on data"
                )
            input_shape = self.input_shape
        self._build_now(tuple(input_shape))

    def _build_now(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 1:
            raise ValueError(
                f"Sequential.build: `input_shape` must include the batch axis, got "
                f"{input_shape}"
            )
        dtypes = {layer.dtype for layer in self._layers}
        if len(dtypes) > 1:
            raise ValueError(
                f"Sequential: all layers of model '{self.name}' must share one "
                f"dtype, got {sorted(dtypes)}; pass the same dtype= to each layer "
                "or use nnfast.config.set_floatx"
            )
        shape = tuple(input_shape[1:])
        for layer in self._layers:
            shape = layer._ensure_built(shape)
        self.input_shape = (None,) + tuple(input_shape[1:])
        self.output_shape = shape
        self.built = True
        self._layout_key = None
        if self._compiled:
            self._resolve_metrics()

    # Description ------------------------------------------------------------

    def summary(self, line_length=None, print_fn=None):
        """Print each layer's name, type, output shape and parameter count."""
        if not self.built:
            raise ValueError(
                f"summary: model '{self.name}' has not been built, so its shapes "
                "are unknown. Start it with Input(shape=...), call "
                "build(input_shape=(None, ...)), or call fit or predict first."
            )
        print_fn = print_fn or print
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self._layers:
            shape = "(None, " + ", ".join(str(d) for d in layer.output_shape) + ")"
            shape = shape.replace(", )", ")")
            rows.append((f"{layer.name} ({type(layer).__name__})", shape,
                         f"{layer.count_params():,}"))
        widths = [max(len(row[i]) for row in rows) + 2 for i in range(3)]
        widths[0] = max(widths[0], 30)
        widths[1] = max(widths[1], 24)
        widths[2] = max(widths[2], 12)
        rule = "-" * sum(widths)
        lines = [f'Model: "{self.name}"', rule]
        header = rows[0]
        lines.append(header[0].ljust(widths[0]) + header[1].ljust(widths[1])
                     + header[2].rjust(widths[2]))
        lines.append("=" * sum(widths))
        for row in rows[1:]:
            lines.append(row[0].ljust(widths[0]) + row[1].ljust(widths[1])
                         + row[2].rjust(widths[2]))
        lines.append(rule)
        total = self.count_params()
        trainable = sum(w.value.size for w in self.trainable_weights)
        itemsize = np.dtype(self.dtype).itemsize
        lines.append(f" Total params: {total:,} ({_format_bytes(total * itemsize)})")
        lines.append(f" Trainable params: {trainable:,} "
                     f"({_format_bytes(trainable * itemsize)})")
        frozen = total - trainable
        lines.append(f" Non-trainable params: {frozen:,} "
                     f"({_format_bytes(frozen * itemsize)})")
        for line in lines:
            print_fn(line)

    def get_config(self):
        """Return the architecture as a JSON-friendly dict."""
        from nnfast.layers import serialize
        layers = []
        if self._input_layer is not None:
            layers.append(serialize(self._input_layer))
        elif self.input_shape is not None:
            layers.append({"class_name": "InputLayer",
                           "config": {"shape": list(self.input_shape[1:]),
                                      "batch_size": None, "name": "input_layer",
                                      "dtype": self.dtype}})
        layers.extend(serialize(layer) for layer in self._layers)
        return {"name": self.name, "trainable": self.trainable, "layers": layers}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Return a new model from :meth:`get_config`'s dict."""
        from nnfast.layers import deserialize
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for layer_config in config.get("layers", []):
            model.add(deserialize(layer_config, custom_objects=custom_objects))
        return model


def _format_bytes(n_bytes):
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024.0
    return f"{n_bytes:.2f} GB"
