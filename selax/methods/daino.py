"""Daino: DINO made semi-supervised. An EMA teacher's centered, sharpened outputs are the student's targets.

Unlabeled images: the teacher sees the global views; each teacher view's target
`softmax((teacher_logits - center) / T_t)` supervises every student view except the same view. Labeled
images: the smoothed ground-truth label is the target of the student's logits divided by the student
temperature. The teacher (params and BatchNorm statistics) and the center live in the state's extras and
change only by moving averages; evaluation reads the teacher.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from selax import losses
from selax.methods.common import forward_crops, no_extras_update_steps, unchanged_extras
from selax.models.heads import DINOHead, l2_normalize

SEMI_SUPERVISED = True


@dataclasses.dataclass(frozen=True)
class HParams:
    """Daino's hyper-parameters (`config.daino` plus the class count and the run length)."""

    num_outputs: int
    num_steps: int
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    head_layers: int = 3
    student_temperature: float = 0.1
    teacher_temperature: float = 0.07
    warmup_teacher_temperature: float = 0.04
    teacher_temperature_warmup_steps: int = 0
    teacher_momentum: float = 0.990  # Rises to 1 by a cosine over `num_steps`.
    center_momentum: float = 0.9
    label_smoothing: float = 0.01
    labeled_weight: float | None = None  # None: per-row frequency weighting over the concatenation.
    num_global_views: int = 2


def hparams_from_config(config: Any, num_classes: int, num_examples: int) -> HParams:
    """Daino's hyper-parameters from `config.daino`; one output per class unless configured."""
    del num_examples
    fields = dict(config.daino)
    return HParams(
        num_outputs=fields.pop("num_outputs", None) or num_classes, num_steps=config.num_steps, **fields
    )


def build_head(hp: HParams) -> nn.Module:
    return DINOHead(hp.num_outputs, hp.head_hidden_dim, hp.head_bottleneck_dim, hp.head_layers)


def init_extras(hp: HParams, params: Any, batch_stats: Any) -> dict[str, Any]:
    """The teacher, a copy of the initial student, and the center `[num_outputs]` (zeros)."""
    return dict(
        teacher_params=params,
        teacher_batch_stats=batch_stats,
        center=jnp.zeros((hp.num_outputs,), jnp.float32),
    )


def teacher_temperature(hp: HParams, step: jnp.ndarray) -> jnp.ndarray:
    """Linear warm-up from `warmup_teacher_temperature` to `teacher_temperature` over the warm-up steps."""
    progress = jnp.clip(step / max(hp.teacher_temperature_warmup_steps, 1), 0.0, 1.0)
    return hp.warmup_teacher_temperature + progress * (hp.teacher_temperature - hp.warmup_teacher_temperature)


def teacher_momentum(hp: HParams, step: jnp.ndarray) -> jnp.ndarray:
    """`1 - (1 - m0) * (1 + cos(pi * step / num_steps)) / 2`: `teacher_momentum` at step 0, 1 at the end."""
    progress = jnp.clip(step / max(hp.num_steps, 1), 0.0, 1.0)
    return 1.0 - (1.0 - hp.teacher_momentum) * 0.5 * (1.0 + jnp.cos(np.pi * progress))


def ema(average: Any, value: Any, momentum: jnp.ndarray | float) -> Any:
    """`momentum * average + (1 - momentum) * value`, leaf by leaf."""
    return jax.tree_util.tree_map(lambda a, v: momentum * a + (1.0 - momentum) * v, average, value)


