"""The Adam optimizer."""

from nnfast import backend
from nnfast.optimizers.optimizer import Optimizer, check_rate


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2014), in Keras's form.

    At step t (from 1), with m and v starting at zero:
    m = m + (1 - beta_1) * (g - m),
    v = v + (1 - beta_2) * (g^2 - v),
    w = w - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon).

    Args:
        learning_rate: float >= 0 or a schedule (default 0.001).
        beta_1: decay of the first moment (default 0.9).
        beta_2: decay of the second moment (default 0.999).
        epsilon: added to the denominator (default 1e-7).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = check_rate("Adam", "beta_1", beta_1, high=1.0)
        self.beta_2 = check_rate("Adam", "beta_2", beta_2, high=1.0)
        self.epsilon = check_rate("Adam", "epsilon", epsilon)
        if amsgrad:
            raise ValueError("Adam: `amsgrad=True` is not supported yet")
        self.amsgrad = False

    def _update(self, params, grads, lr, step):
        m = self._slot("m", params)
        v = self._slot("v", params)
        backend.kernels().adam_update(params, grads, m, v, lr, self.beta_1,
                                      self.beta_2, self.epsilon, step)

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2,
                       "epsilon": self.epsilon, "amsgrad": self.amsgrad})
        return config
