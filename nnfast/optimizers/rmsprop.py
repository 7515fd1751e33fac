"""The RMSprop optimizer."""

from nnfast import backend
from nnfast.optimizers.optimizer import Optimizer, check_rate


class RMSprop(Optimizer):
    """RMSprop, in Keras 3's form.

    With velocity v, moving-average gradient a and momentum buffer b all
    starting at zero, each step computes
    v = rho * v + (1 - rho) * g^2,
    d = v - a^2 + epsilon after a = rho * a + (1 - rho) * g when centered,
    else d = v + epsilon,
    increment = lr * g / sqrt(d),
    and then with momentum > 0: b = momentum * b + increment, w = w - b,
    else w = w - increment.

    Args:
        learning_rate: float >= 0 or a schedule (default 0.001).
        rho: decay of the moving averages, in [0, 1] (default 0.9).
        momentum: float in [0, 1] (default 0.0, no momentum buffer).
        epsilon: added inside the square root, float >= 0 (default 1e-7).
        centered: whether to divide by an estimate of the gradient's variance
            instead of its second moment (default False).
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = check_rate("RMSprop", "rho", rho, high=1.0)
        self.momentum = check_rate("RMSprop", "momentum", momentum, high=1.0)
        self.epsilon = check_rate("RMSprop", "epsilon", epsilon)
        self.centered = bool(centered)

    def _update(self, params, grads, lr, step):
        velocity = self._slot("velocity", params)
        momentum_buffer = self._slot("momentum", params) if self.momentum > 0 else None
        average_grad = self._slot("average_gradient", params) if self.centered else None
        backend.kernels().rmsprop_update(params, grads, velocity, momentum_buffer,
                                         average_grad, lr, self.rho, self.momentum,
                                         self.epsilon)

    def get_config(self):
        config = super().get_config()
        config.update({"rho": self.rho, "momentum": self.momentum,
                       "epsilon": self.epsilon, "centered": self.centered})
        return config
