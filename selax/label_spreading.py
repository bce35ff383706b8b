"""Label spreading over a k-nearest-neighbour graph of embeddings (Zhou et al., 2004), in JAX.

The labeled and unlabeled embeddings are the nodes of one graph; each node links to its `num_neighbors`
most cosine-similar others with weight `max(cos, 0) ** 3` (the sharpening of Iscen et al., 2019), the
links are made symmetric (`W + W^T`) and normalized (`D^-1/2 W D^-1/2`), and the class scores solve
`(I - alpha W_norm) F = Y`, `Y` the labeled nodes' one-hot labels (zero rows for the unlabeled), by
conjugate gradients. A label reaches an image through chains of similar images, so the images of a class
that no labeled image resembles are still found when they resemble each other: on the long-tailed
digits' SwAV features with 2 labels per class (seeds 0-2; 10 neighbours, alpha 0.99), 94-95% of the
training images get their class, against 77-83% for their nearest labeled class mean.

`spread_label_counts` counts the unlabeled images' spread labels: Suave's estimate of the unlabeled
class prior (`suave.prototype_marginals="estimate"`).
"""

import functools

import jax
import jax.numpy as jnp

from selax.models.heads import l2_normalize

SHARPENING = 3.0  # Edge weights are cosine ** SHARPENING (negative cosines give no edge).


@functools.partial(jax.jit, static_argnames=("num_classes", "num_neighbors", "max_iters"))
def label_spreading(
    labeled_embeddings: jax.Array,
    labels: jax.Array,
    unlabeled_embeddings: jax.Array,
    num_classes: int,
    num_neighbors: int,
    alpha: float,
    max_iters: int = 200,
) -> jax.Array:
    """Class scores `[Bu, K]` of unlabeled embeddings `[Bu, E]` spread from labeled ones `[Bl, E]` with
    int `labels [Bl]` in `[0, K)`; their row argmax is the spread label. Memory: the `[Bl + Bu]^2` cosine
    matrix (float32), so subsample beyond about 10^4 images.

    Args:
      num_neighbors: out-links per node before symmetrizing (all other nodes when there are fewer).
      alpha: in (0, 1), how far labels travel along the graph (1 - alpha: how strongly they stay put).
      max_iters: conjugate-gradient iterations (the system is symmetric positive definite).
    """
    embeddings = l2_normalize(jnp.concatenate([labeled_embeddings, unlabeled_embeddings]))
    num_nodes = embeddings.shape[0]
    cosines = embeddings @ embeddings.T
    cosines = jnp.where(jnp.eye(num_nodes, dtype=bool), -jnp.inf, cosines)  # No self-links.
    nearest, neighbors = jax.lax.top_k(cosines, min(num_neighbors, num_nodes - 1))  # [n, k] each.
    weights = jnp.maximum(nearest, 0.0) ** SHARPENING
    rows = jnp.broadcast_to(jnp.arange(num_nodes)[:, None], neighbors.shape)
    degrees = jnp.zeros(num_nodes).at[rows].add(weights).at[neighbors].add(weights)
    scale = jax.lax.rsqrt(jnp.maximum(degrees, 1e-12))

    def spread_once(scores: jax.Array) -> jax.Array:
        """`W_norm @ scores` for `scores [n, K]`, with `W = A + A^T`, A the k-NN links."""
        scaled = scale[:, None] * scores
        outgoing = jnp.einsum("nk,nkc->nc", weights, scaled[neighbors])
        incoming = jnp.zeros_like(scaled).at[neighbors].add(weights[..., None] * scaled[:, None, :])
        return scale[:, None] * (outgoing + incoming)

    targets = jnp.zeros((num_nodes, num_classes)).at[jnp.arange(labels.shape[0]), labels].set(1.0)
    scores, _ = jax.scipy.sparse.linalg.cg(
        lambda f: f - alpha * spread_once(f), targets, tol=1e-6, maxiter=max_iters
    )
    return scores[labeled_embeddings.shape[0] :]


def spread_label_counts(scores: jax.Array) -> jax.Array:
    """float `[K]`: how many rows of `scores [N, K]` take each class as their argmax, counting only the rows
    a label reached (an image with no path to a labeled one has all-zero scores)."""
    reached = jnp.max(scores, axis=-1) > 0
    one_hot = jax.nn.one_hot(jnp.argmax(scores, axis=-1), scores.shape[-1])
    return jnp.sum(jnp.where(reached[:, None], one_hot, 0.0), axis=0)
