r"""Stability of GRPO training: an exact linear theory layer and a measured calibration layer.

**Theory layer** (`advisor.stability._theory`): the update linearised at the fixed point,

.. math::
    e_{k+1} = (1 + \mu - \eta K_c) e_k - \mu e_{k-1} - \eta K_o e_{old}(k),

is tested exactly (sliding lag: roots; piecewise refresh: Floquet monodromy), with the on-policy
bound ``eta K < 2(1 + mu)`` and, given a horizon, oscillating modes that must settle within it
(`advisor.stability._horizon`: the linear trajectory classified by the ground truth's rule).
A known bandit replaces the linear bound by its simulated first divergence, which also decides
settling within the horizon (`advisor.stability._nonlinear`); without it a safety factor
applies where the linear test is known to over-predict (importance-ratio surrogate, piecewise
refresh: 1.4-2.4x at mu >= 0.5, bandit-findings.md section 9). With more than one mode
(bandits with > 2 arms) a single (K, K_c) cannot be exact: the pilot measures the slowest excited
mode, the stiffest sets the edge, so a known bandit is then simulated over the whole settling
range.

**Calibration layer** (`advisor.stability._calibration`): a measured edge x*_0 (pilot lr scan)
transfers as ``x*(B, K_ref, n_it) = x*_0 (B/B_0)^a (K_ref/K_ref0)^b n_it^(-1/3)``; the verdict is
the tighter layer. References: arXiv 2606.30789 (closed form), research notes theory.md
sections 2 and 6.
"""

from __future__ import annotations

from advisor.stability._calibration import EdgeEstimate
from advisor.stability._conditions import _check_conditions as _check_conditions
from advisor.stability._conditions import _factorize as _factorize
from advisor.stability._conditions import _integer_lag as _integer_lag
from advisor.stability._conditions import _optional_float as _optional_float
from advisor.stability._conditions import _StiffnessSummary as _StiffnessSummary
from advisor.stability._model import Method as Method
from advisor.stability._model import StabilityModel
from advisor.stability._theory import FloatArray as FloatArray
from advisor.stability._theory import Scheme as Scheme
from advisor.stability._theory import _affine_compose as _affine_compose
from advisor.stability._theory import _is_stable as _is_stable
from advisor.stability._theory import _piecewise_multiplier as _piecewise_multiplier
from advisor.stability._theory import _piecewise_pair as _piecewise_pair
from advisor.stability._theory import _pure_delay_sliding_rate as _pure_delay_sliding_rate
from advisor.stability._theory import _radii as _radii
from advisor.stability._theory import _regime_of as _regime_of
from advisor.stability._theory import _sliding_roots_batch as _sliding_roots_batch
from advisor.stability._theory import closed_form_rate
from advisor.stability._theory import critical_rate
from advisor.stability._theory import settling_radius
from advisor.stability._verdict import Verdict


__all__ = ["EdgeEstimate", "StabilityModel", "Verdict", "critical_rate", "closed_form_rate",
           "settling_radius"]
