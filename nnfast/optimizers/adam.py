"""The Adam optimizer."""

from nnfast import backend
from nnfast.optimizers.optimizer import Optimizer, check_rate


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2014), in Keras's form.

    At step t (from 1), with m and v starting at zero:
    m = m + (1 - beta_1) * (g - m),
    v = v + (1 - beta_2) * (g^2 - v),
    w = w - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon).
    With ``amsgrad=True``, v_hat = maximum(v_hat, v) (starting at zero)
    takes the place of v in the last line, so the step size never grows
    because v shrank.

    Args:
        learning_rate: float >= 0 or a schedule (default 0.001).
        beta_1: decay of the first moment, in [0, 1) (default 0.9).
        beta_2: decay of the second moment, in [0, 1] (default 0.999).
        epsilon: added to the denominator (default 1e-7).
        amsgrad: whether to use the AMSGrad variant (default False).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        owner = type(self).__name__
        self.beta_1 = check_rate(owner, "beta_1", beta_1, high=1.0)
        if self.beta_1 == 1.0:
            raise ValueError(
                f"{owner}: `beta_1` must be < 1, because the bias correction divides "
                f"by 1 - beta_1^t, got beta_1={self.beta_1}"
            )
        self.beta_2 = check_rate(owner, "beta_2", beta_2, high=1.0)
        self.epsilon = check_rate(owner, "epsilon", epsilon)
        self.amsgrad = bool(amsgrad)

    def _update(self, params, grads, lr, step):
        m = self._slot("m", params)
        v = self._slot("v", params)
        v_hat = self._slot("v_hat", params) if self.amsgrad else None
        backend.kernels().adam_update(params, grads, m, v, lr, self.beta_1,
                                      self.beta_2, self.epsilon, step, v_hat=v_hat,
                                      weight_decay=self._decoupled_weight_decay())

    def _decoupled_weight_decay(self):
        """Return the weight decay applied before each step (0 for Adam)."""
        return 0.0

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2,
                       "epsilon": self.epsilon, "amsgrad": self.amsgrad})
        return config
