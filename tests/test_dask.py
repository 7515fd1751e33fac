"""Scoring a Dask array on a local cluster of worker processes."""

import pickle

import numpy as np
import pytest

import nnfast
from nnfast import layers


def make_model():
    nnfast.utils.set_random_seed(4)
    return nnfast.Sequential([
        nnfast.Input(shape=(28, 28)),
        layers.Flatten(),
        layers.Dense(32, activation="relu"),
        layers.Dense(10),
    ])


def test_model_pickles_through_file_format():
    model = make_model()
    x = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_local_cluster_matches_predict():
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("dask.distributed")
    from nnfast.distributed import dask as nnfast_dask

    model = make_model()
    x = np.random.default_rng(1).random((1000, 28, 28), dtype=np.float32)
    expected = model.predict(x, verbose=0)
    # Two worker processes, bound to the loopback interface, no dashboard.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            # Chunks of whole batches of 32: each row lands in the same batch
            # as in predict, so the same GEMM plans run and the scores match
            # bit for bit. A partial batch may take another plan, which
            # rounds differently.
            images = da.from_array(x, chunks=(256, 28, 28))
            scores = nnfast_dask.predict(model, images)
            got = client.compute(scores).result(timeout=120)
            workers = client.run(lambda: 1)
    assert len(workers) == 2
    np.testing.assert_array_equal(got, expected)


def test_dask_predict_rejects_wrong_shape():
    da = pytest.importorskip("dask.array")
    from nnfast.distributed import dask as nnfast_dask

    model = make_model()
    with pytest.raises(ValueError, match="samples of shape"):
        nnfast_dask.predict(model, da.zeros((10, 28, 27), chunks=5))
    with pytest.raises(TypeError, match="dask.array.Array"):
        nnfast_dask.predict(model, np.zeros((10, 28, 28)))
