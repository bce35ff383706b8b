"""SeLa: self-labelling. Cross-entropy against fixed hard pseudo-labels, re-solved now and then by Sinkhorn.

Training alternates (1) optimizer steps on the cross-entropy of every head's scores against its current
pseudo-labels, averaged over heads and views, and (2) at scheduled steps, a label update over the whole
training set: each head's log-probabilities `[N, K]` are turned into an equipartitioned assignment
`P^lambda` by `selax.sinkhorn.sinkhorn_labels` (epsilon = 1 / lambda) and each image takes its argmax.
With `cluster_marginals` (a known class prior), the plan's cluster sizes follow that prior instead of
equipartition; the initial random labels stay balanced. No ground-truth label is used for training.

What the label update sees (`label_views`): by default ("augmented") each image through one training
view (the first global crop of the run's augmentation), drawn anew at each update, as the reference
code does (its label step reads the training loader); "clean" uses the evaluation transform. On the
digits (`configs/sela_default.py`, seed 0) the augmented label step lifts test NMI from 0.761 to 0.890
(0.923 over seeds 0-2): on clean images the network reproduces the labels it was trained on, and the
heads stay in the clustering they settled on early.

The label update holds the training set's embeddings `[N, E]` (the heads' input) and one head's
log-probabilities `[N, K]` at a time, computed from the embeddings in chunks, in `label_step_dtype`:
for ImageNet (1.28M x 3000, 10 heads) that is 7.2 GiB in bfloat16 per head instead of the 143 GiB of
every head's scores in float32.

Overclustering heads (`aux_num_heads` heads of `aux_num_clusters` clusters, usually more than K, always
equipartitioned) train the same encoder on finer pseudo-labels and are not evaluated; on the digits, with
clean label views, they raised kNN top-1 from about 95% to 97-99% and kept the evaluated heads apart.

The heads are `ClusteringHeads`. With `temperature=None` (SeLa's choice) it is a plain
bias-free linear layer per head on the embedding (the encoder features when there is no projector).
With a temperature, the prototypes are kept unit-norm after each step and the scores (cosine
similarities when a projector L2-normalizes the embedding) are divided by it, which bounds the logits
(on the digits, with clean label views, this did worse: test NMI 0.64 against 0.77 at step 500).
"""

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from selax.methods.base import (
    CLUSTERING,
    REPRESENTATION,
    Method,
    RunInfo,
    SplitEmbeddings,
    StepInputs,
    derived,
)
from selax.methods.common import ESTIMATE, checked_marginals, step_key
from selax.models.heads import normalize_prototypes, unit_normal_columns
from selax.sinkhorn import sinkhorn_labels

LABEL_VIEWS = ("augmented", "clean")
# Folded into `PRNGKey(seed)`, then the step, for the training views of a label update.
LABEL_VIEWS_STREAM = 0x1ABE1


@dataclasses.dataclass(frozen=True)
class HParams:
    """SeLa's hyper-parameters (`config.sela`); the training-set size, run length and seed are the run's."""

    num_clusters: int | None = None  # None: as many clusters as classes.
    num_heads: int = 10
    num_label_updates: int = 80  # At most, and at most one per pass over the training images.
    temperature: float | None = None  # None: plain linear heads; else unit-norm prototypes, scores / temperature.
    lam: float = 25.0  # Sinkhorn's lambda; epsilon = 1 / lambda.
    sinkhorn_tol: float = 1e-3  # L1 column-marginal error (selax.sinkhorn).
    sinkhorn_max_iters: int = 1000
    sinkhorn_chunk_size: int = 4096  # Also the rows per chunk when computing the log-probabilities.
    label_step_dtype: str = "float32"  # Of the per-head log-probabilities `[N, K]`; "bfloat16" halves them.
    label_views: str = "augmented"  # What the label step sees: one training view per image, or "clean".
    cluster_marginals: tuple[float, ...] | str | None = None  # Cluster sizes of the label step; None: equal.
    aux_num_heads: int = 0  # Overclustering heads, trained like the others, never evaluated.
    aux_num_clusters: int = 0  # Their clusters (usually more than `num_clusters`); equipartitioned.
    num_examples: int = derived()
    num_steps: int = derived()
    seed: int = derived()


