"""selax.data.augment: float64 NumPy references, invariants, shapes, determinism, jit."""

import colorsys
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from selax.data import augment as A

DIGITS = A.DIGITS


def _draws(**values):
    """A draws vector with 0.5 everywhere except the named entries (e.g. _AREA=1.0)."""
    draws = np.full(A.NUM_DRAWS, 0.5, np.float32)
    for name, value in values.items():
        draws[getattr(A, name)] = value
    return jnp.asarray(draws)


def test_hsv_conversions_match_colorsys():
    rgb = np.random.default_rng(0).random((6, 5, 3))
    rgb[0, 0] = [0.3, 0.3, 0.3]  # grey: hue and saturation 0
    rgb[0, 1] = 0.0
    reference = np.array([[colorsys.rgb_to_hsv(*pixel) for pixel in row] for row in rgb])
    np.testing.assert_allclose(A.rgb_to_hsv(jnp.asarray(rgb, jnp.float32)), reference, atol=1e-5)
    np.testing.assert_allclose(A.hsv_to_rgb(jnp.asarray(reference, jnp.float32)), rgb, atol=1e-5)


def test_gaussian_blur_matches_numpy_reference():
    image = np.random.default_rng(1).random((9, 7, 2))
    sigma, radius = 1.3, 4
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    reference = ndimage.correlate1d(image, weights, axis=0, mode="mirror")
    reference = ndimage.correlate1d(reference, weights, axis=1, mode="mirror")
    blurred = A.gaussian_blur(jnp.asarray(image, jnp.float32), jnp.float32(sigma), radius)
    np.testing.assert_allclose(blurred, reference, atol=1e-5)


def test_resized_crop_whole_image_is_identity_and_quarter_is_a_quadrant():
    image = jnp.asarray(np.random.default_rng(2).random((8, 8, 3)), jnp.float32)
    whole = A.random_resized_crop(_draws(), image, 8, (1.0, 1.0), (1.0, 1.0))
    np.testing.assert_allclose(whole, image, atol=1e-5)
    quarter = A.random_resized_crop(_draws(_TOP=0.0, _LEFT=1.0), image, 4, (0.25, 0.25), (1.0, 1.0))
    np.testing.assert_allclose(quarter, image[:4, 4:], atol=1e-5)
    # a wide crop: area 32 px at aspect 2 is 8 wide and 4 high, halved in width with an
    # antialiasing triangle filter of half-width 2 input pixels, renormalized at the border
    wide = A.random_resized_crop(_draws(_RATIO=1.0, _TOP=1.0), image, 4, (0.5, 0.5), (0.5, 2.0))
    centers = 2.0 * np.arange(4) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(8)[None, :] - centers[:, None]) / 2.0)
    weights /= weights.sum(1, keepdims=True)
    reference = np.einsum("jw,hwc->hjc", weights, np.asarray(image, np.float64)[4:])
    np.testing.assert_allclose(wide, reference, atol=1e-5)


def test_color_jitter_neutral_draws_are_identity_and_grey_keeps_one_channel():
    rgb = jnp.asarray(np.random.default_rng(3).random((5, 5, 3)), jnp.float32)
    np.testing.assert_allclose(A.color_jitter(_draws(), rgb, 1.0), rgb, atol=1e-5)
    grey = jnp.asarray(np.random.default_rng(4).random((5, 5, 1)), jnp.float32) * 0.5
    brighter = A.color_jitter(_draws(_BRIGHT=1.0), grey, 0.5)  # factor 1.4, contrast 1
    np.testing.assert_allclose(brighter, np.clip(np.asarray(grey) * 1.4, 0, 1), atol=1e-5)
    desaturated = A.color_jitter(_draws(_SAT=0.0), rgb, 1.25)  # saturation factor 0
    np.testing.assert_allclose(
        desaturated,
        np.broadcast_to(np.asarray(rgb) @ np.array([0.299, 0.587, 0.114])[:, None], rgb.shape),
        atol=1e-5,
    )


@pytest.fixture(scope="module")
def jitted_multi_crop():
    return jax.jit(A.multi_crop, static_argnums=2)


def _digits_batch(batch=8):
    return jnp.asarray(np.random.default_rng(5).integers(0, 256, (batch, 8, 8, 1)), jnp.uint8)


def test_multi_crop_shapes_ranges_determinism(jitted_multi_crop):
    spec = dataclasses.replace(DIGITS.multi_crop, mean=(0.0,), std=(1.0,))
    images = _digits_batch()
    views = jitted_multi_crop(jax.random.key(0), images, spec)
    assert [v.shape for v in views] == [(8, 8, 8, 1)] * 2 + [(8, 6, 6, 1)] * 4
    assert all(v.dtype == jnp.float32 and 0 <= v.min() and v.max() <= 1 for v in views)
    again = jitted_multi_crop(jax.random.key(0), images, spec)
    for first, second in zip(views, again, strict=True):
        np.testing.assert_array_equal(first, second)
    other = jitted_multi_crop(jax.random.key(1), images, spec)
    assert not np.allclose(views[0], other[0])
    assert not np.allclose(views[0], views[1])  # the two global views differ


