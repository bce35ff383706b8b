"""Label spreading against a float64 NumPy solve of the same system."""

import jax.numpy as jnp
import numpy as np

from selax.label_spreading import SHARPENING, label_spreading, spread_label_counts


def numpy_label_spreading(labeled, labels, unlabeled, num_classes, num_neighbors, alpha):
    """float64 reference: the symmetric k-NN graph of cosines ** SHARPENING, `(I - alpha S)^-1 Y`."""
    points = np.concatenate([labeled, unlabeled]).astype(np.float64)
    points /= np.linalg.norm(points, axis=-1, keepdims=True)
    n = len(points)
    cosines = points @ points.T
    np.fill_diagonal(cosines, -np.inf)
    links = np.zeros((n, n))
    for i in range(n):
        nearest = np.argsort(-cosines[i])[:num_neighbors]
        links[i, nearest] = np.maximum(cosines[i, nearest], 0) ** SHARPENING
    weights = links + links.T
    scale = 1 / np.sqrt(weights.sum(1))
    targets = np.zeros((n, num_classes))
    targets[np.arange(len(labels)), labels] = 1
    scores = np.linalg.solve(np.eye(n) - alpha * scale[:, None] * weights * scale[None], targets)
    return scores[len(labels) :]


def clusters(rng, proportions, num_points, dim=8, spread=0.5):
    """Points around one random unit direction per class, drawn with `proportions`; and their classes."""
    centers = rng.normal(size=(len(proportions), dim))
    classes = rng.choice(len(proportions), size=num_points, p=proportions)
    return centers[classes] + spread * rng.normal(size=(num_points, dim)), classes


def test_scores_match_a_float64_solve_and_find_the_clusters():
    rng = np.random.default_rng(0)
    all_points, all_classes = clusters(rng, [0.5, 0.3, 0.2], 123)
    labeled_positions = np.array([np.flatnonzero(all_classes == c)[0] for c in range(3)])
    labeled, labels = all_points[labeled_positions], all_classes[labeled_positions]
    # The unlabeled images exclude the labeled ones: a duplicate ties with its original in every k-NN list.
    points, classes = np.delete(all_points, labeled_positions, 0), np.delete(all_classes, labeled_positions)
    scores = label_spreading(
        jnp.asarray(labeled, jnp.float32), jnp.asarray(labels), jnp.asarray(points, jnp.float32), 4, 6, 0.9
    )
    expected = numpy_label_spreading(labeled, labels, points, 4, 6, 0.9)
    assert scores.shape == (120, 4)
    np.testing.assert_allclose(np.asarray(scores), expected, atol=1e-4 * np.abs(expected).max())
    assert np.mean(np.argmax(expected, -1) == classes) > 0.95  # One label per cluster reaches the cluster.
    assert not np.any(expected[:, 3])  # A class with no labeled image gets no score.


def test_counts_leave_out_rows_no_label_reached():
    scores = jnp.asarray([[0.2, 0.1, 0.0], [0.0, 0.3, 0.1], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(spread_label_counts(scores)), [2.0, 1.0, 0.0])
