from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.cli import _COMMANDS
from advisor.cli import main


ROOT = Path(__file__).resolve().parents[1]
BANDIT = """name = "{name}"
[objective]
kind = "builtin:bandit"
[search_space.learning_rate]
low = 0.01
high = 10.0
log = true
[search_space.momentum]
low = 0.0
high = 0.4
[search_space.steps_per_generation]
type = "int"
low = 1
high = 8
[fixed]
optim = "sgd"
[budget]
n_trials = 4
steps = 120
"""


@pytest.fixture
def bandit_study(tmp_path: Path) -> Path:
    path = tmp_path / "b.toml"
    path.write_text(BANDIT.format(name="b"))
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str], match: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert match in err, err
    return err


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_every_command_has_help_with_an_example(command: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example:" in out and f"grpo-advisor {command}" in out
    assert "Exit codes" in out


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in _COMMANDS)


@pytest.mark.parametrize("argv", [[], ["nope"], ["report"], ["sweep", "x.toml", "--n-workers",
                                                             "two"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_pilot_report_recommend_and_sweep_on_the_bandit(
        bandit_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(bandit_study), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "stiffness K = 0.5" in out and "b.pilot" in out
    assert main(["report", str(bandit_study), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stiffness"]["stiffness"] == pytest.approx(0.5, rel=1e-3)
    assert 0.0 < data["feasible_fraction"] < 1.0
    report_dir = bandit_study.parent / "b-report"
    assert {p.name for p in report_dir.iterdir()} >= {"report.md", "report.html", "report.json",
                                                      "stability_map.png", "trajectories.png"}
    assert main(["recommend-refresh", str(bandit_study), "--learning-rate", "0.2",
                 "--seconds-per-step", "0.2", "--seconds-per-generation", "0.15",
                 "--generation-overhead", "0.12"]) == 0
    out = capsys.readouterr().out
    assert "Recommended: steps_per_generation=" in out and "GRPOConfig(" in out
    assert main(["sweep", str(bandit_study), "--n-trials", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 finished trials" in out and "collapse rate" in out and "report updated" in out
    data = json.loads((report_dir / "report.json").read_text())
    assert data["trials"]["finished"] == 3


def test_demo_on_the_bandit_prints_where_the_report_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "demo"
    assert main(["demo", "--objective", "bandit", "--output", str(out_dir), "--n-trials", "3",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    html = out_dir / "demo-bandit-report" / "report.html"
    assert f"open the report: {html}" in out
    assert html.stat().st_size > 10_000  # two figures embedded as base64


def test_malformed_study_file_exits_1_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    assert main(["report", str(path)]) == 1
    _one_error_line(capsys, "is not valid TOML")


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    assert main(["report", str(path), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize(("edit", "match"), [
    (lambda t: t.replace("momentum]", "momentun]"), "`search_space.momentun` must be a "
     "GRPOConfig field name or `momentum`, got 'momentun'. Did you mean 'momentum'?"),
    (lambda t: t.split("[search_space")[0] + t[t.index("[fixed]"):],
     "`search_space` must be a non-empty table"),
    (lambda t: t + '[storage]\nurl = "sqlite:///no/such/dir/b.db"\n',
     "/no/such/dir"),
])
def test_bad_study_files_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: object,
                                match: str) -> None:
    path = tmp_path / "b.toml"
    path.write_text(edit(BANDIT.format(name="b")))  # type: ignore[operator]
    assert main(["pilot", str(path)]) == 1
    _one_error_line(capsys, match)


def test_pilot_of_a_different_study_exits_1(bandit_study: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(bandit_study), "--quiet"]) == 0
    bandit_study.write_text(bandit_study.read_text().replace('optim = "sgd"',
                                                             'optim = "sgd"\nbeta = 3.0'))
    capsys.readouterr()
    assert main(["report", str(bandit_study)]) == 1
    _one_error_line(capsys, "was run for study 'b'")


def test_unreachable_database_exits_1(bandit_study: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(bandit_study), "--quiet"]) == 0
    capsys.readouterr()
    url = "postgresql+psycopg2://u:pw@127.0.0.1:1/optuna"
    assert main(["sweep", str(bandit_study), "--storage", url, "--quiet"]) == 1
    err = _one_error_line(capsys, "cannot open the Optuna storage")
    assert "pw" not in err  # the password is redacted


def test_recommend_refresh_without_a_pilot_exits_1(bandit_study: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend-refresh", str(bandit_study), "--learning-rate", "0.1"]) == 1
    _one_error_line(capsys, "no saved pilot")


def test_console_script_entry_point_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "advisor", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("grpo-advisor ")


def _collapse_log(path: Path) -> Path:
    """A logged run that rises, then collapses after a grad-norm spike and an entropy jump."""
    rows = []
    for step in range(1, 101):
        reward = 0.3 + 0.6 * (1 - 0.95**step) if step < 70 else 0.03
        rows.append({"step": step, "reward": reward, "loss": 0.01,
                     "entropy": 0.4 if step < 70 else 1.3,
                     "grad_norm": 30.0 if step == 69 else 0.4,
                     "frac_reward_zero_std": 0.2, "kl": 0.05})
    path.write_text(json.dumps({"log_history": rows}))
    return path


def test_diagnose_prints_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _collapse_log(tmp_path / "trainer_state.json")
    assert main(["diagnose", str(log), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["findings"], data
    assert main(["diagnose", str(log), "--strict"]) == 1  # a failure mode was found
    assert "recommendation" in capsys.readouterr().out


def test_diagnose_unreadable_file_exits_1(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", str(tmp_path / "missing.json")]) == 1
    _one_error_line(capsys, "must be an existing log file")


def test_sweep_with_two_workers_shares_one_storage(
        bandit_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(bandit_study), "--quiet"]) == 0
    assert main(["sweep", str(bandit_study), "--n-workers", "2", "--n-trials", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 finished trials" in out
    import optuna

    trials = optuna.load_study(study_name="b", storage=f"sqlite:///{bandit_study.parent}/b.db"
                               ).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # none lost or duplicated


def test_report_from_a_given_stiffness_is_theory_only(
        bandit_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.warns(UserWarning, match="no current/sampler split"):
        assert main(["report", str(bandit_study), "--stiffness", "0.5", "--format",
                     "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["edge"] is None and data["stiffness"]["stiffness"] == 0.5
    assert data["warnings"][0]["basis"] == "theory"


def test_advisor_caveats_print_as_one_plain_line() -> None:
    from advisor.cli import _plain_warnings
    from advisor.exceptions import AdvisorWarning

    fmt = _plain_warnings(lambda message, *rest: f"python: {message}")
    assert fmt(AdvisorWarning("K varies\n   by 140%"), AdvisorWarning, "x.py", 1) == (
        "grpo-advisor: note: K varies by 140%\n")
    assert fmt(UserWarning("not ours"), UserWarning, "x.py", 1) == "python: not ours"
    # the same caveat again (another call site): printed once
    assert fmt(AdvisorWarning("K varies by 140%"), AdvisorWarning, "y.py", 2) == ""


# ------------------------------------------------------------------------------------------
# found by acceptance testing (each failed before its fix)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "match"), [
    (["report", "x.toml", "--stiffness", "-1"], "argument --stiffness: must be a number > 0, "
     "got '-1'"),
    (["report", "x.toml", "--stiffness", "nan"], "argument --stiffness: must be a number > 0"),
    (["report", "x.toml", "--stiffness-error", "-1"], "argument --stiffness-error: must be a "
     "number >= 0, got '-1'"),
    (["recommend-refresh", "p", "--learning-rate", "-1"], "argument --learning-rate: must be a "
     "number > 0, got '-1'"),
    (["recommend-refresh", "p", "--learning-rate", "0.1", "--momentum", "1"],
     "argument --momentum: must be a number >= 0 and < 1, got '1'"),
    (["recommend-refresh", "p", "--learning-rate", "0.1", "--max-refresh", "0"],
     "argument --max-refresh: must be an integer >= 1, got '0'"),
    (["recommend-refresh", "p", "--learning-rate", "0.1", "--min-damping-ratio", "-3"],
     "argument --min-damping-ratio: must be a number >= 0, got '-3'"),
    (["recommend-refresh", "p", "--learning-rate", "0.1", "--min-probability", "2"],
     "argument --min-probability: must be a number >= 0 and <= 1, got '2'"),
    (["recommend-refresh", "p", "--learning-rate", "0.1", "--seconds-per-step", "0"],
     "argument --seconds-per-step: must be a number > 0, got '0'"),
    (["sweep", "x.toml", "--n-trials", "0"], "argument --n-trials: must be an integer >= 1, "
     "got '0'"),
    (["sweep", "x.toml", "--n-trials", "-5"], "argument --n-trials: must be an integer >= 1"),
    (["sweep", "x.toml", "--n-workers", "0"], "argument --n-workers: must be an integer >= 1"),
    (["diagnose", "log.json", "--total-steps", "-1"], "argument --total-steps: must be an "
     "integer >= 1"),
    (["demo", "--n-trials", "0"], "argument --n-trials: must be an integer >= 1"),
])
def test_bad_numbers_are_usage_errors_naming_the_option(
        argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--n-trials 0` used to run the whole budget, `-5` nothing; negative floors and
    stiffnesses were accepted or failed deep inside with a library name."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_report_into_a_file_fails_before_the_build(
        bandit_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It printed "[Errno 17] File exists" after building the whole report."""
    assert main(["report", str(bandit_study), "--output", str(bandit_study)]) == 1
    _one_error_line(capsys, "b.toml' is a file. Pass --output with a folder")


def test_report_with_a_mistyped_storage_is_an_error_not_an_empty_study(
        bandit_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --storage SQLite file that does not exist used to give a report without trials."""
    assert main(["pilot", str(bandit_study), "--quiet"]) == 0
    capsys.readouterr()
    url = f"sqlite:///{bandit_study.parent}/typo.db"
    assert main(["report", str(bandit_study), "--storage", url]) == 1
    _one_error_line(capsys, "no Optuna storage at")
    assert not (bandit_study.parent / "typo.db").exists()  # and no empty file left behind
    assert main(["report", str(bandit_study), "--storage", "notaurl"]) == 1
    _one_error_line(capsys, "`--storage` must be a database URL")


def test_recommend_refresh_from_a_bandit_pilot_asks_for_timing(
        bandit_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It printed the library's "`timing` must be given ... RefreshTiming(...)"."""
    assert main(["pilot", str(bandit_study), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["recommend-refresh", str(bandit_study), "--learning-rate", "0.2"]) == 1
    _one_error_line(capsys, "has no wall-clock timing (a builtin:bandit pilot simulates, it "
                    "does not time generation). Pass --seconds-per-step and "
                    "--seconds-per-generation")
    assert main(["recommend-refresh", str(bandit_study), "--learning-rate", "0.2",
                 "--generation-overhead", "0.1"]) == 1  # was ignored silently
    _one_error_line(capsys, "`--generation-overhead` must come with `--seconds-per-step`")


def test_recommend_refresh_json_is_strict_json(
        lr_only_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The damping ratio inf went out as `Infinity`, which jq and JSON.parse reject."""
    assert main(["pilot", str(lr_only_study), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["recommend-refresh", str(lr_only_study), "--learning-rate", "0.2",
                 "--seconds-per-step", "0.2", "--seconds-per-generation", "0.1",
                 "--format", "json"]) == 0

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    data = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert data["candidates"][0]["damping_ratio"] is None


def test_a_folder_given_as_study_file_is_named_a_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(tmp_path)]) == 1
    _one_error_line(capsys, "is a folder, not a file")


def test_demo_into_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["demo", "--objective", "bandit", "--output", str(target)]) == 1
    _one_error_line(capsys, "is a file. Pass --output with a folder")


@pytest.fixture
def lr_only_study(tmp_path: Path) -> Path:
    """A bandit study searching the learning rate only: its report and trials take ~1 s."""
    path = tmp_path / "b.toml"
    path.write_text('name = "b"\n[objective]\nkind = "builtin:bandit"\n'
                    '[search_space.learning_rate]\nlow = 0.01\nhigh = 1.0\nlog = true\n'
                    '[fixed]\noptim = "sgd"\n[budget]\nn_trials = 3\nsteps = 60\n')
    return path


def _finished(study_path: Path, name: str = "b") -> dict[str, int]:
    import collections

    import optuna

    trials = optuna.load_study(study_name=name,
                               storage=f"sqlite:///{study_path.parent}/{name}.db").trials
    return dict(collections.Counter(t.state.name for t in trials))


def test_sweep_resumes_after_an_interrupt_without_losing_or_adding_trials(
        lr_only_study: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun used to run n_trials more (duplicating the budget) and the interrupted trial
    counted as a collapse."""
    import advisor.workflow._sweep as sweep

    assert main(["pilot", str(lr_only_study), "--quiet"]) == 0
    real = sweep.make_study_objective

    def interrupt_second(study: object) -> object:
        inner = real(study)  # type: ignore[arg-type]

        def objective(trial: object) -> float:
            if trial.number == 1:  # type: ignore[attr-defined]
                raise KeyboardInterrupt
            return inner(trial)

        return objective

    monkeypatch.setattr(sweep, "make_study_objective", interrupt_second)
    capsys.readouterr()
    assert main(["sweep", str(lr_only_study), "--n-trials", "3", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted. Rerun the same command to resume" in err and "Traceback" not in err
    assert _finished(lr_only_study) == {"COMPLETE": 1, "FAIL": 1}
    monkeypatch.setattr(sweep, "make_study_objective", real)
    assert main(["sweep", str(lr_only_study), "--n-trials", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    import optuna

    from advisor.instability import trial_collapsed

    trials = optuna.load_study(study_name="b",
                               storage=f"sqlite:///{lr_only_study.parent}/b.db").trials
    collapsed = sum(trial_collapsed(t.user_attrs) for t in trials)  # the FAIL is not one
    assert [t.user_attrs.get("advisor:interrupted") for t in trials if t.state.name == "FAIL"
            ] == [True]
    assert "; 2 run now" in out and f"1 failed or interrupted; {collapsed} collapsed" in out
    assert sum(v for k, v in _finished(lr_only_study).items() if k != "FAIL") == 3
    assert main(["sweep", str(lr_only_study), "--n-trials", "3", "--quiet"]) == 0  # done
    assert "; 0 run now" in capsys.readouterr().out
    assert main(["sweep", str(lr_only_study), "--n-trials", "4", "--quiet"]) == 0  # one more
    assert _finished(lr_only_study)["FAIL"] == 1
    assert sum(v for k, v in _finished(lr_only_study).items() if k != "FAIL") == 4


def test_sigint_mid_sweep_then_rerun_completes_the_budget(lr_only_study: Path,
                                                          tmp_path: Path) -> None:
    """The real thing: Ctrl-C (SIGINT) a sweep process mid-way, then rerun the same command."""
    import contextlib
    import os
    import signal
    import sqlite3
    import time

    db = lr_only_study.parent / "b.db"
    cmd = [sys.executable, "-m", "advisor", "sweep", str(lr_only_study), "--n-trials", "30",
           "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert main(["pilot", str(lr_only_study), "--quiet"]) == 0
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:  # read-only: opening it with Optuna would race the worker's schema set-up
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                done = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
                                   ).fetchone()[0]
            if done >= 2:
                break
        except sqlite3.Error:  # no file or no table yet
            continue
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # finished before the signal landed: nothing to resume
        pytest.skip("the sweep finished before SIGINT arrived")
    assert proc.returncode == 130, err
    assert "interrupted. Rerun the same command" in err and "Traceback" not in err
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    counts = _finished(lr_only_study)
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 30, counts
    assert counts.get("RUNNING", 0) == 0


def test_closed_stdout_is_quiet(lr_only_study: Path) -> None:
    """`... --format json | head` printed "error: [Errno 32] Broken pipe" when the reader had
    gone; `| true` makes the reader go before the first write."""
    assert main(["pilot", str(lr_only_study), "--quiet"]) == 0
    proc = subprocess.run(
        f"{sys.executable} -m advisor recommend-refresh {lr_only_study} --learning-rate 0.2 "
        "--seconds-per-step 0.2 --seconds-per-generation 0.1 --format json | true",
        shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stderr == "", proc.stderr


def test_diagnose_errors_name_the_options_not_the_library_arguments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A NaN reward said "pass nan_policy='omit'", which is no option of the command."""
    log = tmp_path / "log.csv"
    log.write_text("step,reward\n1,0.3\n2,nan\n3,0.5\n")
    assert main(["diagnose", str(log)]) == 1
    _one_error_line(capsys, "pass --omit-nan to diagnose the finite part")
    assert main(["diagnose", str(log), "--omit-nan"]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(_collapse_log(tmp_path / "s.json")), "--eval-metric",
                 "nope"]) == 1
    _one_error_line(capsys, "`--eval-metric` must be a logged key, got 'nope'")


def test_sweep_refuses_a_study_that_minimizes(
        lr_only_study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Optuna loads an existing study whatever its direction: a study made by hand with the
    default (minimize) was swept towards the lowest reward, and its "best" was the highest."""
    import optuna

    assert main(["pilot", str(lr_only_study), "--quiet"]) == 0
    optuna.create_study(study_name="b", storage=f"sqlite:///{lr_only_study.parent}/b.db")
    capsys.readouterr()
    assert main(["sweep", str(lr_only_study), "--quiet"]) == 1
    err = _one_error_line(capsys, "was created to minimize, but the sweep maximizes the reward")
    assert "Use another study name" in err


def test_sigint_to_a_two_worker_sweep_stops_the_workers(lr_only_study: Path,
                                                        tmp_path: Path) -> None:
    """SIGINT to the parent only (as `timeout -s INT` sends it) used to leave both workers
    running their whole share; a terminal Ctrl-C killed them mid-bookkeeping with tracebacks."""
    import contextlib
    import os
    import signal
    import sqlite3
    import time

    assert main(["pilot", str(lr_only_study), "--quiet"]) == 0
    db = lr_only_study.parent / "b.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "advisor", "sweep", str(lr_only_study), "--n-workers", "2",
         "--n-trials", "400", "--quiet"], cwd=tmp_path, env={**os.environ,
                                                             "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                if con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'"
                               ).fetchone()[0] >= 2:
                    break
        except sqlite3.Error:
            continue
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 60  # 400 trials would take minutes
    assert "Traceback" not in err and "interrupted. Rerun the same command" in err
    counts = _finished(lr_only_study)
    assert counts.get("RUNNING", 0) == 0 and sum(counts.values()) < 400, counts


def test_first_ctrl_c_stops_the_trial_at_its_next_safe_point(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A KeyboardInterrupt raised inside a storage write left SQLite's write lock held by one
    connection while the next write waited for it: the worker hung with its trial RUNNING.
    Now the first signal only asks, and the trial stops before its next storage call."""
    import signal

    import optuna

    from advisor.workflow._interrupt import _Interrupt

    study = optuna.create_study()
    trial = study.ask()
    stop = _Interrupt()
    calls: list[str] = []

    def objective(t: object) -> float:
        t.report(0.1, 0)  # type: ignore[attr-defined]
        calls.append("first report")
        stop._handle(signal.SIGINT, None)  # Ctrl-C while training: only noted
        calls.append("training went on")
        t.report(0.2, 1)  # type: ignore[attr-defined]  # the safe point: stops here
        calls.append("never")
        return 0.0

    stop.in_loop = True
    with pytest.raises(KeyboardInterrupt):
        stop.objective(objective)(trial)
    assert calls == ["first report", "training went on"]
    frozen = study._storage.get_trial(trial._trial_id)
    assert frozen.intermediate_values == {0: 0.1}  # the second report never reached storage
    assert frozen.user_attrs["advisor:interrupted"] is True
    assert "stopping at the trial's next safe point" in capsys.readouterr().err
