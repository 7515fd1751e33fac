"""Time inference of the Fashion-MNIST MLP in nnfast, PyTorch and ONNX Runtime.

Usage::

    python benchmarks/predict.py [--rounds 20] [--calls 250] [--repeats 15]
                                 [--quick]

nnfast trains the tutorial MLP (Flatten, Dense(128, relu), Dense(10)) for one
epoch, and every other runner gets the same weights:

- nnfast through ``model(x)``, ``predict_on_batch`` and ``predict``;
- PyTorch (``torch.nn.Linear`` layers) under ``torch.inference_mode()``;
- ONNX Runtime, on a graph built with ``onnx.helper`` from MatMul, Add and
  Relu nodes, when onnx and onnxruntime are installed;
- a forward pass written in NumPy, for reference.

Every runner takes a float32 NumPy array of shape (n, 28, 28) and returns a
NumPy array, so conversions to and from tensors are part of PyTorch's time.

Latency: one sample per call, one thread everywhere (ONNX Runtime with one
intra-op thread). Calls are timed one by one, in rounds that alternate the
runners; the script reports the median and the 99th percentile.
Throughput: the 10,000 test images in batches of 1,024, two threads
everywhere; the script reports the median over repeats, running the
runners in a new random order each time.
"""

import sys

import _common

_common.reexec_without_openblas_overrides()

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import nnfast  # noqa: E402

THROUGHPUT_BATCH = 1024
# Sleep between runners in the throughput rounds, so that the worker threads
# of the last runner stop spinning before the next one starts. OpenBLAS's
# threads (behind the NumPy runner) spin the longest: with 0.05 s here, the
# runner after NumPy ran at a quarter of its speed on a 2-CPU machine.
PAUSE_SECONDS = 0.5

LATENCY_TARGET = 0.5
PREDICT_OVERHEAD_TARGET = 2.0


# Models -------------------------------------------------------------------------


def train_model(x_train, y_train, n_threads):
    nnfast.set_num_threads(n_threads)
    nnfast.utils.set_random_seed(0)
    model = nnfast.Sequential([
        nnfast.Input(shape=(28, 28)),
        nnfast.layers.Flatten(),
        nnfast.layers.Dense(128, activation="relu"),
        nnfast.layers.Dense(10),
    ])
    model.compile(
        optimizer="adam",
        loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
    return model


def torch_model(weights):
    import torch

    kernel_1, bias_1, kernel_2, bias_2 = weights
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(kernel_1.shape[0], kernel_1.shape[1]),
        torch.nn.ReLU(),
        torch.nn.Linear(kernel_2.shape[0], kernel_2.shape[1]),
    )
    with torch.no_grad():
        # nn.Linear stores its weight as (out_features, in_features).
        model[1].weight.copy_(torch.from_numpy(kernel_1.T.copy()))
        model[1].bias.copy_(torch.from_numpy(bias_1))
        model[3].weight.copy_(torch.from_numpy(kernel_2.T.copy()))
        model[3].bias.copy_(torch.from_numpy(bias_2))
    model.eval()
    return model


