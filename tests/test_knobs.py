from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from advisor.exceptions import AdvisorWarning
from advisor.knobs import _TRL_DEFAULTS
from advisor.knobs import KNOB_NAMES
from advisor.knobs import MODEL_KNOB_NAMES
from advisor.knobs import Knobs
from advisor.knobs import knobs_from_config
from advisor.knobs import knobs_from_params
from advisor.knobs import to_grpo_kwargs


# ---------------------------------------------------------------- known values
@pytest.mark.parametrize(
    ("params", "k_ref", "on_policy"),
    [
        ({}, 1.0, True),  # spg defaults to GA = 1
        ({"steps_per_generation": 4}, 4.0, False),
        ({"num_iterations": 2}, 2.0, False),
        ({"gradient_accumulation_steps": 2, "steps_per_generation": 4}, 2.0, False),
        ({"gradient_accumulation_steps": 2, "num_iterations": 2}, 2.0, False),  # spg -> GA = 2
        ({"gradient_accumulation_steps": 4}, 1.0, True),
        ({"gradient_accumulation_steps": 4, "steps_per_generation": 2}, 1.0, True),
        ({"gradient_accumulation_steps": 2, "steps_per_generation": 3,
          "per_device_train_batch_size": 16}, 1.5, False),
        ({"generation_batch_size": 64, "per_device_train_batch_size": 16}, 4.0, False),
    ],
)
def test_refresh_interval_matches_trl_table(params, k_ref, on_policy):
    # rows of trl-optuna-notes.md section 2.2 (gap between generations, measured)
    k = knobs_from_params(params)
    assert k.refresh_interval == pytest.approx(k_ref)
    assert k.is_on_policy is on_policy


def test_batch_quantities_with_processes():
    k = knobs_from_params({"per_device_train_batch_size": 12, "gradient_accumulation_steps": 2,
                           "num_generations": 6}, num_processes=2)
    assert k.completions_per_step == 12 * 2 * 2
    assert k.prompts_per_step == pytest.approx(8.0)
    assert k.generation_batch_size == 12 * 2 * 2  # spg defaults to GA
    assert k.refresh_interval == 1.0  # processes never enter K_ref


def test_generation_batch_size_uses_global_batch():
    k = knobs_from_params({"generation_batch_size": 64, "per_device_train_batch_size": 8},
                          num_processes=2)
    assert k.steps_per_generation == 4
    assert k.refresh_interval == 4.0


def test_momentum_selects_heavy_ball_sgd():
    k = knobs_from_params({"learning_rate": 0.01, "momentum": 0.9})
    assert (k.optimizer, k.momentum, k.heavy_ball_momentum) == ("sgd", 0.9, 0.9)
    k2 = knobs_from_params({"learning_rate": 0.01, "optim": "sgd",
                            "optim_args": "momentum=0.5,weight_decay=0.1"})
    assert k2.heavy_ball_momentum == 0.5


def test_adam_beta1_is_not_heavy_ball_momentum():
    k = knobs_from_params({"learning_rate": 3e-4, "adam_beta1": 0.95})
    assert k.optimizer == "adamw"
    assert k.adam_beta1 == 0.95
    assert k.heavy_ball_momentum == 0.0


def test_reuse_flag_and_defaults_precedence():
    k = knobs_from_params({"num_iterations": 3}, defaults={"num_iterations": 1,
                                                           "num_generations": 4})
    assert k.reuses_completions and k.num_generations == 4
    # a searched steps_per_generation replaces a fixed generation_batch_size
    k2 = knobs_from_params({"steps_per_generation": 2},
                           defaults={"generation_batch_size": 64})
    assert k2.steps_per_generation == 2


def test_numpy_scalars_are_accepted_and_converted():
    k = knobs_from_params({"learning_rate": np.float64(1e-3), "num_generations": np.int64(4)})
    assert type(k.num_generations) is int and type(k.learning_rate) is float
    assert type(to_grpo_kwargs({"num_generations": np.int64(4)})["num_generations"]) is int


def test_to_params_round_trip():
    for params in ({"learning_rate": 0.02, "momentum": 0.8, "steps_per_generation": 2},
                   {"learning_rate": 1e-4, "adam_beta1": 0.5, "num_iterations": 2}):
        k = knobs_from_params(params)
        assert knobs_from_params(k.to_params()) == k


