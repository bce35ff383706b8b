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
import numpy as np
from absl import logging

from selax import losses
from selax.methods import swav
from selax.label_spreading import label_spreading, spread_label_counts
from selax.methods.base import CLASSIFICATION, RunInfo, SplitEmbeddings, StepInputs, derived
from selax.methods.common import ESTIMATE, LabeledTerm, forward_crops, semi_supervised_loss, step_key

# Folded into `PRNGKey(seed)`, then the step, for the images an estimate of the prior subsamples.
PRIOR_SAMPLE_STREAM = 0x9210


@dataclasses.dataclass(frozen=True)
class HParams(swav.HParams, LabeledTerm):
    """Suave's hyper-parameters (`config.suave`): SwAV's, with one prototype per class by default, and the
    labeled term's (`LabeledTerm`).

    `labeled_weight` unset is the per-row frequency weighting of the reference code; a float w gives
    w * labeled + (1 - w) * unlabeled. More prototypes than classes leave free prototypes (e.g. for
    `dataset.unlabeled_classes`). `prototype_marginals` (one positive mass per prototype, e.g. the known
    class frequencies of the unlabeled data) replaces the Sinkhorn's equipartition; "estimate" learns
    them (`update_extras`): before step 0 (and at `prior_updates` evenly spaced steps in all), the
    labels are spread from the labeled images to the training images over a neighbour graph of their
    embeddings, and each class's share of the spread labels becomes its mass. `prototype_relaxation`
    (SwAV's field) makes the masses a penalty rather than a constraint, so a class may take more or
    fewer unlabeled images than its mass.
    """

    num_prototypes: int | None = None  # None: one per class.
    labeled_mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixup of labeled images and labels; 0: off.
    supervised_only: bool = False  # The baseline: labeled images alone, no unlabeled image is seen.
    # prototype_marginals="estimate": how often the prior is estimated (1: once, before step 0, from the
    # starting encoder), from how many images at most (a random subset of the training images beyond),
    # the least mass of a prototype, prior_floor / K, and the graph the labels spread over: each image's
    # prior_neighbors nearest, labels carried with weight prior_alpha per link (`selax.label_spreading`).
    prior_updates: int = 1
    prior_sample_size: int = 8192
    prior_floor: float = 0.1
    prior_neighbors: int = 5
    prior_alpha: float = 0.99
    num_steps: int = derived()
    seed: int = derived()


def resolve(hp: HParams, info: RunInfo) -> HParams:
    if not (
        hp.prior_updates >= 1
        and hp.prior_sample_size >= 64
        and 0 < hp.prior_floor <= 1
        and hp.prior_neighbors >= 1
        and 0 < hp.prior_alpha < 1
    ):
        raise ValueError(
            f"config.suave.prior_updates={hp.prior_updates} must be at least 1,"
            f" config.suave.prior_sample_size={hp.prior_sample_size} at least 64,"
            f" config.suave.prior_floor={hp.prior_floor} in (0, 1],"
            f" config.suave.prior_neighbors={hp.prior_neighbors} at least 1 and"
            f" config.suave.prior_alpha={hp.prior_alpha} in (0, 1)."
        )
    hp = swav.resolve(dataclasses.replace(hp, num_steps=info.num_steps, seed=info.seed), info, "suave", True)
    if hp.prototype_marginals == ESTIMATE and not info.pretrained:
        logging.warning(
            "config.suave.prototype_marginals='estimate' from a randomly initialized encoder: the prior is"
            " estimated before step 0 from its features (on the long-tailed digits it came 8.7 points of"
            " top-1 below the known prior, and 0.6 above it after SwAV pre-training). Pre-train first"
            " (config.pretrain, as configs/default.py does) or set config.model.init_checkpoint, or give"
            " the masses."
        )
    return hp


def init_extras(hp: HParams, params: Any, batch_stats: Any) -> dict[str, jnp.ndarray]:
    """SwAV's extras; with `prototype_marginals="estimate"`, the estimated prior `prototype_prior [K]`,
    uniform until the first estimate (before step 0, `update_extras`)."""
    extras = swav.init_extras(hp, params, batch_stats)
    if hp.prototype_marginals == ESTIMATE:
        extras["prototype_prior"] = jnp.full((hp.num_prototypes,), 1.0 / hp.num_prototypes, jnp.float32)
    return extras


