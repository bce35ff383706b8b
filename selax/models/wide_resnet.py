"""WideResNet-28-8, the FixMatch / Suave CIFAR backbone (pre-activation blocks, leaky ReLU 0.1)."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from selax.models.resnet import conv


def leaky_relu(x: jnp.ndarray) -> jnp.ndarray:
  return nn.leaky_relu(x, negative_slope=0.1)


def batch_norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  """The reference's slow BatchNorm: momentum 0.001 in torch terms, i.e. running = 0.999 * running + 0.001 * batch."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.999, epsilon=1e-5, dtype=dtype, name=name)


class PreActBlock(nn.Module):
  """BN-LReLU-conv3x3(stride)-BN-LReLU-[dropout]-conv3x3 plus a shortcut: `x [B,H,W,C] -> [B,H/s,W/s,width]`.

  The shortcut is the identity when shapes match, else a strided 1x1 conv of the raw input, or of the
  activated input when `activate_before_residual` (the first block of the network).
  """

  width: int
  stride: int = 1
  activate_before_residual: bool = False
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    activated = leaky_relu(batch_norm(train, self.dtype, "bn1")(x))
    out = conv(self.width, 3, self.stride, self.dtype, "conv1")(activated)
    out = leaky_relu(batch_norm(train, self.dtype, "bn2")(out))
    out = nn.Dropout(self.dropout_rate, deterministic=not train)(out)
    out = conv(self.width, 3, 1, self.dtype, "conv2")(out)
    if self.stride == 1 and x.shape[-1] == self.width:
      return x + out
    residual = activated if self.activate_before_residual else x
    return conv(self.width, 1, self.stride, self.dtype, "shortcut_conv")(residual) + out


class WideResNet(nn.Module):
  """WideResNet-`depth`-`widen_factor` encoder: `images [B, H, W, C] -> features [B, 64 * widen_factor]`.

  Stem 3x3 conv to 16 channels, three groups of `(depth - 4) / 6` blocks with widths
  16k, 32k, 64k (strides 1, 2, 2), final BN + leaky ReLU + global average pool (float32 output).
  Defaults give WRN-28-8 (23.4M params, 512 features). Each group's output is sown into
  `intermediates` as `group{1..3}`.

  Attributes:
    depth: 6n + 4.
    widen_factor: k.
    dropout_rate: dropout between the two convs of each block (0 in FixMatch/Suave; needs a 'dropout' rng).
    dtype: computation dtype (params stay float32).
    remat: recompute block activations in the backward pass.
  """

  depth: int = 28
  widen_factor: int = 8
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    if (self.depth - 4) % 6:
      raise ValueError(f"WideResNet depth must be 6n + 4 (e.g. 28), got {self.depth}.")
    blocks_per_group = (self.depth - 4) // 6
    block_cls = nn.remat(PreActBlock, static_argnums=(2,)) if self.remat else PreActBlock
    x = conv(16, 3, 1, self.dtype, "conv1")(images.astype(self.dtype))
    for group, (width, stride) in enumerate(zip((16, 32, 64), (1, 2, 2))):
      for index in range(blocks_per_group):
        x = block_cls(width * self.widen_factor, stride if index == 0 else 1,
                      activate_before_residual=group == 0 and index == 0, dropout_rate=self.dropout_rate,
                      dtype=self.dtype, name=f"group{group + 1}_{index}")(x, train)
      self.sow("intermediates", f"group{group + 1}", x)
    x = leaky_relu(batch_norm(train, self.dtype, "bn_final")(x))
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
