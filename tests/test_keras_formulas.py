"""Hand-worked values from Keras 3's documented formulas, and models that use them.

Each test writes out the arithmetic of one or two steps of a formula, so a
failure shows which term differs. Where the Keras documentation gives a
worked example (RMSprop, Nadam, Huber, binary cross-entropy, KL divergence),
the test checks that value too.
"""

import math
import warnings

import numpy as np
import pytest

import nnfast
from nnfast import _activations
from nnfast import _reference as reference
from nnfast import activations, layers, losses, optimizers

BACKENDS = ["compiled", "reference"]


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    previous = nnfast.get_backend()
    nnfast.set_backend(request.param)
    yield request.param
    nnfast.set_backend(previous)


def apply_steps(optimizer, weight, gradients):
    """Apply one optimizer step per gradient to a single float64 weight."""
    params = np.array([weight], dtype=np.float64)
    for gradient in gradients:
        optimizer.apply(params, np.array([gradient], dtype=np.float64))
    return float(params[0])


# ---------------------------------------------------------------------------
# Optimizers.
# ---------------------------------------------------------------------------

def test_rmsprop_documented_example(backend_name):
    # Keras's example: w = 10, loss w^2 / 2 so g = w = 10, lr = 0.1.
    #   v = 0.9 * 0 + 0.1 * 10^2 = 10
    #   w = 10 - 0.1 * 10 / sqrt(10 + 1e-7) = 9.683772235564302
    weight = apply_steps(optimizers.RMSprop(learning_rate=0.1), 10.0, [10.0])
    assert weight == pytest.approx(9.683772235564302, rel=1e-14)
    assert round(weight, 6) == 9.683772


def test_rmsprop_centered_momentum_two_steps(backend_name):
    # w = 1, lr = 0.1, rho = 0.9, momentum = 0.5, centered, g = 0.5 then -0.25.
    # Step 1: v = 0.1 * 0.25 = 0.025, a = 0.1 * 0.5 = 0.05,
    #   d = 0.025 - 0.05^2 + 1e-7 = 0.0225001,
    #   increment = 0.1 * 0.5 / sqrt(0.0225001) = 0.33333259259506176,
    #   b = 0.33333259259506176, w = 0.6666674074049382.
    # Step 2: v = 0.9 * 0.025 + 0.1 * 0.0625 = 0.02875,
    #   a = 0.9 * 0.05 + 0.1 * -0.25 = 0.02, d = 0.02875 - 0.0004 + 1e-7 = 0.0283501,
    #   increment = 0.1 * -0.25 / sqrt(0.0283501) = -0.1484782058630313,
    #   b = 0.5 * 0.33333259259506176 - 0.1484782058630313 = 0.018188090434499593,
    #   w = 0.6666674074049382 - 0.018188090434499593 = 0.6484793169704386.
    optimizer = optimizers.RMSprop(learning_rate=0.1, momentum=0.5, centered=True)
    assert apply_steps(optimizer, 1.0, [0.5]) == pytest.approx(0.6666674074049382,
                                                                rel=1e-14)
    optimizer = optimizers.RMSprop(learning_rate=0.1, momentum=0.5, centered=True)
    assert apply_steps(optimizer, 1.0, [0.5, -0.25]) == pytest.approx(0.6484793169704386,
                                                                       rel=1e-13)


def test_adagrad_two_steps(backend_name):
    # w = 1, lr = 0.1, accumulator starts at 0.1, g = 0.5 twice.
    # Step 1: accumulator = 0.1 + 0.25 = 0.35,
    #   w = 1 - 0.1 * 0.5 / sqrt(0.35 + 1e-7) = 0.9154845866007779.
    # Step 2: accumulator = 0.6,
    #   w = 0.9154845866007779 - 0.05 / sqrt(0.6 + 1e-7) = 0.8509348695431305.
    optimizer = optimizers.Adagrad(learning_rate=0.1)
    assert apply_steps(optimizer, 1.0, [0.5]) == pytest.approx(0.9154845866007779,
                                                                rel=1e-14)
    optimizer = optimizers.Adagrad(learning_rate=0.1)
    assert apply_steps(optimizer, 1.0, [0.5, 0.5]) == pytest.approx(0.8509348695431305,
                                                                     rel=1e-14)


