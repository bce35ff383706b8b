"""Pieces every method uses: the multi-crop forward with batch statistics threaded through."""

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


def no_extras_update_steps(hp: Any) -> tuple[int, ...]:
    """For methods whose extras change only inside the step: no step needs a whole-split update."""
    del hp
    return ()


def unchanged_extras(hp: Any, extras: Any, train_embeddings: Any, params: Any) -> Any:
    """The `update_extras` of such methods (never called, as they schedule no update)."""
    del hp, train_embeddings, params
    return extras
