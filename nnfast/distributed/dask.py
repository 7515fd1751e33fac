"""Batch scoring of Dask arrays with a model on every worker.

Models pickle through nnfast's own file format, so Dask ships them to worker
processes without pickling any layer object.
"""

import numpy as np


def predict(model, array, batch_size=None):
    """Return a lazy Dask array of ``model.predict`` over the blocks of ``array``.

    ``array`` is a Dask array whose first axis is the samples, chunked along
    that axis only; each block is predicted on a worker. Compute the result
    (``.compute()``) to run it.
    """
    import dask.array as da

    if not isinstance(array, da.Array):
        raise TypeError(
            f"predict: `array` must be a dask.array.Array, got {type(array).__name__}"
        )
    sample_shape = tuple(array.shape[1:])
    expected = tuple(model.input_shape[1:]) if model.built else sample_shape
    if sample_shape != expected:
        raise ValueError(
            f"predict: the model expects samples of shape {expected}, got a Dask "
            f"array of shape {array.shape}"
        )
    if any(len(chunks) != 1 for chunks in array.chunks[1:]):
        array = array.rechunk({axis: -1 for axis in range(1, array.ndim)})
    output_shape = tuple(model.output_shape)

    def score(block):
        return model.predict(block, batch_size=batch_size, verbose=0)

    # The output replaces the sample axes: axes the output lacks are dropped
    # and axes it adds are new, each as one chunk.
    in_ndim = array.ndim
    out_ndim = 1 + len(output_shape)
    drop_axis = list(range(out_ndim, in_ndim)) or None
    new_axis = list(range(in_ndim, out_ndim)) or None
    chunks = (array.chunks[0],) + tuple((d,) for d in output_shape)
    return array.map_blocks(score, dtype=np.dtype(model.dtype), chunks=chunks,
                            drop_axis=drop_axis, new_axis=new_axis)
