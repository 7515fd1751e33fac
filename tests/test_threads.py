"""Threads, processes, interrupts and memory over long runs."""

import _thread
import gc
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import nnfast
from nnfast import _runtime, layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_model(seed=0, width=64):
    nnfast.utils.set_random_seed(seed)
    model = nnfast.Sequential([
        nnfast.Input(shape=(20,)),
        layers.Dense(width, activation="relu"),
        layers.Dense(4),
    ])
    model.compile(optimizer="adam",
                  loss=nnfast.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 20)).astype("float32")
    y = rng.integers(0, 4, size=512)
    return x, y


def run_python(code, env_extra=None, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout)


# Thread counts -------------------------------------------------------------

def test_set_num_threads_caps_team():
    before = nnfast.get_num_threads()
    try:
        nnfast.set_num_threads(1)
        assert _runtime.observed_team_size(nnfast.get_num_threads()) == 1
    finally:
        nnfast.set_num_threads(before)


@pytest.mark.skipif(os.cpu_count() < 2, reason="needs two cores to see a team of 2")
def test_team_of_two_when_asked():
    before = nnfast.get_num_threads()
    try:
        nnfast.set_num_threads(2)
        if _runtime.omp_max_threads() < 2:
            pytest.skip("OpenMP is limited to one thread in this environment")
        assert _runtime.observed_team_size(nnfast.get_num_threads()) == 2
    finally:
        nnfast.set_num_threads(before)


SHARED_CPU_SCRIPT = """
import threading
import time
from nnfast import _runtime

procs = _runtime.omp_num_procs()
limit = 1000.0
results = {}
# Below the limit every thread runs alone.
results["small"] = _runtime.parallel_threads(2, limit / 2, limit)
# The main thread opens a team that fills every CPU.
results["main"] = _runtime.parallel_threads(procs, 200 * limit, limit)

def other_thread():
    # A second team would oversubscribe the CPUs: mid-sized work stays on
    # one thread, large work still splits.
    results["mid"] = _runtime.parallel_threads(2, 10 * limit, limit)
    results["large"] = _runtime.parallel_threads(2, 200 * limit, limit)

worker = threading.Thread(target=other_thread)
worker.start()
worker.join()
# The other thread has exited, so its team no longer counts once the thread's
# exit handlers have run, which may be just after join() returns.
for _ in range(200):
    results["after"] = _runtime.parallel_threads(procs, 10 * limit, limit)
    if results["after"] == procs:
        break
    time.sleep(0.01)
print(procs, results["small"], results["main"], results["mid"], results["large"],
      results["after"])
"""


def test_threads_stay_single_when_teams_share_cpus():
    if not _runtime.openmp_enabled():
        pytest.skip("nnfast was built without OpenMP")
    done = run_python(SHARED_CPU_SCRIPT)
    assert done.returncode == 0, done.stderr
    procs, small, main, mid, large, after = map(int, done.stdout.split())
    assert small == 1
    assert main == procs
    assert mid == 1
    assert large == 2
    assert after == procs


