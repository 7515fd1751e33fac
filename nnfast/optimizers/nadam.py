"""The Nadam optimizer."""

from nnfast import _reference, backend
from nnfast.optimizers.optimizer import Optimizer, check_rate


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Nadam), with a momentum schedule.

    At step t (from 1) the momentum coefficient is
    u_t = beta_1 * (1 - 0.5 * 0.96^t), and P_t = u_1 * ... * u_t, as in Keras 3.
    With m and v starting at zero:
    m = m + (g - m) * (1 - beta_1), v = v + (g^2 - v) * (1 - beta_2),
    m_hat = u_(t+1) * m / (1 - P_(t+1)) + (1 - u_t) * g / (1 - P_t),
    v_hat = v / (1 - beta_2^t),
    w = w - lr * m_hat / (sqrt(v_hat) + epsilon).

    Args:
        learning_rate: float >= 0 or a schedule (default 0.001).
        beta_1: decay of the first moment, in [0, 1] (default 0.9).
        beta_2: decay of the second moment, in [0, 1) (default 0.999).
        epsilon: added to the denominator (default 1e-7).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = check_rate("Nadam", "beta_1", beta_1, high=1.0)
        self.beta_2 = check_rate("Nadam", "beta_2", beta_2, high=1.0)
        if self.beta_2 == 1.0:
            raise ValueError(
                "Nadam: `beta_2` must be < 1, because the bias correction divides "
                f"by 1 - beta_2^t, got beta_2={self.beta_2}"
            )
        self.epsilon = check_rate("Nadam", "epsilon", epsilon)
        # (step, P_step) after the last update, so that each step multiplies
        # one factor in. It is recomputed when the step count was set from
        # outside, as set_state does.
        self._product_cache = (0, 1.0)

    def _product_before(self, step):
        """Return P_(step - 1), the product of u_1 ... u_(step-1)."""
        cached_step, product = self._product_cache
        if cached_step == step - 1:
            return product
        product = 1.0
        for i in range(1, step):
            product = product * _reference.nadam_momentum(self.beta_1, i)
        return product

    def _update(self, params, grads, lr, step):
        m = self._slot("m", params)
        v = self._slot("v", params)
        product = backend.kernels().nadam_update(
            params, grads, m, v, lr, self.beta_1, self.beta_2, self.epsilon, step,
            self._product_before(step))
        self._product_cache = (step, product)

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2,
                       "epsilon": self.epsilon})
        return config