def test_multi_crop_draws_per_image_and_normalizes(jitted_multi_crop):
    spec = DIGITS.multi_crop
    same = jnp.broadcast_to(_digits_batch(1), (8, 8, 8, 1))
    views = jitted_multi_crop(jax.random.key(2), same, spec)
    assert len({np.asarray(view).tobytes() for view in views[2]}) == 8
    unit = jitted_multi_crop(jax.random.key(2), same, dataclasses.replace(spec, mean=(0.0,), std=(1.0,)))
    np.testing.assert_allclose(views[0], (unit[0] - A.DIGITS_MEAN[0]) / A.DIGITS_STD[0], rtol=1e-5, atol=1e-5)


def test_rgb_view_with_every_operation_stays_in_range():
    spec = A.ViewSpec(6, scale=(0.2, 1.0), jitter_strength=1.0, blur_prob=0.5, solarize_prob=0.5)
    images = jnp.asarray(np.random.default_rng(6).random((4, 10, 12, 3)), jnp.float32)
    views = jax.jit(A.augment_batch, static_argnums=2)(jax.random.key(3), images, spec)
    assert views.shape == (4, 6, 6, 3) and 0 <= views.min() and views.max() <= 1


def test_light_augment_is_a_padded_shift_and_flip():
    spec = A.LightSpec(pad=1, flip_prob=0.5, mean=(0.0,), std=(1.0,))
    images = _digits_batch(8)
    out = np.asarray(jax.jit(A.light_augment, static_argnums=2)(jax.random.key(4), images, spec))
    padded = np.pad(np.asarray(images) / 255.0, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    for k in range(8):
        candidates = [
            crop[:, ::flip]
            for top in range(3)
            for left in range(3)
            for flip in (1, -1)
            for crop in [padded[k, top : top + 8, left : left + 8]]
        ]
        assert min(np.abs(out[k] - c).max() for c in candidates) < 1e-6


def test_eval_transform_resizes_crops_and_normalizes():
    images = jnp.full((2, 40, 50, 3), 128, jnp.uint8)
    spec = A.EvalSpec(resize=32, crop=28, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    out = A.eval_transform(images, spec)
    assert out.shape == (2, 28, 28, 3)
    np.testing.assert_allclose(out[0, 0, 0], (128 / 255 - np.array([0.5, 0.4, 0.3])) / 0.2, atol=1e-5)
    digits = _digits_batch(3)
    np.testing.assert_allclose(
        A.eval_transform(digits, DIGITS.eval),
        (np.asarray(digits) / 255.0 - A.DIGITS_MEAN) / A.DIGITS_STD,
        atol=1e-5,
    )


def test_every_dataset_names_a_recipe_and_unknown_names_are_refused():
    from selax.data import datasets

    imagenet = A.imagenet().multi_crop  # ImageNet's recipe follows config.dataset.image_size, default 256.
    assert datasets.get("imagenet2012").augment is None
    assert imagenet.num_global == 2 and imagenet.global_views[0].size == 224
    assert imagenet.num_local == 6 and imagenet.local_view.size == 96
    assert A.imagenet(num_local=8).multi_crop.num_local == 8
    assert A.imagenet(32).multi_crop.global_views[0].size == 32 and A.imagenet(32).eval.crop is None
    assert all(v.flip_prob == 0 for v in DIGITS.multi_crop.global_views)
    assert datasets.get("digits_longtail").augment is DIGITS and datasets.get("cifar100").augment is A.CIFAR100
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'. Known datasets"):
        datasets.get("mnist")


def test_multi_crop_on_a_sharded_batch_matches_unsharded(jitted_multi_crop):
    """Augmentations do not depend on how the batch is split over devices (resume-safe)."""
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    images = _digits_batch(jax.device_count())  # the shape compiled above
    sharded = jax.device_put(images, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
    expected = jitted_multi_crop(jax.random.key(7), images, DIGITS.multi_crop)
    views = jitted_multi_crop(jax.random.key(7), sharded, DIGITS.multi_crop)
    assert views[0].sharding.spec == jax.sharding.PartitionSpec("data")
    for view, reference in zip(views, expected, strict=True):
        np.testing.assert_array_equal(view, reference)


def test_training_view_at_positions_depends_on_the_key_and_position_only():
    """An image's label-step view is `augment_view` with draws from `fold_in(key, position)`, normalized:
    the same whichever batch (or order) it comes in."""
    spec = DIGITS.multi_crop
    view = jax.jit(A.training_view_at_positions, static_argnums=3)
    images = _digits_batch(8)
    positions = jnp.arange(100, 108, dtype=jnp.int32)
    views = view(jax.random.key(3), positions, images, spec)
    assert views.shape == (8, 8, 8, 1) and views.dtype == jnp.float32

    draws = jax.random.uniform(jax.random.fold_in(jax.random.key(3), 105), (A.NUM_DRAWS,))
    reference = A.augment_view(draws, A.to_unit(images[5]), spec.global_views[0])
    np.testing.assert_allclose(views[5], A.normalize(reference, spec.mean, spec.std), rtol=1e-6, atol=1e-6)

    order = np.array([7, 5, 3, 1, 0, 2, 4, 6])
    shuffled = view(jax.random.key(3), positions[order], images[order], spec)
    np.testing.assert_array_equal(shuffled, views[order])
    other = view(jax.random.key(4), positions, images, spec)
    assert not np.allclose(other, views)
    same_image = jnp.broadcast_to(images[:1], (8, 8, 8, 1))  # Different positions: different views.
    assert len({np.asarray(v).tobytes() for v in view(jax.random.key(3), positions, same_image, spec)}) == 8
