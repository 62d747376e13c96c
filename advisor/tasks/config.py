"""Study-safe ``GRPOConfig`` defaults for the built-in task.

TRL 1.16's defaults distort a learning-rate study (research/trl-optuna-notes.md §3): lr 1e-6,
a linear decay to 0, bf16 (which raises on a CPU-only machine), gradient checkpointing and a
logging window of 10 steps. These defaults switch all of that off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any


if TYPE_CHECKING:
    from trl import GRPOConfig

__all__ = ["default_config", "study_safe_kwargs"]


def study_safe_kwargs() -> dict[str, Any]:
    """Settings every pilot or study run needs, whatever the task.

    Constant learning rate without warmup, fp32, no gradient checkpointing, a log row per
    optimizer step, no checkpoints or trackers, and ``use_cpu`` when no GPU is present.

    Example:
        >>> study_safe_kwargs()["lr_scheduler_type"]
        'constant'
    """
    import importlib.util

    kwargs: dict[str, Any] = dict(
        lr_scheduler_type="constant", warmup_steps=0, bf16=False, fp16=False,
        gradient_checkpointing=False, logging_steps=1, report_to="none", save_strategy="no",
        disable_tqdm=True, log_level="error", dataloader_num_workers=0, use_vllm=False,
    )
    if importlib.util.find_spec("transformers") is not None:
        import dataclasses

        from transformers import TrainingArguments

        if "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)}:
            # transformers >= 5.23 renamed it; the old name warns on every run
            del kwargs["gradient_checkpointing"]
            kwargs["activation_checkpointing"] = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        if not torch.cuda.is_available():
            kwargs["use_cpu"] = True
    return kwargs


def default_config(output_dir: str, **overrides: Any) -> GRPOConfig:
    """``GRPOConfig`` for the built-in task with study-safe settings.

    Defaults: AdamW at lr 3e-4 (no weight decay, grad clip 1.0), 16 prompts x G = 8
    completions per optimizer step, on-policy (``steps_per_generation=1``), completions of at
    most 3 tokens at temperature 1, ``beta=0`` (no reference model), 150 steps.

    Args:
        output_dir: Trainer output folder (nothing is saved there with these settings).
        **overrides: Any ``GRPOConfig`` field, applied last.

    Returns:
        The config.

    Example:
        >>> cfg = default_config("/tmp/out", learning_rate=1e-3)  # doctest: +SKIP
        >>> cfg.learning_rate, cfg.lr_scheduler_type.value  # doctest: +SKIP
        (0.001, 'constant')
    """
    from trl import GRPOConfig

    kwargs: dict[str, Any] = dict(
        output_dir=output_dir, learning_rate=3e-4, optim="adamw_torch", weight_decay=0.0,
        max_grad_norm=1.0, per_device_train_batch_size=128, num_generations=8,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1,
        max_completion_length=3, temperature=1.0, top_k=0, beta=0.0, max_steps=150, seed=0,
        disable_dropout=True,
    )
    kwargs.update(study_safe_kwargs())
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)
