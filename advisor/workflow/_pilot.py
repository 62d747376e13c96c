"""The pilot of a study: run it once, save it stamped with the study, load it back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from advisor.study_file import StudyFile
from advisor.study_file import StudyFileError
from advisor.study_file import load_study_file
from advisor.workflow._objective import _bandit_model
from advisor.workflow._objective import _config_kwargs
from advisor.workflow._objective import _trl_inputs
from advisor.workflow._objective import bandit_problem


_STAMP = "study.json"


@dataclass(frozen=True)
class StudyPilot:
    """A pilot saved for a study.

    Attributes:
        study_name: The study it was run for.
        fingerprint: :attr:`StudyFile.fingerprint` of that study.
        objective: The study's objective.
        path: The ``<name>.pilot`` folder.
        result: The :class:`advisor.pilot.PilotResult` (TRL objectives), else ``None``.
        curves: The bandit pilot's curves (``PilotCurve`` keyword dicts), else ``None``.
        problem: The bandit problem's fields (bandit objective), else ``None``.
        defaults: Model knobs of the pilot's base ``GRPOConfig`` (batch, group size,
            optimizer), used where a configuration does not set them.
        start_reward: Mean reward at step 0.
    """

    study_name: str
    fingerprint: str
    objective: str
    path: Path
    result: Any = None
    curves: Sequence[Mapping[str, Any]] | None = None
    problem: Mapping[str, Any] | None = None
    start_reward: float | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def model(self) -> Any:
        """The calibrated :class:`advisor.stability.StabilityModel`.

        Knobs a configuration leaves out take the pilot's base ``GRPOConfig`` values (batch,
        group size, optimizer), so the calibrated edge is read at the pilot's batch.
        """
        if self.result is not None:
            return self.result.model(defaults=dict(self.defaults) or None)
        from advisor.bandit import BanditProblem

        return _bandit_model(BanditProblem(**dict(self.problem or {})), self.curves or ())

    def knob_defaults(self, study: StudyFile) -> dict[str, Any]:
        """Values of the knobs ``study`` does not search: its [fixed] over the pilot's config."""
        merged = {**self.defaults, **study.fixed}
        return {k: v for k, v in merged.items() if k not in study.search_space}

    def report(self, study: StudyFile, *, optuna_study: Any = None) -> Any:
        """The feasibility report of ``study`` from this pilot (and finished trials)."""
        from advisor.report import build_report

        return build_report(self.model(), study=study, pilot=self.result,
                            optuna_study=optuna_study, fixed=self.knob_defaults(study),
                            start_reward=self.start_reward)

    def summary(self) -> str:
        """A few lines: stiffness, edge, cost."""
        m = self.model()
        est = m.estimate
        lines = [f"pilot of study {self.study_name!r} ({self.objective})",
                 f"  stiffness K = {est.stiffness:.4g} +- {est.std_error or 0:.2g} per unit lr"]
        if m.edge is not None:
            lines.append(f"  measured edge: rate eta*K/(1-mu) = {m.edge.rate:.3g} "
                         f"(bracket {m.edge.low:.3g}-{m.edge.high:.3g}, {m.edge.n_runs} runs)")
        else:
            lines.append("  no measured edge: the theory layer decides (exact for the bandit)")
        if self.result is not None and hasattr(self.result, "summary"):
            lines.append(str(self.result.summary()))
        return "\n".join(lines)


def _stamp(study: StudyFile) -> dict[str, Any]:
    return {"study": study.name, "fingerprint": study.fingerprint, "objective": study.objective}


def load_pilot(path: str | Path, *, study: StudyFile | None = None) -> StudyPilot:
    """Load a saved pilot (a ``<name>.pilot`` folder, or the study file it belongs to).

    Args:
        path: The pilot folder or a ``.toml`` study file.
        study: If given, the pilot must have been run for this study.

    Raises:
        StudyFileError: No pilot there, or it belongs to a different study.
    """
    p = Path(path)
    if p.suffix == ".toml":
        study = load_study_file(p)
        p = study.pilot_path
    stamp_file = p / _STAMP
    if not stamp_file.is_file():
        hint = (f"Run `grpo-advisor pilot {study.path}` first." if study is not None
                and study.path is not None else "Run `grpo-advisor pilot STUDY.toml` first.")
        raise StudyFileError(f"no saved pilot at {str(p)!r}. {hint}")
    stamp = json.loads(stamp_file.read_text(encoding="utf-8"))
    if study is not None and (stamp.get("study") != study.name
                              or stamp.get("fingerprint") != study.fingerprint):
        raise StudyFileError(
            f"the pilot at {str(p)!r} was run for study {stamp.get('study')!r} "
            f"(fingerprint {stamp.get('fingerprint')}), not for {study.name!r} "
            f"(fingerprint {study.fingerprint}): its objective, fixed knobs or pilot settings "
            "differ. Rerun `grpo-advisor pilot --force` for this study.")
    result = curves = None
    if stamp["objective"] == "builtin:bandit":
        curves = json.loads((p / "curves.json").read_text(encoding="utf-8"))
    else:
        from advisor.pilot import PilotResult

        result = PilotResult.load(p / "result")
    return StudyPilot(study_name=stamp["study"], fingerprint=stamp["fingerprint"],
                      objective=stamp["objective"], path=p, result=result, curves=curves,
                      problem=stamp.get("problem"), start_reward=stamp.get("start_reward"),
                      defaults=stamp.get("defaults", {}))


