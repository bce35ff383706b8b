"""Pieces every method uses: the multi-crop forward with batch statistics threaded through, and the
check of a configured class prior."""

import math
from typing import Any, Callable, Sequence

import jax.numpy as jnp

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


def checked_marginals(field: str, marginals: Sequence[float] | None, length: int) -> tuple[float, ...] | None:
    """A configured prior over the `length` prototypes (Sinkhorn's column marginals), as floats.

    None or empty means equipartition (returns None). The masses need not sum to 1: the Sinkhorn
    normalizes them. Raises a ValueError naming the config `field` unless there are `length` finite,
    strictly positive masses.
    """
    if marginals is None or len(marginals) == 0:
        return None
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
