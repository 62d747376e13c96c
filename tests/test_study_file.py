from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from advisor.exceptions import AdvisorError
from advisor.study_file import DEMO_STUDIES
from advisor.study_file import ParamSpec
from advisor.study_file import StudyFileError
from advisor.study_file import check_storage_url
from advisor.study_file import load_optuna_study
from advisor.study_file import load_pilot
from advisor.study_file import load_study_file
from advisor.study_file import load_study_pilot
from advisor.study_file import parse_study
from advisor.study_file import run_study_pilot
from advisor.study_file import suggest_params


STUDIES = Path(__file__).resolve().parents[1] / "studies"
BASE = {"name": "t", "objective": {"kind": "builtin:bandit"},
        "search_space": {"learning_rate": {"type": "float", "low": 0.01, "high": 10.0,
                                           "log": True}}}


def _with(**changes: object) -> dict:
    raw = json.loads(json.dumps(BASE))
    raw.update(changes)
    return raw


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_study_files_are_valid(path: Path) -> None:
    study = load_study_file(path)
    assert study.name == path.stem
    assert study.storage == f"sqlite:///{(STUDIES / (path.stem + '.db')).resolve()}"
    assert "learning_rate" in study.distributions()


def test_at_least_three_example_studies_cover_all_builtin_objectives() -> None:
    studies = [load_study_file(p) for p in STUDIES.glob("*.toml")]
    assert len(studies) >= 3
    assert {s.objective for s in studies} >= {"builtin:bandit", "builtin:tiny"}


@pytest.mark.parametrize("text", DEMO_STUDIES.values(), ids=list(DEMO_STUDIES))
def test_demo_studies_parse(tmp_path: Path, text: str) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(text)
    assert load_study_file(path).budget.n_trials >= 1


def test_parse_reads_every_section(tmp_path: Path) -> None:
    raw = _with(fixed={"optim": "sgd", "beta": 0.5},
                pilot={"seeds": [3, 4, 5], "planned_steps": 80, "budget_steps": 300},
                budget={"n_trials": 7, "steps": 90, "timeout": 60},
                storage={"url": f"sqlite:///{tmp_path}/x.db"}, report={"momenta": [0, 0.9]})
    raw["search_space"]["num_generations"] = {"type": "categorical", "choices": [4, 8]}
    raw["search_space"]["steps_per_generation"] = {"type": "int", "low": 1, "high": 8}
    s = parse_study(raw, path=tmp_path / "t.toml")
    assert (s.pilot.seeds, s.pilot.planned_steps, s.pilot.budget_steps) == ((3, 4, 5), 80, 300)
    assert (s.budget.n_trials, s.budget.steps, s.budget.timeout) == (7, 90, 60.0)
    assert s.report_momenta == (0.0, 0.9)
    assert s.pilot_path == tmp_path / "t.pilot"
    assert s.distributions()["num_generations"] == optuna.distributions.CategoricalDistribution(
        (4, 8))
    assert s.value("beta") == 0.5 and s.value("steps_per_generation") == 4


def test_fingerprint_changes_with_what_the_pilot_depends_on() -> None:
    a = parse_study(_with(storage={"url": "sqlite:///:memory:"}))
    b = parse_study(_with(storage={"url": "sqlite:///:memory:"}, fixed={"beta": 0.1}))
    c = parse_study(_with(storage={"url": "sqlite:///:memory:"}, budget={"n_trials": 99}))
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == c.fingerprint  # the trial count does not change the pilot


