"""SwAV: self-supervised swapped prediction against Sinkhorn assignments (Caron et al. 2020).

Every view's prototype scores `[B, K]` (cosines of the L2-normalized embedding with unit-norm
prototypes) divided by the temperature are trained to predict the Sinkhorn assignment of each *other*
global view. The assignments are solved over the global batch (plus a queue of past global-view
embeddings once it has filled), with `num_prototypes` prototypes free of classes; the prototypes are
frozen for the first `freeze_prototypes_steps` and re-normalized after every step. No label is used.

The pieces Suave reuses are `unlabeled_crops` (the views, plus mixed copies of the global views
with `unlabeled_mixup_alpha`) and `unlabeled_loss` (their per-row cross-entropies and the queue).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from selax import losses
from selax.methods.base import CLUSTERING, REPRESENTATION, Method, RunInfo, StepInputs
from selax.methods.common import ESTIMATE, checked_marginals, forward_crops
from selax.models.heads import PrototypeHead, normalize_prototypes
from selax.sinkhorn import sinkhorn


@dataclasses.dataclass(frozen=True)
class HParams:
    """SwAV's hyper-parameters (`config.swav`): the paper's defaults."""

    num_prototypes: int | None = 3000  # None: one per class (Suave).
    temperature: float = 0.1
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iters: int = 3
    num_global_views: int = 2
    queue_length: int = 0
    queue_start_step: int = 0
    freeze_prototypes_steps: int = 0
    # The Sinkhorn's prototype masses: None, equipartition; K masses, a known prior (Suave also takes
    # "estimate": learned during training, held in the extras).
    prototype_marginals: tuple[float, ...] | str | None = None
    # Set, tau > 0: the masses are a KL penalty of weight tau on the targets' column sums instead of a
    # constraint (`selax.sinkhorn.sinkhorn`'s prototype_relaxation): a prototype may take more or less than
    # its mass when the scores say so. None: exact.
    prototype_relaxation: float | None = None
    unlabeled_mixup_alpha: float = 0.0  # Mixed global views with mixed Sinkhorn targets; 0: off.


def resolve(hp: HParams, info: RunInfo, section: str = "swav", estimable: bool = False) -> HParams:
    """One prototype per class when `num_prototypes` is unset; the prior checked against that count (an
    estimated one only where `estimable`: with labels to estimate it from)."""
    num_prototypes = hp.num_prototypes or info.num_classes
    relaxation = hp.prototype_relaxation
    if relaxation is not None and not (isinstance(relaxation, (int, float)) and 0 < relaxation < float("inf")):
        raise ValueError(
            f"config.{section}.prototype_relaxation={relaxation!r} must be a number > 0 (the weight that"
            " holds the targets' column sums to the prototype masses; larger is stricter), or None: exact."
        )
    field = f"config.{section}.prototype_marginals"
    marginals = checked_marginals(field, hp.prototype_marginals, num_prototypes)
    if marginals == ESTIMATE and not estimable:
        raise ValueError(
            f"{field}='estimate' is Suave's: with no label, the class proportions cannot be told from the"
            " prototypes' own predictions, which follow the marginals they are trained with. Give the masses,"
            " or leave it unset for equipartition."
        )
    return dataclasses.replace(hp, num_prototypes=num_prototypes, prototype_marginals=marginals)


def build_head(hp: HParams) -> PrototypeHead:
    return PrototypeHead(hp.num_prototypes)


def init_extras(hp: HParams, params: Any, batch_stats: Any) -> dict[str, jnp.ndarray]:
    """The queue of past global-view embeddings `[num_global_views, queue_length, embedding_dim]`, if any."""
    del batch_stats
    if hp.queue_length == 0:
        return {}
    embedding_dim = params["head"]["prototypes"].shape[0]
    return dict(queue=jnp.zeros((hp.num_global_views, hp.queue_length, embedding_dim), jnp.float32))


def prototype_masses(hp: HParams, extras: Any) -> jnp.ndarray | None:
    """The Sinkhorn's prototype marginals `[K]`: the estimate in `extras` (Suave's `prototype_prior`), the
    configured prior, or None."""
    if hp.prototype_marginals == ESTIMATE:
        return extras["prototype_prior"]
    return None if hp.prototype_marginals is None else jnp.asarray(hp.prototype_marginals, jnp.float32)


def assignments(
    hp: HParams,
    prototype_scores: jnp.ndarray,
    queue_scores: jnp.ndarray | None,
    use_queue: jnp.ndarray,
    marginals: jnp.ndarray | None,
) -> jnp.ndarray:
    """Sinkhorn targets `[B, K]` for one global view's scores `[B, K]`, with the queue's `[Q, K]` when used,
    under the prototype `marginals [K]` (None: equipartition)."""

    def solve(scores):
        return sinkhorn(
            jax.lax.stop_gradient(scores),
            hp.sinkhorn_epsilon,
            num_iters=hp.sinkhorn_iters,
            prototype_marginals=marginals,
            prototype_relaxation=hp.prototype_relaxation,
        )

    if queue_scores is None:
        return solve(prototype_scores)
    batch = prototype_scores.shape[0]
    return jax.lax.cond(
        use_queue,
        lambda: solve(jnp.concatenate([prototype_scores, queue_scores]))[:batch],
        lambda: solve(prototype_scores),
    )


def unlabeled_crops(hp: HParams, unlabeled_views: list[jnp.ndarray], key: jax.Array):
    """`(crops, mix_weight)`: the views `[Bu, h, w, C]` (global first), then with mixup a mixed copy of each
    global view (`mix_weight * view + (1 - mix_weight) * its batch neighbour`, weight ~ Beta(alpha, alpha))."""
    alpha = hp.unlabeled_mixup_alpha
    mix_weight = jax.random.beta(key, alpha or 1.0, alpha or 1.0)
    num_mixed = hp.num_global_views if alpha > 0 else 0
    mixed = [losses.mix_with_next(unlabeled_views[i], mix_weight) for i in range(num_mixed)]
    return [*unlabeled_views, *mixed], mix_weight


def unlabeled_loss(
    hp: HParams,
    params: Any,
    extras: Any,
    outputs: list[dict[str, jnp.ndarray]],
    num_views: int,
    mix_weight: jnp.ndarray,
    step: jnp.ndarray,
):
    """`(rows, extras, metrics)` of the network `outputs` on `unlabeled_crops` (the first `num_views` are the
    views, then the mixed copies): per-row swapped-prediction cross-entropies (then the mixed copies'
    against the mix of the next global view's targets), the queue with the new global embeddings in front
    (scored against the prototypes `params['head']['prototypes'] [E, K]`). The targets are solved under
    `prototype_masses`."""
    views, mixed = outputs[:num_views], outputs[num_views:]
    use_queue = step >= hp.queue_start_step
    queue_scores = [None] * hp.num_global_views
    if "queue" in extras:
        queue_scores = [extras["queue"][i] @ params["head"]["prototypes"] for i in range(hp.num_global_views)]
    marginals = prototype_masses(hp, extras)
    targets = [
        assignments(hp, views[i]["head_scores"], queue_scores[i], use_queue, marginals)
        for i in range(hp.num_global_views)
    ]
    rows = losses.swapped_prediction_loss(targets, [o["head_scores"] / hp.temperature for o in views])
    for i, output in enumerate(mixed):
        mixed_target = losses.mix_with_next(targets[(i + 1) % hp.num_global_views], mix_weight)
        rows = jnp.concatenate([rows, losses.soft_cross_entropy(mixed_target, output["head_scores"] / hp.temperature)])
    extras = dict(extras)
    metrics = dict(
        unlabeled_loss=jnp.mean(rows),
        target_entropy=jnp.mean(-jnp.sum(targets[0] * jnp.log(targets[0] + 1e-12), -1)),
    )
    if "queue" in extras:
        new_embeddings = jnp.stack([views[i]["embedding"] for i in range(hp.num_global_views)])
        queue = jnp.concatenate([jax.lax.stop_gradient(new_embeddings), extras["queue"]], axis=1)
        extras["queue"] = queue[:, : hp.queue_length]
    return rows, extras, metrics


def loss_fn(hp: HParams, params: Any, inputs: StepInputs):
    """SwAV's loss: the mean swapped-prediction cross-entropy of the unlabeled views (no label is read)."""
    unlabeled_views = list(inputs.views["unlabeled"])
    crops, mix_weight = unlabeled_crops(hp, unlabeled_views, inputs.rng)
    outputs, batch_stats = forward_crops(inputs.apply_fn, params, inputs.batch_stats, crops, train=True)
    rows, extras, metrics = unlabeled_loss(
        hp, params, inputs.extras, outputs, len(unlabeled_views), mix_weight, inputs.step
    )
    return jnp.mean(rows), (batch_stats, extras, metrics)


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


# The `:smoke` variant's fields of SwAV and Suave: a short queue that starts within the run.
SMOKE = dict(queue_length=lambda n: min(n, 64), queue_start_step=lambda n: min(n, 2))

def head_probabilities(hp: HParams, head_scores: jnp.ndarray) -> jnp.ndarray:
    """The prototype assignment probabilities: softmax of the scores over the temperature."""
    return jax.nn.softmax(head_scores / hp.temperature, axis=-1)


METHOD = Method(
    hparams=HParams,
    build_head=build_head,
    loss_fn=loss_fn,
    evaluations=(REPRESENTATION, CLUSTERING),
    uses_labels=False,
    resolve=resolve,
    init_extras=init_extras,
    mask_gradients=mask_gradients,
    after_update=after_update,
    head_probabilities=head_probabilities,
    smoke=dict(SMOKE, num_prototypes=12),
)
