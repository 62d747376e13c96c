"""What the model predicts: stability-map panels and reward trajectories."""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import numpy as np

from advisor.exceptions import AdvisorError
from advisor.report._document import MapPanel
from advisor.report._format import _r


if TYPE_CHECKING:
    from advisor.stability import StabilityModel


def _panel(model: StabilityModel, mu: float, refresh: Sequence[int],
           base: Mapping[str, Any]) -> MapPanel:
    k = np.asarray(refresh, float)
    kw = dict(momentum=mu, refresh_interval=k, refresh_scheme="piecewise")

    def line(method: str) -> tuple[float | None, ...]:
        try:
            v = np.broadcast_to(np.asarray(model.max_learning_rate(**kw, method=method), float),
                                k.shape)
        except (ValueError, AdvisorError):
            return (None,) * k.size
        return tuple(float(x) if np.isfinite(x) else None for x in v)

    has_edge = getattr(model, "edge", None) is not None
    calibrated = line("calibrated") if has_edge else (None,) * k.size
    lo, hi = _band(model, calibrated, k)
    return MapPanel(momentum=float(mu), refresh_interval=tuple(int(x) for x in refresh),
                    calibrated=calibrated, band_low=lo, band_high=hi, exact=line("exact"),
                    closed_form=line("closed_form"),
                    critical_damping=_critical_damping(model, mu, k, base))


def _momentum(model: StabilityModel, mu: Any) -> dict[str, Any]:
    """``{"momentum": mu}`` for a heavy-ball model; nothing for AdamW (the key selects SGD)."""
    return {"momentum": mu} if model.optimizer == "sgd" else {}


def _band(model: StabilityModel, calibrated: Sequence[float | None], k: np.ndarray
          ) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
    """Edge band: the scan bracket (last stable / first unstable rate), widened away from the
    pilot's refresh interval by the 90% range of the calibration's transfer law.

    The stiffness error does not enter: the edge is measured in learning rate and stored as
    x* = eta* K / (1 - mu) with the model's own K, so K cancels when it is read back.
    """
    edge = getattr(model, "edge", None)
    if edge is None:
        n = len(calibrated)
        return (None,) * n, (None,) * n
    try:
        sigma = np.asarray(edge.predict(refresh_interval=k)[1], float)
        transfer = np.sqrt(np.maximum(sigma**2 - float(edge.log_sigma) ** 2, 0.0))
    except (AttributeError, ValueError):  # an edge without a transfer law: the bracket only
        transfer = np.zeros(k.shape)
    widen = np.exp(1.645 * np.broadcast_to(transfer, k.shape))
    f_lo, f_hi = edge.low / edge.rate / widen, edge.high / edge.rate * widen
    return (tuple(None if c is None else float(c * f) for c, f in zip(calibrated, f_lo,
                                                                         strict=True)),
            tuple(None if c is None else float(c * f) for c, f in zip(calibrated, f_hi,
                                                                         strict=True)))


def _critical_damping(model: StabilityModel, mu: float, k: np.ndarray,
                      base: Mapping[str, Any]) -> tuple[float | None, ...]:
    """Learning rate where the theory's damping ratio first drops below 1 (overshoot onset)."""
    lrs = np.geomspace(1e-4, 1e1, 241) / float(model.stiffness)
    n = lrs.size
    params = {**base, "learning_rate": np.tile(lrs, k.size),
              "steps_per_generation": np.repeat(k.astype(np.int64), n),
              "num_iterations": 1, "gradient_accumulation_steps": 1,
              **_momentum(model, np.full(n * k.size, mu))}
    zeta = np.asarray(model.assess_many(params, details=True)["damping_ratio"], float)
    out: list[float | None] = []
    for row in zeta.reshape(k.size, n):
        below = np.flatnonzero(row < 1.0)
        out.append(float(lrs[below[0]]) if below.size else None)
    return tuple(out)


def _trajectories(model: StabilityModel, panels: Sequence[MapPanel], base: Mapping[str, Any],
                  steps: int, start: float | None) -> tuple[Mapping[str, Any], ...]:
    """Predicted curves on-policy at the first panel's momentum, for three learning rates.

    The rates are 0.2, 0.45 and 0.8 of the edge (calibrated, else exact theory), each lowered
    where needed so that its predicted time constant is at least a third, an eighth and a
    twentieth of the run (otherwise the curves would all jump to the plateau at once).
    """
    from advisor.dynamics import trajectory

    est = model.estimate
    panel = panels[0] if panels else None
    edge_lr = None if panel is None else (panel.calibrated[0] or panel.exact[0])
    if getattr(est, "plateau", None) is None or start is None or edge_lr is None:
        return ()
    k, mu = float(model.stiffness), panel.momentum
    # per-step rate x = eta K / (1 - mu), so eta = x (1 - mu) / K (theory.md section 1)
    lrs = sorted({float(_r(min(f * edge_lr, (1.0 - mu) / (steps / c * k)), 2))
                  for f, c in ((0.2, 3.0), (0.45, 8.0), (0.8, 20.0))})
    t = np.arange(steps + 1)
    stride = max(1, steps // 100)
    # lognormal band on K: a relative error of 100% must not make the rate negative
    sig = math.log1p(float(est.std_error) / k) if est.std_error else 0.0
    out = []
    for lr in lrs:
        v = model.assess({**base, "learning_rate": lr, "steps_per_generation": 1,
                          **_momentum(model, mu)})
        mean, a, b = (trajectory(t, plateau=float(est.plateau), start=float(start),
                                 rate=lr * k * s / (1.0 - mu), momentum=mu, model="heavy_ball")
                      for s in (1.0, math.exp(-1.645 * sig), math.exp(1.645 * sig)))
        out.append({"learning_rate": lr, "momentum": mu, "refresh_interval": 1,
                    "time_constant": float(v.time_constant),
                    "damping_ratio": float(v.damping_ratio),
                    "regime": str(getattr(v.regime, "value", v.regime)),
                    "steps": t[::stride].tolist(), "mean": mean[::stride].tolist(),
                    "low": np.minimum(a, b)[::stride].tolist(),
                    "high": np.maximum(a, b)[::stride].tolist()})
    return tuple(out)
