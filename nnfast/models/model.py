"""Training and inference for models made of a stack of layers.

A built model keeps every weight in one flat parameter buffer (trainable
weights first) and every gradient in a flat gradient buffer of the same
layout, and the layers hold views into them. A training step runs each
layer's fused forward kernel, the loss and its gradient in one kernel, each
layer's fused backward kernel, and one optimizer call over the whole buffer.

Buffers that a step needs (the gathered batch, each layer's outputs and
gradients) live in a workspace per calling thread and batch size, so steady
state allocates no new workspace and two threads never share one.
"""

import math
import threading
import warnings
from collections import OrderedDict

import numpy as np

from nnfast import _rng, _threads, backend
from nnfast import losses as losses_module
from nnfast import metrics as metrics_module
from nnfast import optimizers as optimizers_module
from nnfast.callbacks import CallbackList, History, ProgbarLogger
from nnfast.layers import layer as layer_module
from nnfast.models import data_adapter

# Workspaces kept per model; the least recently used goes first.
_MAX_WORKSPACES = 16


# Whether fit may take the lean path for Dense stacks (Model._dense_train_pass).
# Tests turn it off to compare the two paths.
_LEAN_TRAINING = True


class _Workspace:
    """Reusable buffers for one thread and one batch size."""

    def __init__(self, n_layers):
        self.caches = [{} for _ in range(n_layers)]
        self.x = None
        self.grad = None
        self.chain_buffers = None
        # The lean training pass's buffers: layer outputs, input gradients
        # and per-sample losses (see Model._dense_train_pass).
        self.train_buffers = None


