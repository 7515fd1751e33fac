"""Callbacks: early stopping, learning-rate control, CSV logging and hooks.

Expected epochs and learning rates are worked out by hand from Keras's
documented behaviour of each callback.
"""

import csv
import math

import numpy as np
import pytest

import nnfast
from nnfast import callbacks, layers, optimizers


def make_linear(learning_rate=0.1, weight=1.0, metrics=None):
    """Return a compiled model y = w * x + b with one input and SGD on MSE."""
    model = nnfast.Sequential([nnfast.Input(shape=(1,)), layers.Dense(1)])
    model.compile(optimizer=optimizers.SGD(learning_rate=learning_rate),
                  loss="mse", metrics=metrics)
    model.set_weights([np.array([[weight]], dtype="float32"),
                       np.zeros(1, dtype="float32")])
    return model


def make_weight_only(learning_rate):
    """Return a compiled model y = w * x with w = 1, trained by SGD on MSE."""
    model = nnfast.Sequential([nnfast.Input(shape=(1,)),
                               layers.Dense(1, use_bias=False)])
    model.compile(optimizer=optimizers.SGD(learning_rate=learning_rate), loss="mse")
    model.set_weights([np.array([[1.0]], dtype="float32")])
    return model


def run_epochs(callback, model, values, monitor="loss"):
    """Drive ``callback`` through one training run with scripted monitored values."""
    callback.set_model(model)
    callback.set_params({"epochs": len(values), "steps": 1, "verbose": 0})
    model.stop_training = False
    callback.on_train_begin({})
    stopped_at = None
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {monitor: value})
        if model.stop_training:
            stopped_at = epoch
            break
    callback.on_train_end({})
    return stopped_at


@pytest.fixture
def linear_data():
    """Training pairs with y = x, and validation pairs with y = -x."""
    x = np.array([[1.0], [2.0], [-1.0], [0.5]], dtype="float32")
    return x, x.copy(), x, -x


# EarlyStopping ---------------------------------------------------------------


@pytest.mark.parametrize("kwargs, values, expected_stop", [
    # Epoch 2 is the first without improvement, and patience 0 stops there.
    ({"patience": 0}, [1.0, 0.9, 0.95, 0.8], 2),
    # Epochs 2 and 3 do not improve on 0.9, so patience 2 stops at epoch 3.
    ({"patience": 2}, [1.0, 0.9, 0.95, 0.92, 0.5], 3),
    # 0.95 is not below 1.0 - 0.1, so it is not an improvement.
    ({"patience": 1, "min_delta": 0.1}, [1.0, 0.95, 0.85], 1),
    # The sign of min_delta is ignored.
    ({"patience": 1, "min_delta": -0.1}, [1.0, 0.95, 0.85], 1),
    # Steady improvement never stops training.
    ({"patience": 0}, [1.0, 0.9, 0.8, 0.7], None),
    # Epochs 0 and 1 are not monitored; epoch 3 is worse than epoch 2.
    ({"patience": 0, "start_from_epoch": 2}, [1.0, 2.0, 3.0, 4.0], 3),
    # No epoch beats the baseline, so training runs for `patience` epochs.
    ({"patience": 2, "baseline": 0.5}, [1.0, 0.9, 0.8, 0.7], 1),
    # Epoch 0 beats the baseline; epochs 1 and 2 bring nothing new.
    ({"patience": 2, "baseline": 0.5}, [0.4, 0.45, 0.46, 0.3], 2),
])
def test_early_stopping_epoch(kwargs, values, expected_stop):
    callback = callbacks.EarlyStopping(monitor="loss", **kwargs)
    stopped_at = run_epochs(callback, make_linear(), values)
    assert stopped_at == expected_stop
    assert callback.stopped_epoch == (expected_stop or 0)


def test_early_stopping_max_mode():
    callback = callbacks.EarlyStopping(monitor="score", mode="max", patience=1)
    assert run_epochs(callback, make_linear(), [0.5, 0.6, 0.6, 0.7],
                      monitor="score") == 2
    assert callback.best == 0.6
    assert callback.best_epoch == 1


