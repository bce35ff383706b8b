"""selax.pictures: what each figure shows, on small arrays."""

import numpy as np

from selax import evaluate, pictures


def test_embedding_map_has_a_panel_per_colouring_and_a_legend_entry_per_class():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 12)
    features = rng.normal(size=(36, 5)) + 6.0 * np.eye(5)[labels]
    figure = pictures.embedding_map(features, labels, ["cat", "dog", "fox"], clusters=(labels + 1) % 3)
    by_class, by_cluster = figure.axes
    assert [t.get_text() for t in by_class.get_legend().get_texts()] == ["cat", "dog", "fox"]
    assert len(by_cluster.get_legend().get_texts()) == 3
    points = pictures.two_d_map(features)
    centres = np.stack([points[labels == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(points[labels == c] - centres[c], axis=1).mean() for c in range(3))
    assert np.linalg.norm(centres[0] - centres[1]) > 2 * spread  # Separated classes stay apart.


def test_confusion_matrix_counts_and_reports_top1():
    labels, predicted = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0])
    ax = pictures.confusion_matrix(labels, predicted, ["a", "b"]).axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(0, 0): "1", (0, 1): "1", (1, 0): "1", (1, 1): "2"}
    assert "60.0%" in ax.get_title()


def test_confusion_matrix_has_a_column_for_each_free_prototype():
    labels, predicted = np.array([0, 1, 1]), np.array([0, 2, 1])
    outputs = evaluate.output_names(["a", "b"], 3)
    assert outputs == ("a", "b", "prototype 2")
    ax = pictures.confusion_matrix(labels, predicted, ["a", "b"], outputs).axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(0, 0): "1", (1, 2): "1", (1, 1): "1"}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "prototype 2"]
    assert "66.7%" in ax.get_title()


def test_gallery_shows_each_large_clusters_most_confident_images():
    clusters = np.array([0, 0, 0, 1, 1, 2])
    confidences = np.array([0.1, 0.9, 0.5, 0.3, 0.8, 0.7])
    np.testing.assert_array_equal(pictures.gallery_positions(clusters, confidences, per_cluster=2, max_clusters=2), [1, 2, 3, 4])
    images = np.zeros((6, 4, 4, 1), np.uint8)
    figure = pictures.cluster_gallery(images, clusters, confidences, per_cluster=2, max_clusters=2)
    assert len(figure.axes) == 2 * 3  # 2 clusters x (label + 2 images).