def updated_center(center: jnp.ndarray, teacher_logits: jnp.ndarray, momentum: float) -> jnp.ndarray:
    """EMA of the teacher's mean output over the global batch: `[K], [V, B, K] -> [K]`."""
    return momentum * center + (1.0 - momentum) * jnp.mean(teacher_logits, axis=(0, 1))


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
    """Daino's loss. `views['labeled'] [Bl, H, W, C]`, `views['unlabeled']`: global views first, `[Bu, h, w, C]` each.

    Returns `(loss, (batch_stats, extras, metrics))`: the student's new BatchNorm statistics, and extras
    with the teacher's new statistics (from its forward on the global views) and the new center. The loss
    includes the online linear head's cross-entropy on labeled images.
    """
    del rng  # No random choice beyond the augmentations.
    crops = [views["labeled"], *views["unlabeled"]]
    outputs, batch_stats = forward_crops(apply_fn, params, batch_stats, crops, train=True)
    labeled, unlabeled = outputs[0], outputs[1:]
    num_classes = labeled["linear_logits"].shape[-1]

    teacher_outputs, teacher_batch_stats = forward_crops(
        apply_fn,
        jax.lax.stop_gradient(extras["teacher_params"]),
        extras["teacher_batch_stats"],
        views["unlabeled"][: hp.num_global_views],
        train=True,
    )
    teacher_logits = jnp.stack([o["head_scores"] for o in teacher_outputs])  # [V, Bu, K]
    temperature = teacher_temperature(hp, step)
    targets = [losses.dino_targets(logits, extras["center"], temperature) for logits in teacher_logits]
    unlabeled_rows = losses.swapped_prediction_loss(
        targets, [o["head_scores"] / hp.student_temperature for o in unlabeled]
    )

    labeled_targets = losses.smoothed_one_hot(labels, hp.num_outputs, hp.label_smoothing)
    labeled_rows = losses.soft_cross_entropy(labeled_targets, labeled["head_scores"] / hp.student_temperature)
    linear_loss = jnp.mean(
        losses.soft_cross_entropy(jax.nn.one_hot(labels, num_classes), labeled["linear_logits"])
    )
    clustering_loss = losses.frequency_weighted_mean(labeled_rows, unlabeled_rows, hp.labeled_weight)
    extras = dict(
        extras,
        teacher_batch_stats=teacher_batch_stats,
        center=updated_center(extras["center"], jax.lax.stop_gradient(teacher_logits), hp.center_momentum),
    )
    metrics = {
        "labeled_loss": jnp.mean(labeled_rows),
        "unlabeled_loss": jnp.mean(unlabeled_rows),
        "clustering_loss": clustering_loss,
        "linear_loss": linear_loss,
        "labeled_top1": jnp.mean(jnp.argmax(labeled["head_scores"], -1) == labels),
        "teacher_temperature": temperature,
        "target_entropy": jnp.mean(-jnp.sum(targets[0] * jnp.log(targets[0] + 1e-12), -1)),
    }
    return clustering_loss + linear_loss, (batch_stats, extras, metrics)


def normalize_last_layer(params: Any) -> Any:
    """Rescales the DINO head's last-layer directions `[bottleneck, K]` to unit columns.

    The head divides them by their norm, so its output does not change; what changes is the step size:
    the gradient of `v / ||v||` scales with `1 / ||v||`, so small directions would take huge steps.
    """

    def normalize(path, leaf):
        return (
            l2_normalize(leaf, axis=0) if getattr(path[-1], "key", None) == "last_layer_direction" else leaf
        )

    return jax.tree_util.tree_map_with_path(normalize, params)


def mask_gradients(hp: HParams, grads: Any, step: jnp.ndarray) -> Any:
    del hp, step
    return grads


def after_update(hp: HParams, params: Any, extras: Any, step: jnp.ndarray) -> tuple[Any, Any]:
    """Unit-normalizes the student's last-layer directions (`normalize_last_layer`), then moves the
    teacher's params towards the student's (cosine momentum schedule).

    `extras` is None at initialization, before the teacher exists; only the normalization applies then.
    """
    params = normalize_last_layer(params)
    if extras is None:
        return params, extras
    teacher = ema(extras["teacher_params"], params, teacher_momentum(hp, step))
    return params, dict(extras, teacher_params=teacher)


# The extras (teacher, center) change only inside the step.
extras_update_steps = no_extras_update_steps
update_extras = unchanged_extras


def eval_variables(params: Any, batch_stats: Any, extras: Any) -> dict[str, Any]:
    """The teacher's variables: Daino evaluates the teacher."""
    del params, batch_stats
    return {"params": extras["teacher_params"], "batch_stats": extras["teacher_batch_stats"]}