def test_early_stopping_auto_mode_accuracy(linear_data):
    # After a fit, the compiled "accuracy" metric makes auto mode maximize.
    x, y, _, _ = linear_data
    model = make_linear(metrics=["accuracy"])
    model.fit(x, (y > 0).astype("float32"), epochs=1, verbose=0)
    maximize = callbacks.EarlyStopping(monitor="val_accuracy", patience=0)
    assert run_epochs(maximize, model, [0.5, 0.6, 0.55],
                      monitor="val_accuracy") == 2
    minimize = callbacks.EarlyStopping(monitor="val_accuracy", patience=0,
                                       mode="min")
    assert run_epochs(minimize, model, [0.5, 0.6, 0.55],
                      monitor="val_accuracy") == 1


def test_early_stopping_auto_mode_unknown():
    callback = callbacks.EarlyStopping(monitor="custom_score")
    with pytest.raises(ValueError, match="mode='min'"):
        run_epochs(callback, make_linear(), [1.0], monitor="custom_score")


def test_early_stopping_missing_monitor_warns():
    callback = callbacks.EarlyStopping(monitor="val_loss", patience=0)
    model = make_linear()
    callback.set_model(model)
    callback.on_train_begin({})
    with pytest.warns(UserWarning, match="val_loss"):
        callback.on_epoch_end(0, {"loss": 1.0})
    assert not model.stop_training


@pytest.mark.parametrize("kwargs, error, argument", [
    ({"patience": -1}, ValueError, "patience"),
    ({"patience": 1.5}, TypeError, "patience"),
    ({"start_from_epoch": -1}, ValueError, "start_from_epoch"),
    ({"mode": "largest"}, ValueError, "mode"),
    ({"baseline": "low"}, TypeError, "baseline"),
    ({"min_delta": float("nan")}, ValueError, "min_delta"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"monitor": None}, TypeError, "monitor"),
])
def test_early_stopping_rejects_arguments(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        callbacks.EarlyStopping(**kwargs)


def test_early_stopping_keras_defaults():
    callback = callbacks.EarlyStopping()
    assert callback.monitor == "val_loss"
    assert callback.min_delta == 0
    assert callback.patience == 0
    assert callback.verbose == 0
    assert callback.mode == "auto"
    assert callback.baseline is None
    assert callback.restore_best_weights is False
    assert callback.start_from_epoch == 0


def fit_with_recorder(model, data, stopper, epochs=30):
    """Fit full-batch, returning (history, weights at each epoch end)."""
    x, y, x_val, y_val = data
    recorded = []
    recorder = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: recorded.append(model.get_weights()))
    history = model.fit(x, y, batch_size=4, epochs=epochs, verbose=0,
                        shuffle=False, validation_data=(x_val, y_val),
                        callbacks=[recorder, stopper])
    return history, recorded


def test_restore_best_weights(linear_data):
    # w starts at -3 and moves towards 1, while the validation loss is least
    # near w = -1, so it falls, then rises and training stops.
    model = make_linear(weight=-3.0)
    stopper = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    history, recorded = fit_with_recorder(model, linear_data, stopper)
    val_losses = history.history["val_loss"]
    best = int(np.argmin(val_losses))
    assert len(val_losses) < 30
    assert 0 < best < len(val_losses) - 1
    assert stopper.best_epoch == best
    for restored, expected in zip(model.get_weights(), recorded[best]):
        np.testing.assert_array_equal(restored, expected)


def test_without_restore_keeps_last(linear_data):
    model = make_linear(weight=-3.0)
    stopper = callbacks.EarlyStopping(patience=2)
    history, recorded = fit_with_recorder(model, linear_data, stopper)
    assert len(history.history["val_loss"]) < 30
    for kept, expected in zip(model.get_weights(), recorded[-1]):
        np.testing.assert_array_equal(kept, expected)


def test_early_stopping_reused(linear_data):
    stopper = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    first, _ = fit_with_recorder(make_linear(weight=-3.0), linear_data, stopper)
    second, _ = fit_with_recorder(make_linear(weight=-3.0), linear_data, stopper)
    assert len(second.history["loss"]) == len(first.history["loss"])
    assert second.history["val_loss"] == first.history["val_loss"]


def test_early_stopping_verbose(linear_data, capsys):
    model = make_linear(weight=-3.0)
    stopper = callbacks.EarlyStopping(patience=2, restore_best_weights=True,
                                      verbose=1)
    history, _ = fit_with_recorder(model, linear_data, stopper)
    output = capsys.readouterr().out
    assert f"Epoch {len(history.history['loss'])}: early stopping" in output
    assert f"best epoch: {stopper.best_epoch + 1}." in output


