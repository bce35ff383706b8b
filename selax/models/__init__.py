"""Encoder registry: `build_encoder(name, **kwargs)` returns a Flax module mapping images to pooled features.

Every encoder is called as `module.apply(variables, images [B, H, W, C], train=...) -> features [B, D]`
(float32) and takes a `dtype` field (computation dtype; params stay float32). Importing this package
pulls in Flax modules only (no torch).
"""

import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn

from selax.models.resnet import ResNet18, ResNet50
from selax.models.small_cnn import SmallCNN
from selax.models.vit import VisionTransformer
from selax.models.wide_resnet import WideResNet

class Encoder(NamedTuple):
    """One registry entry: the module's constructor, its feature dimension D with default fields, and
    the fields of a tiny member of the same family for `:smoke` runs on 8x8 images."""

    build: Callable[..., nn.Module]
    feature_dim: int
    smoke_kwargs: dict[str, Any]


_TINY_RESNET = dict(stage_sizes=(1, 1, 1, 1), base_width=4)
_VIT_S16 = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)

ENCODERS: dict[str, Encoder] = {
    "small_cnn": Encoder(SmallCNN, 128, dict(stage_widths=(8, 16, 32))),
    "resnet18": Encoder(ResNet18, 512, _TINY_RESNET),
    "resnet50": Encoder(ResNet50, 2048, _TINY_RESNET),
    "resnet18_cifar": Encoder(functools.partial(ResNet18, cifar_stem=True), 512, _TINY_RESNET),
    "resnet50_cifar": Encoder(functools.partial(ResNet50, cifar_stem=True), 2048, _TINY_RESNET),
    "wide_resnet28_8": Encoder(
        functools.partial(WideResNet, depth=28, widen_factor=8), 512, dict(depth=10, widen_factor=1)
    ),
    "vit_s16": Encoder(
        functools.partial(VisionTransformer, **_VIT_S16),
        384,
        dict(patch_size=4, embed_dim=32, depth=1, num_heads=2, image_size=8),
    ),
}


def get_encoder(name: str) -> Encoder:
    """The registry entry of encoder `name`; ValueError listing the known ones otherwise."""
    if name not in ENCODERS:
        raise ValueError(f"Unknown encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}.")
    return ENCODERS[name]


def encoder_for_image_size(image_size: int) -> str:
    """The encoder a run uses when `config.model.encoder` is not set (an image folder): `small_cnn` up
    to 32 px, `resnet18_cifar` up to 64 px, `resnet50` above."""
    if image_size <= 32:
        return "small_cnn"
    return "resnet18_cifar" if image_size <= 64 else "resnet50"


def build_encoder(name: str, **kwargs: Any) -> nn.Module:
    """The encoder registered as `name`, with `kwargs` overriding its fields (e.g. `dtype`, `remat`)."""
    return get_encoder(name).build(**kwargs)