def resolve(hp: HParams, info: RunInfo) -> HParams:
    """As many clusters as classes unless configured; the fields checked, naming them."""
    num_clusters = hp.num_clusters or info.num_classes
    if hp.label_views not in LABEL_VIEWS:
        raise ValueError(
            f"config.sela.label_views={hp.label_views!r} must be one of {LABEL_VIEWS}: 'augmented'"
            " (the reference code's label step, through the training augmentation) or 'clean'."
        )
    if hp.aux_num_heads < 0 or (hp.aux_num_heads > 0 and hp.aux_num_clusters < 2):
        raise ValueError(
            f"config.sela.aux_num_heads={hp.aux_num_heads} with aux_num_clusters={hp.aux_num_clusters}: use"
            " 0 heads for none, or a positive number of heads with at least 2 clusters each."
        )
    cluster_marginals = checked_marginals("config.sela.cluster_marginals", hp.cluster_marginals, num_clusters)
    if cluster_marginals == ESTIMATE:
        raise ValueError(
            "config.sela.cluster_marginals='estimate' is Suave's: SeLa has no label to estimate class"
            " proportions from, and its heads' mean prediction returns the very marginals their pseudo-labels"
            " were solved with. Give the masses (e.g. from a labeled sample), or leave it unset."
        )
    if hp.num_label_updates < 1:
        raise ValueError(f"config.sela.num_label_updates={hp.num_label_updates} must be at least 1.")
    return dataclasses.replace(
        hp,
        num_clusters=num_clusters,
        num_label_updates=label_update_count(hp.num_label_updates, info.num_epochs),
        cluster_marginals=cluster_marginals,
        num_examples=info.num_examples,
        num_steps=info.num_steps,
        seed=info.seed,
    )


class ClusteringHeads(nn.Module):
    """`embedding [B, E] -> scores [T, B, K]` of the evaluated heads (params `prototypes [T, E, K]`).

    With `aux_num_heads > 0`, overclustering heads (params `aux_prototypes [Ta, E, Ka]`) score the same
    embedding; their scores `[Ta, B, Ka]` are sown into the `intermediates` collection as `aux_scores`.
    """

    num_clusters: int
    num_heads: int
    aux_num_clusters: int = 0
    aux_num_heads: int = 0

    @nn.compact
    def __call__(self, embedding: jnp.ndarray) -> jnp.ndarray:
        dim = embedding.shape[-1]
        embedding = embedding.astype(jnp.float32)
        prototypes = self.param("prototypes", unit_normal_columns, (self.num_heads, dim, self.num_clusters))
        if self.aux_num_heads:
            shape = (self.aux_num_heads, dim, self.aux_num_clusters)
            aux_prototypes = self.param("aux_prototypes", unit_normal_columns, shape)
            self.sow("intermediates", "aux_scores", jnp.einsum("bd,tdk->tbk", embedding, aux_prototypes))
        return jnp.einsum("bd,tdk->tbk", embedding, prototypes)


def build_head(hp: HParams) -> nn.Module:
    return ClusteringHeads(hp.num_clusters, hp.num_heads, hp.aux_num_clusters, hp.aux_num_heads)


def balanced_random_labels(key: jax.Array, num_heads: int, num_examples: int, num_clusters: int) -> jax.Array:
    """int32 `[T, N]`: per head, a random permutation of `arange(N) % K` (cluster sizes differ by at most 1)."""
    balanced = jnp.arange(num_examples, dtype=jnp.int32) % num_clusters
    return jnp.stack([jax.random.permutation(k, balanced) for k in jax.random.split(key, num_heads)])


def init_extras(hp: HParams, params: Any, batch_stats: Any) -> dict[str, jax.Array]:
    """The pseudo-labels `labels int32 [T, N]` of the training set by train position, random and balanced;
    with overclustering heads, theirs too (`aux_labels [Ta, N]`)."""
    del params, batch_stats
    key, aux_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(hp.seed), 0x5E1A))
    extras = dict(labels=balanced_random_labels(key, hp.num_heads, hp.num_examples, hp.num_clusters))
    if hp.aux_num_heads:
        extras["aux_labels"] = balanced_random_labels(
            aux_key, hp.aux_num_heads, hp.num_examples, hp.aux_num_clusters
        )
    return extras


def label_update_count(num_label_updates: int, num_epochs: float) -> int:
    """`num_label_updates`, but no more than the run's passes over the training images (at least one).

    Each label update is a forward pass over the whole training set: capped at one per epoch, the label
    step adds at most about a sixth to a run's compute (an epoch of two views forward and backward), on
    any dataset size. The papers' recipe (about 80 updates in 400 ImageNet epochs) and the digits' (80
    in about 400 epochs) are below the cap; a 60-epoch run on a large folder makes 60.
    """
    return max(1, min(num_label_updates, int(num_epochs)))


