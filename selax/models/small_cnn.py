"""A small convolutional encoder for the embedded 8x8 digits default: trains in minutes on 2 CPU cores."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from selax.models.patch_conv import kernel_grad_matmul_conv, patch_matmul_conv

# Convs on maps of at most this many pixels run as `patch_matmul_conv` (XLA:CPU's convolution is ~10x
# slower at 2x2, 1.2-1.7x at 14x14-16x16), larger maps as `kernel_grad_matmul_conv` (experiments/bench_models.py).
PATCH_CONV_MAX_PIXELS = 256


class SmallCNN(nn.Module):
    """Conv-BN-ReLU stages with 2x2 average pooling between them, then global average pooling.

    Attributes:
      stage_widths: output channels of each stage (one 3x3 conv each; pooling after all but the last).
        Convs on maps of at most `PATCH_CONV_MAX_PIXELS` pixels run as patch matmuls, on larger maps
        only their kernel gradient does (same values).
      dtype: computation dtype (params stay float32).

    Call: `images [B, H, W, C] -> features [B, stage_widths[-1]]` (float32). Each stage's output is
    sown into the `intermediates` collection as `stage{i}` for linear probes.
    """

    stage_widths: Sequence[int] = (32, 64, 128)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = images.astype(self.dtype)
        for i, width in enumerate(self.stage_widths):
            small_map = x.shape[1] * x.shape[2] <= PATCH_CONV_MAX_PIXELS
            x = nn.Conv(
                width,
                (3, 3),
                padding=((1, 1), (1, 1)),  # "SAME" for a 3x3 kernel
                use_bias=False,
                dtype=self.dtype,
                conv_general_dilated=patch_matmul_conv if small_map else kernel_grad_matmul_conv,
                name=f"conv{i}",
            )(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype, name=f"bn{i}")(x)
            x = nn.relu(x)
            self.sow("intermediates", f"stage{i}", x)
            if i < len(self.stage_widths) - 1 and min(x.shape[1:3]) >= 4:
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
