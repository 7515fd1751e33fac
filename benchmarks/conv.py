"""Time the Fashion-MNIST convolutional network in nnfast and in PyTorch.

Usage::

    python benchmarks/conv.py [--threads N] [--rounds 15] [--steps 4] [--calls 20]

The model is the one of examples/fashion_mnist_cnn.py: Conv2D(32, 3, relu),
MaxPooling2D, Conv2D(64, 3, relu), MaxPooling2D, Flatten, Dropout(0.5),
Dense(10), with the convolutions' padding taken from the example, trained with Adam (learning rate 1e-3, epsilon 1e-7) on the
sparse categorical cross-entropy of the logits. PyTorch runs the same
network as torch.nn modules on NCHW tensors, with the same weights (the
outputs are compared before timing) and ``torch.set_num_threads`` equal to
nnfast's thread count.

Three things are timed, on Fashion-MNIST images:

* one training step at batch size 64 (nnfast ``train_on_batch``; PyTorch
  ``zero_grad``, forward, loss, ``backward`` and ``step``);
* the inference of one image and of a batch of 64 (nnfast
  ``predict_on_batch``; PyTorch ``model(x)`` in eval mode under
  ``torch.inference_mode``).

Each round times every case in both frameworks, alternating which one goes
first, and the script reports the medians over all calls. It re-executes
itself without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE before NumPy or
PyTorch is imported, and waits for the machine to be quiet before timing.
"""

import sys

import _common

_common.reexec_without_openblas_overrides()

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import nnfast  # noqa: E402

sys.path.insert(0, _common.REPO_ROOT)
from examples.fashion_mnist_cnn import build_model  # noqa: E402

BATCH = 64
LEARNING_RATE = 1e-3
# Keras's default Adam epsilon; PyTorch's own default is 1e-8.
ADAM_EPSILON = 1e-7

# Targets: nnfast's time as a fraction of PyTorch's.
TRAIN_STEP_TARGET = 1.0
INFERENCE_1_TARGET = 0.5


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=_common.usable_cpus(),
                        help="threads for both frameworks (default: usable CPUs)")
    parser.add_argument("--rounds", type=int, default=15,
                        help="rounds of alternating measurements (default 15)")
    parser.add_argument("--steps", type=int, default=4,
                        help="training steps per framework and round (default 4)")
    parser.add_argument("--calls", type=int, default=20,
                        help="inference calls per framework, case and round "
                             "(default 20)")
    _common.add_quiet_arguments(parser)
    return parser.parse_args()


# Models ---------------------------------------------------------------------------


def nnfast_model():
    model = build_model()
    model.compile(
        optimizer=nnfast.optimizers.Adam(learning_rate=LEARNING_RATE,
                                         epsilon=ADAM_EPSILON),
        loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def torch_model(nnfast_model):
    """Return the PyTorch twin of the nnfast model, holding the same weights."""
    import torch

    kernel_1, bias_1, kernel_2, bias_2, dense_kernel, dense_bias = nnfast_model.get_weights()
    # "same" keeps the size of a 3 x 3 convolution's input with one pixel of
    # zeros on each side, as padding=1 does in PyTorch.
    padding = 1 if nnfast_model.layers[0].padding == "same" else 0
    features = dense_kernel.shape[0]
    side = int(round((features // 64) ** 0.5))
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=padding),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=padding),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(features, 10),
    )
    # Conv kernels go from (h, w, in, out) to (out, in, h, w). Flatten reads
    # (h, w, c) in nnfast and (c, h, w) in PyTorch, so the Dense kernel's
    # rows are reordered to match.
    dense = (dense_kernel.reshape(side, side, 64, 10).transpose(2, 0, 1, 3)
             .reshape(features, 10))
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(kernel_1.transpose(3, 2, 0, 1).copy()))
        model[0].bias.copy_(torch.from_numpy(bias_1))
        model[3].weight.copy_(torch.from_numpy(kernel_2.transpose(3, 2, 0, 1).copy()))
        model[3].bias.copy_(torch.from_numpy(bias_2))
        model[8].weight.copy_(torch.from_numpy(dense.T.copy()))
        model[8].bias.copy_(torch.from_numpy(dense_bias))
    return model


# Cases: each returns a function of no arguments that runs one call ---------------