class Model:
    """Base class with compile, fit, evaluate and predict.

    Subclasses provide ``_layers`` (the computing layers in order) and
    ``build``.
    """

    def __init__(self, name=None):
        self.name = name
        self.optimizer = None
        self.loss = None
        self.compiled_metrics = []
        self.stop_training = False
        self.history = None
        self._compiled = False
        self._params = None
        self._grads = None
        self._n_trainable = 0
        self._segments = []
        self._layout_key = None
        self._workspaces = OrderedDict()
        self._workspace_lock = threading.Lock()
        self._in_fit = False
        self._compile_config = None
        self._chain = None
        self._chain_key = None
        self._train_chain = None
        self._plan = None
        self._plan_key = None
        self._layout_generation = -1
        self._distribute = None
        self._loss_scale = 1.0
        self._metric_specs = []
        self._weighted_metric_specs = []

    # Weights layout ---------------------------------------------------------

    def _all_weights(self):
        trainable = []
        frozen = []
        for layer in self._layers:
            trainable.extend(layer.trainable_weights)
            frozen.extend(layer.non_trainable_weights)
        return trainable, frozen

    def _assemble(self):
        """Gather every weight into the flat buffers, if the layout changed."""
        generation = layer_module.structure_generation[0]
        if self._layout_key is not None and self._layout_generation == generation:
            return
        self._layout_generation = generation
        trainable, frozen = self._all_weights()
        key = tuple(id(w) for w in trainable) + (None,) + tuple(id(w) for w in frozen)
        if key == self._layout_key:
            return
        weights = trainable + frozen
        dtype = self.dtype
        total = sum(w.value.size for w in weights)
        params = np.empty(total, dtype=dtype)
        grads = np.zeros(total, dtype=dtype)
        segments = []
        offset = 0
        for weight in weights:
            size = weight.value.size
            view = params[offset:offset + size].reshape(weight.shape)
            view[...] = weight.value
            weight.value = view
            weight.grad = grads[offset:offset + size].reshape(weight.shape)
            segments.append((offset, offset + size))
            offset += size
        self._params = params
        self._grads = grads
        self._n_trainable = sum(w.value.size for w in trainable)
        self._segments = segments[:len(trainable)]
        self._layout_key = key

    # Workspaces -------------------------------------------------------------

    def _workspace(self, batch_size, training):
        key = (threading.get_ident(), batch_size, training)
        with self._workspace_lock:
            workspace = self._workspaces.get(key)
            if workspace is None:
                workspace = _Workspace(len(self._layers))
                self._workspaces[key] = workspace
                while len(self._workspaces) > _MAX_WORKSPACES:
                    self._workspaces.popitem(last=False)
            else:
                self._workspaces.move_to_end(key)
        return workspace

    # Compile ----------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None,
                loss_weights=None, weighted_metrics=None, run_eagerly=False,
                steps_per_execution=1, jit_compile="auto", auto_scale_loss=True,
                distribute=None):
        """Configure the model for training.

        Args:
            optimizer: optimizer name or instance.
            loss: loss name or instance.
            metrics: list of metric names or instances ("accuracy" picks the
                accuracy that matches the loss, as in Keras). They ignore
                sample and class weights, as in Keras 3.
            loss_weights: a float (or a one-element list or dict) that
                scales the loss of the model's one output.
            weighted_metrics: metrics that take sample and class weights.
            distribute: optional ``nnfast.distributed.DataParallel`` strategy
                that makes ``fit`` train over MPI processes.

        ``run_eagerly``, ``steps_per_execution``, ``jit_compile`` and
        ``auto_scale_loss`` are accepted for Keras compatibility and change
        nothing: nnfast always runs the same compiled kernels.
        """
        self._distribute = distribute
        self._loss_scale = _single_loss_weight(loss_weights)
        if loss is None:
            raise ValueError(
                "compile: `loss` is required, for example "
                "loss='sparse_categorical_crossentropy'"
            )
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, metrics_module.Metric)):
            metrics = [metrics]
        self._metric_specs = list(metrics)
        if weighted_metrics is None:
            weighted_metrics = []
        elif isinstance(weighted_metrics, (str, metrics_module.Metric)):
            weighted_metrics = [weighted_metrics]
        self._weighted_metric_specs = list(weighted_metrics)
        self._compiled = True
        self.compiled_metrics = []
        self._compile_config = {
            "optimizer": optimizers_module.serialize(self.optimizer),
            "loss": losses_module.serialize(self.loss),
            "metrics": [m if isinstance(m, str) else type(m).__name__
                        for m in self._metric_specs],
        }
        if self.built:
            self._resolve_metrics()

    def _resolve_metrics(self):
        output_shape = self.output_shape
        plain = [metrics_module.get(spec, loss=self.loss, output_shape=output_shape)
                 for spec in self._metric_specs]
        weighted = [metrics_module.get(spec, loss=self.loss, output_shape=output_shape)
                    for spec in self._weighted_metric_specs]
        names = {metric.name for metric in plain}
        for metric in weighted:
            metric._takes_weights = True
            if metric.name in names:
                # Keras 3 reports a weighted twin of a metric under its own name.
                metric.name = f"weighted_{metric.name}"
        self.compiled_metrics = plain + weighted

    @property
    def metrics_names(self):
        """The names of the values ``evaluate`` returns: "loss", then metrics."""
        return ["loss"] + [metric.name for metric in self.compiled_metrics]

    def _check_compiled(self, where):
        if not self._compiled:
            raise RuntimeError(
                f"{where}: the model must be compiled first; call "
                "model.compile(optimizer=..., loss=...)"
            )

    # Fused output activation -------------------------------------------------

    def _fused_activation(self):
        """Return the output activation that the loss takes over, or None.

        When the last layer ends in softmax and the loss is a cross-entropy on
        probabilities, training computes the loss from the logits instead, so
        that large logits give the true loss rather than a clipped one. The
        same applies to sigmoid and a binary cross-entropy on probabilities.
        """
        last = self._layers[-1] if self._layers else None
        activation = getattr(last, "activation", None)
        on_probabilities = getattr(self.loss, "from_logits", None) is False
        categorical = isinstance(
            self.loss, (losses_module.SparseCategoricalCrossentropy,
                        losses_module.CategoricalCrossentropy))
        binary = isinstance(self.loss, losses_module.BinaryCrossentropy)
        if last is not None and last.activity_regularizer is not None:
            # The penalty applies to the layer's real output, not its logits.
            return None
        if not on_probabilities or not hasattr(last, "units"):
            return None
        if (categorical and activation == "softmax") or (
                binary and activation == "sigmoid"):
            return activation
        return None

    # Forward and backward ---------------------------------------------------

    def _forward(self, x, training, workspace, fused=None, with_penalty=False):
        out = x
        last = len(self._layers) - 1
        for i, (layer, cache) in enumerate(zip(self._layers, workspace.caches)):
            if i == last and fused is not None:
                out = layer.forward(out, training, cache, activation="linear")
            else:
                out = layer.forward(out, training, cache)
            if with_penalty and layer.activity_regularizer is not None:
                cache["activity_output"] = out
                cache["activity_penalty"] = layer.activity_regularizer(out)
        return out

    def _backward(self, grad, workspace):
        first = self._first_trainable_index()
        for i in range(len(self._layers) - 1, -1, -1):
            layer = self._layers[i]
            cache = workspace.caches[i]
            if layer.activity_regularizer is not None:
                grad = grad + layer.activity_regularizer.gradient(
                    cache["activity_output"])
            need_dx = i > first
            grad = layer.backward(grad, cache, need_dx)
            if not need_dx:
                break

    def _penalty(self, workspace):
        """Return the regularization penalties of the last forward pass."""
        total = 0.0
        for layer, cache in zip(self._layers, workspace.caches):
            if layer._regularized:
                total += layer.weight_penalty()
            if layer.activity_regularizer is not None:
                total += cache["activity_penalty"]
        return total

    @property
    def _regularized(self):
        """True when some layer has a weight or activity regularizer."""
        return any(layer._regularized or layer.activity_regularizer is not None
                   for layer in self._layers)

    def _first_trainable_index(self):
        for i, layer in enumerate(self._layers):
            if layer.trainable_weights:
                return i
        return len(self._layers)

    def _step_plan(self):
        """Return (fused activation, regularized, train chain or None) for a step.

        The three depend on the layers, the weights' buffers, the loss and
        the backend, and take tens of microseconds to work out, so they are
        kept until one of those changes. The weights' layout key covers added
        weights and changed ``trainable`` flags.
        """
        # The chain keeps references to the flat buffers, so while it lives
        # no new buffer can take their ids.
        key = (self._layout_key, id(self._params), id(self._grads), self.loss,
               self._loss_scale, backend.get_backend(),
               _LEAN_TRAINING,
               tuple([getattr(layer, "activation", None) for layer in self._layers]),
               tuple([layer.activity_regularizer for layer in self._layers]))
        if key != self._plan_key:
            fused = self._fused_activation()
            regularized = self._regularized
            chain = None if regularized else self._dense_train_chain(fused)
            self._train_chain = chain
            self._plan = (fused, regularized, chain)
            self._plan_key = key
        return self._plan

    def _train_step(self, xb, yb, wb, workspace):
        """Run one step on a batch; return (per-sample losses, outputs)."""
        fused, regularized, chain = self._step_plan()
        lean = (chain is not None and wb is None
                and self._dense_train_pass(chain, xb, yb, workspace))
        if lean:
            per_sample, outputs = lean
        else:
            outputs = self._forward(xb, True, workspace, fused, regularized)
            if workspace.grad is None or workspace.grad.shape != outputs.shape:
                workspace.grad = np.empty(outputs.shape, dtype=outputs.dtype)
            per_sample, grad = self.loss.compute(yb, outputs, wb, want_grad=True,
                                                 logits=fused is not None,
                                                 grad_out=workspace.grad)
            if self._loss_scale != 1.0:
                per_sample = per_sample * self._loss_scale
                grad *= grad.dtype.type(self._loss_scale)
            self._backward(grad, workspace)
        penalty = 0.0
        if regularized:
            # Penalties are taken before the update, on the weights this step
            # used, as Keras reports them.
            penalty = self._penalty(workspace)
            for layer in self._layers:
                if layer.trainable and layer._regularized:
                    layer.add_penalty_gradients()
        if self._distribute is not None:
            self._distribute.reduce_gradients(
                self._grads[:self._n_trainable],
                _loss_weight(self.loss, xb.shape[0], wb))
        if self._n_trainable:
            n = self._n_trainable
            self.optimizer.apply(self._params[:n], self._grads[:n], self._segments)
        if fused is not None:
            outputs = self._probabilities(outputs, fused)
        return per_sample, outputs, penalty

    def _empty_train_step(self):
        """Take part in a distributed step with no samples of this process's own."""
        n = self._n_trainable
        self._grads[:n] = 0
        weight = None if self.loss.reduction == "sum" else 0.0
        self._distribute.reduce_gradients(self._grads[:n], weight)
        if n:
            self.optimizer.apply(self._params[:n], self._grads[:n], self._segments)

    def _probabilities(self, logits, activation):
        if all(getattr(m, "argmax_only", False) for m in self.compiled_metrics):
            # Accuracy metrics compare argmax positions, which softmax keeps.
            return logits
        return backend.kernels().activation_forward(activation, logits)

    def _test_step(self, xb, yb, wb, workspace):
        fused = self._fused_activation()
        regularized = self._regularized
        outputs = self._forward(xb, False, workspace, fused, regularized)
        per_sample, _ = self.loss.compute(yb, outputs, wb, want_grad=False,
                                          logits=fused is not None)
        if self._loss_scale != 1.0:
            per_sample = per_sample * self._loss_scale
        penalty = self._penalty(workspace) if regularized else 0.0
        if fused is not None:
            outputs = self._probabilities(outputs, fused)
        return per_sample, outputs, penalty

    # Data -------------------------------------------------------------------

    def _prepare_xy(self, x, y, where, sample_weight=None, class_weight=None):
        if x is None:
            raise ValueError(f"{where}: `x` is required")
        x = data_adapter.to_array(x, "x")
        if y is None:
            raise ValueError(f"{where}: `y` is required")
        y = data_adapter.to_array(y, "y")
        if x.ndim == 0 or y.ndim == 0:
            raise ValueError(
                f"{where}: x and y must have a batch axis, got x of shape {x.shape} "
                f"and y of shape {y.shape}. A Dataset of single samples needs "
                ".batch(batch_size)."
            )
        data_adapter.check_sample_counts(x, y, where)
        self._build_from(x, where)
        x = data_adapter.convert_inputs(x, self.dtype)
        data_adapter.check_finite(y, "y")
        self.loss.validate_targets(y, (y.shape[0],) + tuple(self.output_shape))
        weights = data_adapter.sample_weights_from(y, sample_weight, class_weight,
                                                   x.shape[0], self.dtype)
        return x, y, weights

    def _build_from(self, x, where):
        if not self.built:
            self.build((None,) + tuple(x.shape[1:]))
        expected = tuple(self.input_shape[1:])
        if tuple(x.shape[1:]) != expected:
            hint = ""
            if x.shape == expected:
                hint = (" It looks like one sample without the batch axis; use "
                        "x[None] or np.expand_dims(x, 0).")
            raise ValueError(
                f"{where}: the model expects inputs of shape (batch_size, "
                f"{', '.join(str(d) for d in expected)}), got x of shape "
                f"{x.shape}.{hint}"
            )

    def _gather(self, x, indices, workspace):
        """Copy rows ``indices`` of ``x`` into the workspace's batch buffer."""
        n = indices.shape[0]
        shape = (n,) + x.shape[1:]
        if workspace.x is None or workspace.x.shape != shape:
            workspace.x = np.empty(shape, dtype=self.dtype)
        flat_x = x.reshape(x.shape[0], -1)
        backend.kernels().gather_rows(flat_x, indices, workspace.x.reshape(n, -1))
        return workspace.x

    # fit --------------------------------------------------------------------

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto",
            callbacks=None, validation_split=0.0, validation_data=None,
            shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1):
        """Train the model on arrays ``x`` and ``y``; return a History.

        As in Keras, ``validation_split`` takes the last fraction of the
        samples, before any shuffling.
        """
        arguments = dict(locals())
        del arguments["self"]
        strategy = self._distribute
        try:
            return self._fit(**arguments)
        except BaseException as error:
            # A failed process would leave the others waiting in a collective,
            # so the strategy stops the whole job.
            if strategy is not None and not isinstance(error, KeyboardInterrupt):
                strategy.abort(error)
            raise

    def _fit(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
             validation_data, shuffle, class_weight, sample_weight, initial_epoch,
             steps_per_epoch, validation_steps, validation_batch_size,
             validation_freq):
        self._check_compiled("fit")
        batch_size = data_adapter.check_batch_size(batch_size)
        epochs = data_adapter.check_nonnegative_int(epochs, "epochs")
        initial_epoch = data_adapter.check_nonnegative_int(initial_epoch,
                                                           "initial_epoch")
        verbose = _check_verbose(verbose)
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(
                f"fit: `validation_split` must be in [0, 1), got {validation_split}"
            )
        validation_freq = data_adapter.check_nonnegative_int(validation_freq,
                                                             "validation_freq")
        if validation_freq < 1:
            raise ValueError("fit: `validation_freq` must be a positive int, got 0")
        if data_adapter.is_batch_iterable(x):
            data_adapter.check_no_y(x, y, "fit")
            source = _IterableSource(x, steps_per_epoch, self, "fit", class_weight)
            if validation_split:
                raise ValueError(
                    "fit: `validation_split` needs arrays; with a Dataset or "
                    "generator pass validation_data instead"
                )
        else:
            x, y, weights = self._prepare_xy(x, y, "fit", sample_weight, class_weight)
            if validation_data is None and validation_split:
                split = int(math.floor(x.shape[0] * (1.0 - validation_split)))
                validation_data = (x[split:], y[split:])
                if weights is not None:
                    validation_data += (weights[split:],)
                    weights = weights[:split]
                x, y = x[:split], y[:split]
            if x.shape[0] == 0:
                if validation_split:
                    raise ValueError(
                        f"fit: validation_split={validation_split} leaves no "
                        "training samples; use a smaller split or more data"
                    )
                raise ValueError(
                    "fit: x has 0 samples; training needs at least one sample"
                )
            source = _ArraySource(self, x, y, weights, batch_size, shuffle,
                                  steps_per_epoch, self._distribute)
        if self._distribute is not None and isinstance(source, _IterableSource):
            raise ValueError(
                "fit: distributed training takes arrays; give each process "
                "in-memory x and y"
            )
        val = None
        if validation_data is not None:
            val = self._unpack_validation(validation_data)
            if self._distribute is not None and isinstance(val, tuple):
                val = tuple(None if part is None else self._distribute.shard(part)
                            for part in val)

        self._assemble()
        self._resolve_metrics()
        strategy = self._distribute
        if strategy is not None:
            strategy.broadcast_state(self)
            if strategy.rank != 0:
                verbose = 0

        history = History()
        callback_list = list(callbacks or [])
        if strategy is not None and strategy.rank != 0:
            callback_list = [cb for cb in callback_list
                             if not getattr(cb, "writes_files", False)]
        if verbose:
            callback_list.append(ProgbarLogger())
        callback_list.append(history)
        params = {"epochs": epochs, "steps": source.steps, "verbose": verbose}
        cbs = CallbackList(callback_list, self, params)
        self.stop_training = False
        self.history = history
        self._in_fit = True
        # Per-batch hooks may stop training on one process only, so each
        # process then learns after every step whether any process stopped.
        share_stops = strategy is not None and any(
            cbs.has(hook) for hook in ("on_train_batch_begin", "on_train_batch_end"))
        try:
            cbs.call("on_train_begin", {})
            for epoch in range(initial_epoch, epochs):
                cbs.call("on_epoch_begin", epoch, {})
                tracker = metrics_module.Mean(name="loss")
                for metric in self.compiled_metrics:
                    metric.reset_state()
                logs = {}
                for step, batch in enumerate(source.epoch()):
                    cbs.call("on_train_batch_begin", step, {})
                    logs = source.train(batch, tracker)
                    cbs.call("on_train_batch_end", step, logs)
                    if share_stops:
                        self.stop_training = strategy.any(self.stop_training)
                    if self.stop_training:
                        break
                if source.exhausted:
                    hint = ("The Dataset yielded no batches." if source.reiterable
                            else "Pass a Dataset, which can be iterated again, or "
                                 "set steps_per_epoch.")
                    warnings.warn(
                        f"fit: the input ran out of data before epoch {epoch + 1}; "
                        f"training stops. {hint}", stacklevel=3)
                    break
                if strategy is not None:
                    logs = self._reduced_logs(tracker)
                epoch_logs = dict(logs)
                if val is not None and (epoch + 1) % validation_freq == 0:
                    val_logs = self._evaluate_source(
                        val, validation_batch_size or batch_size, validation_steps,
                        None)
                    epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
                cbs.call("on_epoch_end", epoch, epoch_logs)
                if strategy is not None:
                    self.stop_training = strategy.any(self.stop_training)
                if self.stop_training:
                    break
            cbs.call("on_train_end", {})
        finally:
            self._in_fit = False
        return history

    def _reduced_logs(self, tracker):
        """Return logs whose values are summed over all processes' states."""
        self._distribute.reduce_metrics([tracker] + list(self.compiled_metrics))
        logs = {"loss": tracker.result()}
        for metric in self.compiled_metrics:
            logs[metric.name] = metric.result()
        return logs

    def _update_logs(self, tracker, per_sample, wb, yb, outputs, penalty=0.0):
        # The epoch loss is the mean over samples of the reduced batch losses,
        # weighted by batch size as Keras does.
        batch_loss = self.loss.reduce(per_sample, wb) + penalty
        tracker.add(batch_loss, per_sample.shape[0])
        logs = {"loss": tracker.result()}
        for metric in self.compiled_metrics:
            metric.update_state(yb, outputs,
                                wb if getattr(metric, "_takes_weights", False) else None)
            logs[metric.name] = metric.result()
        return logs

    def _unpack_validation(self, validation_data):
        if data_adapter.is_batch_iterable(validation_data):
            return validation_data
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (
                2, 3):
            raise ValueError(
                "fit: `validation_data` must be a tuple (x_val, y_val) or "
                "(x_val, y_val, val_sample_weight), or a Dataset"
            )
        vx, vy = validation_data[0], validation_data[1]
        vw = validation_data[2] if len(validation_data) == 3 else None
        return self._prepare_xy(vx, vy, "fit (validation_data)", vw)

    # evaluate ---------------------------------------------------------------

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto",
                 sample_weight=None, steps=None, callbacks=None, return_dict=False):
        """Return the loss and metrics on ``x`` and ``y``.

        ``x`` may also be a Dataset or a generator of (x, y) or
        (x, y, sample_weight) batches, with ``y`` left None. Returns the loss
        alone when there are no metrics, else ``[loss, metric...]``, or a
        dict with ``return_dict=True``.
        """
        self._check_compiled("evaluate")
        batch_size = data_adapter.check_batch_size(batch_size)
        verbose = _check_verbose(verbose)
        if steps is not None:
            steps = data_adapter.check_nonnegative_int(steps, "steps")
        if data_adapter.is_batch_iterable(x):
            data_adapter.check_no_y(x, y, "evaluate")
            data = x
            n_steps = data_adapter.known_length(x)
        else:
            data = self._prepare_xy(x, y, "evaluate", sample_weight)
            n_steps = math.ceil(data[0].shape[0] / batch_size)
        if steps is not None:
            n_steps = steps if n_steps is None else min(n_steps, steps)
        callback_list = list(callbacks or [])
        if verbose:
            callback_list.append(ProgbarLogger())
        cbs = CallbackList(callback_list, self,
                           {"steps": n_steps, "verbose": verbose, "epochs": 1})
        logs = self._evaluate_source(data, batch_size, steps, cbs)
        return _format_logs(logs, self.compiled_metrics, return_dict)

    def _evaluate_source(self, data, batch_size, steps, cbs):
        """Evaluate prepared arrays (a tuple) or an iterable of batches."""
        if isinstance(data, tuple):
            batches = _array_batches(*data, batch_size)
        else:
            batches = _iterable_batches(self, data, "evaluate")
        self._assemble()
        self._resolve_metrics()
        tracker = metrics_module.Mean(name="loss")
        for metric in self.compiled_metrics:
            metric.reset_state()
        if cbs is not None:
            cbs.call("on_test_begin", {})
        logs = {"loss": 0.0}
        for metric in self.compiled_metrics:
            logs[metric.name] = metric.result()
        for step, (xb, yb, wb) in enumerate(batches):
            if steps is not None and step >= steps:
                break
            if cbs is not None:
                cbs.call("on_test_batch_begin", step, {})
            workspace = self._workspace(xb.shape[0], False)
            per_sample, outputs, penalty = self._test_step(xb, yb, wb, workspace)
            logs = self._update_logs(tracker, per_sample, wb, yb, outputs, penalty)
            if cbs is not None:
                cbs.call("on_test_batch_end", step, logs)
        if self._distribute is not None and self._in_fit:
            logs = self._reduced_logs(tracker)
        if cbs is not None:
            cbs.call("on_test_end", logs)
        return logs

    # predict ----------------------------------------------------------------

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Return the model's outputs for ``x``, computed in batches.

        ``x`` must have a batch axis; zero rows give an empty array of the
        output's width.
        """
        batch_size = data_adapter.check_batch_size(batch_size)
        if steps is not None:
            steps = data_adapter.check_nonnegative_int(steps, "steps")
        if data_adapter.is_batch_iterable(x):
            return self._predict_iterable(x, steps)
        x = self._prepare_inputs(x, "predict")
        n = x.shape[0]
        if steps is not None:
            n = min(n, steps * batch_size)
        out = np.empty((n,) + tuple(self.output_shape), dtype=self.dtype)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            workspace = self._workspace(stop - start, False)
            self._infer(x[start:stop], workspace, out[start:stop])
        return out

    def _predict_iterable(self, data, steps):
        parts = []
        for step, element in enumerate(data):
            if steps is not None and step >= steps:
                break
            xb = element[0] if isinstance(element, (tuple, list)) else element
            xb = self._prepare_inputs(xb, "predict")
            workspace = self._workspace(xb.shape[0], False)
            parts.append(self._infer(xb, workspace).copy())
        if not parts:
            if not self.built:
                raise ValueError("predict: the input yielded no batches")
            return np.empty((0,) + tuple(self.output_shape), dtype=self.dtype)
        return np.concatenate(parts, axis=0)

    def predict_on_batch(self, x):
        """Return the outputs for one batch ``x``, computed in one pass."""
        x = self._prepare_inputs(x, "predict_on_batch")
        workspace = self._workspace(x.shape[0], False)
        out = np.empty((x.shape[0],) + tuple(self.output_shape), dtype=self.dtype)
        return self._infer(x, workspace, out)

    def __call__(self, x, training=False):
        """Return the outputs for one batch ``x`` (inference unless ``training``)."""
        x = self._prepare_inputs(x, "call")
        workspace = self._workspace(x.shape[0], bool(training))
        if not training:
            out = np.empty((x.shape[0],) + tuple(self.output_shape), dtype=self.dtype)
            return self._infer(x, workspace, out)
        return self._forward(x, True, workspace).copy()

    # Lean training path -----------------------------------------------------

    def _dense_train_chain(self, fused):
        """Return a new DenseChain with gradients for training, or None.

        Possible with the compiled backend for a stack of trainable Dense
        layers (Flatten first allowed) whose activations the dense kernels
        fuse. The loss must be sparse categorical cross-entropy from logits,
        or on a softmax output that the loss takes over, without loss
        weights. The caller checks sample weights and regularizers.
        """
        if not _LEAN_TRAINING or backend.get_backend() != "compiled":
            return None
        loss = self.loss
        if (not isinstance(loss, losses_module.SparseCategoricalCrossentropy)
                or loss.ignore_class is not None or self._loss_scale != 1.0
                or not (loss.from_logits or fused == "softmax")):
            return None
        from nnfast._reference import ACTIVATIONS as DENSE_FUSED_ACTIVATIONS
        from nnfast.layers.core import Dense, Flatten
        dense = []
        activations = []
        for i, layer in enumerate(self._layers):
            if isinstance(layer, Flatten) and i == 0:
                continue
            if (not isinstance(layer, Dense) or not layer.trainable
                    or layer.activation not in DENSE_FUSED_ACTIVATIONS):
                return None
            dense.append(layer)
            activations.append(layer.activation)
        if not dense:
            return None
        if fused is not None:
            activations[-1] = "linear"
        if self._layout_key is None:
            return None
        from nnfast._mlp import DenseChain
        try:
            return DenseChain([layer.kernel for layer in dense],
                              [layer.bias for layer in dense], activations,
                              [layer._kernel.grad for layer in dense],
                              [layer._bias.grad if layer.use_bias else None
                               for layer in dense])
        except (TypeError, ValueError):
            # Weights of mixed dtypes or layouts: the general path handles them.
            return None

    def _dense_train_pass(self, chain, xb, yb, workspace):
        """Run the forward pass, the loss and the backward pass through ``chain``.

        Return (per-sample losses, logits), or None when the labels need the
        general path's conversion and checks (floats, or out of range), which
        then raises the error for bad ones. The results equal the general
        path's to the last bit: both run the same kernels on the same
        arguments.
        """
        labels = yb.reshape(-1) if yb.ndim == 2 and yb.shape[1] == 1 else yb
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or xb.dtype != self.dtype:
            return None
        if labels.dtype != np.int64:
            labels = labels.astype(np.int64)
        n = xb.shape[0]
        widths = chain.widths
        if labels.shape[0] != n or n == 0:
            return None
        n_classes = widths[-1]
        if labels.min() < 0 or labels.max() >= n_classes:
            return None
        buffers = workspace.train_buffers
        if buffers is None or buffers[0] is not chain:
            dtype = self.dtype
            hidden = [np.empty((n, w), dtype=dtype) for w in widths[1:-1]]
            buffers = (chain, hidden, [np.empty_like(h) for h in hidden],
                       np.empty((n, n_classes), dtype=dtype),
                       np.empty((n, n_classes), dtype=dtype),
                       np.empty(n, dtype=dtype), np.empty(0, dtype=dtype))
            workspace.train_buffers = buffers
        _, hidden, dx_buffers, logits, dlogits, per_sample, no_weights = buffers
        from nnfast import _losses
        flat = np.ascontiguousarray(xb.reshape(n, -1))
        threads = _threads.resolve(None)
        chain.forward(flat, hidden, logits, threads)
        loss_threads = 1 if logits.size < _losses.PARALLEL_MIN_SIZE_CROSS_ENTROPY else threads
        _losses._cross_entropy_sparse(logits, labels, no_weights,
                                      float(self.loss.grad_scale(n, None)), per_sample,
                                      dlogits, True, loss_threads)
        chain.backward(flat, hidden, logits, dlogits, dx_buffers, threads)
        return per_sample, logits

    # Lean inference path ----------------------------------------------------

    def _dense_chain(self):
        """Return a compiled DenseChain for inference, or None when not possible.

        Possible when the compiled backend is selected and the model is a
        stack of Dense layers, with Flatten first and Dropout (an identity in
        inference) anywhere.
        """
        if backend.get_backend() != "compiled":
            return None
        # The layout key changes whenever the weights move. Activations may be
        # set on a layer at any time, so they are part of the key too.
        if self._layout_key is None:
            return None
        activations = tuple([getattr(layer, "activation", None) for layer in self._layers])
        chain_key = self._chain_key
        if (chain_key is not None and chain_key[0] is self._layout_key
                and chain_key[1] == activations):
            return self._chain
        key = (self._layout_key, activations)
        from nnfast._reference import ACTIVATIONS as DENSE_FUSED_ACTIVATIONS
        from nnfast.layers.core import Dense, Dropout, Flatten
        # The chain runs only the activations that the dense kernels fuse.
        dense = []
        ok = len(self.input_shape) == 2
        for i, layer in enumerate(self._layers):
            if isinstance(layer, Dense) and layer.activation in DENSE_FUSED_ACTIVATIONS:
                dense.append(layer)
            elif isinstance(layer, Flatten) and i == 0:
                ok = True
            elif not isinstance(layer, Dropout):
                ok = False
                break
        chain = None
        if ok and dense:
            from nnfast._mlp import DenseChain
            chain = DenseChain([layer.kernel for layer in dense],
                               [layer.bias for layer in dense],
                               [layer.activation for layer in dense])
        self._chain = chain
        self._chain_key = key
        return chain

    def _infer(self, x, workspace, out=None):
        """Return the inference outputs for batch ``x`` (a workspace buffer or
        ``out``); the compiled chain runs all dense layers without the GIL."""
        chain = self._dense_chain()
        if chain is None:
            result = self._forward(x, False, workspace)
            if out is not None:
                out[...] = result
                return out
            return result
        n = x.shape[0]
        if n == 0:
            if out is None:
                out = np.empty((0,) + tuple(self.output_shape), dtype=self.dtype)
            return out
        flat = x.reshape(n, -1) if x.ndim != 2 else x
        buffers = workspace.chain_buffers
        if buffers is None:
            widths = chain.widths
            buffers = [np.empty((n, w), dtype=self.dtype) for w in widths[1:]]
            workspace.chain_buffers = buffers
        if out is None:
            out = buffers[-1]
        chain.forward(flat, buffers[:-1], out.reshape(n, -1), _threads.resolve(None),
                      split_rows=True)
        return out

    def _prepare_inputs(self, x, where):
        if x is None:
            raise ValueError(f"{where}: `x` is required")
        array = data_adapter.to_array(x, "x")
        if array.ndim == 0:
            raise ValueError(f"{where}: `x` must have a batch axis, got a scalar")
        self._build_from(array, where)
        self._assemble()
        if array.dtype != self.dtype:
            array = array.astype(self.dtype)
        return array

    # train_on_batch / test_on_batch ------------------------------------------

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """Run one training step on the batch; return the loss (and metrics)."""
        self._check_compiled("train_on_batch")
        x, y, weights = self._prepare_xy(x, y, "train_on_batch", sample_weight,
                                         class_weight)
        if x.shape[0] == 0:
            raise ValueError("train_on_batch: x has 0 samples")
        self._assemble()
        if not self.compiled_metrics and self._metric_specs:
            self._resolve_metrics()
        for metric in self.compiled_metrics:
            metric.reset_state()
        workspace = self._workspace(x.shape[0], True)
        if workspace.x is None or workspace.x.shape != x.shape:
            workspace.x = np.empty(x.shape, dtype=self.dtype)
        np.copyto(workspace.x, x)
        per_sample, outputs, penalty = self._train_step(workspace.x, y, weights,
                                                        workspace)
        logs = self._update_logs(metrics_module.Mean(), per_sample, weights, y, outputs,
                                 penalty)
        return _format_logs(logs, self.compiled_metrics, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Return the loss (and metrics) on one batch, without training."""
        self._check_compiled("test_on_batch")
        x, y, weights = self._prepare_xy(x, y, "test_on_batch", sample_weight)
        self._assemble()
        if not self.compiled_metrics and self._metric_specs:
            self._resolve_metrics()
        for metric in self.compiled_metrics:
            metric.reset_state()
        workspace = self._workspace(x.shape[0], False)
        per_sample, outputs, penalty = self._test_step(x, y, weights, workspace)
        logs = self._update_logs(metrics_module.Mean(), per_sample, weights, y, outputs,
                                 penalty)
        return _format_logs(logs, self.compiled_metrics, return_dict)

    # Weights ----------------------------------------------------------------

    @property
    def weights(self):
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for layer in self._layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self._layers for w in layer.non_trainable_weights]

    def get_weights(self):
        """Return copies of all weights, layer by layer, in creation order."""
        return [w.value.copy() for w in self.weights]

    def set_weights(self, weights):
        """Set all weights from a list like the one :meth:`get_weights` returns."""
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(
                f"set_weights: the model has {len(own)} weights, got {len(weights)} "
                "arrays"
            )
        for weight, value in zip(own, weights):
            value = np.asarray(value)
            if value.shape != weight.shape:
                raise ValueError(
                    f"set_weights: weight {weight.name} has shape {weight.shape}, "
                    f"got an array of shape {value.shape}"
                )
        for weight, value in zip(own, weights):
            weight.value[...] = value

    def count_params(self):
        return int(sum(w.value.size for w in self.weights))

    # Saving -----------------------------------------------------------------

    def save(self, filepath, overwrite=True):
        """Save the architecture, weights, compile and optimizer state to one file.

        The file is nnfast's own format (a zip of JSON and .npy arrays, no
        pickle), whatever its ending; ``.nnf`` is the documented one.
        """
        from nnfast import saving
        saving.save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        """Save only the weights to ``filepath``."""
        from nnfast import saving
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath):
        """Load weights saved by :meth:`save_weights` or :meth:`save`."""
        from nnfast import saving
        saving.load_weights(self, filepath)

    def to_json(self, **kwargs):
        """Return the architecture as a JSON string."""
        from nnfast import saving
        return saving.model_to_json(self, **kwargs)

    def __reduce__(self):
        # Pickle through nnfast's own file format, so that unpickling never
        # runs code from the layers' Python objects.
        from nnfast import saving
        return (saving.model_from_bytes, (saving.model_to_bytes(self),))


