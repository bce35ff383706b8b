"""Cross-entropies shared by the methods: soft targets, smoothed labels, swapped prediction, DINO targets.

Pure functions of arrays. Targets are treated as constants (`stop_gradient`) wherever they are targets.
"""

import jax
import jax.numpy as jnp


def soft_cross_entropy(targets: jnp.ndarray, logits: jnp.ndarray) -> jnp.ndarray:
    """Per-row `-sum_k targets[..., k] * log_softmax(logits)[..., k]`: `[..., K], [..., K] -> [...]`."""
    targets = jax.lax.stop_gradient(targets)
    return -jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)


def smoothed_one_hot(labels: jnp.ndarray, num_classes: int, smoothing: float) -> jnp.ndarray:
    """`labels [...] int -> [..., num_classes]`: one-hot with `smoothing` mass spread uniformly over all classes."""
    return (1.0 - smoothing) * jax.nn.one_hot(labels, num_classes) + smoothing / num_classes


def swapped_prediction_loss(targets: list[jnp.ndarray], view_logits: list[jnp.ndarray]) -> jnp.ndarray:
    """SwAV's swapped prediction: each target view's assignment supervises every *other* view.

    Args:
      targets: one `[B, K]` assignment per target view; target view `i` is `view_logits[i]`.
      view_logits: `[B, K]` logits for every view (target views first).
    Returns:
      per-row losses `[len(targets) * (len(view_logits) - 1) * B]`, in (target, view) order.
    """
    rows = [
        soft_cross_entropy(target, logits)
        for i, target in enumerate(targets)
        for j, logits in enumerate(view_logits)
        if j != i
    ]
    return jnp.concatenate(rows)


def frequency_weighted_mean(
    labeled_rows: jnp.ndarray, unlabeled_rows: jnp.ndarray, labeled_weight: float | None
) -> jnp.ndarray:
    """Combines labeled and unlabeled per-row losses into one scalar.

    `labeled_weight=None` is the per-row frequency weighting of Suave's reference code: the mean over the
    concatenation of all rows. A float `w` in [0, 1] gives `w * mean(labeled) + (1 - w) * mean(unlabeled)`.
    """
    if labeled_weight is None:
        return jnp.mean(jnp.concatenate([labeled_rows, unlabeled_rows]))
    return labeled_weight * jnp.mean(labeled_rows) + (1.0 - labeled_weight) * jnp.mean(unlabeled_rows)


def dino_targets(
    teacher_logits: jnp.ndarray, center: jnp.ndarray, temperature: jnp.ndarray | float
) -> jnp.ndarray:
    """DINO's teacher target `softmax((teacher_logits - center) / temperature)`: `[B, K], [K] -> [B, K]`."""
    return jax.nn.softmax(jax.lax.stop_gradient(teacher_logits - center) / temperature, axis=-1)


def mix_with_next(x: jnp.ndarray, weight: jnp.ndarray | float) -> jnp.ndarray:
    """Mixup partner: `weight * x + (1 - weight) * x` rolled by one along the batch axis. `[B, ...]`."""
    return weight * x + (1.0 - weight) * jnp.roll(x, 1, axis=0)
