"""The one mapping between `trl.GRPOConfig` field names and the model's symbols.

Search spaces and study files use `trl.GRPOConfig` field names verbatim, so that
``GRPOConfig(output_dir=..., **to_grpo_kwargs(trial.params))`` works. The one exception is
heavy-ball ``momentum``: TRL takes it as ``optim="sgd", optim_args="momentum=..."``.

Conventions (checked against TRL 1.16 ``grpo_config.py`` / ``grpo_trainer.py``):
    * eta = ``learning_rate``.
    * mu = heavy-ball momentum of ``torch.optim.SGD`` (buf = mu*buf + g; theta -= eta*buf). It
      scales rate and edge by 1/(1 - mu). AdamW's ``adam_beta1`` is an EMA and is NOT mu: it
      enters neither the rate nor the edge (real-trl-findings.md section 4), so mu = 0 for AdamW.
    * K_ref = refresh interval in optimizer steps. TRL generates once every
      ``steps_per_generation * num_iterations`` micro-steps (``_prepare_inputs``), and an optimizer
      step is ``gradient_accumulation_steps`` micro-steps, so
      K_ref = spg * num_iterations / GA. When GA is a multiple of spg * num_iterations, every
      generation happens at the current weights: TRL skips the old log-probs (ratio = 1) and the
      run is on-policy, K_ref = 1. ``num_processes`` does not enter K_ref.
    * ``steps_per_generation`` defaults to ``gradient_accumulation_steps``; alternatively
      ``generation_batch_size`` sets spg = generation_batch_size / (per_device_bs * num_processes).
      The two are mutually exclusive (``GRPOConfig.__post_init__``).
    * ``num_iterations > 1`` reuses the same completions for several optimizer passes.
    * G = ``num_generations``; completions per optimizer step = per_device_bs * num_processes * GA;
      prompts per optimizer step = completions / G.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

import numpy as np

from advisor._validation import check_int
from advisor._validation import check_interval
from advisor.exceptions import AdvisorWarning


if TYPE_CHECKING:
    from trl import GRPOConfig


__all__ = ["KNOB_NAMES", "MODEL_KNOB_NAMES", "Knobs", "knobs_from_config", "knobs_from_params",
           "to_grpo_kwargs"]

# The knobs the model reads (GRPOConfig field names, plus heavy-ball `momentum`).
MODEL_KNOB_NAMES: frozenset[str] = frozenset({
    "learning_rate", "optim", "optim_args", "momentum", "adam_beta1", "steps_per_generation",
    "generation_batch_size", "num_iterations", "gradient_accumulation_steps", "num_generations",
    "per_device_train_batch_size",
})
# Other GRPOConfig fields a search space may carry; accepted and forwarded unchanged.
_PASSTHROUGH_NAMES = frozenset({
    "beta", "epsilon", "epsilon_high", "delta", "temperature", "top_p", "top_k", "min_p",
    "repetition_penalty", "max_completion_length", "loss_type", "scale_rewards",
    "importance_sampling_level", "mask_truncated_completions", "top_entropy_quantile",
    "use_bias_correction_kl", "adam_beta2", "adam_epsilon", "weight_decay", "max_grad_norm",
    "lr_scheduler_type", "warmup_steps", "max_steps", "num_train_epochs", "seed",
    "entropy_coef", "off_policy_mask_threshold", "reward_weights", "sync_ref_model",
    "ref_model_mixup_alpha", "ref_model_sync_steps", "disable_dropout",
})
KNOB_NAMES: frozenset[str] = MODEL_KNOB_NAMES | _PASSTHROUGH_NAMES

# TRL 1.16 GRPOConfig defaults for the model knobs (tests compare them with the installed TRL).
_TRL_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-6, "optim": "adamw_torch_fused", "optim_args": None, "adam_beta1": 0.9,
    "steps_per_generation": None, "generation_batch_size": None, "num_iterations": 1,
    "gradient_accumulation_steps": 1, "num_generations": 8, "per_device_train_batch_size": 8,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Knobs:
    """The GRPO knobs the stability model reads, in the model's terms.

    Attributes:
        learning_rate: eta (> 0).
        optimizer: ``"sgd"`` (heavy ball, ``optim="sgd"``) or ``"adamw"`` (any ``adamw*`` optim).
        momentum: heavy-ball mu in [0, 1); must be 0 for AdamW.
        adam_beta1: AdamW's first-moment EMA in [0, 1) (recorded, not used as mu).
        steps_per_generation: micro-steps served by one generation batch (spg >= 1).
        num_iterations: passes over each generation batch (> 1 reuses completions).
        gradient_accumulation_steps: micro-steps per optimizer step (GA >= 1).
        num_generations: G, completions per prompt (>= 2).
        per_device_train_batch_size: completions per micro-batch and device.
        num_processes: data-parallel processes (devices).

    Example:
        >>> k = Knobs(learning_rate=0.01, optimizer="sgd", momentum=0.9, steps_per_generation=4)
        >>> k.refresh_interval, k.heavy_ball_momentum, k.prompts_per_step
        (4.0, 0.9, 1.0)
    """

    learning_rate: float
    optimizer: Literal["sgd", "adamw"] = "adamw"
    momentum: float = 0.0
    adam_beta1: float = 0.9
    steps_per_generation: int = 1
    num_iterations: int = 1
    gradient_accumulation_steps: int = 1
    num_generations: int = 8
    per_device_train_batch_size: int = 8
    num_processes: int = 1

    def __post_init__(self) -> None:
        check_interval("learning_rate", self.learning_rate, low=0.0, low_closed=False)
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"`optimizer` must be one of 'sgd', 'adamw', got {self.optimizer!r}.")
        check_interval("momentum", self.momentum, low=0.0, high=1.0, high_closed=False)
        check_interval("adam_beta1", self.adam_beta1, low=0.0, high=1.0, high_closed=False)
        if self.optimizer == "adamw" and self.momentum != 0.0:
            raise ValueError(_MOMENTUM_WITH_ADAM.format(value=self.momentum, optim="adamw"))
        for name in ("steps_per_generation", "num_iterations", "gradient_accumulation_steps",
                     "per_device_train_batch_size", "num_processes"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), low=1))
        object.__setattr__(self, "num_generations", check_int(
            "num_generations", self.num_generations, low=2,
            hint="GRPO needs at least 2 completions per prompt to compute advantages."))
        for name in ("learning_rate", "momentum", "adam_beta1"):
            object.__setattr__(self, name, float(getattr(self, name)))
        gbs = self.generation_batch_size
        if gbs % self.num_generations != 0:
            raise ValueError(
                f"`generation_batch_size` must be divisible by num_generations "
                f"({self.num_generations}), got {gbs} (= per_device_train_batch_size "
                f"{self.per_device_train_batch_size} x num_processes {self.num_processes} x "
                f"steps_per_generation {self.steps_per_generation}). Choose "
                "per_device_train_batch_size or steps_per_generation so that each generation "
                "batch holds whole groups of num_generations completions."
            )

    @property
    def refresh_interval(self) -> float:
        """K_ref = spg * num_iterations / GA optimizer steps per generation (at least 1)."""
        # Several generations inside one optimizer step all use the current weights: on-policy.
        return max(1.0, self.steps_per_generation * self.num_iterations
                   / self.gradient_accumulation_steps)

    @property
    def is_on_policy(self) -> bool:
        """True when TRL skips the old log-probs (GA is a multiple of spg * num_iterations)."""
        generate_every = self.steps_per_generation * self.num_iterations
        return self.gradient_accumulation_steps % generate_every == 0

    @property
    def reuses_completions(self) -> bool:
        """True when ``num_iterations > 1``: the same completions feed several updates."""
        return self.num_iterations > 1

    @property
    def generation_batch_size(self) -> int:
        """Completions generated at once: per_device_bs * num_processes * spg."""
        return self.per_device_train_batch_size * self.num_processes * self.steps_per_generation

    @property
    def completions_per_step(self) -> int:
        """Completions per optimizer step: per_device_bs * num_processes * GA."""
        return (self.per_device_train_batch_size * self.num_processes
                * self.gradient_accumulation_steps)

    @property
    def prompts_per_step(self) -> float:
        """Prompts per optimizer step, completions_per_step / G (may be fractional)."""
        return self.completions_per_step / self.num_generations

    @property
    def heavy_ball_momentum(self) -> float:
        """mu for SGD, 0 for AdamW (beta1 is an EMA, not heavy-ball momentum)."""
        return self.momentum if self.optimizer == "sgd" else 0.0

    def to_params(self) -> dict[str, Any]:
        """The knobs as search-space parameters (GRPOConfig names plus ``momentum``).

        ``num_processes`` is not a GRPOConfig field: pass it again to `knobs_from_params`
        (``knobs_from_params(k.to_params(), num_processes=k.num_processes) == k``).

        Example:
            >>> Knobs(learning_rate=1e-5).to_params()["optim"]
            'adamw_torch'
        """
        params: dict[str, Any] = {
            "learning_rate": self.learning_rate,
            "steps_per_generation": self.steps_per_generation,
            "num_iterations": self.num_iterations,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "num_generations": self.num_generations,
            "per_device_train_batch_size": self.per_device_train_batch_size,
        }
        if self.optimizer == "sgd":
            params["momentum"] = self.momentum
        else:
            params.update(optim="adamw_torch", adam_beta1=self.adam_beta1)
        return params


_MOMENTUM_WITH_ADAM = (
    "`momentum` must be 0 (or absent) with an AdamW optimizer, got {value!r} with "
    "optim={optim!r}. `momentum` is heavy-ball SGD momentum (optim='sgd'); for AdamW search "
    "`adam_beta1` instead, or drop `optim` so that `momentum` selects SGD."
)


# a `momentum` key selects heavy-ball SGD, so it contradicts an AdamW `optim` even at 0
_MOMENTUM_KEY_WITH_ADAM = (
    "`momentum` must be absent with an AdamW optimizer, got momentum={value!r} with "
    "optim={optim!r}. `momentum` is heavy-ball SGD momentum (a `momentum` key selects "
    "optim='sgd'); for AdamW search `adam_beta1` instead, or drop `optim` so that `momentum` "
    "selects SGD."
)


def _check_names(params: Mapping[str, Any], what: str = "params") -> None:
    if not isinstance(params, Mapping):
        raise TypeError(f"`{what}` must be a mapping of trl.GRPOConfig field names to values "
                        f"(e.g. trial.params), got {type(params).__name__}.")
    for name in params:
        if name not in KNOB_NAMES:
            close = difflib.get_close_matches(str(name), sorted(KNOB_NAMES), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"`{what}` must use trl.GRPOConfig field names (or 'momentum'), got unknown "
                f"knob {name!r}.{hint} See advisor.knobs.KNOB_NAMES."
            )


def _parse_optim_args(optim_args: Any) -> dict[str, str]:
    """Parse TRL's ``"k=v,k2=v2"`` string (transformers ``_parse_optim_args``)."""
    if optim_args is None or optim_args == "":
        return {}
    if not isinstance(optim_args, str):
        raise TypeError(f"`optim_args` must be a string 'key=value,...', got {optim_args!r}.")
    out = {}
    for item in optim_args.replace(" ", "").split(","):
        if "=" not in item:
            raise ValueError(f"`optim_args` must be 'key=value,...', got {optim_args!r}.")
        key, value = item.split("=", 1)
        out[key] = value
    return out


