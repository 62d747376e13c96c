"""OptunaHub package ``pruners/trajectory``: re-exports `advisor.TrajectoryPruner`.

The implementation, its tests and the trajectory fit live in the ``grpo-advisor`` package
(requirements.txt); this folder only registers the pruner on OptunaHub.
"""

from __future__ import annotations

from advisor.pruner import TrajectoryPruner


__all__ = ["TrajectoryPruner"]