def test_nadam_documented_example(backend_name):
    # Keras's example: w = 10, g = 10, lr = 0.2, and one step gives 9.8.
    # Keras 3's momentum schedule is u_t = 0.9 * (1 - 0.5 * 0.96^t):
    #   u_1 = 0.9 * (1 - 0.5 * 0.96) = 0.468
    #   u_2 = 0.9 * (1 - 0.5 * 0.9216) = 0.48528
    #   m = 0.1 * 10 = 1, v = 0.001 * 100 = 0.1
    #   m_hat = u_2 * 1 / (1 - u_1 u_2) + (1 - u_1) * 10 / (1 - u_1)
    #         = 0.48528 / 0.77288896 + 10 = 10.627878033087702
    #   v_hat = 0.1 / (1 - 0.999) = 100
    #   w = 10 - 0.2 * 10.627878033087702 / (10 + 1e-7) = 9.787442441463822
    assert reference.nadam_momentum(0.9, 1) == pytest.approx(0.468, rel=1e-15)
    assert reference.nadam_momentum(0.9, 2) == pytest.approx(0.48528, rel=1e-15)
    weight = apply_steps(optimizers.Nadam(learning_rate=0.2), 10.0, [10.0])
    assert weight == pytest.approx(9.787442441463822, rel=1e-13)
    assert round(weight, 1) == 9.8


def test_adamw_one_step(backend_name):
    # w = 1, g = 0.5, lr = 0.1, weight_decay = 0.004.
    # Decay first: w = 1 - 0.1 * 0.004 * 1 = 0.9996.
    # Adam step: m = 0.05, v = 0.00025, alpha = 0.1 * sqrt(0.001) / 0.1
    #   = 0.03162277660168379, step = alpha * 0.05 / (sqrt(0.00025) + 1e-7)
    #   = 0.09999936754846796, so w = 0.9996 - 0.09999936754846796
    #   = 0.8996006324515321.
    weight = apply_steps(optimizers.AdamW(learning_rate=0.1), 1.0, [0.5])
    assert weight == pytest.approx(0.8996006324515321, rel=1e-14)


def test_amsgrad_keeps_max_second_moment(backend_name):
    # w = 1, lr = 0.1, g = 1 then 0, so v falls at step 2.
    # Step 1: m = 0.1, v = v_hat = 0.001, alpha = 0.1 * sqrt(0.001) / 0.1,
    #   w = 1 - alpha * 0.1 / (sqrt(0.001) + 1e-7) = 0.9000003162267659.
    # Step 2: m = 0.1 + 0.1 * (0 - 0.1) = 0.09, v = 0.001 + 0.001 * (0 - 0.001)
    #   = 0.000999, alpha = 0.1 * sqrt(1 - 0.999^2) / (1 - 0.9^2)
    #   = 0.023531672532745275.
    #   AMSGrad divides by sqrt(max(0.001, 0.000999)) = sqrt(0.001):
    #   w = 0.9000003162267659 - alpha * 0.09 / (sqrt(0.001) + 1e-7)
    #     = 0.8330282138901206.
    #   Adam divides by sqrt(0.000999) and steps further: 0.8329947028094912.
    amsgrad = apply_steps(optimizers.Adam(learning_rate=0.1, amsgrad=True), 1.0, [1.0, 0.0])
    adam = apply_steps(optimizers.Adam(learning_rate=0.1), 1.0, [1.0, 0.0])
    assert amsgrad == pytest.approx(0.8330282138901206, rel=1e-14)
    assert adam == pytest.approx(0.8329947028094912, rel=1e-14)


# ---------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------

Y_TRUE = np.array([[0.0, 1.0], [0.0, 0.0]])
Y_PRED = np.array([[0.6, 0.4], [0.4, 0.6]])