def test_to_grpo_kwargs_maps_momentum_and_merges_optim_args():
    out = to_grpo_kwargs({"learning_rate": 0.01, "momentum": 0.9, "beta": 0.04,
                          "optim_args": "weight_decay=0.1"})
    assert out == {"learning_rate": 0.01, "beta": 0.04, "optim": "sgd",
                   "optim_args": "momentum=0.9,weight_decay=0.1"}
    assert to_grpo_kwargs({"learning_rate": 1e-5}) == {"learning_rate": 1e-5}


def test_trl_defaults_and_names_match_installed_trl():
    trl = pytest.importorskip("trl")
    fields = {f.name: f for f in dataclasses.fields(trl.GRPOConfig)}
    assert (KNOB_NAMES - {"momentum"}) <= set(fields)
    for name, value in _TRL_DEFAULTS.items():
        default = fields[name].default
        assert str(getattr(default, "value", default)) == str(value), name


@pytest.mark.parametrize(
    "params",
    [
        {"learning_rate": 0.01, "momentum": 0.9, "steps_per_generation": 4},
        {"learning_rate": 3e-4, "adam_beta1": 0.0, "num_iterations": 2,
         "gradient_accumulation_steps": 2, "num_generations": 4},
        {"learning_rate": 3e-4, "generation_batch_size": 32, "num_generations": 16},
    ],
)
def test_real_grpo_config_from_to_grpo_kwargs(params, tmp_path):
    trl = pytest.importorskip("trl")
    cfg = trl.GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                         activation_checkpointing=False,
                         **to_grpo_kwargs(params))
    expected = knobs_from_params(params)
    assert knobs_from_config(cfg) == expected
    if "momentum" in params:
        assert str(getattr(cfg.optim, "value", cfg.optim)) == "sgd"
        assert cfg.optim_args == f"momentum={params['momentum']!r}"


def test_knobs_from_config_duck_typed():
    cfg = SimpleNamespace(learning_rate=1e-3, optim="adamw_torch_fused", optim_args=None,
                          adam_beta1=0.9, steps_per_generation=8, generation_batch_size=64,
                          num_iterations=1, gradient_accumulation_steps=2, num_generations=8,
                          per_device_train_batch_size=8, world_size=1)
    k = knobs_from_config(cfg)
    assert k.refresh_interval == 4.0 and k.optimizer == "adamw"
    with pytest.raises(TypeError, match="must be a trl.GRPOConfig"):
        knobs_from_config(SimpleNamespace(learning_rate=1e-3))


def test_nesterov_warns():
    with pytest.warns(AdvisorWarning, match="nesterov"):
        knobs_from_params({"optim": "sgd", "optim_args": "momentum=0.9,nesterov=True"})


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"learning_rat": 1e-3}, "unknown knob 'learning_rat'. Did you mean 'learning_rate'"),
        ({"num_generation": 8}, "Did you mean 'num_generations'"),
        ({"num_generations": 1}, "at least 2 completions"),
        ({"num_generations": 3}, "divisible by num_generations"),
        ({"per_device_train_batch_size": 4, "num_generations": 8}, "divisible by num_gen"),
        ({"steps_per_generation": 2, "generation_batch_size": 32}, "both"),
        ({"generation_batch_size": 20, "per_device_train_batch_size": 8}, "global batch"),
        ({"momentum": 0.9, "optim": "adamw_torch"}, "adam_beta1"),
        ({"momentum": 0.0, "optim": "adamw_torch_fused"}, "heavy-ball SGD"),
        ({"momentum": 0.9, "optim": "sgd", "optim_args": "momentum=0.5"}, "given once"),
        ({"momentum": 1.0}, r"`momentum` must be a finite number in \[0, 1\)"),
        ({"learning_rate": 0.0}, r"`learning_rate` must be a finite number in \(0"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"adam_beta1": 1.0}, "adam_beta1"),
        ({"optim": "adafactor"}, "SGD and AdamW only"),
        ({"optim": "sgd", "optim_args": "momentum"}, "key=value"),
        ({"num_iterations": 0}, "num_iterations"),
        ({"steps_per_generation": 0}, "steps_per_generation"),
    ],
)
def test_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        knobs_from_params(params)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"momentm": 0.9}, "Did you mean 'momentum'"),
        ({"momentum": 0.9, "optim": "adamw_torch"}, "adam_beta1"),
        ({"momentum": 0.9, "optim_args": "momentum=0.1"}, "given once"),
        ({"steps_per_generation": 2, "generation_batch_size": 32}, "both"),
        ({"momentum": -0.1}, "momentum"),
    ],
)
def test_bad_to_grpo_kwargs(params, match):
    with pytest.raises(ValueError, match=match):
        to_grpo_kwargs(params)