def nnfast_cases(model, images, labels):
    return {
        "train step, batch 64": lambda: model.train_on_batch(images, labels),
        "inference, batch 1": lambda: model.predict_on_batch(images[:1]),
        "inference, batch 64": lambda: model.predict_on_batch(images),
    }


def torch_cases(model, images, labels):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(labels.astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=ADAM_EPSILON)
    loss_function = torch.nn.CrossEntropyLoss()

    def train_step():
        model.train()
        optimizer.zero_grad()
        loss = loss_function(model(x), y)
        loss.backward()
        optimizer.step()

    def infer(batch):
        model.eval()
        with torch.inference_mode():
            model(batch)

    single_image = x[:1].contiguous()
    return {
        "train step, batch 64": train_step,
        "inference, batch 1": lambda: infer(single_image),
        "inference, batch 64": lambda: infer(x),
    }


def check_outputs(model, net, images):
    """Return the largest |logit difference| between the two frameworks."""
    import torch

    net.eval()
    with torch.inference_mode():
        expected = net(torch.from_numpy(
            np.ascontiguousarray(images.transpose(0, 3, 1, 2)))).numpy()
    return float(np.max(np.abs(model.predict_on_batch(images) - expected)))


# Measurement -----------------------------------------------------------------------


def measure(cases, rounds, steps, calls):
    """Return {framework: {case: [seconds of each call]}}, alternating frameworks."""
    frameworks = list(cases)
    names = list(cases[frameworks[0]])
    samples = {framework: {name: [] for name in names} for framework in frameworks}
    for framework in frameworks:
        for name in names:
            for _ in range(3):
                cases[framework][name]()
    for round_index in range(rounds):
        order = frameworks if round_index % 2 == 0 else frameworks[::-1]
        for name in names:
            repeats = steps if name.startswith("train") else calls
            for framework in order:
                run = cases[framework][name]
                record = samples[framework][name].append
                for _ in range(repeats):
                    start = time.perf_counter()
                    run()
                    record(time.perf_counter() - start)
    return samples


def print_results(samples):
    names = list(samples["nnfast"])
    print(f"{'case':22} {'nnfast':>12} {'PyTorch':>12} {'nnfast/PyTorch':>15}")
    ratios = {}
    for name in names:
        ours = _common.median(samples["nnfast"][name])
        theirs = _common.median(samples["PyTorch"][name])
        ratios[name] = ours / theirs
        print(f"{name:22} {format_seconds(ours):>12} {format_seconds(theirs):>12} "
              f"{ratios[name]:>14.2f}x")
    print()
    return ratios


def format_seconds(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


def main():
    args = parse_args()
    _common.print_header("Fashion-MNIST CNN: training step and inference, nnfast "
                         "and PyTorch")
    if not _common.is_installed("torch"):
        print("PyTorch not installed, nothing to compare with.")
        return
    import torch

    nnfast.utils.set_random_seed(0)
    torch.manual_seed(0)
    nnfast.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"threads: {args.threads} (nnfast reports {nnfast.get_num_threads()}, "
          f"PyTorch {torch.get_num_threads()})")

    (x_train, y_train), _ = nnfast.datasets.fashion_mnist.load_data()
    images = (x_train[:BATCH].reshape(BATCH, 28, 28, 1) / 255.0).astype(np.float32)
    labels = y_train[:BATCH].astype(np.int64)

    model = nnfast_model()
    model.build((None, 28, 28, 1))
    net = torch_model(model)
    print(f"largest |logit difference| with equal weights: "
          f"{check_outputs(model, net, images):.2e}\n")

    cases = {"nnfast": nnfast_cases(model, images, labels),
             "PyTorch": torch_cases(net, images, labels)}
    _common.wait_for_quiet(args)
    load = _common.OtherLoad()
    with load.measuring():
        samples = measure(cases, args.rounds, args.steps, args.calls)
    ratios = print_results(samples)
    _common.print_other_load(load)

    _common.print_targets([
        _common.Target(f"train step, batch 64: nnfast/PyTorch <= {TRAIN_STEP_TARGET}",
                       f"{ratios['train step, batch 64']:.2f}x",
                       ratios["train step, batch 64"] <= TRAIN_STEP_TARGET),
        _common.Target(f"inference, batch 1: nnfast/PyTorch <= {INFERENCE_1_TARGET}",
                       f"{ratios['inference, batch 1']:.2f}x",
                       ratios["inference, batch 1"] <= INFERENCE_1_TARGET),
    ])


if __name__ == "__main__":
    main()