def test_early_stopping_silent(linear_data, capsys):
    model = make_linear(weight=-3.0)
    fit_with_recorder(model, linear_data, callbacks.EarlyStopping(patience=2))
    assert capsys.readouterr().out == ""


# stop_training from any hook -------------------------------------------------


class StopAt(callbacks.Callback):
    """Set model.stop_training in one hook, at one epoch or batch index."""

    def __init__(self, hook, index=0):
        super().__init__()
        self.hook = hook
        self.index = index
        self.batches = 0

    def _maybe_stop(self, hook, index=0):
        if hook == self.hook and index == self.index:
            self.model.stop_training = True

    def on_train_begin(self, logs=None):
        self._maybe_stop("on_train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self._maybe_stop("on_epoch_begin", epoch)

    def on_epoch_end(self, epoch, logs=None):
        self._maybe_stop("on_epoch_end", epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self._maybe_stop("on_train_batch_begin", batch)

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        self._maybe_stop("on_train_batch_end", batch)


@pytest.mark.parametrize("hook, index, epochs_run, batches_run", [
    ("on_train_begin", 0, 1, 1),
    ("on_epoch_begin", 0, 1, 1),
    ("on_train_batch_begin", 0, 1, 1),
    ("on_train_batch_end", 1, 1, 2),
    ("on_epoch_end", 1, 2, 8),
])
def test_stop_training_from_hook(hook, index, epochs_run, batches_run):
    # 8 samples in batches of 2 give 4 steps per epoch.
    x = np.linspace(-1, 1, 8, dtype="float32").reshape(8, 1)
    model = make_linear()
    stopper = StopAt(hook, index)
    history = model.fit(x, x, batch_size=2, epochs=5, verbose=0,
                        callbacks=[stopper])
    assert len(history.history["loss"]) == epochs_run
    assert stopper.batches == batches_run


# ReduceLROnPlateau -----------------------------------------------------------


def test_reduce_lr_schedule_of_reductions():
    # patience 1, factor 0.5, cooldown 2 and min_lr 0.2, from lr 1.0. A
    # cooldown of 2 skips one epoch after a reduction; the count restarts at
    # the second.
    model = make_linear(learning_rate=1.0)
    callback = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1,
                                           cooldown=2, min_lr=0.2)
    callback.set_model(model)
    callback.on_train_begin({})
    values = [1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.7]
    rates_after = []
    rates_logged = []
    for epoch, value in enumerate(values):
        logs = {"loss": value}
        callback.on_epoch_end(epoch, logs)
        rates_logged.append(logs["learning_rate"])
        rates_after.append(model.optimizer.learning_rate)
    assert rates_after == pytest.approx([1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2])
    assert rates_logged == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2])


def test_reduce_lr_max_mode():
    model = make_linear(learning_rate=1.0)
    callback = callbacks.ReduceLROnPlateau(monitor="score", mode="max", patience=0)
    run_epochs(callback, model, [0.5, 0.6, 0.6], monitor="score")
    assert model.optimizer.learning_rate == pytest.approx(0.1)


def test_reduce_lr_in_fit(linear_data):
    # No epoch improves by min_delta=10, so from epoch 1 on each epoch halves
    # the rate; logs show the rate that the epoch trained with.
    x, y, _, _ = linear_data
    model = make_linear(learning_rate=0.1)
    callback = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                           min_delta=10.0)
    history = model.fit(x, y, epochs=4, verbose=0, callbacks=[callback])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert model.optimizer.learning_rate == pytest.approx(0.0125)


def test_reduce_lr_verbose(linear_data, capsys):
    x, y, _, _ = linear_data
    model = make_linear(learning_rate=0.1)
    callback = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                           min_delta=10.0, verbose=1)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert "Epoch 2: ReduceLROnPlateau reducing the learning rate to 0.05" in (
        capsys.readouterr().out)


@pytest.mark.parametrize("make_callback", [
    lambda: callbacks.ReduceLROnPlateau(monitor="loss"),
    lambda: callbacks.LearningRateScheduler(lambda epoch, lr: lr),
], ids=["ReduceLROnPlateau", "LearningRateScheduler"])
def test_rate_callbacks_reject_schedule(linear_data, make_callback):
    # Setting a float rate would silently replace the schedule.
    x, y, _, _ = linear_data
    model = nnfast.Sequential([nnfast.Input(shape=(1,)), layers.Dense(1)])
    schedule = optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model.compile(optimizer=optimizers.SGD(learning_rate=schedule), loss="mse")
    with pytest.raises(TypeError, match="ExponentialDecay"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[make_callback()])
    assert model.optimizer.iterations == 0


