"""Nested elements: tuples and dicts of arrays, flattened to a list of leaves.

Tuples (named tuples included) and dicts are structure; everything else,
lists included, is a leaf, as in tf.data. Dict entries are flattened in
sorted key order, so two dicts with the same keys flatten alike whatever
their insertion order.
"""


def is_structure(value):
    return isinstance(value, (tuple, dict))


def _sorted_keys(mapping):
    try:
        return sorted(mapping)
    except TypeError:
        raise TypeError(
            "Dataset: dict keys must be sortable (for example all str), got keys "
            f"{list(mapping)!r}"
        ) from None


def flatten_with_paths(value, path=()):
    """Return [(path, leaf), ...] in a fixed order; a path lists keys and indices."""
    if isinstance(value, dict):
        pairs = []
        for key in _sorted_keys(value):
            pairs.extend(flatten_with_paths(value[key], path + (key,)))
        return pairs
    if isinstance(value, tuple):
        pairs = []
        for index, item in enumerate(value):
            pairs.extend(flatten_with_paths(item, path + (index,)))
        return pairs
    return [(path, value)]


def flatten(value):
    """Return the leaves of ``value`` in the order :func:`pack` expects."""
    return [leaf for _, leaf in flatten_with_paths(value)]


def signature(value):
    """Return a hashable description of the structure of ``value``, leaves aside."""
    if isinstance(value, dict):
        return ("dict", tuple((key, signature(value[key]))
                              for key in _sorted_keys(value)))
    if isinstance(value, tuple):
        return (type(value), tuple(signature(item) for item in value))
    return None


def pack(template, leaves):
    """Return a structure like ``template`` with its leaves taken from ``leaves``."""
    iterator = iter(leaves)
    return _pack(template, iterator)


def _pack(template, leaves):
    if isinstance(template, dict):
        values = {key: _pack(template[key], leaves) for key in _sorted_keys(template)}
        # Keep the template's key order and mapping type.
        return type(template)((key, values[key]) for key in template)
    if isinstance(template, tuple):
        items = [_pack(item, leaves) for item in template]
        if hasattr(template, "_fields"):
            return type(template)(*items)
        return type(template)(items)
    return next(leaves)


def format_path(path):
    """Return a readable name for a leaf path, such as ``[0]`` or ``['x']``."""
    if not path:
        return "tensors"
    return "".join(f"[{key!r}]" for key in path)