def test_omp_num_threads_sets_default():
    result = run_python(
        "import nnfast\n"
        "from nnfast import _runtime\n"
        "n = nnfast.get_num_threads()\n"
        "print(n, _runtime.observed_team_size(n))\n",
        env_extra={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]


def test_omp_num_threads_caps_set_num_threads():
    # With OMP_NUM_THREADS=1 and set_num_threads(2), the smaller wins.
    result = run_python(
        "import nnfast\n"
        "from nnfast import _runtime\n"
        "nnfast.set_num_threads(2)\n"
        "n = nnfast.get_num_threads()\n"
        "print(n, _runtime.observed_team_size(n))\n",
        env_extra={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]


def test_threadpoolctl_caps_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = nnfast.get_num_threads()
    try:
        nnfast.set_num_threads(2)
        with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
            n = nnfast.get_num_threads()
            assert n == 1
            assert _runtime.observed_team_size(n) == 1
    finally:
        nnfast.set_num_threads(before)


# Worker binding ----------------------------------------------------------------

# Defines thread_masks() in the scripts below: {thread id: sorted CPU mask}.
THREAD_MASKS = """
import os

def thread_masks():
    masks = {}
    for name in os.listdir("/proc/self/task"):
        try:
            masks[int(name)] = sorted(os.sched_getaffinity(int(name)))
        except ProcessLookupError:  # the thread has exited since listdir
            pass
    return masks
"""

BINDING_SCRIPT = THREAD_MASKS + """
import threading

import numpy as np
from nnfast import _runtime
from nnfast._gemm import gemm

allowed = sorted(os.sched_getaffinity(0))
a = np.ones((300, 300), dtype=np.float32)
c = np.empty_like(a)
gemm(a, a, c, n_threads=2)
main = os.getpid()
narrowed = [mask for tid, mask in thread_masks().items() if tid != main and mask != allowed]
later = []
thread = threading.Thread(target=lambda: later.append(sorted(os.sched_getaffinity(0))))
thread.start()
thread.join()
print(_runtime.binds_workers())
print(allowed)
print(sorted(os.sched_getaffinity(0)))
print(narrowed)
print(later[0])
"""

BINDING_VARIABLES = ("NNFAST_PIN_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY")


def run_without_binding_settings(script, **settings):
    """Run script on two OpenMP threads with only the given binding variables set."""
    env = {name: value for name, value in os.environ.items() if name not in BINDING_VARIABLES}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "2"
    env.update(settings)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_binding_script(**settings):
    binds, *masks = run_without_binding_settings(BINDING_SCRIPT, **settings).splitlines()
    return (binds == "True", *map(json.loads, masks))


needs_two_linux_cpus = pytest.mark.skipif(
    not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2
    or not _runtime.openmp_enabled(),
    reason="worker binding needs Linux, OpenMP and two usable CPUs")


@needs_two_linux_cpus
def test_worker_bound_to_one_cpu():
    binds, allowed, main, narrowed, later = run_binding_script()
    assert binds
    assert len(narrowed) == 1
    assert len(narrowed[0]) == 1
    assert narrowed[0][0] in allowed
    # The calling thread and the threads it starts keep the process's CPUs.
    assert main == allowed
    assert later == allowed


@needs_two_linux_cpus
def test_pin_threads_zero_leaves_workers_free():
    binds, allowed, main, narrowed, later = run_binding_script(NNFAST_PIN_THREADS="0")
    assert not binds
    assert narrowed == []
    assert main == allowed


@needs_two_linux_cpus
@pytest.mark.parametrize("name, value", [
    ("OMP_PROC_BIND", "true"),
    ("OMP_PROC_BIND", "false"),
    ("OMP_PLACES", "cores"),
    ("GOMP_CPU_AFFINITY", "first two CPUs"),
])
def test_openmp_binding_turns_off_worker_binding(name, value):
    if value == "first two CPUs":
        value = " ".join(map(str, sorted(os.sched_getaffinity(0))[:2]))
    binds, allowed, main, narrowed, later = run_binding_script(**{name: value})
    assert not binds
    if value == "false":
        # Nothing binds any thread. The other settings let OpenMP bind them.
        assert narrowed == []
        assert main == allowed


# Two Python threads run their first two-thread kernels through two modules,
# one after the other (AT_ONCE false) or released together by a barrier.
TWO_TEAMS_SCRIPT = THREAD_MASKS + """
import threading

import numpy as np
from nnfast._dense import dense_forward
from nnfast._gemm import gemm

x = np.ones((300, 300), dtype=np.float32)
together = threading.Barrier(2)
started = []
finish = threading.Event()

def run(kernel):
    if AT_ONCE:
        together.wait()
    kernel()
    started.append(kernel)
    finish.wait()

first = threading.Thread(target=run, args=(lambda: gemm(x, x, np.empty_like(x), n_threads=2),))
second = threading.Thread(
    target=run, args=(lambda: dense_forward(x, x, None, "linear", n_threads=2),))
first.start()
while not AT_ONCE and not started:
    finish.wait(0.01)
second.start()
while len(started) < 2:
    finish.wait(0.01)
bound = [mask[0] for mask in thread_masks().values() if len(mask) == 1]
finish.set()
first.join()
second.join()
print(bound)
"""


@needs_two_linux_cpus
@pytest.mark.parametrize("at_once", [False, True])
def test_teams_of_two_modules_bind_distinct_cpus(at_once):
    # Each compiled module keeps its own team counts, so the second team must
    # see the first team's binding in the threads' CPU masks. Teams that
    # start together take turns, so neither misses the other's binding.
    cpus = len(os.sched_getaffinity(0))
    for _ in range(8 if at_once else 1):
        output = run_without_binding_settings(f"AT_ONCE = {at_once}\n" + TWO_TEAMS_SCRIPT)
        bound = json.loads(output)
        assert len(bound) >= 1
        assert len(set(bound)) == len(bound)
        if cpus == 2:
            # Two teams of two do not fit on two CPUs, so only the first binds.
            assert len(bound) == 1


def test_unknown_pin_threads_value_warns():
    env = dict(os.environ, NNFAST_PIN_THREADS="yes")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", "import nnfast"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert "NNFAST_PIN_THREADS='yes' is not one of 0, 1, so worker binding stays on" in done.stderr


# Concurrent calls ------------------------------------------------------------

def test_two_threads_predict_same_model(data):
    x, y = data
    model = make_model(width=256)
    model.fit(x, y, epochs=1, verbose=0)
    expected_one = model.predict(x[:1], verbose=0)
    expected_all = model.predict(x, batch_size=64, verbose=0)
    errors = []

    def worker(seed):
        try:
            rng = np.random.default_rng(seed)
            for _ in range(200):
                if rng.random() < 0.5:
                    got = model(x[:1])
                    np.testing.assert_array_equal(got, expected_one)
                else:
                    got = model.predict(x, batch_size=64, verbose=0)
                    np.testing.assert_array_equal(got, expected_all)
        except Exception as error:  # reported to the main thread below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


# Processes -------------------------------------------------------------------

def _predict_in_child(model, x, queue):
    queue.put(model.predict(x, batch_size=256, verbose=0))


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX only")
def test_forked_child_predicts(data):
    x, y = data
    model = make_model(width=256)
    before = nnfast.get_num_threads()
    nnfast.set_num_threads(max(2, before))
    try:
        model.fit(x, y, epochs=1, batch_size=256, verbose=0)
        expected = model.predict(x, batch_size=256, verbose=0)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_predict_in_child, args=(model, x, queue))
        child.start()
        child.join(timeout=60)
        hung = child.is_alive()
        if hung:
            child.kill()
        assert not hung, "the forked child did not finish predict within 60 s"
        assert child.exitcode == 0
        np.testing.assert_allclose(queue.get(timeout=10), expected, rtol=1e-6)
    finally:
        nnfast.set_num_threads(before)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_forked_child_sees_team_of_one():
    # A child that opened an OpenMP region after the fork would wait forever
    # for the parent's pool threads, so it must not try.
    script = (
        "import os\n"
        "import numpy as np\n"
        "from nnfast import _runtime\n"
        "from nnfast._gemm import gemm\n"
        "x = np.ones((300, 300), dtype=np.float32)\n"
        "gemm(x, x, np.empty_like(x), n_threads=2)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.write(1, str(_runtime.observed_team_size(2)).encode())\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    done = run_python(script, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1"


def test_runs_beside_torch():
    pytest.importorskip("torch")
    code = (
        "import numpy as np, torch, nnfast\n"
        "from nnfast import layers\n"
        "x = np.random.default_rng(0).normal(size=(256, 20)).astype('float32')\n"
        "y = np.random.default_rng(1).integers(0, 4, 256)\n"
        "m = nnfast.Sequential([nnfast.Input(shape=(20,)), layers.Dense(64, "
        "activation='relu'), layers.Dense(4)])\n"
        "m.compile(optimizer='adam', loss=nnfast.losses."
        "SparseCategoricalCrossentropy(from_logits=True))\n"
        "torch.set_num_threads(2)\n"
        "net = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), "
        "torch.nn.Linear(64, 4))\n"
        "opt = torch.optim.Adam(net.parameters())\n"
        "for _ in range(3):\n"
        "    m.fit(x, y, epochs=1, verbose=0)\n"
        "    loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), "
        "torch.from_numpy(y))\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
        "    np.dot(x, x.T)\n"
        "print('ok', np.isfinite(m.predict(x, verbose=0)).all())\n"
    )
    result = run_python(code, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok True"


# Interrupts ----------------------------------------------------------------

class _InterruptAt(nnfast.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = 0
        self.snapshot = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.snapshot = self.model.get_weights()
            raise KeyboardInterrupt


def test_keyboard_interrupt_keeps_state(data):
    x, y = data
    model = make_model()
    stopper = _InterruptAt(epoch=1, batch=5)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[stopper])
    for got, expected in zip(model.get_weights(), stopper.snapshot):
        np.testing.assert_array_equal(got, expected)
    assert model.optimizer.iterations == 16 + 6
    assert model.history.history["loss"] and len(model.history.history["loss"]) == 1
    model.fit(x, y, epochs=1, verbose=0)


def test_real_interrupt_during_fit(data):
    x, y = data
    x = np.repeat(x, 40, axis=0)
    y = np.repeat(y, 40, axis=0)
    model = make_model(width=256)
    # The signal arrives from another thread while fit is in its second
    # epoch, at whatever point of a step the main thread has reached. A
    # timer alone could fire after a fast machine has finished training.
    started = threading.Event()
    trigger = nnfast.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: started.set() if epoch == 1 else None)

    def interrupt_when_started():
        if started.wait(timeout=60):
            _thread.interrupt_main()

    # A shell starts background jobs with SIGINT ignored, and then
    # interrupt_main does nothing; Python's own handler makes the test
    # independent of how it was started.
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    sender = threading.Thread(target=interrupt_when_started, daemon=True)
    sender.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, epochs=10_000, batch_size=32, verbose=0, callbacks=[trigger])
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    sender.join(timeout=60)
    history = model.history.history
    assert len(set(len(values) for values in history.values())) <= 1
    for weight in model.get_weights():
        assert np.isfinite(weight).all()
    assert model.optimizer.iterations > 0
    model.fit(x[:64], y[:64], epochs=1, verbose=0)


# Memory --------------------------------------------------------------------

def _traced_growth(action, warmup, repeats):
    for _ in range(warmup):
        action()
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(repeats):
            action()
        gc.collect()
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return end - start


def test_predict_memory_is_flat(data):
    x, _ = data
    model = make_model()
    one = x[:1]
    # Each prediction returns a fresh 16-byte array that is freed at once;
    # 10,000 calls may leave at most a few kilobytes of interpreter caches.
    growth = _traced_growth(lambda: model.predict(one, verbose=0), 200, 10_000)
    assert growth < 64 * 1024


def test_train_on_batch_memory_is_flat(data):
    x, y = data
    model = make_model()
    xb, yb = x[:32], y[:32]
    growth = _traced_growth(lambda: model.train_on_batch(xb, yb), 100, 2_000)
    assert growth < 64 * 1024


def test_fit_reuses_workspaces(data):
    x, y = data
    model = make_model()
    model.fit(x, y, epochs=1, verbose=0)
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        model.fit(x, y, epochs=5, verbose=0)
        gc.collect()
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Five more epochs of 16 steps allocate no new workspace: the growth is
    # the History and logs, far below one batch of buffers per step.
    assert end - start < 64 * 1024


def test_rss_flat_over_predictions(data):
    resource = pytest.importorskip("resource")
    x, _ = data
    model = make_model()
    for _ in range(1000):
        model(x[:1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(10_000):
        model(x[:1])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux; allow 8 MB for allocator noise.
    assert after - before < 8 * 1024