@pytest.mark.parametrize("kwargs, error, argument", [
    ({"factor": 1.0}, ValueError, "factor"),
    ({"factor": 1.5}, ValueError, "factor"),
    ({"factor": -0.5}, ValueError, "factor"),
    ({"factor": "half"}, TypeError, "factor"),
    ({"patience": -1}, ValueError, "patience"),
    ({"cooldown": -1}, ValueError, "cooldown"),
    ({"min_lr": -0.1}, ValueError, "min_lr"),
    ({"mode": "up"}, ValueError, "mode"),
])
def test_reduce_lr_rejects_arguments(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        callbacks.ReduceLROnPlateau(**kwargs)


def test_reduce_lr_keras_defaults():
    callback = callbacks.ReduceLROnPlateau(patience=0)
    assert callback.patience == 0
    callback = callbacks.ReduceLROnPlateau()
    assert callback.monitor == "val_loss"
    assert callback.factor == 0.1
    assert callback.patience == 10
    assert callback.mode == "auto"
    assert callback.min_delta == 1e-4
    assert callback.cooldown == 0
    assert callback.min_lr == 0.0


# LearningRateScheduler -------------------------------------------------------


def halve_after_first(epoch, lr):
    return lr if epoch == 0 else lr * 0.5


def test_scheduler_sets_rates():
    # One step per epoch on loss (w - 0)^2 gives w <- w * (1 - 2 * lr), with
    # rates 0.1, 0.05 and 0.025.
    model = make_weight_only(0.1)
    x = np.ones((1, 1), dtype="float32")
    y = np.zeros((1, 1), dtype="float32")
    scheduler = callbacks.LearningRateScheduler(halve_after_first)
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[scheduler])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    assert model.optimizer.learning_rate == pytest.approx(0.025)
    expected = (1 - 0.2) * (1 - 0.1) * (1 - 0.05)
    assert model.get_weights()[0][0, 0] == pytest.approx(expected, rel=1e-6)


def test_scheduler_receives_epoch_and_rate():
    calls = []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return 0.01 * (epoch + 1)

    model = make_weight_only(0.5)
    x = np.ones((1, 1), dtype="float32")
    model.fit(x, x, epochs=3, verbose=0,
              callbacks=[callbacks.LearningRateScheduler(schedule)])
    assert calls == [(0, 0.5), (1, 0.01), (2, 0.02)]


@pytest.mark.parametrize("bad_value", [-0.1, float("nan"), "0.1", None])
def test_scheduler_rejects_bad_rate(bad_value):
    model = make_weight_only(0.1)
    x = np.ones((1, 1), dtype="float32")
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: bad_value)
    with pytest.raises(ValueError, match="epoch 0"):
        model.fit(x, x, epochs=1, verbose=0, callbacks=[scheduler])


def test_scheduler_rejects_non_callable():
    with pytest.raises(TypeError, match="schedule"):
        callbacks.LearningRateScheduler(0.1)


def test_scheduler_verbose(capsys):
    model = make_weight_only(0.1)
    x = np.ones((1, 1), dtype="float32")
    scheduler = callbacks.LearningRateScheduler(halve_after_first, verbose=1)
    model.fit(x, x, epochs=2, verbose=0, callbacks=[scheduler])
    output = capsys.readouterr().out
    assert "Epoch 1: LearningRateScheduler setting the learning rate to 0.1." in output
    assert "Epoch 2: LearningRateScheduler setting the learning rate to 0.05." in output


