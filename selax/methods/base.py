"""The method contract: what the shared loop calls, and the defaults a method inherits.

A method is one module of `selax/methods/` that defines `METHOD = Method(...)`; the registry
(`selax.methods.get_method`) finds it by its module name, which is also the name of its config
section (`config.swav`, `config.sela`, ...). A method states only what differs from the defaults
below: its hyper-parameters, head and loss, and, where it needs them, extras (state that is not
trained by gradients), gradient masks, a post-update projection, whole-split updates of its extras
(SeLa's label steps) and the variables evaluation reads. The loop never looks at a method's name or
hyper-parameters; everything it needs is a field of `Method`.

Hyper-parameters are a frozen dataclass. Every field with a default is a config field of the
method's section, declared once there (`selax.config_fields.method_fields` reads the defaults);
fields marked `derived()` are filled by `resolve` from the run (`RunInfo`) and are not configurable.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import numpy as np

# `evaluations`: names of `selax.evaluate.EVALUATIONS`.
CLASSIFICATION = "classification"  # Prototype / linear-head / kNN top-1 on the test split (labeled bank).
REPRESENTATION = "representation"  # kNN and linear probe on frozen features, every train label.
CLUSTERING = "clustering"  # NMI / ARI / cluster accuracy of the head's argmax (and of pseudo-labels).


class RunInfo(NamedTuple):
    """What the run tells a method besides its config section."""

    num_classes: int  # Classes of the dataset.
    num_examples: int  # Images of the training split (train positions are 0..N-1).
    num_steps: int  # Optimizer steps of the run.
    seed: int  # The run's seed (`config.seed`).
    num_epochs: float  # Passes over the training images that the run's unlabeled batches make.
    pretrained: bool  # Whether the encoder starts from trained weights (`config.model.init_checkpoint`).


class StepInputs(NamedTuple):
    """Everything a loss reads besides the params it is differentiated by.

    `views`: `unlabeled` (the multi-crop views `[Bu, h, w, C]`, global views first),
    `unlabeled_positions [Bu]` (train positions) and, with a labeled stream, `labeled [Bl, H, W, C]`.
    `labels [Bl]` int32, or None without a labeled stream.
    """

    apply_fn: Callable[..., Any]
    batch_stats: Any
    extras: Any
    views: dict[str, Any]
    labels: jax.Array | None
    step: jax.Array
    rng: jax.Array


class SplitEmbeddings(NamedTuple):
    """What `update_extras` may compute over whole splits, with the evaluated params.

    `train(view, key) -> embeddings [N, E]` of the training split in train order, through `view`:
    "training" (one training view per image, drawn from `key` and the image's position) or "eval".
    `labeled() -> (embeddings [L, E], labels int [L])` of the labeled split, through the eval view.
    """

    train: Callable[[str, jax.Array | None], np.ndarray]
    labeled: Callable[[], tuple[np.ndarray, np.ndarray]]


def derived(default: Any = 0) -> Any:
    """A hyper-parameter that `resolve` fills from the run; not a config field."""
    return dataclasses.field(default=default, metadata={"derived": True})


def config_defaults(hparams: type) -> dict[str, Any]:
    """The configurable fields of an `HParams` dataclass with their defaults (derived ones left out)."""
    return {
        f.name: f.default
        for f in dataclasses.fields(hparams)
        if not f.metadata.get("derived") and f.default is not dataclasses.MISSING
    }


def _keep(hp: Any, info: RunInfo) -> Any:
    del info
    return hp


def _no_extras(hp: Any, params: Any, batch_stats: Any) -> dict[str, Any]:
    del hp, params, batch_stats
    return {}


def _same_gradients(hp: Any, grads: Any, step: jax.Array) -> Any:
    del hp, step
    return grads


def _same_params(hp: Any, params: Any, extras: Any, step: jax.Array) -> tuple[Any, Any]:
    del hp, step
    return params, extras


def _no_update_steps(hp: Any) -> tuple[int, ...]:
    del hp
    return ()


def _unchanged_extras(hp: Any, extras: Any, params: Any, step: int, embed: SplitEmbeddings) -> Any:
    del hp, params, step, embed
    return extras


def _trained_variables(params: Any, batch_stats: Any, extras: Any) -> dict[str, Any]:
    del extras
    return {"params": params, "batch_stats": batch_stats}


def _no_cluster_labels(extras: Any) -> None:
    del extras


def _softmax(hp: Any, head_scores: jax.Array) -> jax.Array:
    del hp
    return jax.nn.softmax(head_scores, axis=-1)


@dataclasses.dataclass(frozen=True)
class Method:
    """A method, as the loop sees it. Only `hparams`, `build_head`, `loss_fn` and `evaluations` are required.

    Attributes:
      hparams: the frozen dataclass of its hyper-parameters (see the module docstring).
      build_head: `hp -> nn.Module` mapping the embedding `[B, E]` to `head_scores`.
      loss_fn: `(hp, params, StepInputs) -> (loss, (batch_stats, extras, metrics))`.
      evaluations: what evaluation reports (`CLASSIFICATION`, `REPRESENTATION`, `CLUSTERING`).
      uses_labels: whether it trains on a labeled stream (then `config.batch.labeled` must be > 0).
      resolve: `(hp, RunInfo) -> hp` with derived fields filled and the fields checked (ValueError
        naming `config.<method>.<field>`).
      init_extras: `(hp, params, batch_stats) -> extras` at step 0 (also after loading init weights).
      mask_gradients: `(hp, grads, step) -> grads` before the optimizer.
      after_update: `(hp, params, extras, step) -> (params, extras)` after the optimizer; also called
        at initialization with `extras=None`.
      update_steps: `hp -> steps` before which `update_extras` runs.
      update_extras: `(hp, extras, params, step, embed: SplitEmbeddings) -> extras` over whole
        splits (`params`: the evaluated ones).
      eval_variables: `(params, batch_stats, extras) -> variables` that evaluation and `update_extras`
        apply (Daino and DINO: the teacher's).
      cluster_labels: `extras -> int [T, N]` pseudo-labels of the training split that the clustering
        evaluation scores, or None.
      head_probabilities: `(hp, head_scores [..., K]) -> [..., K]` the probabilities the head's scores
        stand for (what a prediction's confidence is read from).
      smoke: `config.<method>` overrides of the `:smoke` variant of every config.
    """

    hparams: type
    build_head: Callable[[Any], nn.Module]
    loss_fn: Callable[[Any, Any, StepInputs], tuple[jax.Array, tuple[Any, Any, dict[str, jax.Array]]]]
    evaluations: tuple[str, ...]
    uses_labels: bool = True
    resolve: Callable[[Any, RunInfo], Any] = _keep
    init_extras: Callable[[Any, Any, Any], Any] = _no_extras
    mask_gradients: Callable[[Any, Any, jax.Array], Any] = _same_gradients
    after_update: Callable[[Any, Any, Any, jax.Array], tuple[Any, Any]] = _same_params
    update_steps: Callable[[Any], tuple[int, ...]] = _no_update_steps
    update_extras: Callable[[Any, Any, Any, int, SplitEmbeddings], Any] = _unchanged_extras
    eval_variables: Callable[[Any, Any, Any], dict[str, Any]] = _trained_variables
    cluster_labels: Callable[[Any], np.ndarray | jax.Array | None] = _no_cluster_labels
    head_probabilities: Callable[[Any, jax.Array], jax.Array] = _softmax
    smoke: dict[str, Any] = dataclasses.field(default_factory=dict)

    def hparams_from_config(self, name: str, fields: Any, info: RunInfo) -> Any:
        """The resolved hyper-parameters from the config section `config.<name>` (a mapping)."""
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(fields).items()}
        unknown = sorted(set(fields) - set(config_defaults(self.hparams)))
        if unknown:
            raise ValueError(
                f"config.{name} has no field(s) {unknown}; its fields are {sorted(config_defaults(self.hparams))}."
            )
        return self.resolve(self.hparams(**fields), info)
