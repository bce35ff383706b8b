"""ResNet-18/50 encoders in torchvision's layout (v1.5: stride on the 3x3 conv), ImageNet or CIFAR stem.

Padding is explicit and symmetric as in PyTorch, so converted torchvision weights give the same features
(see `selax.models.convert`). Module names follow torchvision's (`layer3_1/conv2` for `layer3.1.conv2`).
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

# torchvision's init: He normal on the output fan.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
  """Bias-free square conv with PyTorch's symmetric padding `kernel // 2`."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 use_bias=False, dtype=dtype, kernel_init=conv_kernel_init, name=name)


def batch_norm(train: bool, dtype: Any, name: str, zero_scale: bool = False) -> nn.BatchNorm:
  """PyTorch-default BatchNorm (momentum 0.1 in torch terms); `zero_scale` starts gamma at 0."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs: `x [B, H, W, C] -> [B, H/stride, W/stride, width]`."""

  width: int
  stride: int = 1
  zero_init_last_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    out = conv(self.width, 3, self.stride, self.dtype, "conv1")(x)
    out = nn.relu(batch_norm(train, self.dtype, "bn1")(out))
    out = conv(self.width, 3, 1, self.dtype, "conv2")(out)
    out = batch_norm(train, self.dtype, "bn2", self.zero_init_last_bn)(out)
    return nn.relu(out + shortcut(x, self.width, self.stride, train, self.dtype))


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (carrying the stride), 1x1 expand x4: `x -> [B, H/stride, W/stride, 4 * width]`."""

  width: int
  stride: int = 1
  zero_init_last_bn: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    out = nn.relu(batch_norm(train, self.dtype, "bn1")(conv(self.width, 1, 1, self.dtype, "conv1")(x)))
    out = nn.relu(batch_norm(train, self.dtype, "bn2")(conv(self.width, 3, self.stride, self.dtype, "conv2")(out)))
    out = conv(4 * self.width, 1, 1, self.dtype, "conv3")(out)
    out = batch_norm(train, self.dtype, "bn3", self.zero_init_last_bn)(out)
    return nn.relu(out + shortcut(x, 4 * self.width, self.stride, train, self.dtype))


def shortcut(x: jnp.ndarray, features: int, stride: int, train: bool, dtype: Any) -> jnp.ndarray:
  """Identity, or a strided 1x1 conv + BN (`downsample_conv`/`downsample_bn`) when the shape changes.

  Called inside a block's compact `__call__`, so the submodules belong to that block.
  """
  if stride == 1 and x.shape[-1] == features:
    return x
  return batch_norm(train, dtype, "downsample_bn")(conv(features, 1, stride, dtype, "downsample_conv")(x))


class ResNet(nn.Module):
  """ResNet encoder: `images [B, H, W, C] -> features [B, D]` (float32), D = 8 * base_width
  (ResNet-18: 512) or 32 * base_width (Bottleneck, ResNet-50: 2048).

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for ResNet-50.
    block: `BasicBlock` or `Bottleneck`.
    cifar_stem: 3x3 stride-1 stem conv and no max-pool (for 32x32 images) instead of the ImageNet
      7x7/2 conv + 3x3/2 max-pool.
    base_width: channels of the stem and of the first stage's blocks.
    zero_init_last_bn: start each block's last BN scale at 0, so blocks start as identities.
    dtype: computation dtype (params stay float32).
    remat: recompute each block's activations in the backward pass (less memory, same outputs).

  Each stage's output is sown into `intermediates` as `layer{1..4}`.
  """

  stage_sizes: Sequence[int]
  block: type[BasicBlock] | type[Bottleneck]
  cifar_stem: bool = False
  base_width: int = 64
  zero_init_last_bn: bool = False
  dtype: Any = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    x = images.astype(self.dtype)
    if self.cifar_stem:
      x = conv(self.base_width, 3, 1, self.dtype, "conv1")(x)
    else:
      x = conv(self.base_width, 7, 2, self.dtype, "conv1")(x)
    x = nn.relu(batch_norm(train, self.dtype, "bn1")(x))
    if not self.cifar_stem:
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))  # pads with -inf
    block_cls = nn.remat(self.block, static_argnums=(2,)) if self.remat else self.block
    for stage, num_blocks in enumerate(self.stage_sizes):
      width = self.base_width * 2**stage
      for index in range(num_blocks):
        stride = 2 if stage > 0 and index == 0 else 1
        x = block_cls(width, stride, self.zero_init_last_bn, self.dtype, name=f"layer{stage + 1}_{index}")(x, train)
      self.sow("intermediates", f"layer{stage + 1}", x)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
