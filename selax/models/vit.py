"""Vision Transformer encoder as in DINO (ViT-S/16 by default), with DINO's position-embedding interpolation.

Module and parameter names mirror DINO's (`blocks_3/attn/qkv` for `blocks.3.attn.qkv`) so released
weights convert one-to-one (see `selax.models.convert`).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

dense_init = nn.initializers.truncated_normal(0.02)


def torch_bicubic_matrix(in_size: int, out_size: int, scale_factor: float) -> np.ndarray:
  """`[out_size, in_size]` matrix of PyTorch's `interpolate(mode='bicubic', align_corners=False)` along one axis.

  Follows PyTorch with a given `scale_factor`: output pixel `i` samples input coordinate
  `(i + 0.5) / scale_factor - 0.5` with the cubic convolution kernel (a = -0.75), taps clamped to the border.
  """
  a = -0.75
  source = (np.arange(out_size) + 0.5) / scale_factor - 0.5
  left = np.floor(source)
  t = source - left
  distances = np.stack([t + 1, t, 1 - t, 2 - t], axis=1)  # to taps left-1, left, left+1, left+2
  near = ((a + 2) * distances - (a + 3)) * distances**2 + 1
  far = ((a * distances - 5 * a) * distances + 8 * a) * distances - 4 * a
  weights = np.where(distances <= 1, near, far)
  taps = np.clip(left[:, None].astype(int) + np.arange(-1, 3), 0, in_size - 1)
  matrix = np.zeros((out_size, in_size))
  np.add.at(matrix, (np.repeat(np.arange(out_size), 4), taps.ravel()), weights.ravel())
  return matrix


def interpolate_pos_embed(pos_embed: jnp.ndarray, grid_h: int, grid_w: int) -> jnp.ndarray:
  """DINO's resize of `[1, 1 + N, D]` position embeddings (cls first, N a square) to `[1, 1 + grid_h * grid_w, D]`.

  Bicubic with DINO's scale factor `(grid + 0.1) / sqrt(N)` (the 0.1 guards the output size against
  float error); returned unchanged when the grid already matches.
  """
  side = math.isqrt(pos_embed.shape[1] - 1)
  if side * side != pos_embed.shape[1] - 1:
    raise ValueError(f"pos_embed must hold 1 + a square number of patches, got shape {pos_embed.shape}.")
  if (grid_h, grid_w) == (side, side):
    return pos_embed
  rows = torch_bicubic_matrix(side, grid_h, (grid_h + 0.1) / side)
  cols = torch_bicubic_matrix(side, grid_w, (grid_w + 0.1) / side)
  grid = pos_embed[0, 1:].reshape(side, side, -1).astype(jnp.float32)
  resized = jnp.einsum("hi,wj,ijd->hwd", rows, cols, grid, precision=jax.lax.Precision.HIGHEST)
  return jnp.concatenate([pos_embed[:, :1], resized.reshape(1, grid_h * grid_w, -1).astype(pos_embed.dtype)], axis=1)


class Attention(nn.Module):
  """Multi-head self-attention with one fused `qkv` projection: `x [B, N, D] -> [B, N, D]`."""

  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    batch, tokens, dim = x.shape
    head_dim = dim // self.num_heads
    qkv = nn.Dense(3 * dim, dtype=self.dtype, kernel_init=dense_init, name="qkv")(x)
    q, k, v = jnp.moveaxis(qkv.reshape(batch, tokens, 3, self.num_heads, head_dim), 2, 0)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q * head_dim**-0.5, k)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, tokens, dim)
    return nn.Dense(dim, dtype=self.dtype, kernel_init=dense_init, name="proj")(out)


class Mlp(nn.Module):
  """`fc1` (hidden) -> exact GELU -> `fc2`: `x [B, N, D] -> [B, N, D]`."""

  hidden_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    dim = x.shape[-1]
    x = nn.gelu(nn.Dense(self.hidden_dim, dtype=self.dtype, kernel_init=dense_init, name="fc1")(x), approximate=False)
    return nn.Dense(dim, dtype=self.dtype, kernel_init=dense_init, name="fc2")(x)


def drop_path(x: jnp.ndarray, rate: float, rng: jax.Array) -> jnp.ndarray:
  """Stochastic depth: zeroes whole samples of a residual branch with probability `rate`, rescales the rest."""
  keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


class Block(nn.Module):
  """Pre-norm transformer block: `x + DropPath(Attn(LN(x)))`, then `x + DropPath(MLP(LN(x)))`."""

  num_heads: int
  mlp_ratio: float = 4.0
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    def residual(branch: jnp.ndarray) -> jnp.ndarray:
      if train and self.drop_path_rate > 0:
        return drop_path(branch, self.drop_path_rate, self.make_rng("dropout"))
      return branch

    dim = x.shape[-1]
    x = x + residual(Attention(self.num_heads, self.dtype, name="attn")(
        nn.LayerNorm(1e-6, dtype=self.dtype, name="norm1")(x)))
    return x + residual(Mlp(int(dim * self.mlp_ratio), self.dtype, name="mlp")(
        nn.LayerNorm(1e-6, dtype=self.dtype, name="norm2")(x)))


class VisionTransformer(nn.Module):
  """ViT encoder: `images [B, H, W, C] -> final-norm cls token [B, embed_dim]` (float32).

  H and W must be multiples of `patch_size`; position embeddings are learned for `image_size` and
  bicubically interpolated for other resolutions (e.g. 96x96 local crops), as DINO does.

  Attributes:
    patch_size, embed_dim, depth, num_heads, mlp_ratio: the architecture (defaults: ViT-S/16, 21.7M params).
    image_size: resolution the position embeddings are learned at.
    drop_path_rate: stochastic depth, rising linearly from 0 at the first block to this at the last
      (active with `train=True`; needs a 'dropout' rng).
    dtype: computation dtype (params stay float32).
    remat: recompute block activations in the backward pass.

  Each block's tokens `[B, 1 + N, D]` are sown into `intermediates` as `block{i}`.
  """

  patch_size: int = 16
  embed_dim: int = 384
  depth: int = 12
  num_heads: int = 6
  mlp_ratio: float = 4.0
  image_size: int = 224
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    batch, height, width, _ = images.shape
    if height % self.patch_size or width % self.patch_size:
      raise ValueError(f"Image size {height}x{width} is not a multiple of the patch size {self.patch_size}.")
    patches = nn.Conv(self.embed_dim, (self.patch_size,) * 2, strides=(self.patch_size,) * 2, padding="VALID",
                      dtype=self.dtype, name="patch_embed")(images.astype(self.dtype))
    grid_h, grid_w = height // self.patch_size, width // self.patch_size
    cls_token = self.param("cls_token", dense_init, (1, 1, self.embed_dim))
    grid_side = self.image_size // self.patch_size
    pos_embed = self.param("pos_embed", dense_init, (1, 1 + grid_side**2, self.embed_dim))
    x = jnp.concatenate([jnp.broadcast_to(cls_token, (batch, 1, self.embed_dim)).astype(self.dtype),
                         patches.reshape(batch, grid_h * grid_w, self.embed_dim)], axis=1)
    x = x + interpolate_pos_embed(pos_embed, grid_h, grid_w).astype(self.dtype)
    block_cls = nn.remat(Block, static_argnums=(2,)) if self.remat else Block
    for i, rate in enumerate(np.linspace(0.0, self.drop_path_rate, self.depth)):
      x = block_cls(self.num_heads, self.mlp_ratio, float(rate), self.dtype, name=f"blocks_{i}")(x, train)
      self.sow("intermediates", f"block{i}", x)
    return nn.LayerNorm(1e-6, dtype=self.dtype, name="norm")(x[:, 0]).astype(jnp.float32)
