"""OptunaHub package ``samplers/stable_region``: re-exports `advisor.StableRegionSampler`.

The implementation, its tests and the stability model live in the ``grpo-advisor`` package
(requirements.txt); this folder only registers the sampler on OptunaHub.
"""

from __future__ import annotations

from advisor.sampler import StableRegionSampler


__all__ = ["StableRegionSampler"]