@pytest.mark.parametrize(("changes", "match"), [
    ({"search_space": {}}, r"`search_space` must be a non-empty table"),
    ({"search_space": {"learning_rat": {"low": 1e-3, "high": 1.0}}},
     r"`search_space.learning_rat` must be a GRPOConfig field name.*Did you mean "
     r"'learning_rate'\?"),
    ({"fixed": {"bogus_knob": 1}}, r"`fixed.bogus_knob` must be a GRPOConfig field name"),
    ({"search_space": {"learning_rate": {"type": "float", "low": 1.0, "high": 0.1}}},
     r"`search_space.learning_rate.low` must be smaller than high"),
    ({"search_space": {"learning_rate": {"type": "float", "low": 0.0, "high": 1.0,
                                         "log": True}}},
     r"`search_space.learning_rate.low` must be > 0 when log = true"),
    ({"search_space": {"learning_rate": {"type": "float", "low": "a", "high": 1.0}}},
     r"`search_space.learning_rate.low` must be a number"),
    ({"search_space": {"num_generations": {"type": "categorical", "choices": []}}},
     r"`search_space.num_generations.choices` must be a non-empty list"),
    ({"search_space": {"learning_rate": {"type": "gauss", "low": 1, "high": 2}}},
     r"`search_space.learning_rate.type` must be one of"),
    ({"objective": {"kind": "tiny"}}, r"`objective.kind` must be 'builtin:bandit'"),
    ({"objective": {}}, r"`objective.kind` must be set.*builtin:tiny"),
    ({"objective": {"kind": "builtin:tiny", "problem": "reference"}},
     r"`objective.problem` must be one of"),
    ({"name": "a b"}, r"`name` must be a name of letters"),
    ({"budget": {"n_trials": 0}}, r"`budget.n_trials` must be an integer >= 1"),
    ({"pilot": {"seeds": []}}, r"`pilot.seeds` must be a non-empty list of integers"),
    ({"storage": {"url": "studies/x.db"}}, r"`storage.url` must be a database URL"),
    ({"storage": {"url": "sqlite:///no/such/folder/x.db"}},
     r"`storage.url` must be a SQLite file in an existing folder.*mkdir -p \S*studies/no/such/"
     r"folder"),  # relative to the study's folder (studies/ for a study without a file)
    ({"sampler": {}}, r"`sampler` must be a known top-level key"),
    ({"fixed": {"learning_rate": 0.1}}, r"`fixed.learning_rate` must be absent when the knob is "
     r"searched"),
    # found by acceptance testing: each of these was accepted silently before
    ({"budget": {"ntrials": 5}},
     r"`budget.ntrials` must be a known key of \[budget\] \(n_trials, steps, timeout\), got "
     r"'ntrials'. Did you mean 'n_trials'\?"),
    ({"pilot": {"seed": [0, 1]}}, r"`pilot.seed` must be a known key of \[pilot\].*'seeds'"),
    ({"report": {"momentum": [0.5]}}, r"`report.momentum` must be a known key.*'momenta'"),
    ({"storage": {"uri": "sqlite:///x.db"}}, r"`storage.uri` must be a known key.*'url'"),
    ({"pilot": {"seeds": [0]}}, r"`pilot.seeds` must be at least two different seeds, got \[0\]"),
    ({"pilot": {"seeds": [3, 3]}}, r"`pilot.seeds` must be at least two different seeds"),
    ({"report": {"momenta": "a"}}, r"`report.momenta` must be a list of momenta in \[0, 1\)"),
    ({"report": {"momenta": [1.5]}}, r"`report.momenta` must be a list of momenta in \[0, 1\)"),
    ({"fixed": {"optim": "sgd", "momentum": 1.5}},
     r"`fixed.momentum` must be a number in \[0, 1\), got 1.5\."),
    ({"fixed": {"num_generations": -4}}, r"`fixed.num_generations` must be an integer >= 2"),
    ({"fixed": {"num_generations": 8.0}}, r"`fixed.num_generations` must be an integer >= 2"),
    ({"fixed": {"steps_per_generation": "four"}},
     r"`fixed.steps_per_generation` must be an integer >= 1, got 'four'"),
    ({"fixed": {"max_steps": 500}}, r"`fixed.max_steps` must be absent \(the run length is the "
     r"study's \[budget\] steps\).*\[budget\] steps"),
    ({"search_space": {"learning_rate": {"low": 0.01, "high": 1.0},
                       "momentum": {"low": 0.0, "high": 1.5}}},
     r"`search_space.momentum.high` must be a number in \[0, 1\), got 1.5"),
    ({"search_space": {"learning_rate": {"low": -1.0, "high": 1.0}}},
     r"`search_space.learning_rate.low` must be a number > 0, got -1.0"),
    ({"search_space": {"steps_per_generation": {"type": "int", "low": 0, "high": 4}}},
     r"`search_space.steps_per_generation.low` must be an integer >= 1, got 0"),
    ({"search_space": {"steps_per_generation": {"low": 1.0, "high": 4.0}}},
     r"`search_space.steps_per_generation.type` must be 'int' \(or 'categorical'\) for an "
     r"integer knob, got 'float'"),
    ({"search_space": {"num_generations": {"choices": [1, 4]}}},
     r"`search_space.num_generations.choices` must be an integer >= 2, got 1"),
    ({"search_space": {"num_generations": {"choices": [4, 4]}}},
     r"`search_space.num_generations.choices` must be a list without repeats"),
    ({"fixed": {"optim": "adamw_torch"},
      "search_space": {"momentum": {"low": 0.0, "high": 0.9}}},
     r"the knobs in \[fixed\] and \[search_space\] do not make a valid GRPOConfig: `momentum` "
     r"must be .*with an AdamW optimizer"),
    ({"fixed": {"per_device_train_batch_size": 6, "num_generations": 4}},
     r"the knobs in \[fixed\] do not make a valid GRPOConfig: `generation_batch_size` must be "
     r"divisible by num_generations"),
    ({"storage": {"url": "notaurl"}}, r"`storage.url` must be a database URL"),
])
def test_bad_study_files_name_the_key_and_the_fix(changes: dict, match: str) -> None:
    with pytest.raises(StudyFileError, match=match):
        parse_study(_with(**changes))


