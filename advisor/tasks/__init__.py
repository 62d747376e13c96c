"""Built-in tiny TRL task: character tokenizer, tiny Llama, addition reward, cached warm start.

Example:
    >>> from advisor.tasks import arithmetic_reward
    >>> arithmetic_reward(["1+1="], ["2"], answer=[2])
    [1.0]
"""

from __future__ import annotations

from advisor.tasks.arithmetic import Task
from advisor.tasks.arithmetic import arithmetic_reward
from advisor.tasks.arithmetic import build_tokenizer
from advisor.tasks.arithmetic import builtin_task
from advisor.tasks.arithmetic import cache_dir
from advisor.tasks.config import default_config
from advisor.tasks.config import study_safe_kwargs


__all__ = ["Task", "arithmetic_reward", "build_tokenizer", "builtin_task", "cache_dir",
           "default_config", "study_safe_kwargs"]