def label_update_steps(num_steps: int, num_updates: int) -> tuple[int, ...]:
    """The steps before which labels are recomputed: `round(num_steps * (i / (num_updates + 1))**2)`,
    i = 1..num_updates, so updates are dense early and sparse late (gaps grow linearly). Step 0 is
    excluded (the labels start random) and duplicates are merged."""
    fractions = (np.arange(1, num_updates + 1) / (num_updates + 1)) ** 2
    steps = np.unique(np.round(num_steps * fractions).astype(np.int64))
    return tuple(int(s) for s in steps if 0 < s < num_steps)


def update_steps(hp: HParams) -> tuple[int, ...]:
    return label_update_steps(hp.num_steps, hp.num_label_updates)


def logits(hp: HParams, head_scores: jnp.ndarray) -> jnp.ndarray:
    """The heads' logits: the scores, divided by the temperature when there is one."""
    return head_scores if hp.temperature is None else head_scores / hp.temperature


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def _write_log_probs(
    hp: HParams, log_probs: jax.Array, start: jax.Array, embeddings: jax.Array, prototypes: jax.Array
) -> jax.Array:
    """`log_probs [N, K]` with rows `start:start + C` replaced by the log-softmax logits of
    `embeddings [C, E]` against `prototypes [E, K]` (in place: `log_probs` is donated)."""
    rows = jax.nn.log_softmax(logits(hp, embeddings.astype(jnp.float32) @ prototypes), axis=-1)
    return jax.lax.dynamic_update_slice_in_dim(log_probs, rows.astype(log_probs.dtype), start, axis=0)


def head_log_probs(hp: HParams, embeddings: np.ndarray, prototypes: jax.Array) -> jax.Array:
    """One head's log-softmax logits `[N, K]` in `hp.label_step_dtype`, from embeddings `[N, E]` (host
    or device) and the head's prototypes `[E, K]`. The embeddings go to the device `hp.sinkhorn_chunk_size`
    rows at a time, so the device holds the `[N, K]` result, one chunk, and no copy of the embeddings."""
    num_examples = embeddings.shape[0]
    chunk = min(hp.sinkhorn_chunk_size, num_examples)
    log_probs = jnp.zeros((num_examples, prototypes.shape[-1]), jnp.dtype(hp.label_step_dtype))
    for start in range(0, num_examples, chunk):
        start = min(start, num_examples - chunk)  # The last chunk overlaps the previous: one shape.
        rows = embeddings[start : start + chunk]
        log_probs = _write_log_probs(hp, log_probs, jnp.asarray(start), rows, prototypes)
    return log_probs


def pseudo_labels(
    hp: HParams, embeddings: np.ndarray, prototypes: jax.Array, marginals: tuple[float, ...] | None = None
) -> jax.Array:
    """Labels int32 `[T, N]` from the training set's embeddings `[N, E]` and the heads' prototypes
    `[T, E, K]`: per head, the argmax of the Sinkhorn plan of its log-probabilities with epsilon =
    1 / lambda, whose cluster marginals are `marginals [K]` (equipartition when None). Heads are solved
    one after the other, so memory does not grow with T."""
    marginals = None if marginals is None else jnp.asarray(marginals, jnp.float32)
    labels = []
    for head_prototypes in prototypes:
        log_probs = head_log_probs(hp, embeddings, head_prototypes)
        head_labels = sinkhorn_labels(
            log_probs,
            1.0 / hp.lam,
            tol=hp.sinkhorn_tol,
            max_iters=hp.sinkhorn_max_iters,
            prototype_marginals=marginals,
            chunk_size=min(hp.sinkhorn_chunk_size, log_probs.shape[0]),
        )
        # Each head finishes before the next starts (see `selax.train.Experiment.one_program_at_a_time`).
        labels.append(jax.block_until_ready(head_labels))
        del log_probs  # Free this head's [N, K] before the next one's.
    return jnp.stack(labels)


def label_step_key(hp: HParams, step: int) -> np.ndarray:
    """The key of the training views of the label update before `step`, from the seed and the step alone
    (host-side, so the same in every process)."""
    return step_key(hp.seed, LABEL_VIEWS_STREAM, step)


