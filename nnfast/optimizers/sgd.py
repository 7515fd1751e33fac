"""Stochastic gradient descent."""

from nnfast import backend
from nnfast.optimizers.optimizer import Optimizer, check_rate


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum.

    Update, with v starting at zero:
    momentum == 0: w = w - lr * g;
    otherwise v = momentum * v - lr * g and w = w + v, or with Nesterov
    w = w + momentum * v - lr * g.

    Args:
        learning_rate: float >= 0 or a schedule (default 0.01).
        momentum: float >= 0 (default 0).
        nesterov: whether to use Nesterov momentum.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = check_rate("SGD", "momentum", momentum)
        self.nesterov = bool(nesterov)

    def _update(self, params, grads, lr, step):
        velocity = self._slot("velocity", params) if self.momentum else None
        backend.kernels().sgd_update(params, grads, velocity, lr,
                                     momentum=self.momentum, nesterov=self.nesterov)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config