def onnx_model_bytes(weights):
    """Return a serialized ONNX model: logits = relu(x @ W1 + b1) @ W2 + b2."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kernel_1, bias_1, kernel_2, bias_2 = weights
    initializers = [
        numpy_helper.from_array(kernel_1, "kernel_1"),
        numpy_helper.from_array(bias_1, "bias_1"),
        numpy_helper.from_array(kernel_2, "kernel_2"),
        numpy_helper.from_array(bias_2, "bias_2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "kernel_1"], ["matmul_1"]),
        helper.make_node("Add", ["matmul_1", "bias_1"], ["preactivation_1"]),
        helper.make_node("Relu", ["preactivation_1"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "kernel_2"], ["matmul_2"]),
        helper.make_node("Add", ["matmul_2", "bias_2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "fashion_mnist_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                       ["batch", kernel_1.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch", kernel_2.shape[1]])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_session(model_bytes, n_threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model_bytes, options,
                                        providers=["CPUExecutionProvider"])


# Runners: each maps a (n, 28, 28) float32 array to a NumPy array of logits -------


def nnfast_runners(model):
    return {
        "nnfast model(x)": model,
        "nnfast predict_on_batch": model.predict_on_batch,
        "nnfast predict": lambda x: model.predict(x, verbose=0),
    }


def torch_runner(model):
    import torch

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def onnx_runner(session):
    def run(x):
        return session.run(None, {"x": x.reshape(x.shape[0], -1)})[0]

    return run


def numpy_runner(weights):
    kernel_1, bias_1, kernel_2, bias_2 = weights

    def run(x):
        hidden = x.reshape(x.shape[0], -1) @ kernel_1
        hidden += bias_1
        np.maximum(hidden, 0.0, out=hidden)
        logits = hidden @ kernel_2
        logits += bias_2
        return logits

    return run


def batched(run, batch_size):
    """Return a runner that calls ``run`` on consecutive batches."""
    def run_batches(x):
        for start in range(0, x.shape[0], batch_size):
            run(x[start:start + batch_size])

    return run_batches


def set_threads(n_threads):
    nnfast.set_num_threads(n_threads)
    if _common.is_installed("torch"):
        import torch

        torch.set_num_threads(n_threads)


def runners_for(model, weights, torch_net, onnx_bytes, n_threads):
    runners = dict(nnfast_runners(model))
    if torch_net is not None:
        runners["PyTorch"] = torch_runner(torch_net)
    if onnx_bytes is not None:
        runners["ONNX Runtime"] = onnx_runner(onnx_session(onnx_bytes, n_threads))
    runners["NumPy"] = numpy_runner(weights)
    return runners


# Measurements -------------------------------------------------------------------


def check_outputs(runners, x, expected):
    """Print each runner's largest absolute difference from nnfast predict."""
    print("Largest |output - nnfast predict| on the test images:")
    for name, run in runners.items():
        output = np.concatenate([run(x[i:i + THROUGHPUT_BATCH])
                                 for i in range(0, x.shape[0], THROUGHPUT_BATCH)])
        print(f"  {name:24} {np.max(np.abs(output - expected)):.2e}")
    print()


def measure_latency(runners, sample, rounds, calls):
    """Return {runner: [nanoseconds of each call]} for one-sample calls."""
    names = list(runners)
    samples = {name: [] for name in names}
    for name in names:
        for _ in range(calls):
            runners[name](sample)
    clock = time.perf_counter_ns
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            run = runners[name]
            record = samples[name].append
            for _ in range(calls):
                start = clock()
                run(sample)
                record(clock() - start)
    return samples


def measure_throughput(runners, x, repeats):
    """Return {runner: samples per second} (median over repeats)."""
    names = list(runners)
    seconds = {name: [] for name in names}
    for name in names:
        runners[name](x)
    # A new order each repeat, so that no runner always follows the same one.
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        for index in rng.permutation(len(names)):
            name = names[index]
            time.sleep(PAUSE_SECONDS)
            start = time.perf_counter()
            runners[name](x)
            seconds[name].append(time.perf_counter() - start)
    return {name: x.shape[0] / _common.median(values)
            for name, values in seconds.items()}


# Report -------------------------------------------------------------------------


def build_targets(latency_median, throughput, has_onnx):
    nnfast_paths = [name for name in latency_median if name.startswith("nnfast")]
    fastest = min(nnfast_paths, key=latency_median.get)
    targets = []
    if has_onnx:
        ratio = latency_median[fastest] / latency_median["ONNX Runtime"]
        targets.append(_common.Target(
            f"1-sample median, fastest nnfast path <= {LATENCY_TARGET}x ONNX Runtime",
            f"{ratio:.2f}x ({fastest[7:]})", ratio <= LATENCY_TARGET))
    else:
        targets.append(_common.Target(
            f"1-sample median, fastest nnfast path <= {LATENCY_TARGET}x ONNX Runtime",
            "ONNX Runtime not installed", None))
    ratio = latency_median["nnfast predict"] / latency_median[fastest]
    targets.append(_common.Target(
        f"1-sample median, predict <= {PREDICT_OVERHEAD_TARGET}x fastest nnfast path",
        f"{ratio:.2f}x", ratio <= PREDICT_OVERHEAD_TARGET))
    goal = (f"throughput, predict(batch_size={THROUGHPUT_BATCH}), 2 thr >= "
            "ONNX Runtime")
    if has_onnx:
        ratio = throughput["nnfast predict"] / throughput["ONNX Runtime"]
        targets.append(_common.Target(goal, f"{ratio:.2f}x", ratio >= 1.0))
    else:
        targets.append(_common.Target(goal, "ONNX Runtime not installed", None))
    return targets


