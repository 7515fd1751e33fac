"""The global random generator behind initialization, shuffling and dropout."""

import random

import numpy as np

_generator = np.random.default_rng()


def generator():
    """Return the global NumPy generator."""
    return _generator


def set_seed(seed):
    """Reseed the global generator, Python's ``random`` and NumPy's legacy one."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"set_random_seed: `seed` must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"set_random_seed: `seed` must be >= 0, got seed={seed}")
    _generator = np.random.default_rng(int(seed))
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)


def get_state():
    """Return the global generator's state as a JSON-friendly dict."""
    return _generator.bit_generator.state


def set_state(state):
    """Restore a state returned by :func:`get_state`."""
    _generator.bit_generator.state = state