def update_extras(
    hp: HParams, extras: Any, params: Any, step: int, embed: SplitEmbeddings
) -> dict[str, jax.Array]:
    """New pseudo-labels from the embeddings `[N, E]` of the whole training split (in train order), each
    image seen through one training view drawn for this update (`label_views="augmented"`) or through the
    evaluation transform ("clean")."""
    del extras
    if hp.label_views == "augmented":
        train_embeddings = embed.train("training", label_step_key(hp, step))
    else:
        train_embeddings = embed.train("eval", None)
    head = params["head"]
    new_extras = dict(labels=pseudo_labels(hp, train_embeddings, head["prototypes"], hp.cluster_marginals))
    if hp.aux_num_heads:
        new_extras["aux_labels"] = pseudo_labels(hp, train_embeddings, head["aux_prototypes"])
    return new_extras


def multi_head_cross_entropy(head_scores: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Mean over all leading axes of the cross-entropy of hard labels: `[..., K], [...] int -> scalar`."""
    log_probs = jax.nn.log_softmax(head_scores.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[..., None], axis=-1))


def loss_fn(hp: HParams, params: Any, inputs: StepInputs):
    """SeLa's loss. `views['unlabeled']`: augmented views `[Bu, h, w, C]` of the images at train positions
    `views['unlabeled_positions'] [Bu]`; every view is trained on its image's pseudo-labels. The views
    must share one resolution (`config.augment.num_local=0`): they go through one forward.

    Returns `(loss, (batch_stats, extras, metrics))`; no ground-truth label is read.
    """
    views, extras = inputs.views, inputs.extras
    crops = views["unlabeled"]
    if len({crop.shape for crop in crops}) != 1:
        raise ValueError(
            f"SeLa trains on views of one resolution, got shapes {[c.shape for c in crops]}:"
            " set config.augment.num_local=0."
        )
    outputs, updates = inputs.apply_fn(
        {"params": params, "batch_stats": inputs.batch_stats},
        jnp.concatenate(crops),
        train=True,
        mutable=["batch_stats", "intermediates"],
    )
    positions = views["unlabeled_positions"]

    def heads_loss(scores: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
        """Cross-entropy of scores `[T, V * Bu, K]` against the views' images' labels `[T, N]`."""
        num_heads, _, num_clusters = scores.shape
        scores = logits(hp, scores).reshape(num_heads, len(crops), -1, num_clusters)  # [T, V, Bu, K]
        targets = labels[:, positions]  # [T, Bu]
        return multi_head_cross_entropy(scores, jnp.broadcast_to(targets[:, None], scores.shape[:-1]))

    loss = heads_loss(outputs["head_scores"], extras["labels"])
    first_view_scores = outputs["head_scores"][:, : positions.shape[0]]  # [T, Bu, K]
    agreement = jnp.mean(jnp.argmax(first_view_scores, -1) == extras["labels"][:, positions])
    metrics = {"pseudo_label_loss": loss, "pseudo_label_top1": agreement}
    if hp.aux_num_heads:
        (aux_scores,) = updates["intermediates"]["head"]["aux_scores"]
        aux_loss = heads_loss(aux_scores, extras["aux_labels"])
        metrics["aux_pseudo_label_loss"] = aux_loss
        loss = (hp.num_heads * loss + hp.aux_num_heads * aux_loss) / (hp.num_heads + hp.aux_num_heads)
    return loss, (updates["batch_stats"], extras, metrics)


def after_update(hp: HParams, params: Any, extras: Any, step: jnp.ndarray) -> tuple[Any, Any]:
    """With a temperature, renormalizes the prototypes to unit length after each step."""
    del step
    return (params if hp.temperature is None else normalize_prototypes(params)), extras


def cluster_labels(extras: Any) -> jax.Array:
    """The current pseudo-labels `[T, N]` of the evaluated heads."""
    return extras["labels"]


def head_probabilities(hp: HParams, head_scores: jnp.ndarray) -> jnp.ndarray:
    """Each head's cluster probabilities: softmax of its logits."""
    return jax.nn.softmax(logits(hp, head_scores), axis=-1)


METHOD = Method(
    hparams=HParams,
    build_head=build_head,
    loss_fn=loss_fn,
    evaluations=(CLUSTERING, REPRESENTATION),
    uses_labels=False,
    resolve=resolve,
    init_extras=init_extras,
    after_update=after_update,
    update_steps=update_steps,
    update_extras=update_extras,
    cluster_labels=cluster_labels,
    head_probabilities=head_probabilities,
    smoke=dict(num_clusters=12, num_heads=2, num_label_updates=3),
)
