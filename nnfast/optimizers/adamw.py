"""The AdamW optimizer."""

from nnfast.optimizers.adam import Adam
from nnfast.optimizers.optimizer import check_rate


class AdamW(Adam):
    """Adam with decoupled weight decay, in Keras 3's form.

    Each step first decays every weight, w = w - lr * weight_decay * w, and
    then takes the Adam step (see :class:`Adam`). The decay applies to all
    trainable weights, biases included, as Keras 3 does by default.

    Args:
        learning_rate: float >= 0 or a schedule (default 0.001).
        weight_decay: the decay rate, float >= 0 (default 0.004).
        beta_1, beta_2, epsilon, amsgrad: as for :class:`Adam`.
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=amsgrad, **kwargs)
        self.weight_decay = check_rate("AdamW", "weight_decay", weight_decay)

    def _decoupled_weight_decay(self):
        return self.weight_decay

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.weight_decay
        return config
