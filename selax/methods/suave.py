"""Suave: SwAV made semi-supervised. Prototypes are class prototypes; one cross-entropy covers both streams.

Unlabeled images: Sinkhorn assignments of the global views' prototype scores (plus a queue of past
embeddings) are the targets of every other view (swapped prediction). Labeled images: the smoothed
ground-truth label is the target, on the same prototype scores divided by the temperature.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from selax import losses
from selax.methods.common import (
    checked_marginals,
    forward_crops,
    no_extras_update_steps,
    unchanged_extras,
)
from selax.models.heads import PrototypeHead, normalize_prototypes
from selax.sinkhorn import sinkhorn

SEMI_SUPERVISED = True


@dataclasses.dataclass(frozen=True)
class HParams:
    """Suave's hyper-parameters (`config.suave` plus the class count)."""

    num_prototypes: int
    temperature: float = 0.1
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iters: int = 3
    label_smoothing: float = 0.01
    labeled_weight: float | None = None  # None: per-row frequency weighting over the concatenation.
    num_global_views: int = 2
    queue_length: int = 0
    queue_start_step: int = 0
    freeze_prototypes_steps: int = 0
    prototype_marginals: tuple[float, ...] | None = None  # None: equipartition.
    labeled_mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixup of labeled images and labels; 0: off.
    unlabeled_mixup_alpha: float = 0.0  # Mixed global views with mixed Sinkhorn targets; 0: off.
    supervised_only: bool = False  # The baseline: labeled images alone, no unlabeled image is seen.


def build_head(hp: HParams) -> nn.Module:
    return PrototypeHead(hp.num_prototypes)


def hparams_from_config(config: Any, num_classes: int, num_examples: int) -> HParams:
    """Suave's hyper-parameters from `config.suave`; one prototype per class unless configured.

    `prototype_marginals` (one positive mass per prototype, e.g. the known class frequencies of the
    unlabeled data) replaces the Sinkhorn's equipartition of the unlabeled targets.
    """
    del num_examples
    fields = dict(config.suave)
    num_prototypes = fields.pop("num_prototypes", None) or num_classes
    marginals = fields.pop("prototype_marginals", None)
    return HParams(
        supervised_only=config.supervised_only,
        num_prototypes=num_prototypes,
        prototype_marginals=checked_marginals("config.suave.prototype_marginals", marginals, num_prototypes),
        **fields,
    )


def init_extras(hp: HParams, params: Any, batch_stats: Any) -> dict[str, jnp.ndarray]:
    """The queue of past global-view embeddings `[num_global_views, queue_length, embedding_dim]`, if any."""
    del batch_stats
    if hp.queue_length == 0:
        return {}
    embedding_dim = params["head"]["prototypes"].shape[0]
    return dict(queue=jnp.zeros((hp.num_global_views, hp.queue_length, embedding_dim), jnp.float32))


def assignments(
    hp: HParams, prototype_scores: jnp.ndarray, queue_scores: jnp.ndarray | None, use_queue: jnp.ndarray
) -> jnp.ndarray:
    """Sinkhorn targets `[B, K]` for one global view's scores `[B, K]`, with the queue's `[Q, K]` when used."""
    marginals = None if hp.prototype_marginals is None else jnp.asarray(hp.prototype_marginals, jnp.float32)

    def solve(scores):
        return sinkhorn(
            jax.lax.stop_gradient(scores),
            hp.sinkhorn_epsilon,
            num_iters=hp.sinkhorn_iters,
            prototype_marginals=marginals,
        )

    if queue_scores is None:
        return solve(prototype_scores)
    batch = prototype_scores.shape[0]
    return jax.lax.cond(
        use_queue,
        lambda: solve(jnp.concatenate([prototype_scores, queue_scores]))[:batch],
        lambda: solve(prototype_scores),
    )


