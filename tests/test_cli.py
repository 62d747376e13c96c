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
     "mkdir -p no/such/dir"),
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
