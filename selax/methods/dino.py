"""DINO: self-distillation with no labels (Caron et al. 2021). An EMA teacher's centred, sharpened outputs
are the student's targets.

The teacher (an exponential moving average of the student's params, with its own BatchNorm statistics)
sees the global views; each teacher view's target `softmax((teacher_logits - center) / T_t)` supervises
every student view except the same view, at the student temperature. The teacher temperature warms up
linearly, the teacher momentum rises to 1 by a cosine over the run, and the center is an EMA of the
teacher's mean output over the global batch. The teacher, its statistics and the center are the state's
extras; evaluation reads the teacher. The head is DINO's MLP with a weight-normalized last layer of
`num_outputs` dimensions, free of classes. No label is used.

`teacher_targets` and `after_update` are what Daino reuses.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from selax import losses
from selax.methods.base import CLUSTERING, REPRESENTATION, Method, RunInfo, StepInputs, derived
from selax.methods.common import forward_crops
from selax.models.heads import DINOHead, l2_normalize


@dataclasses.dataclass(frozen=True)
class HParams:
    """DINO's hyper-parameters (`config.dino`): the paper's defaults (ViT-S/16, ImageNet)."""

    num_outputs: int | None = 65536  # None: one per class (Daino).
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    head_layers: int = 3
    student_temperature: float = 0.1
    teacher_temperature: float = 0.07
    warmup_teacher_temperature: float = 0.04
    teacher_temperature_warmup_steps: int = 0
    teacher_momentum: float = 0.996  # Rises to 1 by a cosine over the run.
    center_momentum: float = 0.9
    num_global_views: int = 2
    num_steps: int = derived()


def resolve(hp: HParams, info: RunInfo) -> HParams:
    """One output per class when `num_outputs` is unset; the cosine momentum schedule spans the run."""
    return dataclasses.replace(hp, num_outputs=hp.num_outputs or info.num_classes, num_steps=info.num_steps)


def build_head(hp: HParams) -> DINOHead:
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


def teacher_targets(hp: HParams, inputs: StepInputs, student_unlabeled: list[dict[str, jnp.ndarray]]):
    """`(rows, extras, metrics)`: the student's per-row cross-entropies against the teacher's targets on
    the global views (swapped over views), and extras with the teacher's new BatchNorm statistics and
    the new center. `student_unlabeled`: the student's outputs on `views['unlabeled']`."""
    extras = inputs.extras
    global_views = inputs.views["unlabeled"][: hp.num_global_views]
    teacher_outputs, teacher_batch_stats = forward_crops(
        inputs.apply_fn,
        jax.lax.stop_gradient(extras["teacher_params"]),
        extras["teacher_batch_stats"],
        global_views,
        train=True,
    )
    teacher_logits = jnp.stack([o["head_scores"] for o in teacher_outputs])  # [V, Bu, K]
    temperature = teacher_temperature(hp, inputs.step)
    targets = [losses.dino_targets(logits, extras["center"], temperature) for logits in teacher_logits]
    rows = losses.swapped_prediction_loss(
        targets, [o["head_scores"] / hp.student_temperature for o in student_unlabeled]
    )
    extras = dict(
        extras,
        teacher_batch_stats=teacher_batch_stats,
        center=updated_center(extras["center"], jax.lax.stop_gradient(teacher_logits), hp.center_momentum),
    )
    metrics = {
        "unlabeled_loss": jnp.mean(rows),
        "teacher_temperature": temperature,
        "target_entropy": jnp.mean(-jnp.sum(targets[0] * jnp.log(targets[0] + 1e-12), -1)),
    }
    return rows, extras, metrics


def loss_fn(hp: HParams, params: Any, inputs: StepInputs):
    """DINO's loss: the mean cross-entropy of every student view against the other teacher views' targets."""
    outputs, batch_stats = forward_crops(
        inputs.apply_fn, params, inputs.batch_stats, inputs.views["unlabeled"], train=True
    )
    rows, extras, metrics = teacher_targets(hp, inputs, outputs)
    return jnp.mean(rows), (batch_stats, extras, metrics)


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


def eval_variables(params: Any, batch_stats: Any, extras: Any) -> dict[str, Any]:
    """The teacher's variables: DINO and Daino evaluate the teacher."""
    del params, batch_stats
    return {"params": extras["teacher_params"], "batch_stats": extras["teacher_batch_stats"]}


def head_probabilities(hp: HParams, head_scores: jnp.ndarray) -> jnp.ndarray:
    """The teacher's output distribution (uncentred): softmax of the scores over the teacher temperature."""
    return jax.nn.softmax(head_scores / hp.teacher_temperature, axis=-1)


METHOD = Method(
    hparams=HParams,
    build_head=build_head,
    loss_fn=loss_fn,
    evaluations=(REPRESENTATION, CLUSTERING),
    uses_labels=False,
    resolve=resolve,
    init_extras=init_extras,
    after_update=after_update,
    eval_variables=eval_variables,
    head_probabilities=head_probabilities,
    smoke=dict(num_outputs=12, head_hidden_dim=32, head_bottleneck_dim=16),
)
