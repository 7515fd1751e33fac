"""Synchronous data-parallel training over MPI.

Run the same script in every process (``mpirun -np 2 python train.py``) and
pass a :class:`DataParallel` strategy to ``compile``::

    strategy = nnfast.distributed.DataParallel()
    model.compile(optimizer="adam", loss=..., distribute=strategy)
    model.fit(x, y, batch_size=32)   # 32 samples per process and step

What ``fit`` then does:

- Rank 0 broadcasts the weights, the optimizer state and the global random
  generator's state, so every process starts alike and draws the same
  shuffled order.
- Each global batch (``batch_size`` times the number of processes) is split
  into one contiguous slice per process. A final partial batch is split as
  evenly as it allows, and a process may get no samples.
- Each process computes the gradient of its slice, scaled to its share of
  the global batch, and one in-place allreduce over a buffer holding the flat
  gradients and the slice's weight sums them. Dividing by the summed weight
  gives exactly the gradient of the mean loss over the global batch, however
  unevenly it was split.
- Every process applies the same update, so the weights stay identical.
- The loss and metrics of each epoch, and the validation ones (each process
  evaluates its own slice of the validation data), are summed across
  processes before callbacks see them, so ``History`` and decisions such as
  early stopping are the same everywhere. Callbacks that write files run on
  rank 0 only, and only rank 0 prints progress.
- An exception in any process during ``fit`` prints its traceback and calls
  ``MPI_Abort``, which makes ``mpirun`` stop every process, instead of
  leaving the others waiting in a collective.

mpi4py is an optional dependency: ``pip install nnfast[mpi]``.
"""

import sys
import traceback

import numpy as np

from nnfast import _rng


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(
            "nnfast.distributed needs mpi4py and an MPI library; install them with "
            "`pip install nnfast[mpi]` (and, on Debian, `apt-get install "
            "openmpi-bin libopenmpi-dev`)"
        ) from error
    return MPI


def init():
    """Initialise MPI if needed; return (rank, size) of this process."""
    mpi = _mpi()
    if not mpi.Is_initialized():
        mpi.Init()
    return rank(), size()


def rank():
    """Return this process's rank in the world communicator."""
    return _mpi().COMM_WORLD.Get_rank()


def size():
    """Return the number of processes in the world communicator."""
    return _mpi().COMM_WORLD.Get_size()


class DataParallel:
    """Train one model on every process, each on its slice of every batch.

    Args:
        comm: an mpi4py communicator (default ``MPI.COMM_WORLD``).
        abort_on_error: call ``MPI_Abort`` when ``fit`` raises, so that no
            process waits forever for one that failed.
    """

    def __init__(self, comm=None, abort_on_error=True):
        mpi = _mpi()
        self._mpi = mpi
        self.comm = comm if comm is not None else mpi.COMM_WORLD
        self.abort_on_error = bool(abort_on_error)
        self._buffer = None

    @property
    def rank(self):
        return self.comm.Get_rank()

    @property
    def size(self):
        return self.comm.Get_size()

    # State -----------------------------------------------------------------

    def broadcast_state(self, model):
        """Copy rank 0's weights, optimizer state and generator state everywhere."""
        self.comm.Bcast(model._params, root=0)
        optimizer = model.optimizer
        if optimizer is not None:
            shapes = None
            if self.rank == 0:
                shapes = {name: (slot.shape, slot.dtype.str)
                          for name, slot in optimizer._slots.items()}
            shapes = self.comm.bcast(shapes, root=0)
            for name, (shape, dtype) in shapes.items():
                slot = optimizer._slots.get(name)
                if slot is None or slot.shape != shape or slot.dtype.str != dtype:
                    slot = np.zeros(shape, dtype=dtype)
                    optimizer._slots[name] = slot
                self.comm.Bcast(slot, root=0)
            optimizer.iterations = self.comm.bcast(optimizer.iterations, root=0)
        _rng.set_state(self.comm.bcast(_rng.get_state(), root=0))

    # Batches ---------------------------------------------------------------

    def shard(self, indices):
        """Return this process's contiguous slice of a global batch."""
        return np.array_split(indices, self.size)[self.rank]

    def reduce_gradients(self, grads, weight):
        """Replace local gradients by the weighted mean over all processes.

        ``grads`` is the gradient of this process's slice, normalised by its
        own ``weight`` (the number of samples, or the sum of sample weights,
        that the loss divided by). One allreduce sums ``grads * weight`` and
        ``weight`` together. With ``weight`` None (a loss reduced by plain
        sum) the gradients are summed as they are.
        """
        if weight is None:
            self.comm.Allreduce(self._mpi.IN_PLACE, grads, op=self._mpi.SUM)
            return
        n = grads.shape[0]
        if self._buffer is None or self._buffer.shape[0] != n + 1 or (
                self._buffer.dtype != grads.dtype):
            self._buffer = np.empty(n + 1, dtype=grads.dtype)
        buffer = self._buffer
        np.multiply(grads, weight, out=buffer[:n])
        buffer[n] = weight
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        total = buffer[n]
        if total == 0:
            grads[...] = 0
        else:
            np.divide(buffer[:n], total, out=grads)

    def reduce_metrics(self, metrics):
        """Sum the running states of ``metrics`` over all processes, in place."""
        parts = []
        for metric in metrics:
            if not metric.state_names:
                raise ValueError(
                    f"{type(metric).__name__} does not declare `state_names`, so its "
                    "state cannot be combined across processes; set state_names to "
                    "the attributes holding its sums"
                )
            for name in metric.state_names:
                parts.append(np.asarray(getattr(metric, name), dtype=np.float64))
        if not parts:
            return
        flat = np.concatenate([part.reshape(-1) for part in parts])
        self.comm.Allreduce(self._mpi.IN_PLACE, flat, op=self._mpi.SUM)
        offset = 0
        for metric in metrics:
            for name in metric.state_names:
                old = getattr(metric, name)
                size = np.size(old)
                values = flat[offset:offset + size]
                offset += size
                if isinstance(old, np.ndarray):
                    setattr(metric, name, values.reshape(old.shape).copy())
                else:
                    setattr(metric, name, float(values[0]))

    def any(self, flag):
        """Return True when ``flag`` is true on any process."""
        return bool(self.comm.allreduce(int(bool(flag)), op=self._mpi.MAX))

    # Failures ----------------------------------------------------------------

    def abort(self, error):
        """Print ``error`` and stop every process of the job."""
        if not self.abort_on_error or self.size == 1:
            return
        message = "".join(traceback.format_exception(type(error), error,
                                                     error.__traceback__))
        sys.stderr.write(f"nnfast.distributed: rank {self.rank} failed, aborting "
                         f"the job:\n{message}")
        sys.stderr.flush()
        self.comm.Abort(1)


__all__ = ["DataParallel", "init", "rank", "size"]
