"""Generators behind the Dataset transformations.

Each works on a stream of elements. The ``*_chunks`` variants work on a
stream of int64 index arrays into the rows of a source Dataset instead.
Shuffling, skipping and repeating rows then copies no data, and a batch is
gathered with one fancy-indexing operation per component.
"""

import itertools

import numpy as np

from nnfast.data import _structure

# Indices per chunk in index streams: large enough to make per-chunk Python
# overhead small, small enough that take(5) of a huge source stays cheap.
CHUNK_SIZE = 4096

# Random buffer positions drawn per call to the generator while shuffling.
_DRAW_SIZE = 1024


def take(items, count):
    """Yield the first ``count`` items, pulling no item beyond them."""
    if count <= 0:
        return
    for taken, item in enumerate(items, start=1):
        yield item
        if taken == count:
            return


def take_chunks(chunks, count):
    remaining = count
    if remaining <= 0:
        return
    for chunk in chunks:
        if chunk.size >= remaining:
            yield chunk[:remaining]
            return
        yield chunk
        remaining -= chunk.size


def skip(items, count):
    return itertools.islice(items, count, None)


def skip_chunks(chunks, count):
    remaining = count
    for chunk in chunks:
        if remaining >= chunk.size:
            remaining -= chunk.size
            continue
        yield chunk[remaining:]
        remaining = 0


def repeat(make_stream, count, is_nonempty):
    """Yield ``count`` passes over ``make_stream()``, or endless passes for None.

    Endless repetition ends after a pass with no nonempty item, so repeating
    an empty dataset does not loop forever.
    """
    passes = 0
    while count is None or passes < count:
        nonempty = False
        for item in make_stream():
            if is_nonempty(item):
                nonempty = True
            yield item
        if count is None and not nonempty:
            return
        passes += 1


def shuffle(items, buffer_size, rng):
    """Yield ``items`` shuffled through a buffer of ``buffer_size``, as tf.data does.

    The buffer is filled first. Then each output is a uniformly chosen buffer
    entry, whose place the next input takes. When the input ends, the rest of
    the buffer comes out in a random order. An item can thus come out at most
    ``buffer_size - 1`` places before its input position, and a buffer at
    least as long as the input gives a uniform permutation.
    """
    items = iter(items)
    buffer = list(itertools.islice(items, buffer_size))
    positions = iter(())
    for item in items:
        position = next(positions, None)
        if position is None:
            positions = iter(rng.integers(0, buffer_size, size=_DRAW_SIZE).tolist())
            position = next(positions)
        yield buffer[position]
        buffer[position] = item
    for position in rng.permutation(len(buffer)).tolist():
        yield buffer[position]


def shuffle_chunks(chunks, buffer_size, rng, known_size):
    """Shuffle an index stream as :func:`shuffle` does, yielding index arrays.

    ``known_size`` is the stream's length when known, else None. When it
    fits in the buffer, one vectorized permutation replaces the element loop
    and gives the same order.
    """
    if known_size is not None and known_size <= buffer_size:
        indices = _concatenate(list(chunks))
        permuted = indices[rng.permutation(indices.size)]
        for start in range(0, permuted.size, CHUNK_SIZE):
            yield permuted[start:start + CHUNK_SIZE]
        return
    ints = itertools.chain.from_iterable(chunk.tolist() for chunk in chunks)
    shuffled = shuffle(ints, buffer_size, rng)
    while True:
        chunk = np.fromiter(itertools.islice(shuffled, CHUNK_SIZE), dtype=np.int64)
        if chunk.size == 0:
            return
        yield chunk


def _concatenate(chunks):
    if not chunks:
        return np.empty(0, dtype=np.int64)
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks)


def batch_chunks(chunks, batch_size, drop_remainder):
    """Regroup an index stream into index arrays of ``batch_size``."""
    pending = []
    pending_size = 0
    for chunk in chunks:
        if chunk.size == 0:
            continue
        pending.append(chunk)
        pending_size += chunk.size
        if pending_size < batch_size:
            continue
        joined = _concatenate(pending)
        start = 0
        while joined.size - start >= batch_size:
            yield joined[start:start + batch_size]
            start += batch_size
        pending = [joined[start:]]
        pending_size = joined.size - start
    if pending_size and not drop_remainder:
        yield _concatenate(pending)


def batch(elements, batch_size, drop_remainder):
    """Yield lists of ``batch_size`` consecutive elements."""
    group = []
    for element in elements:
        group.append(element)
        if len(group) == batch_size:
            yield group
            group = []
    if group and not drop_remainder:
        yield group


def stack_elements(elements):
    """Stack a list of elements of one structure into one element of arrays."""
    template = elements[0]
    expected = _structure.signature(template)
    columns = [[] for _ in _structure.flatten(template)]
    for element in elements:
        if _structure.signature(element) != expected:
            raise ValueError(
                "Dataset.batch: elements in one batch have different structures: "
                f"{_describe(template)} and {_describe(element)}"
            )
        for column, leaf in zip(columns, _structure.flatten(element)):
            column.append(leaf)
    stacked = []
    for path_and_leaf, column in zip(_structure.flatten_with_paths(template), columns):
        arrays = [np.asarray(leaf) for leaf in column]
        shapes = {array.shape for array in arrays}
        if len(shapes) > 1:
            path = _structure.format_path(path_and_leaf[0])
            raise ValueError(
                f"Dataset.batch: cannot stack component {path} because its shapes "
                f"differ within a batch: {sorted(shapes)}; make the shapes equal "
                "in map(), or batch with batch_size=1"
            )
        stacked.append(np.stack(arrays))
    return _structure.pack(template, stacked)


def _describe(element):
    if isinstance(element, dict):
        return "dict with keys " + repr(sorted(element))
    if isinstance(element, tuple):
        return f"tuple of {len(element)}"
    return type(element).__name__
