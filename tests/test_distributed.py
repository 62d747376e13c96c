"""Distributed study on a real PostgreSQL server: 4 workers, one killed mid-trial.

The test starts its own server (initdb + pg_ctl, as the ``postgres`` user when run as root) on
127.0.0.1 at a free port with its socket in a temp dir, and runs this file as the worker script
(``python tests/test_distributed.py --worker ...``). It skips when the PostgreSQL binaries are
absent, except with ADVISOR_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
N_WORKERS, N_TRIALS, N_STEPS, REPORT_EVERY = 4, 5, 200, 20
HEARTBEAT, GRACE = 1, 3  # seconds
SPACE_ARGS = {"momentum": (0.0, 0.9), "steps_per_generation": (1, 8),
              "learning_rate": (1e-3, 1e2)}


# ---------------------------------------------------------------------------------- worker side
def make_model() -> object:
    """StabilityModel of the reference bandit (K, K_c, K_o from its Jacobian)."""
    from types import SimpleNamespace

    from advisor import bandit
    from advisor.stability import StabilityModel

    k, kc, ko = bandit.jacobian_stiffness(bandit.BanditProblem.reference())
    est = SimpleNamespace(stiffness=k, stiffness_current=kc, stiffness_sampler=ko,
                          std_error=0.02 * k, plateau=None)
    return StabilityModel(est)


def make_space() -> dict[str, object]:
    from optuna.distributions import FloatDistribution
    from optuna.distributions import IntDistribution

    return {"momentum": FloatDistribution(*SPACE_ARGS["momentum"]),
            "steps_per_generation": IntDistribution(*SPACE_ARGS["steps_per_generation"]),
            "learning_rate": FloatDistribution(*SPACE_ARGS["learning_rate"], log=True)}


def worker(url: str, study_name: str, log: str, victim: bool, marker: str) -> None:
    import optuna

    from advisor import bandit
    from advisor.pruner import TrajectoryPruner
    from advisor.sampler import StableRegionSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE)
    sampler = StableRegionSampler(model=make_model(), search_space=make_space(), seed=os.getpid())
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler,
                              pruner=TrajectoryPruner(n_warmup_steps=100, n_steps=N_STEPS))
    problem = bandit.BanditProblem.reference()
    started = []

    def objective(trial: optuna.Trial) -> float:
        mu = trial.suggest_float("momentum", *SPACE_ARGS["momentum"])
        spg = trial.suggest_int("steps_per_generation", *SPACE_ARGS["steps_per_generation"])
        lr = trial.suggest_float("learning_rate", *SPACE_ARGS["learning_rate"], log=True)
        started.append(trial.number)
        run = bandit.simulate(problem, learning_rate=lr, momentum=mu, refresh_interval=spg,
                              n_steps=N_STEPS)
        reward = run.reward_current[0]
        for step in range(0, N_STEPS, REPORT_EVERY):
            trial.report(float(reward[step]), step)
            if victim and len(started) == 2:  # mid-trial: tell the test, then hang
                Path(marker).write_text(str(trial.number))
                time.sleep(600)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(reward[: N_STEPS // 2].mean())

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with open(log, "a") as fh:
            fh.write(json.dumps([trial.number, trial.state.name]) + "\n")

    study.optimize(objective, n_trials=N_TRIALS, callbacks=[record])


# ---------------------------------------------------------------------------------- test side
def _require(reason: str) -> None:
    if os.environ.get("ADVISOR_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (ADVISOR_REQUIRE_SERVICES=1 requires it)")
    pytest.skip(reason)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        _require("PostgreSQL binaries (initdb, pg_ctl) not found; install the Debian package "
                 "`postgresql` to run the distributed test")
    try:
        import psycopg2
    except ImportError:
        _require("psycopg2 is not installed; pip install psycopg2-binary")
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    tmp = tempfile.mkdtemp(prefix="advisor-pg-")
    if as_root:  # initdb refuses to run as root
        runuser = shutil.which("runuser")
        if runuser is None:
            _require("running as root needs `runuser` to start PostgreSQL as user postgres")
        shutil.chown(tmp, user="postgres")
        prefix = [runuser, "-u", "postgres", "--"]
    data, port = os.path.join(tmp, "data"), _free_port()
    subprocess.run([*prefix, initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    opts = f"-p {port} -k {tmp} -h 127.0.0.1 -c fsync=off -c max_connections=50"
    subprocess.run([*prefix, pg_ctl, "-D", data, "-o", opts, "-l", os.path.join(tmp, "log"),
                    "-w", "-t", "60", "start"], check=True, capture_output=True)
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE optuna")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.postgres
def test_four_workers_one_killed(postgres_url: str, tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    optuna.create_study(storage=postgres_url, study_name="dist", direction="maximize")
    marker = tmp_path / "victim_trial"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs, logs = [], []
    for i in range(N_WORKERS):
        logs.append(tmp_path / f"worker{i}.jsonl")
        cmd = [sys.executable, __file__, "--worker", postgres_url, "dist", str(logs[-1]),
               str(marker)] + (["--victim"] if i == 0 else [])
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and procs[0].poll() is None:
        time.sleep(0.05)
    assert marker.exists(), f"the victim never reached its second trial: {procs[0].stderr.read()}"
    os.kill(procs[0].pid, signal.SIGKILL)
    killed_number = int(marker.read_text())
    for p in procs[1:]:
        assert p.wait(timeout=180) == 0, p.stderr.read()
    procs[0].wait(timeout=10)

    storage = optuna.storages.RDBStorage(postgres_url, heartbeat_interval=HEARTBEAT,
                                         grace_period=GRACE)
    study = optuna.load_study(study_name="dist", storage=storage)
    if study.trials[killed_number].state == TrialState.RUNNING:
        # the survivors finished within the grace period; the heartbeat janitor runs now
        time.sleep(GRACE + 1)
        optuna.storages.fail_stale_trials(study)
    trials = study.trials

    # every trial recorded once: contiguous numbers, unique ids, none left running
    expected = (N_WORKERS - 1) * N_TRIALS + 2  # the victim finished one and started a second
    assert [t.number for t in trials] == list(range(expected))
    assert len({t._trial_id for t in trials}) == expected
    states = {t.number: t.state for t in trials}
    assert [n for n, s in states.items() if s == TrialState.FAIL] == [killed_number]
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for n, s in states.items()
               if n != killed_number)
    # the workers' own logs agree with the storage: no trial lost, none told twice
    told = [json.loads(line) for log in logs if log.exists()
            for line in log.read_text().splitlines()]
    numbers = [n for n, _ in told]
    assert sorted(numbers) == sorted(set(numbers)) == sorted(n for n in states
                                                             if n != killed_number)
    assert all(states[n].name == s for n, s in told)
    # every sampled config inside the predicted region (recomputed from the model)
    model = make_model()
    for t in trials:
        verdict = model.assess(t.params)
        scale = t.user_attrs["advisor:edge_scale"]
        assert t.user_attrs["advisor:in_region"] is True
        assert t.params["learning_rate"] <= t.user_attrs["advisor:lr_upper"] * (1 + 1e-9)
        assert t.params["learning_rate"] <= scale * verdict.max_learning_rate * math.exp(-0.1) \
            * (1 + 1e-9)


def test_missing_server_skips_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADVISOR_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="initdb, pg_ctl\\) not found"):
        _require("PostgreSQL binaries (initdb, pg_ctl) not found")
    monkeypatch.setenv("ADVISOR_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="ADVISOR_REQUIRE_SERVICES=1 requires it"):
        _require("PostgreSQL binaries (initdb, pg_ctl) not found")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=4, metavar=("URL", "STUDY", "LOG", "MARKER"))
    parser.add_argument("--victim", action="store_true")
    args = parser.parse_args()
    worker(*args.worker[:3], victim=args.victim, marker=args.worker[3])
