from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest

from advisor.tasks import arithmetic_reward
from advisor.tasks import cache_dir


pytest.importorskip("tokenizers")


def test_tokenizer_is_one_token_per_character():
    from advisor.tasks import build_tokenizer

    tok = build_tokenizer()
    assert len(tok) == 17
    ids = tok("12+7=", add_special_tokens=False)["input_ids"]
    assert len(ids) == 5
    assert tok.decode(ids) == "12+7="  # Fuse decoder: no spaces inserted
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1


@pytest.mark.parametrize(
    ("completion", "answer", "reward"),
    [("5", 5, 1.0), (" 5", 5, 1.0), ("12", 12, 1.0), ("1", 12, 0.0), ("13", 12, 0.0),
     ("", 3, 0.0), ("+3", 3, 0.0), ("3=", 3, 1.0)],
)
def test_arithmetic_reward_known_values(completion, answer, reward):
    assert arithmetic_reward(["p"], [completion], answer=[answer]) == [reward]


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRPO_ADVISOR_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("GRPO_ADVISOR_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "grpo-advisor"


def test_builtin_task_rejects_negative_seed():
    from advisor.tasks import builtin_task

    with pytest.raises(ValueError, match="`seed` must be an integer >= 0"):
        builtin_task(seed=-1)


def test_default_config_is_study_safe(tmp_path):
    pytest.importorskip("trl")
    from advisor.tasks import default_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cfg = default_config(str(tmp_path), learning_rate=1e-3, max_steps=7)
    assert cfg.learning_rate == 1e-3 and cfg.max_steps == 7
    assert str(getattr(cfg.lr_scheduler_type, "value", cfg.lr_scheduler_type)) == "constant"
    assert cfg.warmup_steps == 0 and cfg.logging_steps == 1 and not cfg.bf16
    assert not cfg.gradient_checkpointing and cfg.report_to == []
    assert not getattr(cfg, "activation_checkpointing", False)
    assert cfg.steps_per_generation == 1 and cfg.num_generations == 8


@pytest.fixture(scope="module")
def task():
    pytest.importorskip("trl")
    from advisor.tasks import builtin_task

    return builtin_task()


@pytest.mark.slow
def test_builtin_task_warm_start(task):
    from advisor.tasks import builtin_task

    assert 0.2 <= task.base_success <= 0.6
    assert 100_000 <= task.n_parameters <= 700_000
    folder = Path(task.model_path)
    for name in ("config.json", "tokenizer.json", "task_info.json"):
        assert (folder / name).exists(), name
    assert json.loads((folder / "task_info.json").read_text())["base_success"] == \
        task.base_success
    t0 = time.perf_counter()
    again = builtin_task()  # cached: no training
    assert time.perf_counter() - t0 < 10
    assert again.model_path == task.model_path
    assert set(task.train_dataset.column_names) == {"prompt", "answer"}


@pytest.mark.slow
def test_grpo_run_learns_quickly(task, tmp_path):
    import torch
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from advisor.tasks import default_config

    rewards = []

    class Capture(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                rewards.append(logs["reward"])

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cfg = default_config(str(tmp_path), max_steps=150, beta=0.04)  # beta > 0: a ref model
        trainer = GRPOTrainer(model=task.model_path, reward_funcs=list(task.reward_funcs),
                              args=cfg, train_dataset=task.train_dataset,
                              processing_class=task.tokenizer, callbacks=[Capture()])
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    assert seconds < 60, f"150 GRPO steps took {seconds:.1f} s"
    assert len(rewards) == 150
    # 128 completions per step: the mean of 30 steps has sd ~0.01, so +0.15 is far from noise
    first, last = sum(rewards[:10]) / 10, sum(rewards[-30:]) / 30
    assert last > first + 0.15, (first, last)