def test_mean_absolute_error_by_hand(backend_name):
    # |e| rows: [0.6, 0.6] -> 0.6 and [0.4, 0.6] -> 0.5, mean 0.55.
    # Gradient: sign(y_pred - y_true) / 2 outputs / 2 samples.
    loss = losses.MeanAbsoluteError()
    assert loss(Y_TRUE, Y_PRED) == pytest.approx(0.55, rel=1e-15)
    _, grad = loss.compute(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(grad, [[0.25, -0.25], [0.25, 0.25]])


def test_huber_documented_example(backend_name):
    # Keras's example, delta = 1: every |e| <= 1, so 0.5 e^2:
    # rows [0.18, 0.18] -> 0.18 and [0.08, 0.18] -> 0.13, mean 0.155.
    assert losses.Huber()(Y_TRUE, Y_PRED) == pytest.approx(0.155, rel=1e-14)
    # delta = 0.5: |e| = 0.6 is linear, 0.5 * 0.6 - 0.5 * 0.25 = 0.175, and
    # |e| = 0.4 stays quadratic, 0.08: rows 0.175 and 0.1275, mean 0.15125.
    # Gradient: e where |e| <= 0.5, else 0.5 * sign(e), over 2 * 2.
    loss = losses.Huber(delta=0.5)
    assert loss(Y_TRUE, Y_PRED) == pytest.approx(0.15125, rel=1e-14)
    _, grad = loss.compute(Y_TRUE, Y_PRED)
    np.testing.assert_allclose(grad, [[0.125, -0.125], [0.1, 0.125]], rtol=1e-15)


def test_binary_crossentropy_documented_examples(backend_name):
    # Probabilities: rows -(log 0.4 + log 0.4) / 2 = 0.916290731874155 and
    # -(log 0.6 + log 0.4) / 2 = 0.7135581778200728, mean 0.8149244548470639.
    row_1 = -(math.log(0.4) + math.log(0.4)) / 2
    row_2 = -(math.log(0.6) + math.log(0.4)) / 2
    loss = losses.BinaryCrossentropy()
    np.testing.assert_allclose(loss.compute(Y_TRUE, Y_PRED)[0], [row_1, row_2], rtol=1e-14)
    assert loss(Y_TRUE, Y_PRED) == pytest.approx(0.8149244548470639, rel=1e-14)
    # Logits, Keras's example with 4 outputs: max(z, 0) - z t + log1p(e^-|z|)
    # for z = -18.6, 0.51, 2.94, -12.8 and t = 0, 1, 0, 0, averaged: 0.865.
    z = np.array([[-18.6, 0.51, 2.94, -12.8]])
    t = np.array([[0.0, 1.0, 0.0, 0.0]])
    by_hand = (math.log1p(math.exp(-18.6)) + math.log1p(math.exp(-0.51))
               + 2.94 + math.log1p(math.exp(-2.94)) + math.log1p(math.exp(-12.8))) / 4
    value = losses.BinaryCrossentropy(from_logits=True)(t, z)
    assert value == pytest.approx(by_hand, rel=1e-14)
    assert round(value, 3) == 0.865


def test_kl_divergence_documented_example(backend_name):
    # y_true is clipped to [1e-7, 1]: rows
    # 1e-7 log(1e-7 / 0.6) + 1 * log(1 / 0.4) = 0.9162891392...
    # 1e-7 log(1e-7 / 0.4) + 1e-7 log(1e-7 / 0.6) = -3.08e-6, mean 0.458.
    row_1 = 1e-7 * math.log(1e-7 / 0.6) + math.log(1 / 0.4)
    row_2 = 1e-7 * math.log(1e-7 / 0.4) + 1e-7 * math.log(1e-7 / 0.6)
    loss = losses.KLDivergence()
    np.testing.assert_allclose(loss.compute(Y_TRUE, Y_PRED)[0], [row_1, row_2],
                               rtol=1e-12)
    assert loss(Y_TRUE, Y_PRED) == pytest.approx((row_1 + row_2) / 2, rel=1e-12)
    assert round(loss(Y_TRUE, Y_PRED), 3) == 0.458


def test_categorical_label_smoothing_by_hand(backend_name):
    # label_smoothing = 0.1 over 3 classes: t = [0, 1, 0] * 0.9 + 0.1 / 3
    # = [1/30, 28/30, 1/30]. p = [0.05, 0.95, 0] clipped to 1e-7 at the last:
    # loss = -(1/30 log 0.05 + 28/30 log 0.95 + 1/30 log 1e-7).
    y_true = np.array([[0.0, 1.0, 0.0]])
    y_pred = np.array([[0.05, 0.95, 0.0]])
    by_hand = -(math.log(0.05) / 30 + 28 * math.log(0.95) / 30 + math.log(1e-7) / 30)
    loss = losses.CategoricalCrossentropy(label_smoothing=0.1)
    assert loss(y_true, y_pred) == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize(
    "reduction, expected",
    [
        # Losses -log 0.9 and -log 0.8; the sample labelled -1 adds nothing.
        # The mean reductions divide by the 2 kept samples (+ 1e-7).
        ("sum_over_batch_size", (-math.log(0.9) - math.log(0.8)) / (2 + 1e-7)),
        ("sum", -math.log(0.9) - math.log(0.8)),
        # Weights 1, 3, 2: (1 * -log 0.9 + 2 * -log 0.8) / (1 + 2).
        ("mean_with_sample_weight", (-math.log(0.9) - 2 * math.log(0.8)) / 3),
    ],
)
def test_ignore_class_by_hand(reduction, expected, backend_name):
    y_true = np.array([0, -1, 1])
    y_pred = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    weights = np.array([1.0, 3.0, 2.0]) if reduction == "mean_with_sample_weight" else None
    loss = losses.SparseCategoricalCrossentropy(ignore_class=-1, reduction=reduction)
    assert loss(y_true, y_pred, sample_weight=weights) == pytest.approx(expected, rel=1e-12)
    per_sample = losses.SparseCategoricalCrossentropy(ignore_class=-1, reduction="none")(
        y_true, y_pred)
    np.testing.assert_allclose(per_sample, [-math.log(0.9), 0.0, -math.log(0.8)],
                               rtol=1e-12)


# ---------------------------------------------------------------------------
# Binary cross-entropy at the extremes.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_crossentropy_logit_extremes(dtype, backend_name):
    # Logits of +-100: the wrong label costs exactly 100, the right one
    # log1p(e^-100), below 4e-44. Logits of +-inf with the matching label
    # cost exactly 0. No gradient is NaN or inf, and nothing warns.
    loss = losses.BinaryCrossentropy(from_logits=True, reduction="none")
    z = np.array([[100.0], [-100.0], [100.0], [-100.0], [np.inf], [-np.inf]], dtype=dtype)
    t = np.array([[0.0], [1.0], [1.0], [0.0], [1.0], [0.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_sample = loss(t, z)
        _, grad = loss.compute(t, z)
    np.testing.assert_array_equal(per_sample[:2], [100.0, 100.0])
    assert 0.0 < per_sample[2] < 4e-44
    assert 0.0 < per_sample[3] < 4e-44
    np.testing.assert_array_equal(per_sample[4:], [0.0, 0.0])
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_saturates_exactly(dtype, backend_name):
    x = np.array([1000.0, -1000.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = activations.sigmoid(x)
    np.testing.assert_array_equal(y, [1.0, 0.0])


def test_fused_sigmoid_loss_uses_logits(backend_name):
    # A sigmoid output of logit 1000 is exactly 1, which clipping would score
    # as -log(1e-7) = 16.1 for label 0. Trained from the logit, the loss is
    # the true 1000.
    model = nnfast.Sequential([nnfast.Input(shape=(1,)), layers.Dense(1, activation="sigmoid")])
    model.set_weights([np.array([[1000.0]]), np.zeros(1)])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy")
    loss = model.test_on_batch(np.ones((1, 1)), np.array([[0.0]]))
    assert loss == pytest.approx(1000.0, rel=1e-6)


# ---------------------------------------------------------------------------
# Activations.
# ---------------------------------------------------------------------------

E = math.e
SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717

# (activation, x, f(x), f'(x)) worked out from Keras 3's definitions.
ACTIVATION_VALUES = [
    ("leaky_relu", -2.0, -0.4, 0.2),  # default negative_slope 0.2
    ("leaky_relu", 3.0, 3.0, 1.0),
    ("elu", -1.0, 1 / E - 1, 1 / E),  # alpha (e^x - 1), derivative alpha e^x
    ("selu", 1.0, SELU_SCALE, SELU_SCALE),
    ("selu", -1.0, SELU_SCALE * SELU_ALPHA * (1 / E - 1), SELU_SCALE * SELU_ALPHA / E),
    # x Phi(x), Phi(1) = 0.5 (1 + erf(1 / sqrt 2)); derivative Phi(x) + x phi(x).
    ("gelu", 1.0, 0.5 * (1 + math.erf(1 / math.sqrt(2))),
     0.5 * (1 + math.erf(1 / math.sqrt(2))) + math.exp(-0.5) / math.sqrt(2 * math.pi)),
    ("gelu", 0.0, 0.0, 0.5),
    # 0.5 (1 + tanh(sqrt(2 / pi) (1 + 0.044715))).
    ("gelu_approximate", 1.0,
     0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715)), None),
    ("silu", 1.0, 1 / (1 + 1 / E), None),  # x sigmoid(x)
    ("silu", 0.0, 0.0, 0.5),
    ("softplus", 0.0, math.log(2), 0.5),  # log(1 + e^x), derivative sigmoid(x)
    ("softplus", 1.0, math.log(1 + E), 1 / (1 + 1 / E)),
    ("softsign", 3.0, 0.75, 1 / 16),  # x / (1 + |x|), derivative 1 / (1 + |x|)^2
    ("hard_sigmoid", -3.0, 0.0, 0.0),  # relu6(x + 3) / 6
    ("hard_sigmoid", 0.0, 0.5, 1 / 6),
    ("hard_sigmoid", 1.5, 0.75, 1 / 6),
    ("hard_sigmoid", 4.0, 1.0, 0.0),
    ("exponential", 1.0, E, E),
]


@pytest.mark.parametrize("name, x, value, slope", ACTIVATION_VALUES,
                         ids=[f"{row[0]}({row[1]})" for row in ACTIVATION_VALUES])
def test_activation_by_hand(name, x, value, slope, backend_name):
    kernels = nnfast.backend.kernels()
    inputs = np.array([x])
    y = kernels.activation_forward(name, inputs)
    assert y[0] == pytest.approx(value, rel=1e-14, abs=1e-300)
    if slope is not None:
        dx = kernels.activation_backward(name, inputs, y, np.ones(1))
        assert dx[0] == pytest.approx(slope, rel=1e-14, abs=1e-300)


def test_log_softmax_by_hand(backend_name):
    # log_softmax([0, log 3]) = [0, log 3] - log(1 + 3) = [-log 4, log 3 - log 4].
    y = activations.log_softmax(np.array([[0.0, math.log(3)]]))
    np.testing.assert_allclose(y, [[-math.log(4), math.log(3) - math.log(4)]], rtol=1e-15)


def test_relu_layer_documented_examples(backend_name):
    x = np.array([[-10.0, -5.0, 0.0, 5.0, 10.0]])
    np.testing.assert_array_equal(layers.ReLU(negative_slope=0.5)(x),
                                  [[-5.0, -2.5, 0.0, 5.0, 10.0]])
    np.testing.assert_array_equal(layers.ReLU(max_value=5.0)(x), [[0, 0, 0, 5, 5]])
    np.testing.assert_array_equal(layers.ReLU(threshold=5.0)(x), [[0, 0, 0, 0, 10]])
    np.testing.assert_allclose(layers.LeakyReLU(dtype="float64")(np.array([[-3.0, -1.0, 0.0, 2.0]])),
                               [[-0.9, -0.3, 0.0, 2.0]], rtol=1e-15)


# ---------------------------------------------------------------------------
# Models.
# ---------------------------------------------------------------------------

def classification_data(n=96, n_in=5, seed=11):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float64)
    return x, y


def train_on_both_backends(build, compile_kwargs, x, y, epochs=3, batch_size=16):
    """Return {backend: (weights, history, model)} for one model trained on each backend."""
    results = {}
    for name in BACKENDS:
        nnfast.set_backend(name)
        try:
            nnfast.utils.set_random_seed(7)
            model = build()
            model.compile(**compile_kwargs)
            history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0,
                                shuffle=False)
            results[name] = (model.get_weights(), history.history, model)
        finally:
            nnfast.set_backend("compiled")
    return results


def gelu_leaky_model(dtype="float64"):
    return nnfast.Sequential([
        nnfast.Input(shape=(5,), dtype=dtype),
        layers.Dense(8, activation="gelu", dtype=dtype),
        layers.Dense(8, dtype=dtype),
        layers.LeakyReLU(dtype=dtype),
        layers.Dense(1, activation="sigmoid", dtype=dtype),
    ])


@pytest.mark.parametrize("optimizer", ["rmsprop", "adagrad", "adamw", "nadam", "adam"])
def test_gelu_leaky_model_backends_agree(optimizer):
    # float64 kernels differ from NumPy only in rounding and summation
    # order, about 1e-15 relative per operation, so after 18 steps the
    # weights agree to 1e-9.
    x, y = classification_data()
    results = train_on_both_backends(
        gelu_leaky_model, {"optimizer": optimizer, "loss": "binary_crossentropy"}, x, y)
    compiled_weights, compiled_history, _ = results["compiled"]
    reference_weights, reference_history, _ = results["reference"]
    for a, b in zip(compiled_weights, reference_weights):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(compiled_history["loss"], reference_history["loss"],
                               rtol=1e-9)
    nnfast.utils.set_random_seed(7)
    initial = gelu_leaky_model()
    initial.build((None, 5))
    changed = [not np.array_equal(a, b)
               for a, b in zip(compiled_weights, initial.get_weights())]
    assert all(changed)


def test_gelu_leaky_model_float32_backends_agree():
    # float32 models follow the same path; rounding differs by a few ulp.
    x, y = classification_data()
    results = train_on_both_backends(
        lambda: gelu_leaky_model("float32"),
        {"optimizer": "adam", "loss": "binary_crossentropy"}, x.astype("float32"), y)
    for a, b in zip(results["compiled"][0], results["reference"][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fused_sigmoid_matches_logits_model():
    # Dense(1, sigmoid) with BinaryCrossentropy() trains from the logits, so
    # its weights follow exactly those of Dense(1) with from_logits=True.
    x, y = classification_data()

    def build(activation):
        return lambda: nnfast.Sequential([
            nnfast.Input(shape=(5,), dtype="float64"),
            layers.Dense(4, activation="tanh", dtype="float64"),
            layers.Dense(1, activation=activation, dtype="float64"),
        ])

    fused = train_on_both_backends(build("sigmoid"),
                                   {"optimizer": "sgd", "loss": "binary_crossentropy"},
                                   x, y)
    logits = train_on_both_backends(
        build(None),
        {"optimizer": "sgd", "loss": losses.BinaryCrossentropy(from_logits=True)}, x, y)
    for name in BACKENDS:
        for a, b in zip(fused[name][0], logits[name][0]):
            np.testing.assert_array_equal(a, b)


def test_fused_sigmoid_metrics_see_probabilities():
    # "accuracy" under binary cross-entropy is binary accuracy, which
    # thresholds probabilities at 0.5. With the sigmoid fused into the loss
    # the metric must still receive probabilities, not logits.
    x, y = classification_data()
    model = nnfast.Sequential([
        nnfast.Input(shape=(5,), dtype="float64"),
        layers.Dense(1, activation="sigmoid", dtype="float64"),
    ])
    # Logits 0.2 x_0 - 3 are negative for most samples, so their
    # probabilities lie below 0.5 while the logits are far from 0.5.
    model.set_weights([np.array([[0.2], [0.0], [0.0], [0.0], [0.0]]), np.array([-3.0])])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="binary_crossentropy",
                  metrics=["accuracy"])
    _, accuracy = model.evaluate(x, y, verbose=0)
    probabilities = model.predict(x, verbose=0)[:, 0]
    expected = float(np.mean((probabilities > 0.5) == (y > 0.5)))
    assert accuracy == pytest.approx(expected, rel=1e-12)
    assert type(model.compiled_metrics[0]).__name__ == "BinaryAccuracy"


def test_unfused_dense_predicts_without_chain():
    # The compiled inference chain fuses only five activations. A Dense with
    # gelu falls back to the layer-by-layer path and matches it.
    x, _ = classification_data()
    nnfast.utils.set_random_seed(3)
    model = gelu_leaky_model()
    model.build((None, 5))
    predicted = model.predict(x, verbose=0)
    stepwise = model(x)
    np.testing.assert_allclose(predicted, stepwise, rtol=1e-15)
    dense_only = nnfast.Sequential([nnfast.Input(shape=(5,), dtype="float64"),
                                    layers.Dense(3, activation="gelu", dtype="float64")])
    dense_only.build((None, 5))
    kernel, bias = dense_only.get_weights()
    expected = _activations.activation_forward("gelu", x @ kernel + bias)
    np.testing.assert_allclose(dense_only.predict(x, verbose=0), expected, rtol=1e-13)


def test_model_config_keeps_new_names(tmp_path):
    nnfast.utils.set_random_seed(4)
    model = gelu_leaky_model()
    model.build((None, 5))
    model.compile(optimizer=optimizers.Nadam(learning_rate=0.01),
                  loss=losses.Huber(delta=0.3))
    path = tmp_path / "model.nnf"
    model.save(path)
    restored = nnfast.models.load_model(path)
    x, _ = classification_data()
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    assert type(restored.optimizer).__name__ == "Nadam"
    assert restored.loss.delta == 0.3