def load_study_pilot(study: StudyFile) -> StudyPilot:
    """The saved pilot of ``study`` (checked to belong to it)."""
    return load_pilot(study.pilot_path, study=study)

def _bandit_pilot(study: StudyFile) -> list[dict[str, Any]]:
    """Pilot on the bandit: relaxation curves at two small lrs (on-policy) and one lagged.

    The infinite-group expected update is simulated, so the curves are noise-free; the sliding
    lag-2 curve gives the split K = K_c + K_o.
    """
    from advisor.bandit import simulate

    problem = bandit_problem(study)
    n_steps, lrs, lag = 3000, (0.02, 0.05), 2
    on = simulate(problem, learning_rate=list(lrs), n_steps=n_steps)
    off = simulate(problem, learning_rate=lrs[1], refresh_interval=lag, refresh_scheme="sliding",
                   n_steps=n_steps)
    curves = [{"rewards": on.reward_used[i].tolist(), "learning_rate": lr}
              for i, lr in enumerate(lrs)]
    curves.append({"rewards": off.reward_used[0].tolist(), "learning_rate": lrs[1],
                   "refresh_interval": lag, "refresh_scheme": "sliding"})
    return curves

def run_study_pilot(study: StudyFile, *, force: bool = False, progress: bool = True
                    ) -> StudyPilot:
    """Run (or resume, or reuse) the pilot of ``study`` and save it to ``study.pilot_path``.

    Args:
        study: The study.
        force: Rerun even when a pilot for this study is saved.
        progress: Show progress bars.

    Returns:
        The saved :class:`StudyPilot`.

    Raises:
        StudyFileError: The saved pilot belongs to a different study (pass ``force``).
    """
    path = study.pilot_path
    if (path / _STAMP).is_file() and not force:
        return load_study_pilot(study)
    if force and path.is_dir():
        import shutil

        shutil.rmtree(path)  # a forced pilot must not resume from the old runs
    path.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(study)
    if study.objective == "builtin:bandit":
        curves = _bandit_pilot(study)
        start = float(bandit_problem(study).start_reward)
        (path / "curves.json").write_text(json.dumps(curves), encoding="utf-8")
    else:
        result, start, args = _trl_pilot(study, path, progress=progress)
        result.save(path / "result")
        stamp["defaults"] = _config_defaults(args)
    stamp["start_reward"] = start
    if study.objective == "builtin:bandit":
        import dataclasses

        stamp["problem"] = {k: list(v) if isinstance(v, tuple) else v
                            for k, v in dataclasses.asdict(bandit_problem(study)).items()}
    (path / _STAMP).write_text(json.dumps(stamp, indent=2), encoding="utf-8")
    return load_study_pilot(study)


def _config_defaults(args: Any) -> dict[str, Any]:
    """The model knobs of a ``GRPOConfig`` (batch, group size, optimizer), JSON-ready."""
    from advisor.knobs import MODEL_KNOB_NAMES

    skip = {"momentum", "learning_rate", "generation_batch_size", "steps_per_generation"}
    out: dict[str, Any] = {}
    for name in sorted(MODEL_KNOB_NAMES - skip):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value if isinstance(value, (bool, int, float)) else str(
                getattr(value, "value", value))
    return out


def _trl_pilot(study: StudyFile, path: Path, *, progress: bool
               ) -> tuple[Any, float | None, Any]:
    from advisor.pilot import run_pilot
    from advisor.tasks import default_config

    inputs = _trl_inputs(study)
    start = inputs.pop("start_reward", None)
    # the scan starts in the middle of the searched learning rates (geometric for log), not
    # at the task's AdamW default: an SGD edge lies two decades above that, and walking up
    # to it spent the whole budget (tiny-sgd.toml failed)
    spec = study.search_space.get("learning_rate")
    start_lr = {} if spec is None else {"learning_rate": study.value("learning_rate")}
    args = inputs.pop("args", None) or default_config(
        str(path / "runs"), **{"max_steps": study.planned_steps, **start_lr,
                               **_config_kwargs(study.fixed)})
    result = run_pilot(inputs["model"], inputs["reward_funcs"], inputs["train_dataset"], args,
                       processing_class=inputs.get("processing_class"),
                       planned_steps=study.planned_steps, budget_steps=study.pilot.budget_steps,
                       seeds=study.pilot.seeds, output_dir=str(path / "runs"),
                       progress=progress)
    return result, start if start is not None else getattr(result, "start_reward", None), args
