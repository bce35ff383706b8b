"""Convolution as matmuls of the input's patches, where XLA:CPU's convolutions are slow.

XLA:CPU lowers the input gradient of a 3x3 convolution on a 2x2 map to a generic convolution that takes
~2 ms at batch 64, 64 -> 128 channels (10x the matmul's time); written as patches @ kernel
(`patch_matmul_conv`), forward and both gradients are plain matmuls, pads and slices. On larger maps
the patches cost more than they save in the forward pass, but the kernel gradient is still faster as
one patch matmul (`kernel_grad_matmul_conv`). Same values up to float32 summation order.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

# The only layout supported: images NHWC, kernel HWIO, output NHWC (what `flax.linen.Conv` passes).
LAYOUT = ("NHWC", "HWIO", "NHWC")
Padding = tuple[tuple[int, int], ...]


def _check_supported(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count) -> None:
    """Raises unless the arguments are a stride-1, undilated, one-group NHWC x HWIO convolution."""
    if tuple(window_strides) != (1, 1) or feature_group_count != 1:
        raise ValueError(
            f"patch convolutions support stride 1 and one feature group, got strides {tuple(window_strides)} "
            f"and {feature_group_count} groups; use jax.lax.conv_general_dilated."
        )
    if any(d not in (None, (1, 1), [1, 1]) for d in (lhs_dilation, rhs_dilation)) or isinstance(padding, str):
        raise ValueError(
            "patch convolutions need explicit padding pairs and no dilation; pass e.g. ((1, 1), (1, 1))."
        )
    if lhs.ndim != 4 or rhs.ndim != 4 or lhs.shape[-1] != rhs.shape[2]:
        raise ValueError(
            f"Expected images [B, H, W, C] and kernel [kh, kw, C, D], got {lhs.shape} and {rhs.shape}."
        )
    if dimension_numbers is not None:
        given = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        if given != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, LAYOUT):
            raise ValueError(
                f"patch convolutions support the layout {LAYOUT} only, got dimension numbers {given};"
                " use jax.lax.conv_general_dilated."
            )


def _patches(images: jnp.ndarray, padding: Padding, kernel_h: int, kernel_w: int) -> jnp.ndarray:
    """`[B, H, W, C] -> [B, out_h, out_w, kernel_h * kernel_w * C]`, tap-major like a HWIO kernel's flattening."""
    padded = jnp.pad(images, ((0, 0), *padding, (0, 0)))
    out_h, out_w = padded.shape[1] - kernel_h + 1, padded.shape[2] - kernel_w + 1
    return jnp.concatenate(
        [padded[:, i : i + out_h, j : j + out_w] for i in range(kernel_h) for j in range(kernel_w)], axis=-1
    )


def _conv_general_dilated_like(compute):
    """Gives `compute(lhs, rhs, padding_pairs, precision)` the signature of `jax.lax.conv_general_dilated`.

    The result can be `nn.Conv`'s `conv_general_dilated`; anything but stride 1, explicit padding, no
    dilation, one feature group and the `LAYOUT` dimension numbers (or None) raises.
    """

    def conv(
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
        _check_supported(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)
        return compute(lhs, rhs, _pairs(padding), precision)

    conv.__name__ = conv.__qualname__ = compute.__name__
    conv.__doc__ = compute.__doc__
    return conv


@_conv_general_dilated_like
def patch_matmul_conv(lhs: jnp.ndarray, rhs: jnp.ndarray, padding: Padding, precision: Any) -> jnp.ndarray:
    """`jax.lax.conv_general_dilated` for stride 1, explicit padding, NHWC input and HWIO kernel only.

    Args (as `conv_general_dilated`'s, see `_conv_general_dilated_like`):
      lhs: images `[B, H, W, C]`.
      rhs: kernel `[kh, kw, C, D]`.

    Returns:
      `[B, H + pad_h - kh + 1, W + pad_w - kw + 1, D]`: patches @ kernel, one matmul.
    """
    patches = _patches(lhs, padding, *rhs.shape[:2])
    return jnp.matmul(patches, rhs.reshape(-1, rhs.shape[-1]), precision=precision)


@_conv_general_dilated_like
def kernel_grad_matmul_conv(lhs: jnp.ndarray, rhs: jnp.ndarray, padding: Padding, precision: Any) -> jnp.ndarray:
    """As `patch_matmul_conv` (same arguments and limits), but only the kernel gradient is a patch matmul.

    The forward pass and the input gradient stay XLA convolutions; the kernel gradient is
    `patches^T @ output_gradient`, one `[kh * kw * C, B * out_h * out_w] @ [B * out_h * out_w, D]` matmul,
    where XLA:CPU's is slow: forward + gradients of a 3x3 conv on a 28x28x1 or 32x32x3 batch took 1.9-3x
    less time this way (README, Models).
    """
    return _kernel_grad_matmul_conv(lhs, rhs, padding, precision)


def _pairs(padding: Sequence[Sequence[int]]) -> Padding:
    return tuple((int(low), int(high)) for low, high in padding)


def _xla_conv(lhs: jnp.ndarray, rhs: jnp.ndarray, padding: Padding, precision: Any) -> jnp.ndarray:
    return jax.lax.conv_general_dilated(lhs, rhs, (1, 1), padding, dimension_numbers=LAYOUT, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _kernel_grad_matmul_conv(lhs: jnp.ndarray, rhs: jnp.ndarray, padding: Padding, precision: Any) -> jnp.ndarray:
    return _xla_conv(lhs, rhs, padding, precision)


def _kernel_grad_matmul_conv_forward(lhs, rhs, padding, precision):
    return _xla_conv(lhs, rhs, padding, precision), (lhs, rhs)


def _kernel_grad_matmul_conv_backward(padding, precision, residuals, output_grad):
    lhs, rhs = residuals
    _, input_vjp = jax.vjp(lambda images: _xla_conv(images, rhs, padding, precision), lhs)
    (lhs_grad,) = input_vjp(output_grad)  # XLA drops it where the images need no gradient.
    patches = _patches(lhs, padding, *rhs.shape[:2])
    rhs_grad = jnp.einsum("bhwk,bhwd->kd", patches, output_grad, precision=precision)
    return lhs_grad, rhs_grad.reshape(rhs.shape)


_kernel_grad_matmul_conv.defvjp(_kernel_grad_matmul_conv_forward, _kernel_grad_matmul_conv_backward)
