"""The Adagrad optimizer."""

import numpy as np

from nnfast import backend
from nnfast.optimizers.optimizer import Optimizer, check_rate


class Adagrad(Optimizer):
    """Adagrad, in Keras 3's form.

    The accumulator starts at ``initial_accumulator_value`` and each step
    computes accumulator = accumulator + g^2 and
    w = w - lr * g / sqrt(accumulator + epsilon).

    Args:
        learning_rate: float >= 0 or a schedule (default 0.001).
        initial_accumulator_value: starting value of the accumulator,
            float >= 0 (default 0.1).
        epsilon: added inside the square root, float >= 0 (default 1e-7).
    """

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.initial_accumulator_value = check_rate(
            "Adagrad", "initial_accumulator_value", initial_accumulator_value)
        self.epsilon = check_rate("Adagrad", "epsilon", epsilon)

    def _update(self, params, grads, lr, step):
        accumulator = self._slots.get("accumulator")
        if (accumulator is None or accumulator.shape != params.shape
                or accumulator.dtype != params.dtype):
            accumulator = np.full_like(params, self.initial_accumulator_value)
            self._slots["accumulator"] = accumulator
        backend.kernels().adagrad_update(params, grads, accumulator, lr, self.epsilon)

    def get_config(self):
        config = super().get_config()
        config.update({"initial_accumulator_value": self.initial_accumulator_value,
                       "epsilon": self.epsilon})
        return config