def test_malformed_toml_is_a_study_file_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[search_space.learning_rate\nlow = 1\n')
    with pytest.raises(StudyFileError, match=r"is not valid TOML: .*Fix the syntax"):
        load_study_file(path)


def test_missing_file_is_a_study_file_error(tmp_path: Path) -> None:
    with pytest.raises(StudyFileError, match=r"does not exist"):
        load_study_file(tmp_path / "nope.toml")


def test_study_file_error_is_an_advisor_error_and_a_value_error() -> None:
    assert issubclass(StudyFileError, AdvisorError) and issubclass(StudyFileError, ValueError)


def test_suggest_params_respects_every_distribution() -> None:
    space = {"learning_rate": ParamSpec(name="learning_rate", type="float", low=1e-3, high=1.0,
                                        log=True),
             "steps_per_generation": ParamSpec(name="steps_per_generation", type="int", low=1,
                                               high=4),
             "num_generations": ParamSpec(name="num_generations", type="categorical",
                                          choices=(4, 8))}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        p = suggest_params(study.ask(), space)
        assert 1e-3 <= p["learning_rate"] <= 1.0
        assert p["steps_per_generation"] in (1, 2, 3, 4)
        assert p["num_generations"] in (4, 8)
        assert list(p)[-1] == "learning_rate"  # suggested last, as the sampler recommends


def _bandit_study(tmp_path: Path, name: str = "b", beta: float = 1.0) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[objective]\nkind = "builtin:bandit"\n'
                    '[search_space.learning_rate]\nlow = 0.01\nhigh = 10.0\nlog = true\n'
                    f'[fixed]\nbeta = {beta}\n[budget]\nn_trials = 3\nsteps = 100\n')
    return path


def test_bandit_pilot_recovers_the_known_stiffness(tmp_path: Path) -> None:
    study = load_study_file(_bandit_study(tmp_path))
    pilot = run_study_pilot(study)
    est = pilot.model().estimate
    # 2 arms, r = (0, 1), uniform reference, beta = 1: K = 0.5, K_c = 1.25, K_o = -0.75
    # (bandit-findings.md section 3); noise-free curves, the tail fit is within 0.1%.
    assert est.stiffness == pytest.approx(0.5, rel=1e-3)
    assert est.stiffness_current == pytest.approx(1.25, rel=5e-3)
    assert est.stiffness_sampler == pytest.approx(-0.75, rel=5e-3)
    assert pilot.start_reward == pytest.approx(0.5)
    again = load_pilot(study.path)  # by study file, and the saved copy is reused
    assert again.fingerprint == study.fingerprint


def test_pilot_from_a_different_study_is_refused(tmp_path: Path) -> None:
    study = load_study_file(_bandit_study(tmp_path, beta=1.0))
    run_study_pilot(study)
    changed = load_study_file(_bandit_study(tmp_path, beta=2.0))  # same name, new objective
    with pytest.raises(StudyFileError, match=r"was run for study 'b' \(fingerprint .*\), not "
                       r"for 'b'.*--force"):
        load_study_pilot(changed)
    with pytest.raises(StudyFileError, match=r"was run for study"):
        run_study_pilot(changed)
    assert run_study_pilot(changed, force=True).fingerprint == changed.fingerprint


def test_missing_pilot_says_how_to_run_it(tmp_path: Path) -> None:
    study = load_study_file(_bandit_study(tmp_path))
    with pytest.raises(StudyFileError, match=r"no saved pilot .*grpo-advisor pilot"):
        load_study_pilot(study)


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    study = load_study_file(_bandit_study(tmp_path))
    # port 1 on localhost: nothing listens there, the connection is refused at once
    url = "postgresql+psycopg2://user:secret@127.0.0.1:1/optuna"
    with pytest.raises(StudyFileError, match=r"cannot open the Optuna storage "
                       r"'postgresql\+psycopg2://user:\*\*\*@127.0.0.1:1/optuna'.*reachable"):
        load_optuna_study(study, storage=url)


def test_missing_optuna_study_is_none_unless_required(tmp_path: Path) -> None:
    study = load_study_file(_bandit_study(tmp_path))
    assert load_optuna_study(study, must_exist=False) is None
    optuna.create_study(study_name="other", storage=study.storage)
    with pytest.raises(StudyFileError, match=r"no Optuna study 'b'.*grpo-advisor sweep"):
        load_optuna_study(study)


