"""Batched image augmentations in pure JAX, run on device inside the jitted train step.

The batched functions take a PRNG key and a batch, draw one vector of uniforms per image and view
(a single random-number call, which keeps compile time low) and vmap a per-image function over
them; they are jittable with the spec as a static argument (specs are frozen, hashable
dataclasses). Results do not depend on how the batch is sharded over devices. Images are float32
[B, H, W, C] in [0, 1] (uint8 inputs are scaled by 1/255); C is 3 (RGB) or 1 (grey: only
brightness and contrast jitter apply, grayscale is a no-op). Host-side ImageNet images arrive as
fixed-size squares (`selax.data.readers.decode_square`, e.g. 256 px) so they batch.

Recipes: `multi_crop` (global + local views, SwAV/DINO style), `light_augment` (labeled images),
`eval_transform` (resize + centre crop, normalize), `training_view_at_positions` (one training view per
image, drawn from its position: SeLa's label step). `imagenet`, `CIFAR100` and `DIGITS` are the
recipes the dataset registry (`selax.data.datasets.DATASETS`) names, `for_image_size` an image folder's;
`config.augment` overrides them.

Colour jitter applies brightness, contrast, saturation and hue in that fixed order (torchvision
draws a random order), with factors uniform in [1 - 0.8 s, 1 + 0.8 s] and a hue shift uniform in
[-0.2 s, 0.2 s] for jitter strength s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
DIGITS_MEAN = (0.3053,)  # pixel mean / std of the uint8-rescaled sklearn digits
DIGITS_STD = (0.3759,)
_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """One augmented view: random resized crop, flip, colour jitter, grayscale, blur, solarize.

    Attributes:
      size: output side in pixels.
      scale: range of the crop area as a fraction of the image area.
      ratio: range of the crop aspect ratio (width / height), sampled log-uniformly.
      flip_prob: probability of a horizontal flip.
      jitter_prob: probability of colour jitter.
      jitter_strength: s: brightness/contrast/saturation strength 0.8 s, hue 0.2 s.
      gray_prob: probability of converting to grayscale (RGB only).
      blur_prob: probability of a Gaussian blur.
      blur_sigma: range of the blur's standard deviation in output pixels.
      solarize_prob: probability of solarization (invert values >= 0.5).
    """

    size: int
    scale: tuple[float, float] = (0.14, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    jitter_strength: float = 0.5
    gray_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0


@dataclasses.dataclass(frozen=True)
class MultiCropSpec:
    """Global views (one spec each, e.g. DINO's asymmetric blur/solarize), then local views.

    Attributes:
      global_views: one `ViewSpec` per global crop.
      local_view: the spec shared by the local crops.
      num_local: number of local crops.
      mean, std: per-channel normalization applied to every view.
    """

    global_views: tuple[ViewSpec, ...]
    local_view: ViewSpec
    num_local: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_global(self) -> int:
        return len(self.global_views)


@dataclasses.dataclass(frozen=True)
class LightSpec:
    """Light augmentation for labeled images.

    Attributes:
      pad: reflect-pad by this many pixels, then crop back to the input size at a random integer
        offset (ignored when ``view`` is set).
      flip_prob: probability of a horizontal flip.
      view: if set, a random resized crop view instead of pad-and-crop (ImageNet).
      mean, std: per-channel normalization.
    """

    pad: int
    flip_prob: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    view: ViewSpec | None = None


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """Evaluation transform: resize of the shorter side, centre crop (each optional), normalize."""

    resize: int | None
    crop: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class DatasetAugment:
    """The three recipes a dataset needs."""

    multi_crop: MultiCropSpec
    light: LightSpec
    eval: EvalSpec


def to_unit(images: jax.Array) -> jax.Array:
    """uint8 [..., C] -> float32 in [0, 1]; float inputs are cast to float32 unchanged."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def normalize(images: jax.Array, mean: tuple[float, ...], std: tuple[float, ...]) -> jax.Array:
    """(images - mean) / std over the channel axis: [..., C] -> [..., C]."""
    return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


# ---------------------------------------------------------------------------------------------
# single-image operations, [H, W, C] in [0, 1]


def _gray(image: jax.Array) -> jax.Array:
    """Luma [H, W, 1] of an RGB image; a grey image is its own luma."""
    if image.shape[-1] == 1:
        return image
    return jnp.tensordot(image, jnp.asarray(_LUMA, image.dtype), axes=1)[..., None]


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
    """[..., 3] RGB in [0, 1] -> [..., 3] HSV, hue in [0, 1)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(-1)
    chroma = value - rgb.min(-1)
    safe_chroma = jnp.where(chroma > 0, chroma, 1.0)
    saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
    hue = jnp.where(
        value == r,
        (g - b) / safe_chroma,
        jnp.where(value == g, 2.0 + (b - r) / safe_chroma, 4.0 + (r - g) / safe_chroma),
    )
    hue = jnp.where(chroma > 0, jnp.mod(hue / 6.0, 1.0), 0.0)
    return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """[..., 3] HSV (hue in [0, 1)) -> [..., 3] RGB in [0, 1]."""
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    # Each channel is value minus a piecewise-linear ramp of the hue (sector offsets 5, 3, 1).
    channels = [
        value - value * saturation * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
        for k in (jnp.mod(offset + hue * 6.0, 6.0) for offset in (5.0, 3.0, 1.0))
    ]
    return jnp.stack(channels, axis=-1)


# Uniform draws in [0, 1) consumed by one view of one image, by position.
(
    _AREA,
    _RATIO,
    _TOP,
    _LEFT,
    _FLIP,
    _JITTER,
    _BRIGHT,
    _CONTRAST,
    _SAT,
    _HUE,
    _GRAY,
    _BLUR,
    _SIGMA,
    _SOLARIZE,
) = range(14)
NUM_DRAWS = 14


def _between(u: jax.Array, low: float, high: float) -> jax.Array:
    return low + (high - low) * u


def color_jitter(draws: jax.Array, image: jax.Array, strength: float) -> jax.Array:
    """Brightness, contrast, saturation, hue jitter of one image [H, W, C] (C = 1: first two).

    ``draws``: float [NUM_DRAWS] uniforms in [0, 1) (entries _BRIGHT.._HUE are used).
    """
    spread = 0.8 * strength
    image = jnp.clip(image * _between(draws[_BRIGHT], 1 - spread, 1 + spread), 0.0, 1.0)
    mean = _gray(image).mean()
    contrast = _between(draws[_CONTRAST], 1 - spread, 1 + spread)
    image = jnp.clip(mean + (image - mean) * contrast, 0.0, 1.0)
    if image.shape[-1] == 1:
        return image
    gray = _gray(image)
    image = jnp.clip(gray + (image - gray) * _between(draws[_SAT], 1 - spread, 1 + spread), 0, 1)
    hsv = rgb_to_hsv(image)
    shift = _between(draws[_HUE], -0.2 * strength, 0.2 * strength)
    hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + shift, 1.0))
    return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0)


def gaussian_blur(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
    """Separable Gaussian blur of [H, W, C]: std ``sigma``, taps -radius..radius, reflect edges."""
    offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    height, width = image.shape[:2]
    padded = jnp.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    image = sum(weights[j] * padded[j : j + height] for j in range(2 * radius + 1))
    padded = jnp.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    return sum(weights[j] * padded[:, j : j + width] for j in range(2 * radius + 1))


def random_resized_crop(
    draws: jax.Array,
    image: jax.Array,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> jax.Array:
    """Crop of area fraction in ``scale`` and aspect ratio (log-uniform) in ``ratio``, resized
    bilinearly (antialiased) to [size, size, C]; crops larger than the image are clipped to it.

    ``draws``: float [NUM_DRAWS] uniforms in [0, 1) (entries _AREA.._LEFT are used).
    """
    height, width, channels = image.shape
    area = _between(draws[_AREA], *scale) * height * width
    aspect = jnp.exp(_between(draws[_RATIO], math.log(ratio[0]), math.log(ratio[1])))
    crop_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
    crop_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
    corner = jnp.stack([draws[_TOP] * (height - crop_h), draws[_LEFT] * (width - crop_w)])
    zoom = jnp.stack([size / crop_h, size / crop_w])
    return jax.image.scale_and_translate(
        image,
        (size, size, channels),
        (0, 1),
        zoom,
        -corner * zoom,
        method="linear",
        antialias=True,
    )


def _flip(flip: jax.Array, image: jax.Array) -> jax.Array:
    return jnp.where(flip, image[:, ::-1], image)


def augment_view(draws: jax.Array, image: jax.Array, spec: ViewSpec) -> jax.Array:
    """One view of one image: [H, W, C] in [0, 1] -> [spec.size, spec.size, C] in [0, 1].

    ``draws``: float [NUM_DRAWS] uniforms in [0, 1), all of this view's randomness (one draw per
    image keeps the random-number code small to compile).
    """
    image = jnp.clip(random_resized_crop(draws, image, spec.size, spec.scale, spec.ratio), 0, 1)
    if spec.flip_prob > 0:
        image = _flip(draws[_FLIP] < spec.flip_prob, image)
    if spec.jitter_prob > 0 and spec.jitter_strength > 0:
        jittered = color_jitter(draws, image, spec.jitter_strength)
        image = jnp.where(draws[_JITTER] < spec.jitter_prob, jittered, image)
    if spec.gray_prob > 0 and image.shape[-1] == 3:
        gray = jnp.broadcast_to(_gray(image), image.shape)
        image = jnp.where(draws[_GRAY] < spec.gray_prob, gray, image)
    if spec.blur_prob > 0:
        radius = min(math.ceil(3 * spec.blur_sigma[1]), spec.size - 1)
        blurred = gaussian_blur(image, _between(draws[_SIGMA], *spec.blur_sigma), radius)
        image = jnp.where(draws[_BLUR] < spec.blur_prob, blurred, image)
    if spec.solarize_prob > 0:
        solarized = jnp.where(image >= 0.5, 1.0 - image, image)
        image = jnp.where(draws[_SOLARIZE] < spec.solarize_prob, solarized, image)
    return image


# ---------------------------------------------------------------------------------------------
# batched recipes


def _augment_images(draws: jax.Array, images: jax.Array, spec: ViewSpec) -> jax.Array:
    """`augment_view` over a batch: draws [B, NUM_DRAWS], images [B, H, W, C] in [0, 1]."""
    return jax.vmap(augment_view, in_axes=(0, 0, None))(draws, images, spec)


def augment_batch(key: jax.Array, images: jax.Array, spec: ViewSpec) -> jax.Array:
    """`augment_view` per image with independent draws: [B, H, W, C] -> [B, size, size, C]."""
    images = to_unit(images)
    return _augment_images(jax.random.uniform(key, (images.shape[0], NUM_DRAWS)), images, spec)


def training_view_at_positions(
    key: jax.Array, positions: jax.Array, images: jax.Array, spec: MultiCropSpec
) -> jax.Array:
    """The first global view of `spec` per image, normalized, with image i's draws taken from
    `fold_in(key, positions[i])`: a view depends on the key and the image's position in its split only,
    not on the batch or the devices it is computed on.

    Args:
      key: PRNG key.
      positions: int [B], the images' positions in their split.
      images: uint8 or float in [0, 1], [B, H, W, C].
      spec: `MultiCropSpec` (static under jit).
    Returns:
      float32 [B, g, g, C], g = the first global view's size.
    """
    draws = jax.vmap(lambda p: jax.random.uniform(jax.random.fold_in(key, p), (NUM_DRAWS,)))(positions)
    views = _augment_images(draws, to_unit(images), spec.global_views[0])
    return normalize(views, spec.mean, spec.std)


def multi_crop(key: jax.Array, images: jax.Array, spec: MultiCropSpec) -> list[jax.Array]:
    """Global then local normalized views of a batch.

    Args:
      key: PRNG key; every view of every image gets its own draws.
      images: uint8 or float in [0, 1], [B, H, W, C].
      spec: `MultiCropSpec` (static under jit).
    Returns:
      spec.num_global arrays [B, g, g, C] (g = each global view's size) followed by spec.num_local
      arrays [B, l, l, C], float32, normalized by spec.mean / spec.std.
    """
    images = to_unit(images)
    views = list(spec.global_views) + [spec.local_view] * spec.num_local
    draws = jax.random.uniform(key, (len(views), images.shape[0], NUM_DRAWS))
    outputs = []
    start = 0
    while start < len(views):  # runs of equal specs are traced once, vmapped over the run
        stop = start + 1
        while stop < len(views) and views[stop] == views[start]:
            stop += 1
        run = jax.vmap(_augment_images, in_axes=(0, None, None))(draws[start:stop], images, views[start])
        outputs.extend(normalize(run, spec.mean, spec.std))
        start = stop
    return outputs


def _pad_crop(draws: jax.Array, image: jax.Array, pad: int) -> jax.Array:
    """Reflect-pads [H, W, C] by ``pad``, crops [H, W, C] at floor(draws[:2] * (2 pad + 1))."""
    height, width, channels = image.shape
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    top, left = jnp.floor(draws[:2] * (2 * pad + 1)).astype(jnp.int32)
    return jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))


def light_augment(key: jax.Array, images: jax.Array, spec: LightSpec) -> jax.Array:
    """Labeled-image augmentation: pad-and-crop (or ``spec.view``) and flip, then normalize.

    Args:
      images: uint8 or float in [0, 1], [B, H, W, C].
    Returns:
      float32 [B, H, W, C] (or [B, view.size, view.size, C] with ``spec.view``), normalized.
    """
    if spec.view is not None:
        return normalize(augment_batch(key, images, spec.view), spec.mean, spec.std)

    def one(draws: jax.Array, image: jax.Array) -> jax.Array:
        if spec.pad > 0:
            image = _pad_crop(draws, image, spec.pad)
        return _flip(draws[2] < spec.flip_prob, image)

    images = to_unit(images)
    draws = jax.random.uniform(key, (images.shape[0], 3))
    return normalize(jax.vmap(one)(draws, images), spec.mean, spec.std)


def eval_transform(images: jax.Array, spec: EvalSpec) -> jax.Array:
    """Deterministic evaluation view: [B, H, W, C] -> [B, S, S, C] normalized float32.

    Resizes the shorter side to ``spec.resize`` (antialiased bilinear) if set, then centre-crops
    ``spec.crop`` if set (ImageNet: 256 then 224); small datasets only normalize.
    """
    images = to_unit(images)
    batch, height, width, channels = images.shape
    if spec.resize is not None:
        factor = spec.resize / min(height, width)
        height, width = round(height * factor), round(width * factor)
        images = jax.image.resize(images, (batch, height, width, channels), "linear")
    if spec.crop is not None:
        top, left = (height - spec.crop) // 2, (width - spec.crop) // 2
        images = images[:, top : top + spec.crop, left : left + spec.crop]
    return normalize(images, spec.mean, spec.std)


SMALL_IMAGE_MAX = 64  # Images up to this side get `small_images`' recipe, larger ones `large_images`'.


def _multiple_of_16(pixels: float) -> int:
    return max(16, round(pixels / 16) * 16)


def large_images(size: int, num_local: int, mean: tuple[float, ...], std: tuple[float, ...]) -> DatasetAugment:
    """DINO-style recipe for images stored as `size` squares: 2 global views of 7/8 of the side (blur 1.0 /
    blur 0.1 + solarize 0.2) and `num_local` local views of 3/8 (both multiples of 16, as ViT patches
    need); labeled images a light random resized crop; eval the centre 7/8."""
    global_size, local_size = _multiple_of_16(size * 7 / 8), _multiple_of_16(size * 3 / 8)
    global_view = ViewSpec(global_size, scale=(0.14, 1.0), blur_prob=1.0)
    return DatasetAugment(
        multi_crop=MultiCropSpec(
            global_views=(
                global_view,
                dataclasses.replace(global_view, blur_prob=0.1, solarize_prob=0.2),
            ),
            local_view=ViewSpec(local_size, scale=(0.05, 0.14), blur_prob=0.5),
            num_local=num_local,
            mean=mean,
            std=std,
        ),
        light=LightSpec(
            pad=0,
            flip_prob=0.0,
            mean=mean,
            std=std,
            view=ViewSpec(global_size, scale=(0.08, 1.0), jitter_prob=0.0, gray_prob=0.0),
        ),
        eval=EvalSpec(resize=size, crop=global_size, mean=mean, std=std),
    )


def imagenet(size: int = 256, num_local: int = 6) -> DatasetAugment:
    """ImageNet stored as `size` squares (`config.dataset.image_size`), with ImageNet's mean and std: at 256,
    2 x 224 global and `num_local` x 96 local views, eval 256 then 224 (`large_images`); up to
    `SMALL_IMAGE_MAX` pixels (a quick CPU try), the small-image recipe of `for_image_size`."""
    if size <= SMALL_IMAGE_MAX:
        return for_image_size(size, 3, IMAGENET_MEAN, IMAGENET_STD)
    return large_images(size, num_local, IMAGENET_MEAN, IMAGENET_STD)


def small_images(
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    flip_prob: float,
    global_scale: tuple[float, float] = (0.14, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.14),
    num_local: int = 4,
) -> DatasetAugment:
    """CIFAR-style recipe for `size`-pixel images: 2 global views of the whole side, `num_local` local
    views of 9/16 of it, no blur; labeled images reflect-padded by 1/8 of the side and shifted back;
    eval the image as it is."""
    return DatasetAugment(
        multi_crop=MultiCropSpec(
            global_views=(ViewSpec(size, scale=global_scale, flip_prob=flip_prob),) * 2,
            local_view=ViewSpec(round(size * 9 / 16), scale=local_scale, flip_prob=flip_prob),
            num_local=num_local,
            mean=mean,
            std=std,
        ),
        light=LightSpec(pad=max(1, size // 8), flip_prob=flip_prob, mean=mean, std=std),
        eval=EvalSpec(resize=None, crop=None, mean=mean, std=std),
    )


# CIFAR: 2 x 32 and 4 x 18.
CIFAR100 = small_images(32, CIFAR100_MEAN, CIFAR100_STD, flip_prob=0.5)


def for_image_size(size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...]) -> DatasetAugment:
    """The recipe of a user's images (an image folder) from their stored side `size`: up to
    `SMALL_IMAGE_MAX`, `small_images` with milder crops (global views of at least a quarter of the image,
    2 local views) and flips only for colour images (grey ones are often digits, text or scans, which a
    mirror changes); larger, `large_images` with 6 local views. `mean`/`std` are the images' own."""
    if size <= SMALL_IMAGE_MAX:
        return small_images(
            size, mean, std, flip_prob=0.5 if channels == 3 else 0.0,
            global_scale=(0.25, 1.0), local_scale=(0.05, 0.25), num_local=2,
        )
    return large_images(size, 6, mean, std)


# Digits: grey 8x8, no flips (digits are not mirror-symmetric); crops act as small shifts.
DIGITS = DatasetAugment(
    multi_crop=MultiCropSpec(
        global_views=(ViewSpec(8, scale=(0.5, 1.0), flip_prob=0.0),) * 2,
        local_view=ViewSpec(6, scale=(0.2, 0.5), flip_prob=0.0),
        num_local=4,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
    ),
    light=LightSpec(pad=1, flip_prob=0.0, mean=DIGITS_MEAN, std=DIGITS_STD),
    eval=EvalSpec(resize=None, crop=None, mean=DIGITS_MEAN, std=DIGITS_STD),
)


def specs_from_config(
    recipe: DatasetAugment, overrides: Mapping[str, Any]
) -> tuple[MultiCropSpec, LightSpec, EvalSpec]:
    """A dataset's augmentation `recipe` with the fields of `config.augment` (`overrides`) replaced.

    `overrides` holds the fields of `selax.config_fields.augment_overrides` (None: the default): for the
    unlabeled views `global_size`, `global_scale`, `local_size`, `local_scale`, `num_local` and the
    `ViewSpec` fields applied to every view; for labeled images `labeled_pad` and `labeled_flip_prob`.
    """
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items() if v is not None}
    view_fields = {f.name for f in dataclasses.fields(ViewSpec)} - {"size", "scale"}
    shared = {k: v for k, v in fields.items() if k in view_fields}

    def view(spec: ViewSpec, prefix: str) -> ViewSpec:
        size = fields.get(f"{prefix}_size", spec.size)
        return dataclasses.replace(spec, size=size, scale=fields.get(f"{prefix}_scale", spec.scale), **shared)

    for name, value in fields.items():
        if name.endswith("_prob") and not 0.0 <= value <= 1.0:
            raise ValueError(f"config.augment.{name}={value} must be a probability in [0, 1].")
        if (name.endswith("_size") and value <= 0) or (name in ("num_local", "labeled_pad") and value < 0):
            raise ValueError(
                f"config.augment.{name}={value} must be {'positive' if name.endswith('_size') else '>= 0'}."
            )
    crops = recipe.multi_crop
    crop_spec = dataclasses.replace(
        crops,
        global_views=tuple(view(v, "global") for v in crops.global_views),
        local_view=view(crops.local_view, "local"),
        num_local=fields.get("num_local", crops.num_local),
    )
    labeled_spec = dataclasses.replace(
        recipe.light,
        pad=fields.get("labeled_pad", recipe.light.pad),
        flip_prob=fields.get("labeled_flip_prob", recipe.light.flip_prob),
    )
    return crop_spec, labeled_spec, recipe.eval
