"""Pieces every method uses: the multi-crop forward with batch statistics threaded through, the labeled
term of the semi-supervised methods, the host-side keys of whole-split updates, and the check of a
configured class prior."""

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from selax import losses
from selax.models.heads import apply_per_resolution


def forward_crops(
    apply_fn: Callable[..., Any], params: Any, batch_stats: Any, crops: Sequence[jnp.ndarray], train: bool
) -> tuple[list[dict[str, jnp.ndarray]], Any]:
    """Runs the network once per distinct crop resolution; returns per-crop outputs and new batch stats.

    Crops of one resolution share one forward (and so one set of BatchNorm batch statistics, global over
    the sharded batch); the running statistics are updated once per resolution, in order.
    """
    stats = batch_stats

    def forward(images: jnp.ndarray) -> dict[str, jnp.ndarray]:
        nonlocal stats
        if not train:
            return apply_fn({"params": params, "batch_stats": stats}, images, train=False)
        outputs, updates = apply_fn(
            {"params": params, "batch_stats": stats}, images, train=True, mutable=["batch_stats"]
        )
        stats = updates["batch_stats"]
        return outputs

    outputs = apply_per_resolution(forward, crops)
    return outputs, stats


@dataclasses.dataclass(frozen=True)
class LabeledTerm:
    """The hyper-parameters of the labeled term that Suave and Daino add to their unlabeled loss."""

    label_smoothing: float = 0.01
    labeled_weight: float | None = None  # None: per-row frequency weighting over the concatenation.
    unlabeled_rampup_steps: int = 0  # The unlabeled term's weight rises linearly from 0 to 1 over these steps.


def semi_supervised_loss(
    hp: LabeledTerm, labeled_rows: jax.Array, unlabeled_rows: jax.Array, step: jax.Array
) -> jax.Array:
    """One scalar from the labeled `[Bl]` and unlabeled `[Bu']` per-row cross-entropies: the unlabeled rows
    scaled by the ramp-up factor `min(step / unlabeled_rampup_steps, 1)`, then combined by
    `labeled_weight` (`losses.frequency_weighted_mean`)."""
    steps = hp.unlabeled_rampup_steps
    ramp = jnp.clip(step / steps, 0.0, 1.0) if steps else 1.0
    return losses.frequency_weighted_mean(labeled_rows, ramp * unlabeled_rows, hp.labeled_weight)


def step_key(seed: int, stream: int, step: int) -> np.ndarray:
    """uint32 `[2]`: the key of a whole-split update before `step` (SeLa's label-step views, Suave's prior
    sample), from the run's seed, the update's `stream` and the step alone (host-side, so the same in every
    process)."""
    return np.asarray(jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), stream), step))


ESTIMATE = "estimate"  # A class prior estimated from the training images (Suave: `update_extras`).


def checked_marginals(
    field: str, marginals: Sequence[float] | str | None, length: int
) -> tuple[float, ...] | str | None:
    """A configured prior over the `length` prototypes (Sinkhorn's column marginals), as floats, or
    `ESTIMATE`.

    None or empty means equipartition (returns None). The masses need not sum to 1: the Sinkhorn
    normalizes them. Raises a ValueError naming the config `field` unless there are `length` finite,
    strictly positive masses or the word `ESTIMATE`.
    """
    if marginals is None or len(marginals) == 0:
        return None
    if isinstance(marginals, str):
        if marginals != ESTIMATE:
            raise ValueError(
                f"{field}={marginals!r}: give one mass per prototype, {ESTIMATE!r} (learned from the"
                " unlabeled images), or leave it unset for equipartition."
            )
        return ESTIMATE
    masses = tuple(float(m) for m in marginals)
    if len(masses) != length:
        raise ValueError(
            f"{field} has {len(masses)} entries but there are {length} prototypes: give one mass per"
            " prototype (e.g. the class frequencies), or leave it unset for equipartition."
        )
    if not all(math.isfinite(m) and m > 0 for m in masses):
        raise ValueError(
            f"{field}={masses} must be finite and strictly positive: give every prototype some mass"
            " (a small one for a rare class)."
        )
    return masses