def test_bad_types_and_processes():
    with pytest.raises(TypeError, match="integer"):
        knobs_from_params({"num_generations": 4.5})
    with pytest.raises(TypeError, match="real number"):
        knobs_from_params({"learning_rate": "1e-3"})
    with pytest.raises(ValueError, match="num_processes"):
        knobs_from_params({}, num_processes=0)
    with pytest.raises(ValueError, match="optimizer"):
        Knobs(learning_rate=1e-3, optimizer="adam")  # type: ignore[arg-type]


def test_model_knob_names_are_knob_names():
    assert MODEL_KNOB_NAMES <= KNOB_NAMES and "momentum" in KNOB_NAMES


# ------------------------------------------------------------- user-acceptance regressions
def test_zero_d_arrays_are_plain_values() -> None:
    # before: check_int rejected np.array(4) and to_grpo_kwargs passed np.array(0.01) to TRL
    k = knobs_from_params({"learning_rate": np.array(0.01), "steps_per_generation": np.array(4)})
    assert k.steps_per_generation == 4 and k.learning_rate == 0.01
    kwargs = to_grpo_kwargs({"learning_rate": np.array(0.01), "momentum": np.array(0.5)})
    assert kwargs == {"learning_rate": 0.01, "optim": "sgd", "optim_args": "momentum=0.5"}
    assert type(kwargs["learning_rate"]) is float


@pytest.mark.parametrize("params", [None, [("learning_rate", 0.1)], 0.1])
def test_params_must_be_a_mapping(params) -> None:
    # before: a list gave "unknown knob ('learning_rate', 0.1)", None "'NoneType' object is not
    # iterable"
    with pytest.raises(TypeError, match="`params` must be a mapping of trl.GRPOConfig field"):
        knobs_from_params(params)
    with pytest.raises(TypeError, match="`params` must be a mapping"):
        to_grpo_kwargs(params)
    with pytest.raises(TypeError, match="`defaults` must be a mapping"):
        knobs_from_params({"learning_rate": 0.1}, defaults=params or [1])
    with pytest.raises(ValueError, match="`defaults` must use trl.GRPOConfig field names"):
        knobs_from_params({"learning_rate": 0.1}, defaults={"lr": 0.1})


def test_unparsable_momentum_in_optim_args() -> None:
    # before: a bare "could not convert string to float: 'abc'"
    with pytest.raises(ValueError, match="`optim_args` must set momentum to a number, got "
                                         "momentum='abc'"):
        knobs_from_params({"optim": "sgd", "optim_args": "momentum=abc"})


def test_momentum_key_with_adamw_message_matches_the_rule() -> None:
    # the rule: a `momentum` key selects SGD, so it contradicts AdamW even at 0; the message
    # said "must be 0 (or absent)" while rejecting 0
    for value in (0.0, 0.9):
        with pytest.raises(ValueError, match=r"`momentum` must be absent with an AdamW "
                                             rf"optimizer, got momentum={value!r}"):
            knobs_from_params({"momentum": value, "optim": "adamw_torch"})
        with pytest.raises(ValueError, match="must be absent with an AdamW"):
            to_grpo_kwargs({"momentum": value, "optim": "adamw_torch"})
    with pytest.raises(ValueError, match=r"`momentum` must be 0 \(or absent\)"):
        Knobs(learning_rate=0.1, optimizer="adamw", momentum=0.5)


def test_to_params_round_trip_with_processes() -> None:
    k = Knobs(learning_rate=0.01, optimizer="sgd", momentum=0.5, num_processes=2,
              per_device_train_batch_size=4, steps_per_generation=2, num_iterations=2,
              gradient_accumulation_steps=2)
    assert knobs_from_params(k.to_params(), num_processes=k.num_processes) == k
