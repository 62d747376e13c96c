"""The study as `advisor.sampler.StableRegionSampler`'s base sampler sees it.

Private to `advisor.sampler`. Every trial's ``learning_rate`` is replaced by its stability
coordinate ``advisor:lr_fraction`` (the sampler's ``_rewrite``), so TPE, GP and CMA-ES learn on
the fixed box; for an enumerating base (``GridSampler``, ``BruteForceSampler``) the rate is
dropped, and the storage is wrapped as well because ``BruteForceSampler`` reads it directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

import optuna


if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from advisor.sampler import StableRegionSampler


class _View(optuna.study.Study):
    """The study as the base sampler sees it: ``learning_rate`` -> ``advisor:lr_fraction``."""

    def __init__(self, study: Study, sampler: StableRegionSampler) -> None:
        # Study.__init__ would query the storage; copy the state instead (as a bracket view does)
        self.__dict__.update(object.__getattribute__(study, "__dict__"))
        self._advisor_inner = study
        self._advisor_sampler = sampler
        self._advisor_storage = study._storage
        if sampler._enumerating:  # BruteForceSampler reads the trials from the storage itself
            self._storage = _StorageView(study._storage, sampler)

    def _get_trials(self, deepcopy: bool = True, states: Any = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        inner = self._advisor_inner._get_trials(deepcopy=False, states=states,
                                                use_cache=use_cache)
        return [self._advisor_sampler._rewrite(self._advisor_storage, t) for t in inner]

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        inner = self._advisor_inner.get_trials(deepcopy=False, states=states)
        return [self._advisor_sampler._rewrite(self._advisor_storage, t) for t in inner]

    def stop(self) -> None:
        # GridSampler and BruteForceSampler stop the study when their space is exhausted: the
        # flag must reach the study that optimize() watches, not this copy
        self._advisor_inner.stop()


class _StorageView:
    """The storage as an enumerating base sampler reads it: trials rewritten as in `_View`
    (reads of all trials only; everything else, writes included, goes to the storage)."""

    def __init__(self, storage: Any, sampler: StableRegionSampler) -> None:
        self._advisor_inner = storage
        self._advisor_sampler = sampler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._advisor_inner, name)

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None
                       ) -> list[FrozenTrial]:
        inner = self._advisor_inner.get_all_trials(study_id, deepcopy=False, states=states)
        return [self._advisor_sampler._rewrite(self._advisor_inner, t) for t in inner]