def main():
    args = parse_args()
    _common.print_header("Prediction: latency of one sample and batch throughput")
    has_torch = _common.is_installed("torch")
    has_onnx = _common.is_installed("onnx") and _common.is_installed("onnxruntime")
    if not has_torch:
        print("PyTorch not installed, not measured.")
    if not has_onnx:
        print("ONNX Runtime (onnx and onnxruntime) not installed, not measured.")

    (x_train, y_train), (x_test, _) = nnfast.datasets.fashion_mnist.load_data()
    x_train = x_train.astype(np.float32)
    x_train /= 255.0
    x_test = x_test.astype(np.float32)
    x_test /= 255.0
    model = train_model(x_train, y_train, args.latency_threads)
    weights = model.get_weights()
    torch_net = torch_model(weights) if has_torch else None
    onnx_bytes = onnx_model_bytes(weights) if has_onnx else None

    with threadpool_limits(limits=args.latency_threads, user_api="blas"):
        set_threads(args.latency_threads)
        runners = runners_for(model, weights, torch_net, onnx_bytes,
                              args.latency_threads)
        check_outputs(runners, x_test, model.predict(x_test, verbose=0))
        _common.wait_for_quiet(args)
        load = _common.OtherLoad()
        with load.measuring():
            latencies = measure_latency(runners, x_test[:1], args.rounds,
                                        args.calls)

    print(f"Latency of one sample, {args.latency_threads} thread(s), "
          f"{args.rounds} rounds x {args.calls} calls per runner (microseconds)")
    print(f"  {'runner':24} {'median':>8} {'p99':>8}")
    latency_median = {}
    for name, values in latencies.items():
        latency_median[name] = _common.median(values) / 1e3
        print(f"  {name:24} {latency_median[name]:8.1f} "
              f"{_common.percentile(values, 99) / 1e3:8.1f}")
    _common.print_other_load(load)
    print()

    with threadpool_limits(limits=args.throughput_threads, user_api="blas"):
        set_threads(args.throughput_threads)
        runners = runners_for(model, weights, torch_net, onnx_bytes,
                              args.throughput_threads)
        batch_runners = {name: batched(run, THROUGHPUT_BATCH)
                         for name, run in runners.items()}
        batch_runners["nnfast predict"] = (
            lambda x: model.predict(x, batch_size=THROUGHPUT_BATCH, verbose=0))
        _common.wait_for_quiet(args)
        load = _common.OtherLoad()
        with load.measuring():
            throughput = measure_throughput(batch_runners, x_test, args.repeats)

    print(f"Throughput on {x_test.shape[0]} samples in batches of "
          f"{THROUGHPUT_BATCH}, {args.throughput_threads} threads, median of "
          f"{args.repeats} (samples per second)")
    for name, rate in throughput.items():
        print(f"  {name:24} {rate:12,.0f}")
    _common.print_other_load(load)
    print()
    _common.print_targets(build_targets(latency_median, throughput, has_onnx))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20,
                        help="latency rounds; each round runs every runner once")
    parser.add_argument("--calls", type=int, default=250,
                        help="one-sample calls per runner in each latency round")
    parser.add_argument("--repeats", type=int, default=15,
                        help="timed passes over the test images per runner")
    parser.add_argument("--latency-threads", type=int, default=1,
                        help="threads of every runner for the latency test")
    parser.add_argument("--throughput-threads", type=int, default=2,
                        help="threads of every runner for the throughput test")
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds of 50 calls, 3 repeats and no wait for "
                             "a quiet machine, to check that the script works")
    _common.add_quiet_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls, args.repeats = 2, 50, 3
        args.max_wait = 0.0
    for name in ("rounds", "calls", "repeats", "latency_threads",
                 "throughput_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, "
                         f"got {getattr(args, name)}")
    return args


if __name__ == "__main__":
    sys.exit(main())
