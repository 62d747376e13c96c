"""Input checks of the pilot and the objective: dataset, batch, reward functions, model."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

from advisor.exceptions import AdvisorError
from advisor.knobs import knobs_from_config


class RewardFunctionError(AdvisorError, ValueError):
    """A reward function returned None/NaN or a non-number for a completion."""


def _check_dataset(train_dataset: Any) -> None:
    columns = getattr(train_dataset, "column_names", None)
    if columns is None:
        raise TypeError(f"`train_dataset` must be a datasets.Dataset, got "
                        f"{type(train_dataset).__name__}.")
    if "prompt" not in columns:
        raise ValueError(
            f"`train_dataset` must have a 'prompt' column, got columns {list(columns)!r}. "
            "GRPOTrainer reads prompts from it: rename your text column with "
            "dataset.rename_column(old, 'prompt').")


def _check_batch(args: Any) -> int:
    """Completions per optimizer step; must hold whole groups for an on-policy pilot."""
    world = int(getattr(args, "world_size", 1) or 1)
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    if per_step % args.num_generations:
        raise ValueError(
            f"`per_device_train_batch_size * gradient_accumulation_steps * num_processes` must be "
            f"a multiple of num_generations={args.num_generations} for an on-policy pilot, got "
            f"{args.per_device_train_batch_size} * {args.gradient_accumulation_steps} * {world} "
            f"= {per_step}. Set per_device_train_batch_size to a multiple of num_generations.")
    return per_step


def _check_reward_value(func_name: str, values: Any, n: int) -> list[Any]:
    if values is None or len(values) != n:
        raise RewardFunctionError(
            f"`reward_funcs` must return one float per completion, got "
            f"{'None' if values is None else len(values)} values from {func_name!r} for {n} "
            "completions.")
    for i, v in enumerate(values):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok and not (hasattr(v, "item") and math.isfinite(float(v.item()))):
            raise RewardFunctionError(
                f"`reward_funcs` must return a finite float for every completion, got {v!r} from "
                f"{func_name!r} at index {i}. Return 0.0 (not None or NaN) for a wrong or "
                "unparsable completion; the pilot needs a reward on every sample.")
    return list(values)


def _wrap_reward(func: Any) -> Any:
    """Check a callable reward function's output on every call (keeps its ``__name__``)."""
    if not callable(func) or isinstance(func, str) or hasattr(func, "forward") \
            or inspect.iscoroutinefunction(func):
        return func
    name = getattr(func, "__name__", type(func).__name__)

    def checked(prompts: Any, completions: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return _check_reward_value(name, func(prompts, completions, *args, **kwargs),
                                   len(completions))

    checked.__name__ = name
    return checked


def _optimizer_of(args: Any) -> tuple[str, float]:
    knobs = knobs_from_config(args)
    return knobs.optimizer, knobs.heavy_ball_momentum


def _model_source(model: Any, processing_class: Any, out: Path) -> Any:
    if isinstance(model, (str, Path)):
        return str(model)
    if processing_class is None:
        raise ValueError("`processing_class` must be given when `model` is a model object, got "
                         "None. Pass the tokenizer, or pass a saved model folder as `model`.")
    folder = out / "init_model"
    if not (folder / "config.json").exists():
        model.save_pretrained(folder)
        processing_class.save_pretrained(folder)
    return str(folder)


