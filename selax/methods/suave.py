"""Suave: SwAV made semi-supervised. Prototypes are class prototypes; one cross-entropy covers both streams.

Unlabeled images: SwAV's swapped prediction (`selax.methods.swav`) with one prototype per class. Labeled
images: the smoothed ground-truth label is the target, on the same prototype scores divided by the
temperature. The two streams' per-row cross-entropies are combined by `labeled_weight`.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from selax import losses
from selax.methods import swav
from selax.methods.base import CLASSIFICATION, RunInfo, StepInputs
from selax.methods.common import forward_crops


@dataclasses.dataclass(frozen=True)
class HParams(swav.HParams):
    """Suave's hyper-parameters (`config.suave`): SwAV's, with one prototype per class by default, and the
    labeled term's.

    `labeled_weight` unset is the per-row frequency weighting of the reference code; a float w gives
    w * labeled + (1 - w) * unlabeled. More prototypes than classes leave free prototypes (e.g. for
    `dataset.unlabeled_classes`). `prototype_marginals` (one positive mass per prototype, e.g. the known
    class frequencies of the unlabeled data) replaces the Sinkhorn's equipartition.
    """

    num_prototypes: int | None = None  # None: one per class.
    label_smoothing: float = 0.01
    labeled_weight: float | None = None  # None: per-row frequency weighting over the concatenation.
    labeled_mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixup of labeled images and labels; 0: off.
    supervised_only: bool = False  # The baseline: labeled images alone, no unlabeled image is seen.


def resolve(hp: HParams, info: RunInfo) -> HParams:
    return swav.resolve(hp, info, section="suave")


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
    clustering_loss = losses.frequency_weighted_mean(labeled_rows, unlabeled_rows, hp.labeled_weight)
    metrics.update(unlabeled_metrics, clustering_loss=clustering_loss)
    return clustering_loss + linear_loss, (batch_stats, extras, metrics)


METHOD = dataclasses.replace(
    swav.METHOD,
    hparams=HParams,
    loss_fn=loss_fn,
    evaluations=(CLASSIFICATION,),
    uses_labels=True,
    resolve=resolve,
    smoke=swav.SMOKE,
)
