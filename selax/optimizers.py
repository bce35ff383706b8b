"""Optimizers of the recipes (LARS, SGD, AdamW) with linear warm-up then cosine decay."""

from typing import Any

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("lars", "sgd", "adamw")


def learning_rate_schedule(
    base_lr: float, total_steps: int, warmup_steps: int, final_lr: float, warmup_start_lr: float = 0.0
) -> optax.Schedule:
    """Linear warm-up from `warmup_start_lr` to `base_lr`, then cosine decay to `final_lr` at `total_steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=warmup_start_lr,
        peak_value=base_lr,
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=final_lr,
    )


def step_decay_schedule(base_lr: float, boundaries: tuple[int, ...], factor: float) -> optax.Schedule:
    """`base_lr` multiplied by `factor` at each step of `boundaries` (SeLa: x0.1 at epochs 150, 300, 350)."""
    return optax.piecewise_constant_schedule(base_lr, {int(b): factor for b in boundaries})


def weight_decay_schedule(initial: float, final: float | None, total_steps: int) -> float | optax.Schedule:
    """Weight decay `initial`, or with `final` set a cosine from `initial` to `final` at `total_steps`
    (DINO: 0.04 -> 0.4)."""
    if final is None:
        return initial

    def schedule(step):
        progress = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
        return final + (initial - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))

    return schedule


def decay_mask(params: Any) -> Any:
    """True for the leaves that take weight decay (and LARS adaptation): not biases, not norm scales."""

    def takes_decay(path, leaf) -> bool:
        del leaf
        name = getattr(path[-1], "key", "")
        return name not in ("bias", "scale")

    return jax.tree_util.tree_map_with_path(takes_decay, params)


def build_optimizer(
    name: str,
    schedule: optax.Schedule,
    *,
    weight_decay: float | optax.Schedule,
    momentum: float = 0.9,
    lars_trust_coefficient: float = 0.001,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
) -> optax.GradientTransformation:
    """The optimizer called `name` (one of `OPTIMIZERS`); biases and norm scales are excluded from decay.

    `weight_decay` may be a schedule for 'sgd' and 'adamw' (`weight_decay_schedule`), not for 'lars'.
    """
    if name == "lars":
        if callable(weight_decay):
            raise ValueError(
                "A weight-decay schedule (config.optimizer.final_weight_decay) needs sgd or adamw, not lars."
            )
        return optax.lars(
            schedule,
            weight_decay=weight_decay,
            weight_decay_mask=decay_mask,
            trust_coefficient=lars_trust_coefficient,
            trust_ratio_mask=decay_mask,
            momentum=momentum,
        )
    if name == "sgd":
        return optax.chain(
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            optax.sgd(schedule, momentum=momentum, nesterov=False),
        )
    if name == "adamw":
        return optax.adamw(schedule, b1=adam_b1, b2=adam_b2, weight_decay=weight_decay, mask=decay_mask)
    raise ValueError(f"Unknown optimizer {name!r}: config.optimizer.name must be one of {OPTIMIZERS}.")


def optimizer_from_config(optimizer: Any, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """`(optimizer, learning-rate schedule)` from `config.optimizer` for a run of `num_steps`: warm-up and
    cosine, or a step decay at `decay_boundaries` when those are set (SeLa)."""
    if optimizer.name not in OPTIMIZERS:
        raise ValueError(f"config.optimizer.name={optimizer.name!r} is not one of {OPTIMIZERS}.")
    if optimizer.decay_boundaries:
        schedule = step_decay_schedule(optimizer.base_lr, optimizer.decay_boundaries, optimizer.decay_factor)
    else:
        schedule = learning_rate_schedule(optimizer.base_lr, num_steps, optimizer.warmup_steps, optimizer.final_lr)
    weight_decay = weight_decay_schedule(optimizer.weight_decay, optimizer.final_weight_decay, num_steps)
    tx = build_optimizer(optimizer.name, schedule, weight_decay=weight_decay, momentum=optimizer.momentum)
    return tx, schedule
