"""An iterator that reads ahead of its consumer in a background thread."""

import queue
import threading
import weakref

_ITEM = "item"
_END = "end"
_ERROR = "error"

# How often a producer blocked on a full queue checks whether the consumer
# is gone, in seconds.
_POLL_INTERVAL = 0.05


def _put(entries, entry, stop):
    """Put ``entry`` in the queue unless ``stop`` is set first; return whether put."""
    while not stop.is_set():
        try:
            entries.put(entry, timeout=_POLL_INTERVAL)
            return True
        except queue.Full:
            continue
    return False


def _produce(source, entries, stop):
    try:
        for item in source:
            if not _put(entries, (_ITEM, item), stop):
                return
        _put(entries, (_END, None), stop)
    except BaseException as error:  # handed to the consumer, which re-raises it
        _put(entries, (_ERROR, error), stop)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _shutdown(stop, entries):
    stop.set()
    # Empty the queue so a producer waiting in put() wakes and checks `stop`.
    try:
        while True:
            entries.get_nowait()
    except queue.Empty:
        pass


class PrefetchIterator:
    """Iterate over ``source`` in a daemon thread, up to ``buffer_size`` ahead.

    Elements arrive in order. An exception raised while producing an element
    is raised again from ``__next__`` in the consumer's thread. The thread
    stops when the source ends, on :meth:`close`, or when this iterator is
    garbage collected; it holds no reference to this object.
    """

    def __init__(self, source, buffer_size):
        self._entries = queue.Queue(maxsize=buffer_size)
        stop = threading.Event()
        self._thread = threading.Thread(
            target=_produce, args=(source, self._entries, stop),
            name="nnfast-prefetch", daemon=True)
        self._finished = False
        self._close = weakref.finalize(self, _shutdown, stop, self._entries)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        kind, payload = self._entries.get()
        if kind == _ITEM:
            return payload
        self._finished = True
        self._close()
        if kind == _ERROR:
            raise payload
        raise StopIteration

    def close(self):
        """Stop the background thread; later calls to ``next`` raise StopIteration."""
        self._finished = True
        self._close()
