"""Convolution as one matmul of the input's patches, for feature maps of a few pixels on XLA:CPU.

XLA:CPU lowers the input gradient of a 3x3 convolution on a 2x2 map to a generic convolution that takes
~2 ms at batch 64, 64 -> 128 channels (10x the matmul's time); written as patches @ kernel, forward and
both gradients are plain matmuls, pads and slices. Same values up to float32 summation order.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

# The only layout supported: images NHWC, kernel HWIO, output NHWC (what `flax.linen.Conv` passes).
LAYOUT = ("NHWC", "HWIO", "NHWC")


def patch_matmul_conv(
    lhs: jnp.ndarray,
    rhs: jnp.ndarray,
    window_strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> jnp.ndarray:
    """`jax.lax.conv_general_dilated` for stride 1, explicit padding, NHWC input and HWIO kernel only.

    Args:
      lhs: images `[B, H, W, C]`.
      rhs: kernel `[kh, kw, C, D]`.
      window_strides, padding, ...: as in `conv_general_dilated` (so it can be `nn.Conv`'s
        `conv_general_dilated`); anything but stride 1, no dilation, one feature group and the
        `LAYOUT` dimension numbers (or None) raises.

    Returns:
      `[B, H + pad_h - kh + 1, W + pad_w - kw + 1, D]`.
    """
    if tuple(window_strides) != (1, 1) or feature_group_count != 1:
        raise ValueError(
            f"patch_matmul_conv supports stride 1 and one feature group, got strides {tuple(window_strides)} "
            f"and {feature_group_count} groups; use jax.lax.conv_general_dilated."
        )
    if any(d not in (None, (1, 1), [1, 1]) for d in (lhs_dilation, rhs_dilation)) or isinstance(padding, str):
        raise ValueError(
            "patch_matmul_conv needs explicit padding pairs and no dilation; pass e.g. ((1, 1), (1, 1))."
        )
    if lhs.ndim != 4 or rhs.ndim != 4 or lhs.shape[-1] != rhs.shape[2]:
        raise ValueError(
            f"Expected images [B, H, W, C] and kernel [kh, kw, C, D], got {lhs.shape} and {rhs.shape}."
        )
    if dimension_numbers is not None:
        given = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        if given != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, LAYOUT):
            raise ValueError(
                f"patch_matmul_conv supports the layout {LAYOUT} only, got dimension numbers {given};"
                " use jax.lax.conv_general_dilated."
            )
    kernel_h, kernel_w = rhs.shape[:2]
    padded = jnp.pad(lhs, ((0, 0), *[tuple(pair) for pair in padding], (0, 0)))
    out_h, out_w = padded.shape[1] - kernel_h + 1, padded.shape[2] - kernel_w + 1
    patches = jnp.concatenate(
        [padded[:, i : i + out_h, j : j + out_w] for i in range(kernel_h) for j in range(kernel_w)], axis=-1
    )  # [B, out_h, out_w, kh * kw * C], tap-major like the kernel's flattening
    return jnp.matmul(patches, rhs.reshape(-1, rhs.shape[-1]), precision=precision)