def _optimizer_family(optim: Any) -> Literal["sgd", "adamw"]:
    name = str(getattr(optim, "value", optim))
    if name == "sgd":
        return "sgd"
    if "adamw" in name:
        return "adamw"
    raise ValueError(
        f"`optim` must be 'sgd' or an AdamW variant ('adamw_torch', 'adamw_torch_fused', ...), "
        f"got {name!r}. The stability model covers heavy-ball SGD and AdamW only."
    )


def _plain(value: Any) -> Any:
    """numpy scalars and 0-d arrays -> Python scalars, so TRL's checks see plain types."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


def to_grpo_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """Translate search-space parameters into ``trl.GRPOConfig`` keyword arguments.

    ``momentum`` becomes ``optim="sgd"`` plus ``momentum=...`` inside ``optim_args`` (merged
    with any other ``optim_args`` entries); every other name passes through unchanged.

    Args:
        params: Knob values keyed by GRPOConfig field names (and ``momentum``), e.g.
            ``trial.params``.

    Returns:
        A new dict for ``GRPOConfig(output_dir=..., **kwargs)``.

    Raises:
        ValueError: Unknown names (with a did-you-mean), ``momentum`` with an AdamW ``optim``,
            ``momentum`` given twice, or ``steps_per_generation`` with ``generation_batch_size``.

    Example:
        >>> to_grpo_kwargs({"learning_rate": 0.01, "momentum": 0.9})
        {'learning_rate': 0.01, 'optim': 'sgd', 'optim_args': 'momentum=0.9'}
    """
    _check_names(params)
    kwargs = {name: _plain(value) for name, value in params.items() if name != "momentum"}
    if kwargs.get("steps_per_generation") is not None and \
            kwargs.get("generation_batch_size") is not None:
        raise ValueError(_BOTH_SPG_GBS)
    if "momentum" not in params:
        return kwargs
    momentum = check_interval("momentum", params["momentum"], low=0.0, high=1.0,
                              high_closed=False)
    optim = kwargs.get("optim", "sgd")
    if _optimizer_family(optim) != "sgd":
        raise ValueError(_MOMENTUM_KEY_WITH_ADAM.format(value=momentum, optim=str(optim)))
    extra = _parse_optim_args(kwargs.get("optim_args"))
    if "momentum" in extra:
        raise ValueError(
            f"`momentum` must be given once, got momentum={momentum!r} and optim_args="
            f"{kwargs['optim_args']!r}. Drop 'momentum=' from optim_args."
        )
    extra = {"momentum": repr(momentum), **extra}
    kwargs["optim"] = "sgd"
    kwargs["optim_args"] = ",".join(f"{k}={v}" for k, v in extra.items())
    return kwargs


_BOTH_SPG_GBS = (
    "`steps_per_generation` must be None when `generation_batch_size` is set, got both "
    "(TRL forbids configuring both). Set only one: steps_per_generation = "
    "generation_batch_size / (per_device_train_batch_size * num_processes)."
)


def _resolve_steps_per_generation(merged: Mapping[str, Any], num_processes: int) -> int:
    """Mirror GRPOConfig.__post_init__: spg from itself, generation_batch_size, or GA."""
    spg, gbs = merged.get("steps_per_generation"), merged.get("generation_batch_size")
    if spg is not None and gbs is not None:
        raise ValueError(_BOTH_SPG_GBS)
    if spg is not None:
        return check_int("steps_per_generation", spg, low=1)
    if gbs is None:
        return check_int("gradient_accumulation_steps", merged["gradient_accumulation_steps"],
                         low=1)
    gbs = check_int("generation_batch_size", gbs, low=1)
    global_bs = check_int("per_device_train_batch_size", merged["per_device_train_batch_size"],
                          low=1) * num_processes
    if gbs % global_bs != 0:
        raise ValueError(
            f"`generation_batch_size` must be divisible by the global batch size "
            f"(per_device_train_batch_size x num_processes = {global_bs}), got {gbs}. Use a "
            f"multiple of {global_bs} (e.g. {max(1, round(gbs / global_bs)) * global_bs}), or "
            "set steps_per_generation instead."
        )
    return gbs // global_bs


def knobs_from_params(
    params: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    num_processes: int = 1,
) -> Knobs:
    """Build `Knobs` from search-space parameters, filling gaps from defaults.

    Precedence: ``params`` over ``defaults`` over TRL 1.16's GRPOConfig defaults. A
    ``momentum`` key selects heavy-ball SGD (``optim`` may then be absent or ``"sgd"``);
    ``optim="sgd"`` with ``optim_args="momentum=..."`` is read the same way.

    Args:
        params: Knob values keyed by GRPOConfig field names (and ``momentum``).
        defaults: Fixed values of knobs that are not searched (same names).
        num_processes: Data-parallel processes (devices); scales the global batch.

    Returns:
        The resolved `Knobs`.

    Raises:
        ValueError: Unknown names, inconsistent batch/group settings (the message names the
            fix), ``momentum`` with AdamW, an optimizer other than SGD/AdamW.

    Example:
        >>> k = knobs_from_params({"learning_rate": 3e-4, "steps_per_generation": 4},
        ...                       defaults={"per_device_train_batch_size": 16})
        >>> k.optimizer, k.refresh_interval, k.prompts_per_step
        ('adamw', 4.0, 2.0)
    """
    num_processes = check_int("num_processes", num_processes, low=1)
    _check_names(params)
    if defaults is not None:
        _check_names(defaults, "defaults")
    # a searched steps_per_generation overrides a fixed generation_batch_size and vice versa
    merged: dict[str, Any] = dict(_TRL_DEFAULTS)
    user = {**(defaults or {}), **params}
    for a, b in (("steps_per_generation", "generation_batch_size"),
                 ("generation_batch_size", "steps_per_generation")):
        if a in params and b not in params and b in (defaults or {}):
            user.pop(b)
    merged.update({k: _plain(v) for k, v in user.items()})
    if "momentum" in user and "optim" not in user:
        merged["optim"] = "sgd"
    optimizer = _optimizer_family(merged["optim"])
    extra = _parse_optim_args(merged.get("optim_args"))
    momentum = _momentum(user, extra, optimizer, merged["optim"])
    return Knobs(
        learning_rate=merged["learning_rate"],
        optimizer=optimizer,
        momentum=momentum,
        adam_beta1=merged["adam_beta1"],
        steps_per_generation=_resolve_steps_per_generation(merged, num_processes),
        num_iterations=merged["num_iterations"],
        gradient_accumulation_steps=merged["gradient_accumulation_steps"],
        num_generations=merged["num_generations"],
        per_device_train_batch_size=merged["per_device_train_batch_size"],
        num_processes=num_processes,
    )


def _momentum(user: Mapping[str, Any], extra: Mapping[str, str], optimizer: str,
              optim: Any) -> float:
    if optimizer != "sgd":
        if "momentum" in user:
            raise ValueError(_MOMENTUM_KEY_WITH_ADAM.format(value=user["momentum"],
                                                            optim=str(optim)))
        return 0.0
    if "momentum" in user and "momentum" in extra:
        raise ValueError(
            f"`momentum` must be given once, got momentum={user['momentum']!r} and optim_args="
            f"{user.get('optim_args')!r}. Drop 'momentum=' from optim_args."
        )
    for key in ("nesterov", "dampening"):
        if key in extra and extra[key].lower() not in ("false", "0", "0.0", "no"):
            warnings.warn(f"optim_args sets {key}={extra[key]}; the model treats SGD as plain "
                          "heavy ball, so its predictions may be off for this run.",
                          AdvisorWarning, stacklevel=3)
    if "momentum" in user:
        return check_interval("momentum", user["momentum"], low=0.0, high=1.0,
                              high_closed=False)
    try:
        value = float(extra.get("momentum", 0.0))
    except ValueError:
        raise ValueError(f"`optim_args` must set momentum to a number, got momentum="
                         f"{extra['momentum']!r} in {user.get('optim_args')!r}.") from None
    return check_interval("momentum", value, low=0.0, high=1.0, high_closed=False)


def knobs_from_config(config: GRPOConfig, *, num_processes: int | None = None) -> Knobs:
    """Read `Knobs` from a built ``trl.GRPOConfig`` (duck-typed; trl is not imported).

    ``steps_per_generation`` is read after ``GRPOConfig.__post_init__`` has resolved it.

    Args:
        config: A ``trl.GRPOConfig`` or any object with the same attributes.
        num_processes: Data-parallel processes; ``None`` reads ``config.world_size`` (1 if absent).

    Returns:
        The resolved `Knobs`.

    Example:
        >>> from types import SimpleNamespace
        >>> cfg = SimpleNamespace(learning_rate=0.01, optim="sgd", optim_args="momentum=0.5",
        ...     adam_beta1=0.9, steps_per_generation=2, num_iterations=1,
        ...     gradient_accumulation_steps=1, num_generations=4, per_device_train_batch_size=8)
        >>> knobs_from_config(cfg).heavy_ball_momentum
        0.5
    """
    if isinstance(config, Mapping):
        raise TypeError("`config` must be a trl.GRPOConfig (or have its fields as attributes), "
                        f"got {type(config).__name__}. For a dict of GRPOConfig-named knobs "
                        "(e.g. trial.params) use knobs_from_params(params).")
    if num_processes is None:
        num_processes = int(getattr(config, "world_size", 1) or 1)
    params: dict[str, Any] = {}
    for name in sorted(MODEL_KNOB_NAMES - {"momentum"}):
        if not hasattr(config, name):
            if name in ("optim_args", "generation_batch_size", "steps_per_generation"):
                continue
            raise TypeError(f"`config` must be a trl.GRPOConfig (or have its fields), got "
                            f"{type(config).__name__} without {name!r}.")
        value = getattr(config, name)
        params[name] = str(getattr(value, "value", value)) if name == "optim" else value
    if params.get("steps_per_generation") is not None:
        params.pop("generation_batch_size", None)  # both are set after __post_init__
    return knobs_from_params(params, num_processes=num_processes)