def update_steps(hp: HParams) -> tuple[int, ...]:
    """With `prototype_marginals="estimate"`, the `prior_updates` steps `round(i * num_steps /
    prior_updates)` (step 0 first, duplicates merged) before which the prior is estimated; else none."""
    if hp.prototype_marginals != ESTIMATE:
        return ()
    return tuple(sorted({round(i * hp.num_steps / hp.prior_updates) for i in range(hp.prior_updates)}))


def estimated_prior(prior: jax.Array, counts: jax.Array, floor: float, observed: jax.Array) -> jax.Array:
    """The class prior `[K]` from `counts [K]` of images per class: proportional to the counts over the
    `observed` classes (bool `[K]`, those with labeled images), which share the mass they hold in `prior
    [K]`; the others keep theirs. Every class keeps at least `floor / K` before renormalizing, so none
    reaches zero (each entry is >= floor / (K (1 + floor)))."""
    num_classes = prior.shape[-1]
    counts = jnp.where(observed, counts, 0.0)
    observed_mass = jnp.sum(jnp.where(observed, prior, 0.0))
    shares = jnp.where(observed, counts / jnp.maximum(jnp.sum(counts), 1e-12) * observed_mass, prior)
    shares = jnp.where(jnp.sum(counts) > 0, shares, prior)  # No image reached: nothing learned.
    bounded = jnp.maximum(shares, floor / num_classes)
    return bounded / jnp.sum(bounded)


def prior_sample(hp: HParams, step: int, num_labeled: int, num_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The labeled and training positions an estimate at `step` spreads over: all of them when they fit in
    `prior_sample_size`, else random subsets (labeled images at most half), drawn from the seed and step."""
    labeled_take = min(num_labeled, hp.prior_sample_size // 2)
    train_take = min(num_train, hp.prior_sample_size - labeled_take)
    rng = np.random.default_rng(step_key(hp.seed, PRIOR_SAMPLE_STREAM, step))

    def subset(size: int, take: int) -> np.ndarray:
        return np.arange(size) if take == size else np.sort(rng.choice(size, take, replace=False))

    return subset(num_labeled, labeled_take), subset(num_train, train_take)


def update_extras(
    hp: HParams, extras: Any, params: Any, step: int, embed: SplitEmbeddings
) -> dict[str, jax.Array]:
    """With `prototype_marginals="estimate"`, a new estimate of the prior (`prototype_prior [K]`): the
    labeled images' labels spread over a neighbour graph of (a sample of) the labeled and training images'
    embeddings (`selax.label_spreading`), each class's share of the training images' spread labels,
    bounded below by `prior_floor / K` (`estimated_prior`)."""
    del params
    labeled_embeddings, labels = embed.labeled()
    train_embeddings = embed.train("eval", None)
    labeled_positions, train_positions = prior_sample(hp, step, len(labels), len(train_embeddings))
    labels = np.asarray(labels)[labeled_positions]
    scores = label_spreading(
        labeled_embeddings[labeled_positions],
        labels,
        train_embeddings[train_positions],
        hp.num_prototypes,
        num_neighbors=hp.prior_neighbors,
        alpha=hp.prior_alpha,
    )
    observed = jnp.asarray(np.bincount(labels, minlength=hp.num_prototypes) > 0)
    prior = estimated_prior(extras["prototype_prior"], spread_label_counts(scores), hp.prior_floor, observed)
    return dict(extras, prototype_prior=prior)


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
    return clustering_loss + linear_loss, (batch_stats, extras, metrics)


METHOD = dataclasses.replace(
    swav.METHOD,
    hparams=HParams,
    loss_fn=loss_fn,
    evaluations=(CLASSIFICATION,),
    uses_labels=True,
    resolve=resolve,
    init_extras=init_extras,
    update_steps=update_steps,
    update_extras=update_extras,
    smoke=swav.SMOKE,
)
