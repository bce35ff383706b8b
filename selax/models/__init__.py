"""Encoder registry: `build_encoder(name, **kwargs)` returns a Flax module mapping images to pooled features.

Every encoder is called as `module.apply(variables, images [B, H, W, C], train=...) -> features [B, D]`
(float32) and takes a `dtype` field (computation dtype; params stay float32). Importing this package
pulls in Flax modules only (no torch).
"""

import functools
from typing import Any, Callable

import flax.linen as nn

from selax.models.resnet import ResNet18, ResNet50
from selax.models.small_cnn import SmallCNN
from selax.models.vit import VisionTransformer
from selax.models.wide_resnet import WideResNet

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
    "resnet18_cifar": functools.partial(ResNet18, cifar_stem=True),
    "resnet50_cifar": functools.partial(ResNet50, cifar_stem=True),
    "wide_resnet28_8": functools.partial(WideResNet, depth=28, widen_factor=8),
    "vit_s16": functools.partial(VisionTransformer, patch_size=16, embed_dim=384, depth=12, num_heads=6),
}

# Feature dimension D of each registered encoder with default fields.
FEATURE_DIMS: dict[str, int] = {
    "small_cnn": 128, "resnet18": 512, "resnet50": 2048, "resnet18_cifar": 512, "resnet50_cifar": 2048,
    "wide_resnet28_8": 512, "vit_s16": 384,
}


def build_encoder(name: str, **kwargs: Any) -> nn.Module:
  """The encoder registered as `name`, with `kwargs` overriding its fields (e.g. `dtype`, `remat`)."""
  if name not in ENCODERS:
    raise ValueError(f"Unknown encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}.")
  return ENCODERS[name](**kwargs)
