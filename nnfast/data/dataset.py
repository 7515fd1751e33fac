"""Input pipelines in the style of tf.data: slice, shuffle, map, batch, repeat."""

import numbers

import numpy as np

from nnfast import _rng
from nnfast.data import _prefetch, _streams, _structure

INFINITE_CARDINALITY = -1
UNKNOWN_CARDINALITY = -2
AUTOTUNE = -1

# Background buffer that prefetch(AUTOTUNE) uses.
# NOTE: a fixed guess, not tuned at run time as tf.data's AUTOTUNE is.
_AUTOTUNE_BUFFER = 2


def _check_count(owner, name, value, allow_none=False):
    """Return ``value`` as an int >= -1 (or None when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Dataset.{owner}: `{name}` must be an int, got {value!r}")
    if value < -1:
        raise ValueError(
            f"Dataset.{owner}: `{name}` must be >= 0, or -1 for all, got {name}={value}"
        )
    return int(value)


def _check_positive(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Dataset.{owner}: `{name}` must be an int, got {value!r}")
    if value < 1:
        raise ValueError(
            f"Dataset.{owner}: `{name}` must be a positive int, got {name}={value}"
        )
    return int(value)


def _call_with_element(function, element):
    # A tuple element is unpacked into positional arguments, as in tf.data.
    if type(element) is tuple:
        return function(*element)
    return function(element)


class Dataset:
    """A sequence of elements, built from arrays and transformed lazily.

    Build one with :meth:`from_tensor_slices`, then chain transformations,
    each of which returns a new Dataset::

        ds = (Dataset.from_tensor_slices((x, y))
              .shuffle(1024).batch(32).prefetch(AUTOTUNE))
        for x_batch, y_batch in ds:
            ...

    Every ``for`` loop (every ``iter(ds)``) starts a fresh pass, and a shuffle
    with ``reshuffle_each_iteration=True`` gives each pass a new order.
    Elements are NumPy arrays, or tuples and dicts of them.

    Shuffles without a seed take their randomness from nnfast's global
    generator, one draw when each pass starts, so
    ``nnfast.utils.set_random_seed`` before iterating makes the order
    reproducible.
    """

    _inputs = ()
    _kind = "dataset"

    # Iteration ---------------------------------------------------------------

    def __iter__(self):
        return iter(self._iterator(self._pass_seeds()))

    def as_numpy_iterator(self):
        """Return an iterator over the elements (already NumPy arrays)."""
        return iter(self)

    def _pass_seeds(self):
        """Return the SeedSequence for one pass, drawn from the global generator.

        Returns None when no shuffle in the pipeline needs it, so iterating
        such a pipeline leaves the global generator untouched.
        """
        if not self._needs_global_seed():
            return None
        seed = int(_rng.generator().integers(0, 2**63))
        return np.random.SeedSequence(seed)

    def _needs_global_seed(self):
        return any(node._needs_global_seed() for node in self._inputs)

    def _iterator(self, seeds):
        """Return an iterator over the elements of one pass."""
        source = self._source()
        if source is not None:
            return source._elements(self._index_chunks(seeds))
        return self._element_iterator(seeds)

    def _source(self):
        """Return the tensor-slices Dataset whose rows this one reorders, or None.

        Datasets that only select, reorder or repeat rows of arrays pass index
        arrays instead of elements, so that batching gathers rows directly.
        """
        return None

    def _index_chunks(self, seeds):
        raise NotImplementedError

    def _element_iterator(self, seeds):
        raise NotImplementedError

    # Size --------------------------------------------------------------------

    def cardinality(self):
        """Return the number of elements, INFINITE_CARDINALITY or UNKNOWN_CARDINALITY.

        The count is unknown after :meth:`filter`, as in tf.data.
        """
        raise NotImplementedError

    def __len__(self):
        size = self.cardinality()
        if size == INFINITE_CARDINALITY:
            raise TypeError(
                "The dataset is infinite, so it has no len(); use take(n) to bound "
                "it, or check cardinality()"
            )
        if size == UNKNOWN_CARDINALITY:
            raise TypeError(
                "The dataset length is unknown (for example after filter()), so it "
                "has no len(); check cardinality() first"
            )
        return size

    def __bool__(self):
        # Defined so that truth tests do not call __len__, which raises for
        # infinite and unknown sizes.
        return True

    def __repr__(self):
        size = self.cardinality()
        names = {INFINITE_CARDINALITY: "infinite", UNKNOWN_CARDINALITY: "unknown"}
        return f"<Dataset {self._kind}, cardinality={names.get(size, size)}>"

    # Construction --------------------------------------------------------------

    @staticmethod
    def from_tensor_slices(tensors):
        """Return a Dataset whose elements are the slices of ``tensors`` along axis 0.

        Args:
            tensors: an array, or a tuple or dict (possibly nested) of arrays.
                Lists are converted to arrays, not treated as structure. All
                arrays must have the same size in their first dimension.

        The arrays are not copied, so changing them later changes what
        iteration yields.
        """
        return _TensorSlicesDataset(tensors)

    # Transformations -----------------------------------------------------------

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True):
        """Return a Dataset that shuffles elements through a buffer of ``buffer_size``.

        As in tf.data, the buffer is filled with the first ``buffer_size``
        elements, and each output is drawn uniformly from it and replaced by
        the next input. A buffer at least as large as the dataset gives a
        full uniform permutation. A smaller one only moves elements forward
        by fewer than ``buffer_size`` places.

        Args:
            buffer_size: a positive int.
            seed: an int seed for a reproducible order, or None to draw from
                nnfast's global generator.
            reshuffle_each_iteration: whether each pass gets a new order. If
                False, every pass repeats the order of the first.
        """
        return _ShuffleDataset(self, buffer_size, seed, reshuffle_each_iteration)

    def batch(self, batch_size, drop_remainder=False):
        """Return a Dataset of batches: consecutive elements stacked into arrays.

        Args:
            batch_size: a positive int.
            drop_remainder: whether to drop a last batch smaller than
                ``batch_size``.

        Rows coming straight from :meth:`from_tensor_slices` (through
        shuffle, take, skip or repeat, but no map or filter) are gathered
        with one fancy-indexing operation per array.
        """
        return _BatchDataset(self, batch_size, drop_remainder)

    def map(self, map_func):
        """Return a Dataset of ``map_func(element)``.

        A tuple element is unpacked, so ``map_func(x, y)`` receives its
        components.
        """
        return _MapDataset(self, map_func)

    def filter(self, predicate):
        """Return a Dataset of the elements for which ``predicate`` returns True.

        A tuple element is unpacked as for :meth:`map`. The predicate must
        return a scalar bool.
        """
        return _FilterDataset(self, predicate)

    def repeat(self, count=None):
        """Return a Dataset that repeats this one ``count`` times, or forever.

        Args:
            count: an int >= 0, or None or -1 to repeat indefinitely. Each
                repetition is a fresh pass, so shuffles reshuffle.
        """
        return _RepeatDataset(self, count)

    def take(self, count):
        """Return a Dataset of at most the first ``count`` elements (-1: all)."""
        return _TakeDataset(self, count)

    def skip(self, count):
        """Return a Dataset without the first ``count`` elements (-1: skip all)."""
        return _SkipDataset(self, count)

    def prefetch(self, buffer_size):
        """Return a Dataset that produces elements in a background thread.

        A daemon thread runs the pipeline up to ``buffer_size`` elements ahead
        of the consumer. Both threads share the GIL, so preparing the next
        batch overlaps with training only while one of them runs code that
        releases it, such as nnfast's compiled kernels. ``AUTOTUNE`` picks a
        buffer of 2, and 0 turns prefetching off. Exceptions from the pipeline
        are raised in the consumer's thread.
        """
        return _PrefetchDataset(self, buffer_size)


class _TensorSlicesDataset(Dataset):
    _kind = "from_tensor_slices"

    def __init__(self, tensors):
        pairs = _structure.flatten_with_paths(tensors)
        if not pairs:
            raise ValueError(
                "Dataset.from_tensor_slices: `tensors` must contain at least one "
                "array, got an empty structure"
            )
        arrays = []
        for path, leaf in pairs:
            array = np.asarray(leaf)
            if array.ndim == 0:
                raise ValueError(
                    "Dataset.from_tensor_slices: cannot slice the scalar "
                    f"{_structure.format_path(path)}; every component needs a "
                    "first dimension"
                )
            arrays.append(array)
        sizes = [array.shape[0] for array in arrays]
        if len(set(sizes)) > 1:
            listing = ", ".join(f"{_structure.format_path(path)}: {size}"
                                for (path, _), size in zip(pairs, sizes))
            raise ValueError(
                "Dataset.from_tensor_slices: all components must have the same "
                f"size in the first dimension, got sizes {listing}"
            )
        self._template = tensors
        self._arrays = arrays
        self._size = sizes[0]

    def cardinality(self):
        return self._size

    def _source(self):
        return self

    def _index_chunks(self, seeds):
        for start in range(0, self._size, _streams.CHUNK_SIZE):
            yield np.arange(start, min(start + _streams.CHUNK_SIZE, self._size))

    def _elements(self, chunks):
        """Yield the element at each index of each chunk."""
        template = self._template
        arrays = self._arrays
        for chunk in chunks:
            for index in chunk.tolist():
                yield _structure.pack(template, [array[index] for array in arrays])

    def gather(self, indices):
        """Return the batch of rows ``indices``, one fancy index per array."""
        columns = [array[indices] for array in self._arrays]
        return _structure.pack(self._template, columns)


class _UnaryDataset(Dataset):
    """A transformation of one input Dataset."""

    def __init__(self, input_dataset):
        self._input = input_dataset
        self._inputs = (input_dataset,)


class _ShuffleDataset(_UnaryDataset):
    _kind = "shuffle"

    def __init__(self, input_dataset, buffer_size, seed, reshuffle_each_iteration):
        super().__init__(input_dataset)
        self._buffer_size = _check_positive("shuffle", "buffer_size", buffer_size)
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or (
                    seed < 0):
                raise ValueError(
                    f"Dataset.shuffle: `seed` must be an int >= 0 or None, got "
                    f"seed={seed!r}"
                )
            seed = int(seed)
        self._reshuffle = bool(reshuffle_each_iteration)
        # Exactly one of the three is used: a fixed seed for every pass, a
        # sequence that gives each pass a child seed, or (both None) a child
        # of the pass's seeds from the global generator.
        self._fixed_seed = None
        self._seed_sequence = None
        if not self._reshuffle:
            if seed is None:
                # Fixed when shuffle() is called, so set_random_seed must come
                # before it.
                seed = int(_rng.generator().integers(0, 2**63))
            self._fixed_seed = seed
        elif seed is not None:
            # A freshly built pipeline with this seed gives the same sequence
            # of orders, one per pass.
            self._seed_sequence = np.random.SeedSequence(seed)

    def _needs_global_seed(self):
        if self._fixed_seed is None and self._seed_sequence is None:
            return True
        return super()._needs_global_seed()

    def _pass_rng(self, seeds):
        if self._fixed_seed is not None:
            return np.random.default_rng(self._fixed_seed)
        if self._seed_sequence is not None:
            return np.random.default_rng(self._seed_sequence.spawn(1)[0])
        return np.random.default_rng(seeds.spawn(1)[0])

    def cardinality(self):
        return self._input.cardinality()

    def _source(self):
        return self._input._source()

    def _index_chunks(self, seeds):
        rng = self._pass_rng(seeds)
        size = self._input.cardinality()
        known_size = size if size >= 0 else None
        return _streams.shuffle_chunks(self._input._index_chunks(seeds),
                                       self._buffer_size, rng, known_size)

    def _element_iterator(self, seeds):
        rng = self._pass_rng(seeds)
        return _streams.shuffle(self._input._iterator(seeds), self._buffer_size, rng)


class _BatchDataset(_UnaryDataset):
    _kind = "batch"

    def __init__(self, input_dataset, batch_size, drop_remainder):
        super().__init__(input_dataset)
        self._batch_size = _check_positive("batch", "batch_size", batch_size)
        self._drop_remainder = bool(drop_remainder)

    def cardinality(self):
        size = self._input.cardinality()
        if size < 0:
            return size
        if self._drop_remainder:
            return size // self._batch_size
        return -(-size // self._batch_size)

    def _element_iterator(self, seeds):
        source = self._input._source()
        if source is not None:
            chunks = self._input._index_chunks(seeds)
            batches = _streams.batch_chunks(chunks, self._batch_size,
                                            self._drop_remainder)
            return (source.gather(indices) for indices in batches)
        groups = _streams.batch(self._input._iterator(seeds), self._batch_size,
                                self._drop_remainder)
        return (_streams.stack_elements(group) for group in groups)


class _MapDataset(_UnaryDataset):
    _kind = "map"

    def __init__(self, input_dataset, map_func):
        super().__init__(input_dataset)
        if not callable(map_func):
            raise TypeError(
                "Dataset.map: `map_func` must be callable, got "
                f"{type(map_func).__name__}"
            )
        self._function = map_func

    def cardinality(self):
        return self._input.cardinality()

    def _element_iterator(self, seeds):
        function = self._function
        return (_call_with_element(function, element)
                for element in self._input._iterator(seeds))


class _FilterDataset(_UnaryDataset):
    _kind = "filter"

    def __init__(self, input_dataset, predicate):
        super().__init__(input_dataset)
        if not callable(predicate):
            raise TypeError(
                "Dataset.filter: `predicate` must be callable, got "
                f"{type(predicate).__name__}"
            )
        self._predicate = predicate

    def cardinality(self):
        size = self._input.cardinality()
        return INFINITE_CARDINALITY if size == INFINITE_CARDINALITY else (
            UNKNOWN_CARDINALITY)

    def _element_iterator(self, seeds):
        for element in self._input._iterator(seeds):
            keep = _call_with_element(self._predicate, element)
            if isinstance(keep, np.ndarray) and keep.shape == () and (
                    keep.dtype == np.bool_):
                keep = bool(keep)
            if not isinstance(keep, (bool, np.bool_)):
                raise TypeError(
                    "Dataset.filter: `predicate` must return a scalar bool, got "
                    f"{keep!r}"
                )
            if keep:
                yield element


class _RepeatDataset(_UnaryDataset):
    _kind = "repeat"

    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        count = _check_count("repeat", "count", count, allow_none=True)
        self._count = None if count == -1 else count

    def cardinality(self):
        size = self._input.cardinality()
        if self._count is None:
            # tf.data reports an endless repeat as infinite, even of an input
            # of unknown size, unless the input is known to be empty.
            return 0 if size == 0 else INFINITE_CARDINALITY
        if self._count == 0:
            return 0
        if size < 0:
            return size
        return size * self._count

    def _source(self):
        return self._input._source()

    def _index_chunks(self, seeds):
        return _streams.repeat(lambda: self._input._index_chunks(seeds), self._count,
                               lambda chunk: chunk.size > 0)

    def _element_iterator(self, seeds):
        return _streams.repeat(lambda: self._input._iterator(seeds), self._count,
                               lambda element: True)


class _TakeDataset(_UnaryDataset):
    _kind = "take"

    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        self._count = _check_count("take", "count", count)

    def cardinality(self):
        size = self._input.cardinality()
        if self._count == -1:
            return size
        if size == INFINITE_CARDINALITY:
            return self._count
        if size == UNKNOWN_CARDINALITY:
            return UNKNOWN_CARDINALITY
        return min(size, self._count)

    def _source(self):
        return self._input._source()

    def _index_chunks(self, seeds):
        chunks = self._input._index_chunks(seeds)
        if self._count == -1:
            return chunks
        return _streams.take_chunks(chunks, self._count)

    def _element_iterator(self, seeds):
        elements = self._input._iterator(seeds)
        if self._count == -1:
            return elements
        return _streams.take(elements, self._count)


class _SkipDataset(_UnaryDataset):
    _kind = "skip"

    def __init__(self, input_dataset, count):
        super().__init__(input_dataset)
        self._count = _check_count("skip", "count", count)

    def cardinality(self):
        size = self._input.cardinality()
        if size < 0:
            return size
        if self._count == -1:
            return 0
        return max(0, size - self._count)

    def _source(self):
        return self._input._source()

    def _index_chunks(self, seeds):
        if self._count == -1:
            return iter(())
        return _streams.skip_chunks(self._input._index_chunks(seeds), self._count)

    def _element_iterator(self, seeds):
        # skip(-1) yields nothing without running the input, so it also ends
        # on an infinite input.
        if self._count == -1:
            return iter(())
        return _streams.skip(self._input._iterator(seeds), self._count)


class _PrefetchDataset(_UnaryDataset):
    _kind = "prefetch"

    def __init__(self, input_dataset, buffer_size):
        super().__init__(input_dataset)
        if isinstance(buffer_size, bool) or not isinstance(buffer_size,
                                                           numbers.Integral):
            raise TypeError(
                f"Dataset.prefetch: `buffer_size` must be an int, got {buffer_size!r}"
            )
        if buffer_size == AUTOTUNE:
            buffer_size = _AUTOTUNE_BUFFER
        if buffer_size < 0:
            raise ValueError(
                "Dataset.prefetch: `buffer_size` must be >= 0 or AUTOTUNE (-1), got "
                f"buffer_size={buffer_size}"
            )
        self._buffer_size = int(buffer_size)

    def cardinality(self):
        return self._input.cardinality()

    def _element_iterator(self, seeds):
        elements = self._input._iterator(seeds)
        if self._buffer_size == 0:
            return elements
        return _prefetch.PrefetchIterator(elements, self._buffer_size)
