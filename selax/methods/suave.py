"""Suave: SwAV made semi-supervised. Prototypes are class prototypes; one cross-entropy covers both streams.

Unlabeled images: SwAV's swapped prediction (`selax.methods.swav`) with one prototype per class. Labeled
images: the smoothed ground-truth label is the target, on the same prototype scores divided by the
temperature. The two streams' per-row cross-entropies are combined by `labeled_weight`, the unlabeled one
ramped up over `unlabeled_rampup_steps`.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from selax import losses
from selax.methods import swav
from selax.methods.base import CLASSIFICATION, RunInfo, StepInputs
from selax.methods.common import (
    ESTIMATE,
    LabeledTerm,
    forward_crops,
    prior_adjusted,
    semi_supervised_loss,
    updated_prior,
)


@dataclasses.dataclass(frozen=True)
class HParams(swav.HParams, LabeledTerm):
    """Suave's hyper-parameters (`config.suave`): SwAV's, with one prototype per class by default, and the
    labeled term's (`LabeledTerm`).

    `labeled_weight` unset is the per-row frequency weighting of the reference code; a float w gives
    w * labeled + (1 - w) * unlabeled. More prototypes than classes leave free prototypes (e.g. for
    `dataset.unlabeled_classes`). `prototype_marginals` (one positive mass per prototype, e.g. the known
    class frequencies of the unlabeled data) replaces the Sinkhorn's equipartition; "estimate" learns
    them during training from the unlabeled images' nearest labeled class means
    (`class_mean_probabilities`). `prototype_relaxation` (SwAV's field) makes the masses a penalty
    rather than a constraint, so a class may take more or fewer unlabeled images than its mass.
    """

    num_prototypes: int | None = None  # None: one per class.
    labeled_mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixup of labeled images and labels; 0: off.
    supervised_only: bool = False  # The baseline: labeled images alone, no unlabeled image is seen.
    prior_momentum: float = 0.99  # prototype_marginals="estimate": the estimate's moving-average momentum per step.
    prior_floor: float = 0.1  # prototype_marginals="estimate": no prototype's mass falls below prior_floor / K.


def resolve(hp: HParams, info: RunInfo) -> HParams:
    if not (0 <= hp.prior_momentum < 1 and 0 < hp.prior_floor <= 1):
        raise ValueError(
            f"config.suave.prior_momentum={hp.prior_momentum} must be in [0, 1) and"
            f" config.suave.prior_floor={hp.prior_floor} in (0, 1]."
        )
    return swav.resolve(hp, info, section="suave", estimable=True)


def init_extras(hp: HParams, params: Any, batch_stats: Any) -> dict[str, jnp.ndarray]:
    """SwAV's extras; with `prototype_marginals="estimate"`, the estimated prior `prototype_prior [K]`,
    uniform at first."""
    extras = swav.init_extras(hp, params, batch_stats)
    if hp.prototype_marginals == ESTIMATE:
        extras["prototype_prior"] = jnp.full((hp.num_prototypes,), 1.0 / hp.num_prototypes, jnp.float32)
    return extras


def class_mean_probabilities(
    labeled_embeddings: jnp.ndarray,
    labels: jnp.ndarray,
    unlabeled_embeddings: jnp.ndarray,
    num_classes: int,
    temperature: float,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`(probabilities [Bu, K], observed [K])`: class probabilities of unlabeled embeddings `[Bu, E]` by
    their cosine to each class's mean labeled embedding (`labeled_embeddings [Bl, E]`, `labels [Bl]`)
    over `temperature`, among the classes the labeled batch holds (`observed`). A classifier with no
    class prior of its own, nor the Sinkhorn's: the evidence for estimating the unlabeled class
    proportions. No gradient flows."""

    def unit(x: jnp.ndarray) -> jnp.ndarray:
        return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    one_hot = jax.nn.one_hot(labels, num_classes)
    counts = jnp.sum(one_hot, axis=0)
    means = unit(one_hot.T @ unit(jax.lax.stop_gradient(labeled_embeddings)) / jnp.maximum(counts, 1.0)[:, None])
    cosines = unit(jax.lax.stop_gradient(unlabeled_embeddings)) @ means.T
    observed = counts > 0
    return jax.nn.softmax(jnp.where(observed[None], cosines / temperature, -jnp.inf), axis=-1), observed


def loss_fn(hp: HParams, params: Any, inputs: StepInputs):
    """Suave's loss: `views['labeled'] [Bl, H, W, C]` with `labels [Bl]`, and SwAV's unlabeled views.

    With mixup on, labeled images are mixed with their batch neighbour (targets likewise), and each
    global view gets a mixed copy (`swav.unlabeled_crops`). Returns `(loss, (batch_stats, extras,
    metrics))`; the loss includes the online linear head's cross-entropy on labeled images (which
    reaches only the linear head).
    """
    labels = inputs.labels
    labeled_key, unlabeled_key = jax.random.split(inputs.rng)
    labeled_view = inputs.views["labeled"]
    labeled_targets = losses.smoothed_one_hot(labels, hp.num_prototypes, hp.label_smoothing)
    labeled_weight = 1.0  # Mixup weight of the labeled images: 1 is no mixup.
    if hp.labeled_mixup_alpha > 0:
        labeled_weight = jax.random.beta(labeled_key, hp.labeled_mixup_alpha, hp.labeled_mixup_alpha)
        labeled_view = losses.mix_with_next(labeled_view, labeled_weight)
        labeled_targets = losses.mix_with_next(labeled_targets, labeled_weight)
    unlabeled_views = [] if hp.supervised_only else list(inputs.views["unlabeled"])
    unlabeled_crops, mix_weight = swav.unlabeled_crops(hp, unlabeled_views, unlabeled_key)

    # One forward over every crop: labeled and global views of one resolution share BatchNorm statistics.
    outputs, batch_stats = forward_crops(
        inputs.apply_fn, params, inputs.batch_stats, [labeled_view, *unlabeled_crops], train=True
    )
    labeled = outputs[0]
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
        return jnp.mean(labeled_rows) + linear_loss, (batch_stats, inputs.extras, metrics)

    unlabeled_rows, extras, unlabeled_metrics = swav.unlabeled_loss(
        hp,
        params,
        inputs.extras,
        outputs[1:],
        len(unlabeled_views),
        mix_weight,
        inputs.step,
    )
    clustering_loss = semi_supervised_loss(hp, labeled_rows, unlabeled_rows, inputs.step)
    metrics.update(unlabeled_metrics, clustering_loss=clustering_loss)
    if hp.prototype_marginals == ESTIMATE:  # One EM step of the unlabeled class proportions, averaged.
        prior = inputs.extras["prototype_prior"]
        unlabeled_embeddings = jnp.concatenate([outputs[1 + i]["embedding"] for i in range(hp.num_global_views)])
        evidence, observed = class_mean_probabilities(
            labeled["embedding"], labels, unlabeled_embeddings, hp.num_prototypes, hp.temperature
        )
        evidence = prior_adjusted(evidence, jnp.where(observed, prior, 0.0))
        new_prior = updated_prior(prior, evidence, hp.prior_momentum, hp.prior_floor, observed)
        extras = dict(extras, prototype_prior=new_prior)
        metrics.update(prior_min=jnp.min(prior), prior_max=jnp.max(prior))
    return clustering_loss + linear_loss, (batch_stats, extras, metrics)


METHOD = dataclasses.replace(
    swav.METHOD,
    hparams=HParams,
    loss_fn=loss_fn,
    evaluations=(CLASSIFICATION,),
    uses_labels=True,
    resolve=resolve,
    init_extras=init_extras,
    smoke=swav.SMOKE,
)
