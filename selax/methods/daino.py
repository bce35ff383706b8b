"""Daino: DINO made semi-supervised. The DINO head has one output per class; one cross-entropy covers both
streams.

Unlabeled images: DINO's teacher targets (`selax.methods.dino`). Labeled images: the smoothed
ground-truth label is the target of the student's logits divided by the student temperature. The two
streams' per-row cross-entropies are combined by `labeled_weight`, the unlabeled one ramped up over
`unlabeled_rampup_steps`; evaluation reads the teacher.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from selax import losses
from selax.methods import dino
from selax.methods.base import CLASSIFICATION, StepInputs
from selax.methods.common import LabeledTerm, forward_crops, semi_supervised_loss


@dataclasses.dataclass(frozen=True)
class HParams(dino.HParams, LabeledTerm):
    """Daino's hyper-parameters (`config.daino`): DINO's, with one output per class by default and the
    ImageNet recipe's teacher momentum 0.990, and the labeled term's (`LabeledTerm`)."""

    num_outputs: int | None = None  # None: one per class.
    teacher_momentum: float = 0.990  # Rises to 1 by a cosine over the run.


def loss_fn(hp: HParams, params: Any, inputs: StepInputs):
    """Daino's loss: `views['labeled'] [Bl, H, W, C]` with `labels [Bl]`, and DINO's unlabeled views.

    Returns `(loss, (batch_stats, extras, metrics))`: the student's new BatchNorm statistics, and extras
    with the teacher's new statistics and the new center. The loss includes the online linear head's
    cross-entropy on labeled images.
    """
    crops = [inputs.views["labeled"], *inputs.views["unlabeled"]]
    outputs, batch_stats = forward_crops(inputs.apply_fn, params, inputs.batch_stats, crops, train=True)
    labeled = outputs[0]
    num_classes = labeled["linear_logits"].shape[-1]
    unlabeled_rows, extras, metrics = dino.teacher_targets(hp, inputs, outputs[1:])

    labeled_targets = losses.smoothed_one_hot(inputs.labels, hp.num_outputs, hp.label_smoothing)
    labeled_rows = losses.soft_cross_entropy(labeled_targets, labeled["head_scores"] / hp.student_temperature)
    linear_loss = jnp.mean(
        losses.soft_cross_entropy(jax.nn.one_hot(inputs.labels, num_classes), labeled["linear_logits"])
    )
    clustering_loss = semi_supervised_loss(hp, labeled_rows, unlabeled_rows, inputs.step)
    metrics.update(
        labeled_loss=jnp.mean(labeled_rows),
        clustering_loss=clustering_loss,
        linear_loss=linear_loss,
        labeled_top1=jnp.mean(jnp.argmax(labeled["head_scores"], -1) == inputs.labels),
    )
    return clustering_loss + linear_loss, (batch_stats, extras, metrics)


METHOD = dataclasses.replace(
    dino.METHOD,
    hparams=HParams,
    loss_fn=loss_fn,
    evaluations=(CLASSIFICATION,),
    uses_labels=True,
    smoke=dict(head_hidden_dim=32, head_bottleneck_dim=16),
)
