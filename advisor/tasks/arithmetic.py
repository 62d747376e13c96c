"""The built-in tiny task: single-digit addition ``"a+b="`` for a tiny character-level Llama.

Everything is built locally (no model hub is reachable and nothing is downloaded): a
character tokenizer, a ~150k-parameter ``LlamaForCausalLM`` from a config, 100 prompts, a
binary verifiable reward, and a short supervised warm start with label noise so that the
sampled (temperature 1) success rate starts at about 0.3, leaving room for GRPO to learn.
The warm-start checkpoint is saved with ``save_pretrained`` (model and tokenizer) in a user
cache folder, so a GRPO run can pass the folder path (needed for ``beta > 0`` in TRL 1.16).

torch, transformers and datasets are imported inside functions: importing this module is light.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from advisor._validation import check_int


if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast

__all__ = ["Task", "arithmetic_reward", "build_tokenizer", "builtin_task", "cache_dir"]

# Bump when anything that changes the checkpoint changes (architecture, data, SFT recipe).
_VERSION = "arith-v1"
_SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>"]
_CHARS = list("0123456789+= ")
# Architecture: 3 layers, d = 64, untied: 151k parameters. Small enough for ~0.05 s per
# 64-completion GRPO step on one CPU thread, big enough to memorise the 100 sums.
_MODEL = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=4, max_position_embeddings=16, tie_word_embeddings=False)
# Warm start (as in research/real-trl/sft_warmstart.py): the SFT label is the true sum with
# probability _LABEL_Q, else a uniformly random wrong sum; sampled success ~ Q + (1 - Q)/19.
_LABEL_Q = 0.35
_SFT_STEPS = 800
_SFT_BATCH = 256
_SFT_LR = 3e-3
_NUMBER = re.compile(r"\s*(\d+)")


@dataclass(frozen=True)
class Task:
    """A ready-to-train GRPO task.

    Attributes:
        model_path: Folder with the warm-started model and tokenizer (``save_pretrained``);
            pass it as ``GRPOTrainer(model=...)``.
        tokenizer: The character tokenizer (pass as ``processing_class``).
        reward_funcs: Reward functions for ``GRPOTrainer(reward_funcs=...)``.
        train_dataset: ``datasets.Dataset`` with columns ``prompt`` and ``answer``.
        base_success: Sampled (temperature 1) success rate of the warm start, in [0, 1].
        n_parameters: Number of model parameters.
        seed: Seed of the warm start.

    Example:
        >>> from advisor.tasks import arithmetic_reward
        >>> arithmetic_reward(["2+3="], ["5"], answer=[5])
        [1.0]
    """

    model_path: str
    tokenizer: Any
    reward_funcs: tuple[Any, ...]
    train_dataset: Any
    base_success: float
    n_parameters: int
    seed: int


def arithmetic_reward(
    prompts: Sequence[Any], completions: Sequence[str], answer: Sequence[int], **kwargs: Any
) -> list[float]:
    """Binary reward: 1.0 when the completion's leading number equals the sum, else 0.0.

    Follows TRL 1.16's reward-function signature (extra dataset columns arrive as keyword
    lists, one value per completion).

    Args:
        prompts: The prompts (unused).
        completions: Decoded completions.
        answer: The true sum for each completion.
        **kwargs: Other columns and TRL extras (ignored).

    Returns:
        One reward in {0.0, 1.0} per completion.

    Example:
        >>> arithmetic_reward(["4+4=", "4+4="], ["8", " 9"], answer=[8, 8])
        [1.0, 0.0]
    """
    out = []
    for text, ans in zip(completions, answer, strict=True):
        m = _NUMBER.match(text)
        out.append(1.0 if m is not None and m.group(1) == str(ans) else 0.0)
    return out


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer: 17 tokens (4 special, digits, ``+``, ``=``, space).

    Example:
        >>> tok = build_tokenizer()
        >>> tok("1+2=", add_special_tokens=False)["input_ids"]
        [5, 14, 6, 15]
    """
    from tokenizers import Regex
    from tokenizers import Tokenizer
    from tokenizers import decoders
    from tokenizers import models
    from tokenizers import pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(_SPECIAL + _CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token per char
    tok.decoder = decoders.Fuse()  # decode without inserted spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   bos_token="<bos>", unk_token="<unk>", padding_side="left")


def cache_dir() -> Path:
    """Folder for cached checkpoints: ``$GRPO_ADVISOR_CACHE`` or ``~/.cache/grpo-advisor``.

    Example:
        >>> cache_dir().name in ("grpo-advisor",) or "GRPO_ADVISOR_CACHE" in os.environ
        True
    """
    env = os.environ.get("GRPO_ADVISOR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "grpo-advisor"


def _problems() -> list[tuple[int, int]]:
    return [(a, b) for a in range(10) for b in range(10)]


def _dataset(repeats: int = 20) -> Dataset:
    from datasets import Dataset

    probs = _problems() * repeats
    return Dataset.from_dict({"prompt": [f"{a}+{b}=" for a, b in probs],
                              "answer": [a + b for a, b in probs]})


def _warm_start(folder: Path, seed: int) -> dict[str, Any]:
    """Train the SFT warm start and save model + tokenizer + task_info.json into ``folder``."""
    import torch
    from transformers import GenerationConfig
    from transformers import LlamaConfig
    from transformers import LlamaForCausalLM

    t0 = time.perf_counter()
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tok = build_tokenizer()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **_MODEL)
    model = LlamaForCausalLM(cfg)
    length = 7  # "a+b=" (4) + up to 2 digits + eos
    rows = []
    for a, b in _problems():
        prompt = tok(f"{a}+{b}=", add_special_tokens=False)["input_ids"]
        rows.append((a + b, prompt))
    digit_ids = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]

    def encode(total: int, prompt: list[int]) -> tuple[list[int], list[int]]:
        comp = [digit_ids[int(c)] for c in str(total)] + [tok.eos_token_id]
        pad = length - len(prompt) - len(comp)
        return (prompt + comp + [tok.pad_token_id] * pad,
                [-100] * len(prompt) + comp + [-100] * pad)

    opt = torch.optim.AdamW(model.parameters(), lr=_SFT_LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * max(0.1, 1 - s / _SFT_STEPS))
    for _ in range(_SFT_STEPS):
        xs, ys = [], []
        for _ in range(_SFT_BATCH):
            total, prompt = rows[rng.randrange(len(rows))]
            if rng.random() > _LABEL_Q:
                total = rng.choice([v for v in range(19) if v != total])
            x, y = encode(total, prompt)
            xs.append(x)
            ys.append(y)
        x_t = torch.tensor(xs)
        loss = model(input_ids=x_t, attention_mask=(x_t != tok.pad_token_id).long(),
                     labels=torch.tensor(ys)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id,
                                               bos_token_id=tok.bos_token_id)
    success = _sampled_success(model, tok, seed=seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    info = {"version": _VERSION, "seed": seed, "base_success": success,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "label_q": _LABEL_Q, "sft_steps": _SFT_STEPS,
            "seconds": time.perf_counter() - t0}
    (folder / "task_info.json").write_text(json.dumps(info, indent=1))
    torch.set_num_threads(n_threads)
    return info


def _sampled_success(model: Any, tok: Any, *, seed: int, n: int = 32) -> float:
    """Mean temperature-1 sampled success over the 100 prompts (n samples each)."""
    import torch

    torch.manual_seed(seed + 1)
    model.eval()
    hits = 0
    with torch.no_grad():
        for a, b in _problems():
            ids = torch.tensor([tok(f"{a}+{b}=", add_special_tokens=False)["input_ids"]] * n)
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                 temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=3)
            texts = tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
            hits += sum(arithmetic_reward([], texts, [a + b] * n))
    model.train()
    return hits / (n * len(_problems()))


def builtin_task(seed: int = 0) -> Task:
    """Return the built-in addition task, building and caching its warm start on first use.

    The first call trains the warm start (about 10-60 s on one CPU core) and saves it under
    :func:`cache_dir`; later calls load it in well under a second.

    Args:
        seed: Seed of the warm start (different seeds give different checkpoints).

    Returns:
        A :class:`Task` whose ``model_path`` can be passed to ``GRPOTrainer(model=...)``.

    Example:
        >>> task = builtin_task()  # doctest: +SKIP
        >>> 0.2 <= task.base_success <= 0.6  # doctest: +SKIP
        True
    """
    seed = check_int("seed", seed, low=0)
    folder = cache_dir() / f"{_VERSION}-seed{seed}"
    if not (folder / "task_info.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        try:
            _warm_start(tmp, seed)
            try:
                os.replace(tmp, folder)  # atomic; another process may have won the race
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    info = json.loads((folder / "task_info.json").read_text())
    return Task(model_path=str(folder), tokenizer=build_tokenizer(),
                reward_funcs=(arithmetic_reward,), train_dataset=_dataset(),
                base_success=float(info["base_success"]),
                n_parameters=int(info["n_parameters"]), seed=seed)
