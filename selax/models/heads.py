"""Heads on top of an encoder: projector MLP, unit-norm prototypes, DINO head; and multi-crop grouping.

All are Flax linen modules used through `init`/`apply` with explicit variables.
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def l2_normalize(x: jnp.ndarray, axis: int = -1, eps: float = 1e-12) -> jnp.ndarray:
    """`x / max(||x||, eps)` along `axis`, computed in float32."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))


class Projector(nn.Module):
    """MLP `features [B, D] -> (embedding [B, output_dim] L2-normalized, first_hidden [B, hidden_dims[0]])`.

    Each hidden layer is Dense -> BatchNorm -> ReLU (Suave ImageNet: 2048 -> 2048 -> 128). The first hidden
    activation is returned too: Suave's reported accuracy is a linear head on it. With no hidden layers the
    second output is the input features.
    """

    hidden_dims: Sequence[int] = (2048,)
    output_dim: int = 128
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jnp.ndarray, train: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
        x = features
        first_hidden = features
        for i, width in enumerate(self.hidden_dims):
            x = nn.Dense(width, dtype=self.dtype, name=f"dense{i}")(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, name=f"bn{i}")(x)
            x = nn.relu(x)
            if i == 0:
                first_hidden = x
        x = nn.Dense(self.output_dim, dtype=self.dtype, name=f"dense{len(self.hidden_dims)}")(x)
        return l2_normalize(x), first_hidden.astype(jnp.float32)


def unit_normal_columns(key: jax.Array, shape: Sequence[int]) -> jnp.ndarray:
    """Initializer: standard normal `[..., D, K]` with each column (axis -2) scaled to unit norm."""
    return l2_normalize(jax.random.normal(key, shape), axis=-2)


class PrototypeHead(nn.Module):
    """Bias-free linear layer whose columns are prototypes: `embedding [B, D] -> scores [B, K]`.

    Keep the prototypes unit-norm with `normalize_prototypes` after each optimizer step; scores are then
    cosine similarities for unit-norm embeddings. SeLa's several heads: `selax.methods.sela.ClusteringHeads`.
    """

    num_prototypes: int

    @nn.compact
    def __call__(self, embedding: jnp.ndarray) -> jnp.ndarray:
        shape = (embedding.shape[-1], self.num_prototypes)
        prototypes = self.param("prototypes", unit_normal_columns, shape)
        return embedding.astype(jnp.float32) @ prototypes


def normalize_prototypes(params: Any) -> Any:
    """Returns `params` with every `prototypes` (or `aux_prototypes`) leaf's columns (axis -2) rescaled to
    unit norm."""

    def normalize(path, leaf):
        is_prototype = any(str(getattr(entry, "key", "")).endswith("prototypes") for entry in path)
        return l2_normalize(leaf, axis=-2) if is_prototype else leaf

    return jax.tree_util.tree_map_with_path(normalize, params)


class DINOHead(nn.Module):
    """DINO's head: MLP (GELU) -> bottleneck -> L2-normalize -> weight-normalized linear to K logits.

    `features [B, D] -> logits [B, num_outputs]`. The last layer's weight is `v / ||v||` per output
    column with the norm fixed to 1 (DINO's `norm_last_layer=True`).
    """

    num_outputs: int
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    num_layers: int = 3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train
        x = features
        for i in range(self.num_layers - 1):
            x = nn.gelu(nn.Dense(self.hidden_dim, dtype=self.dtype, name=f"dense{i}")(x))
        x = nn.Dense(self.bottleneck_dim, dtype=self.dtype, name=f"dense{self.num_layers - 1}")(x)
        x = l2_normalize(x)
        direction = self.param(
            "last_layer_direction",
            nn.initializers.truncated_normal(0.02),
            (self.bottleneck_dim, self.num_outputs),
        )
        return x @ l2_normalize(direction, axis=0)


def apply_per_resolution(fn: Callable[[jnp.ndarray], Any], crops: Sequence[jnp.ndarray]) -> list[Any]:
    """Applies `fn` once per distinct crop resolution, as SwAV's multi-crop forward does.

    Crops of the same spatial shape (any batch sizes) are concatenated along the batch axis, passed through `fn` in one
    call, and split back. Returns one output pytree per crop, in the order of `crops`.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, crop in enumerate(crops):
        groups.setdefault(crop.shape[1:], []).append(i)
    outputs: list[Any] = [None] * len(crops)
    for indices in groups.values():
        batched = fn(jnp.concatenate([crops[i] for i in indices], axis=0))
        offsets = np.cumsum([crops[i].shape[0] for i in indices])[:-1]
        for j, i in enumerate(indices):
            outputs[i] = jax.tree_util.tree_map(lambda y, j=j: jnp.split(y, offsets)[j], batched)
    return outputs