def _check_verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2, got verbose={verbose!r}")
    return int(verbose)


def _format_logs(logs, metrics, return_dict):
    if return_dict:
        return logs
    if not metrics:
        return logs["loss"]
    return [logs["loss"]] + [logs[m.name] for m in metrics]


def _array_batches(x, y, weights, batch_size):
    """Yield (x, y, sample_weight) slices of prepared arrays, in order."""
    n = x.shape[0]
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        wb = weights[start:stop] if weights is not None else None
        yield x[start:stop], y[start:stop], wb


def _iterable_batches(model, data, where, class_weight=None):
    """Yield checked (x, y, sample_weight) batches from a Dataset or generator."""
    for element in data:
        xb, yb, wb = data_adapter.unpack_batch(element, where)
        yield model._prepare_xy(xb, yb, where, wb, class_weight)


class _ArraySource:
    """Batches of in-memory arrays, gathered in shuffled order each epoch.

    With ``steps_per_epoch`` the position carries over between epochs, and a
    new order is drawn each time the data is used up.
    """

    def __init__(self, model, x, y, weights, batch_size, shuffle, steps_per_epoch,
                 strategy=None):
        self.model = model
        self.x = x
        self.y = y
        self.weights = weights
        self.strategy = strategy
        if strategy is not None:
            # Every process walks the same global batches and takes its slice.
            batch_size *= strategy.size
        self.batch_size = batch_size
        self.shuffle = shuffle
        n = x.shape[0]
        self.steps = math.ceil(n / batch_size)
        self.per_epoch = steps_per_epoch is not None
        if self.per_epoch:
            self.steps = data_adapter.check_nonnegative_int(steps_per_epoch,
                                                            "steps_per_epoch")
        self.order = np.arange(n)
        self.cursor = 0
        self.exhausted = False

    def epoch(self):
        n = self.x.shape[0]
        if not self.per_epoch:
            self.cursor = 0
        for _ in range(self.steps):
            if self.cursor == 0 and self.shuffle:
                self.order = _rng.generator().permutation(n)
            stop = min(self.cursor + self.batch_size, n)
            indices = self.order[self.cursor:stop]
            self.cursor = 0 if stop >= n else stop
            if self.strategy is not None:
                indices = self.strategy.shard(indices)
            yield indices

    def train(self, indices, tracker):
        model = self.model
        if indices.shape[0] == 0:
            model._empty_train_step()
            return {"loss": tracker.result()}
        workspace = model._workspace(indices.shape[0], True)
        xb = model._gather(self.x, indices, workspace)
        yb = self.y[indices]
        wb = self.weights[indices] if self.weights is not None else None
        per_sample, outputs, penalty = model._train_step(xb, yb, wb, workspace)
        return model._update_logs(tracker, per_sample, wb, yb, outputs, penalty)


