"""Cross-entropies against float64 NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from selax import losses


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_soft_cross_entropy_matches_numpy_and_stops_target_gradients(rng):
    logits = rng.normal(size=(5, 7)) * 3
    targets = rng.dirichlet(np.ones(7), size=5)
    expected = -(targets * np_log_softmax(logits)).sum(-1)
    np.testing.assert_allclose(losses.soft_cross_entropy(targets, logits), expected, rtol=1e-5)
    grad = jax.grad(lambda t: losses.soft_cross_entropy(t, jnp.asarray(logits)).sum())(jnp.asarray(targets))
    assert not np.any(grad)


def test_smoothed_one_hot_rows_sum_to_one():
    targets = np.asarray(losses.smoothed_one_hot(jnp.array([0, 3]), 4, 0.1))
    np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets[1], [0.025, 0.025, 0.025, 0.925], rtol=1e-6)


def test_swapped_prediction_pairs_each_target_with_every_other_view(rng):
    views = [rng.normal(size=(3, 4)) for _ in range(4)]
    targets = [rng.dirichlet(np.ones(4), size=3) for _ in range(2)]
    rows = np.asarray(losses.swapped_prediction_loss(targets, views))
    expected = [
        -(targets[i] * np_log_softmax(views[j])).sum(-1) for i in range(2) for j in range(4) if j != i
    ]
    np.testing.assert_allclose(rows, np.concatenate(expected), rtol=1e-5)


def test_frequency_weighting_is_the_mean_over_all_rows_and_a_weight_splits_it():
    labeled, unlabeled = jnp.array([1.0, 3.0]), jnp.array([10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    assert float(losses.frequency_weighted_mean(labeled, unlabeled, None)) == pytest.approx(64 / 8)
    assert float(losses.frequency_weighted_mean(labeled, unlabeled, 0.25)) == pytest.approx(
        0.25 * 2 + 0.75 * 10
    )


def test_dino_targets_are_centred_sharpened_softmax(rng):
    logits, center = rng.normal(size=(4, 6)), rng.normal(size=6)
    expected = np.exp(np_log_softmax((logits - center) / 0.04))
    np.testing.assert_allclose(losses.dino_targets(logits, center, 0.04), expected, rtol=1e-5, atol=1e-7)


def test_mix_with_next_mixes_each_row_with_the_previous_one():
    x = jnp.array([[1.0], [2.0], [4.0]])
    np.testing.assert_allclose(losses.mix_with_next(x, 0.75), [[0.75 + 1.0], [1.5 + 0.25], [3.0 + 0.5]])
