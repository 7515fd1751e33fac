"""nnfast.data.Dataset: slicing, batching, shuffling, sizes and prefetching.

Expected behaviour follows tf.data's documentation for the same methods.
"""

import threading
from collections import namedtuple

import numpy as np
import pytest

import nnfast
from nnfast import _rng
from nnfast.data import (
    AUTOTUNE,
    INFINITE_CARDINALITY,
    UNKNOWN_CARDINALITY,
    Dataset,
    _streams,
)


def values(dataset):
    """Return the elements of a dataset of scalars as a list of Python numbers."""
    return [np.asarray(element).item() for element in dataset]


def rows(n=10):
    return Dataset.from_tensor_slices(np.arange(n))


# from_tensor_slices ------------------------------------------------------------


def test_slices_of_array():
    x = np.arange(12, dtype="float32").reshape(4, 3)
    elements = list(Dataset.from_tensor_slices(x))
    assert len(elements) == 4
    for i, element in enumerate(elements):
        np.testing.assert_array_equal(element, x[i])
        assert element.dtype == np.float32


def test_slices_of_tuple_and_dict():
    x = np.arange(6).reshape(3, 2)
    y = np.array([10, 11, 12])
    pairs = list(Dataset.from_tensor_slices((x, y)))
    assert isinstance(pairs[1], tuple)
    np.testing.assert_array_equal(pairs[1][0], [2, 3])
    assert pairs[1][1] == 11
    records = list(Dataset.from_tensor_slices({"x": x, "y": y}))
    assert set(records[2]) == {"x", "y"}
    np.testing.assert_array_equal(records[2]["x"], [4, 5])
    assert records[2]["y"] == 12


def test_slices_of_nested_structure():
    Pair = namedtuple("Pair", ["features", "label"])
    data = Pair({"a": np.zeros((2, 3)), "b": np.ones(2)}, np.array([5, 6]))
    element = list(Dataset.from_tensor_slices(data))[1]
    assert isinstance(element, Pair)
    assert element.label == 6
    np.testing.assert_array_equal(element.features["a"], np.zeros(3))
    assert element.features["b"] == 1.0