def loss_fn(
    hp: HParams,
    apply_fn: Callable[..., Any],
    params: Any,
    batch_stats: Any,
    extras: Any,
    views: dict[str, Any],
    labels: jnp.ndarray,
    step: jnp.ndarray,
    rng: jax.Array,
):
    """Suave's loss. `views['labeled'] [Bl, H, W, C]`, `views['unlabeled']`: global views first, `[Bu, h, w, C]` each.

    With mixup on, labeled images are mixed with their batch neighbour (targets likewise), and each
    global view gets a mixed copy whose target is the mix of the next global view's assignments.
    Returns `(loss, (batch_stats, extras, metrics))`; the loss includes the online linear head's
    cross-entropy on labeled images (which reaches only the linear head).
    """
    labeled_key, unlabeled_key = jax.random.split(rng)
    labeled_view = views["labeled"]
    labeled_targets = losses.smoothed_one_hot(labels, hp.num_prototypes, hp.label_smoothing)
    labeled_weight = 1.0  # Mixup weight of the labeled images: 1 is no mixup.
    if hp.labeled_mixup_alpha > 0:
        labeled_weight = jax.random.beta(labeled_key, hp.labeled_mixup_alpha, hp.labeled_mixup_alpha)
        labeled_view = losses.mix_with_next(labeled_view, labeled_weight)
        labeled_targets = losses.mix_with_next(labeled_targets, labeled_weight)
    unlabeled_views = [] if hp.supervised_only else list(views["unlabeled"])
    num_mixed = hp.num_global_views if hp.unlabeled_mixup_alpha > 0 and not hp.supervised_only else 0
    unlabeled_weight = jax.random.beta(
        unlabeled_key, hp.unlabeled_mixup_alpha or 1.0, hp.unlabeled_mixup_alpha or 1.0
    )
    mixed_views = [losses.mix_with_next(unlabeled_views[i], unlabeled_weight) for i in range(num_mixed)]

    crops = [labeled_view, *unlabeled_views, *mixed_views]
    outputs, batch_stats = forward_crops(apply_fn, params, batch_stats, crops, train=True)
    labeled = outputs[0]
    unlabeled = outputs[1 : 1 + len(unlabeled_views)]
    mixed = outputs[1 + len(unlabeled_views) :]
    num_classes = labeled["linear_logits"].shape[-1]

    labeled_rows = losses.soft_cross_entropy(labeled_targets, labeled["head_scores"] / hp.temperature)
    linear_targets = losses.mix_with_next(jax.nn.one_hot(labels, num_classes), labeled_weight)
    linear_loss = jnp.mean(losses.soft_cross_entropy(linear_targets, labeled["linear_logits"]))
    metrics = {
        "labeled_loss": jnp.mean(labeled_rows),
        "linear_loss": linear_loss,
        "labeled_top1": jnp.mean(jnp.argmax(labeled["head_scores"], -1) == labels),
    }
    if hp.supervised_only:
        return jnp.mean(labeled_rows) + linear_loss, (batch_stats, extras, metrics)

    prototypes = params["head"]["prototypes"]
    use_queue = step >= hp.queue_start_step
    queue_scores = [extras["queue"][i] @ prototypes if extras else None for i in range(hp.num_global_views)]
    targets = [
        assignments(hp, unlabeled[i]["head_scores"], queue_scores[i], use_queue)
        for i in range(hp.num_global_views)
    ]
    unlabeled_rows = losses.swapped_prediction_loss(
        targets, [o["head_scores"] / hp.temperature for o in unlabeled]
    )
    for i, output in enumerate(mixed):
        mixed_target = losses.mix_with_next(targets[(i + 1) % hp.num_global_views], unlabeled_weight)
        mixed_rows = losses.soft_cross_entropy(mixed_target, output["head_scores"] / hp.temperature)
        unlabeled_rows = jnp.concatenate([unlabeled_rows, mixed_rows])
    clustering_loss = losses.frequency_weighted_mean(labeled_rows, unlabeled_rows, hp.labeled_weight)
    if extras:
        new_embeddings = jnp.stack([unlabeled[i]["embedding"] for i in range(hp.num_global_views)])
        queue = jnp.concatenate([jax.lax.stop_gradient(new_embeddings), extras["queue"]], axis=1)
        extras = dict(queue=queue[:, : hp.queue_length])
    metrics.update(
        clustering_loss=clustering_loss,
        unlabeled_loss=jnp.mean(unlabeled_rows),
        target_entropy=jnp.mean(-jnp.sum(targets[0] * jnp.log(targets[0] + 1e-12), -1)),
    )
    return clustering_loss + linear_loss, (batch_stats, extras, metrics)


def mask_gradients(hp: HParams, grads: Any, step: jnp.ndarray) -> Any:
    """Zeroes the prototypes' gradient for the first `freeze_prototypes_steps` steps."""
    if hp.freeze_prototypes_steps == 0:
        return grads
    frozen = step < hp.freeze_prototypes_steps
    head = dict(grads["head"], prototypes=jnp.where(frozen, 0.0, grads["head"]["prototypes"]))
    return dict(grads, head=head)


def after_update(hp: HParams, params: Any, extras: Any, step: jnp.ndarray) -> tuple[Any, Any]:
    """Renormalizes the prototypes to unit length after each optimizer step."""
    del hp, step
    return normalize_prototypes(params), extras


# The extras (the queue) change only inside the step.
extras_update_steps = no_extras_update_steps
update_extras = unchanged_extras


def eval_variables(params: Any, batch_stats: Any, extras: Any) -> dict[str, Any]:
    del extras
    return {"params": params, "batch_stats": batch_stats}