class _IterableSource:
    """Batches from a Dataset (iterated afresh each epoch) or a generator.

    Each batch is checked before it is used, so a bad batch raises before it
    changes any weight.
    """

    def __init__(self, data, steps_per_epoch, model, where, class_weight):
        self.data = data
        self.model = model
        self.where = where
        self.class_weight = class_weight
        self.steps = data_adapter.known_length(data)
        self.limit = None
        if steps_per_epoch is not None:
            self.limit = data_adapter.check_nonnegative_int(steps_per_epoch,
                                                            "steps_per_epoch")
            self.steps = self.limit
        self.reiterable = not data_adapter.is_iterator(data)
        self.iterator = None
        self.exhausted = False

    def epoch(self):
        if self.iterator is None or (self.reiterable and self.limit is None):
            self.iterator = iter(self.data)
        count = 0
        restarted = False
        while self.limit is None or count < self.limit:
            try:
                element = next(self.iterator)
            except StopIteration:
                if self.reiterable and self.limit is not None and not restarted:
                    # With steps_per_epoch, a Dataset is read on from where
                    # the last epoch stopped, starting over when used up.
                    self.iterator = iter(self.data)
                    restarted = True
                    continue
                if count == 0:
                    self.exhausted = True
                return
            restarted = False
            count += 1
            yield data_adapter.unpack_batch(element, self.where)

    def train(self, batch, tracker):
        model = self.model
        xb, yb, wb = model._prepare_xy(batch[0], batch[1], self.where, batch[2],
                                       self.class_weight)
        if xb.shape[0] == 0:
            raise ValueError(f"{self.where}: a batch has 0 samples")
        workspace = model._workspace(xb.shape[0], True)
        if workspace.x is None or workspace.x.shape != xb.shape:
            workspace.x = np.empty(xb.shape, dtype=model.dtype)
        np.copyto(workspace.x, xb)
        per_sample, outputs, penalty = model._train_step(workspace.x, yb, wb,
                                                         workspace)
        return model._update_logs(tracker, per_sample, wb, yb, outputs, penalty)


def _loss_weight(loss, n_samples, sample_weight):
    """Return the weight a batch's loss was normalised by (see Loss.grad_scale).

    None for a loss reduced by plain sum, whose gradients add up as they are.
    """
    if loss.reduction == "sum":
        return None
    scale = loss.grad_scale(n_samples, sample_weight)
    return 1.0 / scale if scale else 0.0


def _single_loss_weight(loss_weights):
    """Return the loss scale of a one-output model from ``loss_weights``."""
    if loss_weights is None:
        return 1.0
    values = loss_weights
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, (list, tuple)):
        if len(values) != 1:
            raise ValueError(
                "compile: a Sequential model has one output, so `loss_weights` "
                f"must hold one value, got {loss_weights!r}"
            )
        values = values[0]
    try:
        scale = float(values)
    except (TypeError, ValueError):
        raise TypeError(
            f"compile: `loss_weights` must be a number, got {loss_weights!r}"
        ) from None
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(
            f"compile: `loss_weights` must be finite and >= 0, got {loss_weights!r}"
        )
    return scale