def test_slices_of_list_is_array():
    assert values(Dataset.from_tensor_slices([1, 2, 3])) == [1, 2, 3]
    pairs = list(Dataset.from_tensor_slices([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(pairs[1], [3, 4])


def test_slices_size_mismatch():
    with pytest.raises(ValueError, match=r"\[0\]: 4, \[1\]: 3"):
        Dataset.from_tensor_slices((np.zeros((4, 2)), np.zeros(3)))
    with pytest.raises(ValueError, match=r"\['x'\]: 5, \['y'\]: 2"):
        Dataset.from_tensor_slices({"x": np.zeros(5), "y": np.zeros(2)})


def test_slices_reject_scalars_and_empty():
    with pytest.raises(ValueError, match="scalar"):
        Dataset.from_tensor_slices(3.0)
    with pytest.raises(ValueError, match=r"scalar \[1\]"):
        Dataset.from_tensor_slices((np.zeros(2), 1.0))
    with pytest.raises(ValueError, match="at least one array"):
        Dataset.from_tensor_slices(())


def test_slices_zero_rows():
    dataset = Dataset.from_tensor_slices(np.zeros((0, 3)))
    assert len(dataset) == 0
    assert list(dataset) == []
    assert list(dataset.batch(4)) == []


def test_fresh_pass_each_iteration():
    dataset = rows(5)
    assert values(dataset) == [0, 1, 2, 3, 4]
    assert values(dataset) == [0, 1, 2, 3, 4]
    iterator = iter(dataset)
    assert next(iterator) == 0
    assert values(dataset.as_numpy_iterator()) == [0, 1, 2, 3, 4]
    assert next(iterator) == 1


# batch ---------------------------------------------------------------------------


def test_batch_shapes_and_remainder():
    x = np.arange(20, dtype="float32").reshape(10, 2)
    batches = list(Dataset.from_tensor_slices(x).batch(4))
    assert [b.shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    np.testing.assert_array_equal(batches[2], x[8:])
    assert batches[0].dtype == np.float32
    dropped = list(Dataset.from_tensor_slices(x).batch(4, drop_remainder=True))
    assert [b.shape for b in dropped] == [(4, 2), (4, 2)]


def test_batch_structures():
    x = np.arange(10).reshape(5, 2)
    y = np.arange(5) * 10
    first = next(iter(Dataset.from_tensor_slices((x, y)).batch(3)))
    np.testing.assert_array_equal(first[0], x[:3])
    np.testing.assert_array_equal(first[1], [0, 10, 20])
    record = next(iter(Dataset.from_tensor_slices({"x": x, "y": y}).batch(2)))
    np.testing.assert_array_equal(record["x"], x[:2])
    np.testing.assert_array_equal(record["y"], [0, 10])


def test_batch_spans_repetitions():
    batches = list(rows(5).repeat(3).batch(4))
    assert [b.tolist() for b in batches] == [
        [0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1], [2, 3, 4]]


def test_batch_gathers_without_stacking(monkeypatch):
    def fail(elements):
        raise AssertionError("rows were stacked one element at a time")

    monkeypatch.setattr(_streams, "stack_elements", fail)
    x = np.arange(40).reshape(20, 2)
    dataset = (Dataset.from_tensor_slices((x, np.arange(20)))
               .shuffle(7, seed=3).repeat(2).skip(3).take(30).batch(8))
    batches = list(dataset)
    assert [len(b[1]) for b in batches] == [8, 8, 8, 6]
    for features, labels in batches:
        np.testing.assert_array_equal(features, x[labels])


def test_batch_stacks_after_map(monkeypatch):
    calls = []
    original = _streams.stack_elements

    def counting(elements):
        calls.append(len(elements))
        return original(elements)

    monkeypatch.setattr(_streams, "stack_elements", counting)
    batches = list(rows(5).map(lambda v: v * 2).batch(2))
    assert [b.tolist() for b in batches] == [[0, 2], [4, 6], [8]]
    assert calls == [2, 2, 1]


def test_gathered_equals_stacked():
    x = np.arange(30, dtype="float32").reshape(15, 2)
    y = np.arange(15)

    def source():
        return Dataset.from_tensor_slices((x, y)).shuffle(4, seed=11)

    gathered = list(source().batch(4))
    stacked = list(source().map(lambda a, b: (a, b)).batch(4))
    assert len(gathered) == len(stacked) == 4
    for (gx, gy), (sx, sy) in zip(gathered, stacked):
        np.testing.assert_array_equal(gx, sx)
        np.testing.assert_array_equal(gy, sy)
        assert gx.dtype == sx.dtype


def test_batch_of_python_values():
    batch = next(iter(rows(3).map(lambda v: float(v) / 2).batch(3)))
    np.testing.assert_array_equal(batch, [0.0, 0.5, 1.0])
    assert batch.dtype == np.float64


def test_batch_rejects_ragged_elements():
    ragged = rows(3).map(lambda v: np.zeros(int(v) + 1))
    with pytest.raises(ValueError, match="shapes differ"):
        list(ragged.batch(2))


@pytest.mark.parametrize("size, error", [(0, ValueError), (-2, ValueError),
                                         (2.5, TypeError), (True, TypeError)])
def test_batch_rejects_size(size, error):
    with pytest.raises(error, match="batch_size"):
        rows().batch(size)


# shuffle -------------------------------------------------------------------------


def test_shuffle_full_buffer_is_permutation():
    firsts = set()
    for seed in range(20):
        order = values(rows(10).shuffle(10, seed=seed))
        assert sorted(order) == list(range(10))
        firsts.add(order[0])
    # Any element can come first when the buffer contains the whole dataset.
    assert max(firsts) >= 5
    assert len(firsts) >= 5


@pytest.mark.parametrize("make", [
    lambda n: rows(n),
    lambda n: rows(n).map(lambda v: v),
], ids=["rows", "after_map"])
def test_shuffle_buffer_bounds_displacement(make):
    # With a buffer of 3, output position p contains an element from input
    # positions 0 .. p + 2.
    order = values(make(100).shuffle(3, seed=5))
    assert sorted(order) == list(range(100))
    assert order != list(range(100))
    for position, element in enumerate(order):
        assert element <= position + 2


def test_shuffle_buffer_of_one_keeps_order():
    assert values(rows(10).shuffle(1, seed=2)) == list(range(10))


def test_shuffle_reshuffles_each_pass():
    dataset = rows(30).shuffle(30)
    first = values(dataset)
    second = values(dataset)
    assert sorted(first) == sorted(second) == list(range(30))
    assert first != second


def test_shuffle_same_order_without_reshuffle():
    dataset = rows(30).shuffle(30, reshuffle_each_iteration=False)
    assert values(dataset) == values(dataset)
    seeded = rows(30).shuffle(30, seed=4, reshuffle_each_iteration=False)
    assert values(seeded) == values(seeded)


def test_shuffle_seed_is_reproducible():
    first = rows(30).shuffle(30, seed=9)
    second = rows(30).shuffle(30, seed=9)
    first_passes = [values(first), values(first)]
    second_passes = [values(second), values(second)]
    assert first_passes == second_passes
    assert first_passes[0] != first_passes[1]


def test_shuffle_seed_ignores_global_generator():
    nnfast.utils.set_random_seed(1)
    first = values(rows(30).shuffle(30, seed=9))
    nnfast.utils.set_random_seed(2)
    second = values(rows(30).shuffle(30, seed=9))
    assert first == second


def test_shuffle_follows_set_random_seed():
    dataset = rows(30).shuffle(8).batch(4)
    nnfast.utils.set_random_seed(123)
    first = [b.tolist() for b in dataset]
    nnfast.utils.set_random_seed(123)
    second = [b.tolist() for b in dataset]
    assert first == second


def test_fixed_order_follows_set_random_seed():
    nnfast.utils.set_random_seed(5)
    first = values(rows(30).shuffle(30, reshuffle_each_iteration=False))
    nnfast.utils.set_random_seed(5)
    second = values(rows(30).shuffle(30, reshuffle_each_iteration=False))
    assert first == second


def test_iteration_without_shuffle_keeps_global_state():
    before = _rng.get_state()
    list(rows(10).map(lambda v: v).batch(3).prefetch(2))
    assert _rng.get_state() == before


def test_shuffle_then_repeat_reshuffles():
    order = values(rows(20).shuffle(20, seed=1).repeat(2))
    assert sorted(order[:20]) == list(range(20))
    assert sorted(order[20:]) == list(range(20))
    assert order[:20] != order[20:]


def test_repeat_then_shuffle_mixes_passes():
    order = values(rows(10).repeat(2).shuffle(20, seed=1))
    assert sorted(order) == sorted(list(range(10)) * 2)
    assert sorted(order[:10]) != list(range(10))


@pytest.mark.parametrize("kwargs, error, argument", [
    ({"buffer_size": 0}, ValueError, "buffer_size"),
    ({"buffer_size": 1.5}, TypeError, "buffer_size"),
    ({"buffer_size": 4, "seed": -1}, ValueError, "seed"),
    ({"buffer_size": 4, "seed": "a"}, ValueError, "seed"),
])
def test_shuffle_rejects_arguments(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        rows().shuffle(**kwargs)


# map and filter ------------------------------------------------------------------


def test_map_unpacks_tuples():
    dataset = Dataset.from_tensor_slices((np.arange(3), np.arange(3) * 10))
    assert values(dataset.map(lambda a, b: a + b)) == [0, 11, 22]


def test_map_passes_dicts_whole():
    dataset = Dataset.from_tensor_slices({"a": np.arange(3), "b": np.ones(3)})
    assert values(dataset.map(lambda record: record["a"] * record["b"])) == [0, 1, 2]


def test_filter_keeps_matching():
    evens = rows(10).filter(lambda v: v % 2 == 0)
    assert values(evens) == [0, 2, 4, 6, 8]
    assert evens.cardinality() == UNKNOWN_CARDINALITY
    with pytest.raises(TypeError, match="unknown"):
        len(evens)
    assert [b.tolist() for b in evens.batch(2)] == [[0, 2], [4, 6], [8]]


def test_filter_rejects_non_bool():
    with pytest.raises(TypeError, match="scalar bool"):
        list(rows(3).filter(lambda v: v))
    with pytest.raises(TypeError, match="scalar bool"):
        list(rows(3).filter(lambda v: np.array([True, False])))


def test_map_filter_reject_non_callable():
    with pytest.raises(TypeError, match="map_func"):
        rows().map(3)
    with pytest.raises(TypeError, match="predicate"):
        rows().filter(None)


# repeat, take, skip ---------------------------------------------------------------


def test_repeat_counts():
    assert values(rows(3).repeat(2)) == [0, 1, 2, 0, 1, 2]
    assert values(rows(3).repeat(0)) == []
    assert values(rows(3).repeat().take(7)) == [0, 1, 2, 0, 1, 2, 0]
    assert values(rows(3).repeat(-1).take(4)) == [0, 1, 2, 0]


def test_endless_repeat_of_empty_ends():
    empty = Dataset.from_tensor_slices(np.zeros((0, 2)))
    assert list(empty.repeat()) == []
    assert empty.repeat().cardinality() == 0
    assert list(rows(4).filter(lambda v: v > 10).repeat()) == []


def test_take_and_skip():
    assert values(rows(10).take(3)) == [0, 1, 2]
    assert values(rows(10).take(-1)) == list(range(10))
    assert values(rows(10).take(100)) == list(range(10))
    assert values(rows(10).skip(7)) == [7, 8, 9]
    assert values(rows(10).skip(-1)) == []
    assert values(rows(10).skip(100)) == []
    assert values(rows(10).map(lambda v: v).skip(8)) == [8, 9]
    assert values(rows(10).map(lambda v: v).take(2)) == [0, 1]


def test_take_stops_pulling_input():
    pulled = []
    dataset = rows(100).map(lambda v: pulled.append(v) or v).take(3)
    assert values(dataset) == [0, 1, 2]
    assert pulled == [0, 1, 2]


@pytest.mark.parametrize("method, count, error", [
    ("take", -2, ValueError), ("skip", -5, ValueError), ("repeat", -2, ValueError),
    ("take", 1.0, TypeError), ("skip", None, TypeError), ("repeat", "2", TypeError),
])
def test_counts_rejected(method, count, error):
    with pytest.raises(error, match="count"):
        getattr(rows(), method)(count)


# cardinality and len ---------------------------------------------------------------


@pytest.mark.parametrize("make, expected", [
    (lambda: rows(10), 10),
    (lambda: rows(10).batch(3), 4),
    (lambda: rows(10).batch(3, drop_remainder=True), 3),
    (lambda: rows(10).shuffle(4), 10),
    (lambda: rows(10).map(lambda v: v), 10),
    (lambda: rows(10).repeat(3), 30),
    (lambda: rows(10).repeat(0), 0),
    (lambda: rows(10).take(4), 4),
    (lambda: rows(10).take(40), 10),
    (lambda: rows(10).skip(4), 6),
    (lambda: rows(10).skip(40), 0),
    (lambda: rows(10).skip(-1), 0),
    (lambda: rows(10).repeat(), INFINITE_CARDINALITY),
    (lambda: rows(10).repeat().batch(3), INFINITE_CARDINALITY),
    (lambda: rows(10).repeat().take(25), 25),
    (lambda: rows(10).repeat().skip(5), INFINITE_CARDINALITY),
    (lambda: rows(10).filter(bool), UNKNOWN_CARDINALITY),
    (lambda: rows(10).filter(bool).take(3), UNKNOWN_CARDINALITY),
    (lambda: rows(10).filter(bool).repeat(), INFINITE_CARDINALITY),
    (lambda: rows(10).repeat().filter(bool), INFINITE_CARDINALITY),
    (lambda: rows(10).prefetch(2), 10),
])
def test_cardinality(make, expected):
    dataset = make()
    assert dataset.cardinality() == expected


def test_len_matches_iteration():
    for dataset in (rows(10).batch(3), rows(7).repeat(2).skip(3), rows(5).take(2)):
        assert len(dataset) == len(list(dataset))


def test_len_of_infinite_raises():
    with pytest.raises(TypeError, match="infinite"):
        len(rows(3).repeat())
    assert bool(rows(3).repeat())
    assert "infinite" in repr(rows(3).repeat())


# prefetch --------------------------------------------------------------------------


def test_prefetch_keeps_order():
    dataset = rows(50).map(lambda v: v * 3).batch(4)
    expected = [b.tolist() for b in dataset]
    for buffer_size in (1, 2, AUTOTUNE, 0):
        assert [b.tolist() for b in dataset.prefetch(buffer_size)] == expected


def test_prefetch_runs_in_background_thread():
    threads = set()

    def record(v):
        threads.add(threading.get_ident())
        return v

    assert values(rows(5).map(record).prefetch(2)) == [0, 1, 2, 3, 4]
    assert threads and threading.get_ident() not in threads
    threads.clear()
    assert values(rows(5).map(record).prefetch(0)) == [0, 1, 2, 3, 4]
    assert threads == {threading.get_ident()}


def test_prefetch_raises_pipeline_errors():
    def explode(v):
        if v == 3:
            raise KeyError("element 3")
        return v

    iterator = iter(rows(6).map(explode).prefetch(2))
    assert [next(iterator) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(KeyError, match="element 3"):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)


def test_prefetch_close_stops_thread():
    iterator = iter(rows(4).repeat().prefetch(2))
    assert next(iterator) == 0
    iterator.close()
    iterator._thread.join(timeout=30)
    assert not iterator._thread.is_alive()
    with pytest.raises(StopIteration):
        next(iterator)


def test_prefetch_shuffle_follows_set_random_seed():
    dataset = rows(20).shuffle(5).repeat(3).batch(4).prefetch(2)
    nnfast.utils.set_random_seed(42)
    first = [b.tolist() for b in dataset]
    nnfast.utils.set_random_seed(42)
    second = [b.tolist() for b in dataset]
    assert first == second


@pytest.mark.parametrize("size, error", [(-2, ValueError), (1.5, TypeError)])
def test_prefetch_rejects_size(size, error):
    with pytest.raises(error, match="buffer_size"):
        rows().prefetch(size)