def test_a_batch_that_fits_only_some_searched_group_sizes_is_accepted() -> None:
    # 48 completions hold whole groups of 4 and 8 but not 32: the sampler avoids the bad
    # points, so the file is valid (only a fully fixed batch can be judged up front)
    raw = _with(fixed={"per_device_train_batch_size": 48})
    raw["search_space"]["num_generations"] = {"type": "categorical", "choices": [32, 4, 8]}
    assert parse_study(raw).search_space["num_generations"].choices == (32, 4, 8)


def test_a_folder_is_not_a_study_file(tmp_path: Path) -> None:
    """It said "does not exist" for a folder that exists."""
    with pytest.raises(StudyFileError, match=r"is a folder, not a file\. Pass the path of a "
                       r"\.toml study file"):
        load_study_file(tmp_path)


def test_binary_file_is_a_study_file_error(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(StudyFileError, match=r"is not UTF-8 text"):
        load_study_file(path)


def test_relative_sqlite_url_is_beside_the_study_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative SQLite path used to follow the working directory, so `sweep` run from
    elsewhere started a new empty study (and `report` found no trials)."""
    (tmp_path / "dbs").mkdir()
    path = tmp_path / "s.toml"
    path.write_text(_bandit_study(tmp_path).read_text().replace(
        'name = "b"', 'name = "s"') + '[storage]\nurl = "sqlite:///dbs/s.db"\n')
    monkeypatch.chdir(tmp_path / "dbs")  # anywhere but the study's folder
    assert load_study_file(path).storage == f"sqlite:///{tmp_path.resolve()}/dbs/s.db"


def test_sqlite_url_naming_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StudyFileError, match=r"`--storage` must be a SQLite file, not a folder"):
        check_storage_url(f"sqlite:///{tmp_path}", key="--storage")


def test_missing_database_driver_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLAlchemy 2.1 loads psycopg (3) for a bare postgresql:// URL; with only the project's
    psycopg2 installed the error said "check that the server is running"."""
    import importlib.util

    from advisor.workflow._storage import _driver_fix

    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: object() if name == "psycopg2" else None)
    assert "write postgresql+psycopg2://u:***@h/db" in _driver_fix("postgresql://u:pw@h/db")
    assert "pip install mysqlclient" in _driver_fix("mysql://u@h/db")


@pytest.mark.parametrize(("func", "match"), [
    ("none", r"mytask_uat:none must return a mapping with model, reward_funcs and "
     r"train_dataset, got NoneType"),  # was "argument of type 'NoneType' is not iterable"
    ("boom", r"the objective mytask_uat:boom raised RuntimeError: dataset server down\. Fix it "
     r"there"),  # was an uncaught traceback from the user's module
])
def test_user_objective_errors_are_study_file_errors(tmp_path: Path, func: str, match: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mytask_uat.py").write_text(
        "def none():\n    return None\n\n"
        "def boom():\n    raise RuntimeError('dataset server down')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = _with(objective={"kind": f"mytask_uat:{func}"})
    study = parse_study(raw, path=tmp_path / "t.toml")
    with pytest.raises(StudyFileError, match=match):
        run_study_pilot(study, progress=False)


@pytest.mark.parametrize(("fixed", "lr", "collapsed"), [
    # 60 steps at lr 0.01 reach 0.63 of the way to p* = 0.854 (tau = 1 / (0.5 * 0.01) = 200
    # steps): not settled, but rising, so no collapse (it used to count as one)
    ({}, 0.01, False),
    ({}, 1.0, False),
    # the exact on-policy edge of the reference bandit is eta K < 2, lr < 4 (theory.md s. 2)
    ({}, 4.5, True),
    ({}, 10.0, True),
    # finite groups: sampling noise never settles; judged on the noise-free dynamics
    ({"num_generations": 8}, 0.05, False),
    ({"num_generations": 8}, 10.0, True),
])
def test_bandit_objective_marks_collapses_not_slow_runs(fixed: dict, lr: float,
                                                        collapsed: bool) -> None:
    """Every slow-but-healthy trial used to be marked collapsed, so the sampler's online update
    pulled the edge below the search range ("no stable knob combination found") and a 40-trial
    learning-rate sweep reported 39 collapses."""
    from advisor.workflow import make_bandit_objective

    raw = _with(fixed={"optim": "sgd", **fixed}, budget={"steps": 60},
                storage={"url": "sqlite:///:memory:"})
    raw["search_space"]["learning_rate"]["high"] = 100.0
    trial = optuna.trial.FixedTrial({"learning_rate": lr})
    make_bandit_objective(parse_study(raw))(trial)
    assert trial.user_attrs["advisor:collapsed"] is collapsed