# TerminateOnNaN ----------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_terminate_on_nan_huge_rate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    model = nnfast.Sequential([nnfast.Input(shape=(4,)), layers.Dense(1)])
    model.compile(optimizer=optimizers.SGD(learning_rate=1e4), loss="mse")
    batch_losses = []
    recorder = callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_losses.append(logs["loss"]))
    history = model.fit(x, y, batch_size=4, epochs=50, verbose=0,
                        callbacks=[recorder, callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) < 50
    assert not math.isfinite(batch_losses[-1])
    assert all(math.isfinite(loss) for loss in batch_losses[:-1])


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf")])
def test_terminate_on_nan_values(loss):
    model = make_linear()
    callback = callbacks.TerminateOnNaN()
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_batch_end(0, {"loss": 1.0})
    assert not model.stop_training
    callback.on_train_batch_end(1, {"loss": loss})
    assert model.stop_training


def test_terminate_on_nan_prints_when_verbose(capsys):
    model = make_linear()
    callback = callbacks.TerminateOnNaN()
    callback.set_model(model)
    callback.set_params({"verbose": 1})
    callback.on_train_batch_end(3, {"loss": float("nan")})
    assert "Batch 3: the loss is nan" in capsys.readouterr().out
    callback.set_params({"verbose": 0})
    callback.on_train_batch_end(3, {"loss": float("nan")})
    assert capsys.readouterr().out == ""


# CSVLogger ---------------------------------------------------------------------


def read_csv(path, separator=","):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.reader(file, delimiter=separator))


def test_csv_logger_rows(tmp_path, linear_data):
    x, y, x_val, y_val = linear_data
    path = tmp_path / "log.csv"
    model = make_linear()
    history = model.fit(x, y, epochs=3, verbose=0, validation_data=(x_val, y_val),
                        callbacks=[callbacks.CSVLogger(path)])
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss", "val_loss"]
    assert len(rows) == 4
    for epoch, row in enumerate(rows[1:]):
        assert row[0] == str(epoch)
        assert float(row[1]) == history.history["loss"][epoch]
        assert float(row[2]) == history.history["val_loss"][epoch]


def test_csv_logger_separator_append(tmp_path, linear_data):
    x, y, _, _ = linear_data
    path = tmp_path / "log.csv"
    model = make_linear()
    logger = callbacks.CSVLogger(str(path), separator=";", append=True)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    model.fit(x, y, epochs=3, verbose=0, callbacks=[logger])
    rows = read_csv(path, ";")
    assert rows[0] == ["epoch", "loss"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "0", "1", "2"]


def test_csv_logger_overwrites(tmp_path, linear_data):
    x, y, _, _ = linear_data
    path = tmp_path / "log.csv"
    path.write_text("old,contents\n1,2\n3,4\n5,6\n7,8\n")
    model = make_linear()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.CSVLogger(path)])
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss"]
    assert len(rows) == 3


def test_csv_logger_missing_and_arrays(tmp_path):
    path = tmp_path / "log.csv"
    logger = callbacks.CSVLogger(path)
    logger.on_train_begin({})
    logger.on_epoch_end(0, {"b": 2.0, "a": np.array([0.5, 0.25])})
    logger.on_epoch_end(1, {"a": 3.0})
    logger.on_train_end({})
    assert read_csv(path) == [["epoch", "a", "b"],
                              ["0", "[0.5, 0.25]", "2.0"],
                              ["1", "3.0", "NA"]]


def test_csv_logger_rejects_separator():
    with pytest.raises(ValueError, match="separator"):
        callbacks.CSVLogger("log.csv", separator="::")


# LambdaCallback ----------------------------------------------------------------


def test_lambda_callback_hooks(linear_data):
    x, y, _, _ = linear_data
    calls = []
    callback = callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch)),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch,
                                                       round(logs["loss"], 6))),
        on_train_end=lambda logs: calls.append("train_end"),
    )
    model = make_linear()
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False,
                        callbacks=[callback])
    losses = [round(loss, 6) for loss in history.history["loss"]]
    assert calls == [
        "train_begin",
        ("epoch_begin", 0), ("batch_end", 0), ("batch_end", 1),
        ("epoch_end", 0, losses[0]),
        ("epoch_begin", 1), ("batch_end", 0), ("batch_end", 1),
        ("epoch_end", 1, losses[1]),
        "train_end",
    ]


def test_lambda_callback_other_hooks(linear_data):
    x, y, _, _ = linear_data
    calls = []
    callback = callbacks.LambdaCallback(
        on_test_begin=lambda logs: calls.append("test_begin"),
        on_test_end=lambda logs: calls.append("test_end"))
    make_linear().evaluate(x, y, verbose=0, callbacks=[callback])
    assert calls == ["test_begin", "test_end"]


def test_lambda_callback_rejects_arguments():
    with pytest.raises(TypeError, match="on_epoch_finish"):
        callbacks.LambdaCallback(on_epoch_finish=print)
    with pytest.raises(TypeError, match="on_epoch_end"):
        callbacks.LambdaCallback(on_epoch_end="print")
