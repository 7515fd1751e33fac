"""Data-parallel training over MPI, run under mpirun with two processes."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "_mpi_train.py")


def mpirun(mode, out_dir, timeout=120):
    pytest.importorskip("mpi4py")
    launcher = shutil.which("mpirun")
    if launcher is None:
        pytest.skip("mpirun is not installed (Debian: openmpi-bin)")
    command = [launcher, "-np", "2", "--oversubscribe"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")
    command += [sys.executable, SCRIPT, mode, str(out_dir)]
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=timeout)


def load_results(out_dir):
    results = []
    for rank in range(2):
        with open(os.path.join(out_dir, f"result_{rank}.json")) as f:
            results.append(json.load(f))
    return results


@pytest.mark.parametrize("mode", ["equal", "partial"])
def test_two_processes_match_one(tmp_path, mode):
    run = mpirun(mode, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    first, second = load_results(tmp_path)
    assert first["size"] == 2
    # Every process ends with the same weights and the same History.
    np.testing.assert_array_equal(np.load(tmp_path / "weights_0.npy"),
                                  np.load(tmp_path / "weights_1.npy"))
    assert first["history"] == second["history"]
    # Against one process with the same global batch: float64 sums in another
    # order differ by a few ulps per step, so 32 Adam steps stay within 1e-10.
    np.testing.assert_allclose(np.load(tmp_path / "weights_0.npy"),
                               np.load(tmp_path / "weights_single.npy"),
                               rtol=1e-10, atol=1e-12)
    for name, values in first["single_history"].items():
        np.testing.assert_allclose(first["history"][name], values, rtol=1e-10)


def test_csv_logger_writes_once(tmp_path):
    run = mpirun("equal", tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,")
    assert len(lines) == 3


def test_failing_rank_stops_job(tmp_path):
    run = mpirun("fail", tmp_path, timeout=120)
    assert run.returncode != 0
    assert "rank 1 failed" in run.stderr
    assert "label 9" in run.stderr
    assert not (tmp_path / "result_0.json").exists()


def test_missing_mpi4py_names_extra():
    code = (
        "import sys\n"
        "sys.modules['mpi4py'] = None\n"
        "import nnfast.distributed as distributed\n"
        "try:\n"
        "    distributed.init()\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, timeout=60)
    assert "pip install nnfast[mpi]" in run.stdout
