"""Tolerances for comparing compiled kernels with the NumPy reference.

Test modules import them with ``from _tolerances import TOL, tolerance``,
which works because pytest puts the ``tests`` folder on ``sys.path`` (it has
no ``__init__.py``).

``TOL`` maps np.float32 and np.float64 to keyword arguments for
``np.testing.assert_allclose``. It fits results of order one that both paths
compute with the same formula, where the paths differ only in how exp, log
and tanh round (each within a few units in the last place, ulp) and in the
order of sums over a row of up to a few hundred terms:

- float32: eps is 1.2e-7, so rtol=1e-5 is about 80 ulp, room for a sum of
  a few hundred terms in a different order plus the libm differences.
  atol=1e-6 covers results near zero, where a relative bound means nothing,
  such as exp of a large negative number landing among the subnormals.
- float64: eps is 2.2e-16, so rtol=1e-12 is about 4,500 ulp, the same margin
  scaled to double. atol=1e-14 plays the part of float32's atol.

Comparisons with cancellation (a difference of nearly equal sums) or with
results far from order one need an atol scaled to the inputs. Those tests
compute it from ``eps(dtype)`` and say why next to the check.
"""

import numpy as np

TOL = {
    np.float32: {"rtol": 1e-5, "atol": 1e-6},
    np.float64: {"rtol": 1e-12, "atol": 1e-14},
}


def tolerance(dtype):
    """Return the ``TOL`` entry for ``dtype`` (a dtype, a scalar type or its name)."""
    return TOL[np.dtype(dtype).type]


def eps(dtype):
    """Return the machine epsilon of ``dtype`` as a Python float."""
    return float(np.finfo(dtype).eps)
