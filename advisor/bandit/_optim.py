"""The optimizers of the simulator: heavy-ball SGD and Adam on the logits.

Conventions:
    theta: logits, arm-major ``(n, B)``; g: ascent direction, same shape.
    eta: learning rate, mu: heavy-ball momentum, both shape ``(B,)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from advisor.bandit._kernel import FloatArray


class _Optimizer:
    """Heavy ball or Adam over the ``(n, B)`` logits, with per-column rates that can be frozen."""

    def __init__(self, theta0: FloatArray, eta: FloatArray, mu: FloatArray, optimizer: str,
                 betas: tuple[float, float], eps: float) -> None:
        self.eta, self.mu = eta.copy(), mu.copy()  # zeroed per column when a run diverges
        self.adam, self.betas, self.eps = optimizer == "adam", betas, eps
        self.heavy = not self.adam and bool(np.any(mu))
        self.theta = np.repeat(theta0[:, None], eta.size, axis=1)
        self.prev = self.theta.copy()
        self.m, self.v = np.zeros_like(self.theta), np.zeros_like(self.theta)

    def update(self, g: FloatArray, k: int) -> None:
        th = self.theta
        if self.adam:
            b1, b2 = self.betas
            self.m = b1 * self.m + (1 - b1) * g
            self.v = b2 * self.v + (1 - b2) * g * g
            m_hat, v_hat = self.m / (1 - b1 ** (k + 1)), self.v / (1 - b2 ** (k + 1))
            self.theta = th + self.eta * m_hat / (np.sqrt(v_hat) + self.eps)
        elif self.heavy:
            self.theta, self.prev = th + self.eta * g + self.mu * (th - self.prev), th
        else:
            self.theta = th + self.eta * g

    def freeze(self, cols: npt.NDArray[np.bool_], theta0: FloatArray) -> None:
        """Park diverged columns at ``theta_0`` with zero step size from now on."""
        self.eta[cols], self.mu[cols] = 0.0, 0.0
        for arr in (self.theta, self.prev, self.m, self.v):
            arr[:, cols] = 0.0
        self.theta[:, cols] = theta0[:, None]
        self.prev[:, cols] = theta0[:, None]
