"""Brute-force posterior of an exponential fit, the oracle of the trajectory-posterior tests.

The posterior over (log rate, plateau, amplitude) with sigma integrated out (prior 1/sigma) and
Jeffreys' factor for the log-rate written out analytically (dPhi/dlog(rate) = -x t e^{-x t}),
times an optional log-prior on the log-rate, integrated on a dense grid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def exponential_posterior(t: np.ndarray, y: np.ndarray, horizon: float,
                          log_prior: Callable[[np.ndarray], np.ndarray] | None = None,
                          n_rates: int = 1200) -> dict[str, np.ndarray]:
    """Weighted samples of the mean reward at ``horizon`` and the per-rate summaries.

    Returns a dict with ``values``/``log_w`` (samples of the mean at the horizon and their log
    weights), and per rate node ``rate``, ``beta_hat``, ``inv`` ((X^T X)^-1), ``sse_min`` and
    ``log_w_rate`` (Jeffreys x prior x SSE^-(n-2)/2 det(X^T X)^-1/2, the rate's marginal).
    """
    n = t.size
    log_rate = np.linspace(np.log(0.05 / (n - 1)), np.log(5.0), n_rates)
    rate = np.exp(log_rate)
    phi = np.exp(-rate[:, None] * t)
    X = np.stack([np.ones_like(phi), phi], axis=2)
    XtX = X.transpose(0, 2, 1) @ X
    inv = np.linalg.inv(XtX)
    beta_hat = (inv @ (X.transpose(0, 2, 1) @ y)[..., None])[..., 0]
    d = -rate[:, None] * t * phi
    jeffreys = np.linalg.norm(d - (X @ (inv @ (X.transpose(0, 2, 1) @ d[..., None])))[..., 0],
                              axis=1)
    prior = np.zeros(rate.size) if log_prior is None else log_prior(log_rate)
    sse_min = np.sum((y - (X @ beta_hat[..., None])[..., 0]) ** 2, axis=1)
    u = np.linspace(-9, 9, 121)
    z = np.stack([g.ravel() for g in np.meshgrid(u, u, indexing="ij")])
    values, log_w = [], []
    for i in range(rate.size):
        chol = np.linalg.cholesky(sse_min[i] / (n - 2) * inv[i])
        beta = beta_hat[i][:, None] + chol @ z
        dev = beta - beta_hat[i][:, None]
        sse = sse_min[i] + np.einsum("ik,ij,jk->k", dev, XtX[i], dev)
        cell = np.prod(np.diag(chol))  # (plateau, amplitude) area of a grid cell, up to u's
        log_w.append(-n / 2 * np.log(sse) + np.log(jeffreys[i] * cell) + prior[i])
        values.append(beta[0] + beta[1] * np.exp(-rate[i] * horizon))
    log_w_rate = (np.log(jeffreys) + prior - (n - 2) / 2 * np.log(sse_min)
                  - 0.5 * np.log(np.linalg.det(XtX)))
    return {"values": np.concatenate(values), "log_w": np.concatenate(log_w), "rate": rate,
            "beta_hat": beta_hat, "inv": inv, "sse_min": sse_min, "log_w_rate": log_w_rate}


def weighted_median(values: np.ndarray, log_w: np.ndarray) -> float:
    """The median of weighted samples."""
    order = np.argsort(values)
    cdf = np.cumsum(np.exp(log_w[order] - log_w.max()))
    return float(values[order][np.searchsorted(cdf / cdf[-1], 0.5)])
