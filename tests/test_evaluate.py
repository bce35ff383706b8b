"""Tests of selax.evaluate against sklearn and independent float64 NumPy references."""

import itertools

import jax
import numpy as np
import pytest
from sklearn import datasets, metrics
from sklearn.model_selection import train_test_split

from selax import evaluate

# ----------------------------------------------------------------------------------------------------------------
# top1_accuracy


def test_top1_accuracy_matches_numpy():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 50)
    assert evaluate.top1_accuracy(scores, labels) == pytest.approx(np.mean(np.argmax(scores, 1) == labels))


# ----------------------------------------------------------------------------------------------------------------
# kNN


def reference_knn_predict(train_features, train_labels, test_features, num_classes, k, temperature):
    """float64 weighted cosine kNN; also returns, per test row, the smallest gap that could flip float32 results."""
    train = np.asarray(train_features, np.float64)
    test = np.asarray(test_features, np.float64)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    test /= np.linalg.norm(test, axis=1, keepdims=True)
    k = min(k, len(train))
    predictions, margins = [], []
    for similarities in test @ train.T:
        order = np.argsort(-similarities, kind="stable")
        votes = np.zeros(num_classes)
        for neighbour in order[:k]:
            votes[train_labels[neighbour]] += np.exp(similarities[neighbour] / temperature)
        top_two = np.sort(votes)[-2:]
        neighbour_gap = similarities[order[k - 1]] - similarities[order[k]] if k < len(train) else np.inf
        predictions.append(np.argmax(votes))
        margins.append(min(neighbour_gap, (top_two[1] - top_two[0]) / top_two[1]))
    return np.array(predictions), np.array(margins)


def random_knn_problem(seed, num_train=200, num_test=77, dim=16, num_classes=5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim))
    train_labels = rng.integers(0, num_classes, num_train)
    test_labels = rng.integers(0, num_classes, num_test)
    train = (centers[train_labels] + 1.5 * rng.normal(size=(num_train, dim))).astype(np.float32)
    test = (centers[test_labels] + 1.5 * rng.normal(size=(num_test, dim))).astype(np.float32)
    return train, train_labels, test, test_labels


def assert_same_unambiguous_predictions(predictions, expected, margins):
    unambiguous = margins > 1e-5
    assert unambiguous.mean() > 0.95
    np.testing.assert_array_equal(np.asarray(predictions)[unambiguous], expected[unambiguous])


@pytest.mark.parametrize(
    "k,temperature,batch_size", [(10, 0.07, 1), (10, 0.07, 16), (10, 0.07, 500), (3, 0.5, 77)]
)
def test_knn_predict_matches_float64_reference(batch_size, k, temperature):
    train, train_labels, test, _ = random_knn_problem(seed=k)
    expected, margins = reference_knn_predict(train, train_labels, test, 5, k, temperature)
    predictions = evaluate.knn_predict(
        train, train_labels, test, num_classes=5, k=k, temperature=temperature, batch_size=batch_size
    )
    assert predictions.shape == (77,) and predictions.dtype == np.int32
    assert_same_unambiguous_predictions(predictions, expected, margins)


def test_knn_top1_matches_reference():
    train, train_labels, test, test_labels = random_knn_problem(seed=1)
    expected, margins = reference_knn_predict(train, train_labels, test, 5, 20, 0.07)
    predictions = evaluate.knn_predict(train, train_labels, test, num_classes=5, batch_size=8)
    assert_same_unambiguous_predictions(predictions, expected, margins)
    top1 = evaluate.knn_top1(train, train_labels, test, test_labels, num_classes=5, batch_size=8)
    assert top1 == pytest.approx(np.mean(np.asarray(predictions) == test_labels))
    assert top1 > 0.5  # Well above chance (0.2) on clustered data.


def test_knn_clips_k_to_number_of_training_rows():
    train, train_labels, test, _ = random_knn_problem(seed=3, num_train=12)
    expected, margins = reference_knn_predict(train, train_labels, test, 5, 12, 0.07)
    predictions = evaluate.knn_predict(train, train_labels, test, num_classes=5, k=50)
    assert_same_unambiguous_predictions(predictions, expected, margins)


def test_knn_with_training_rows_sharded_over_devices():
    devices = jax.devices()
    assert len(devices) == 8
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    train, train_labels, test, _ = random_knn_problem(seed=4, num_train=200)
    sharded_predictions = evaluate.knn_predict(
        jax.device_put(train, rows), jax.device_put(train_labels, rows), test, num_classes=5, batch_size=32
    )
    np.testing.assert_array_equal(
        sharded_predictions, evaluate.knn_predict(train, train_labels, test, num_classes=5)
    )


# ----------------------------------------------------------------------------------------------------------------
# Linear probe


def test_linear_probe_separates_linearly_separable_data():
    rng = np.random.default_rng(0)
    centers = 10.0 * rng.normal(size=(4, 8))
    labels = rng.integers(0, 4, 300)
    features = (centers[labels] + rng.normal(size=(300, 8))).astype(np.float32)
    top1 = evaluate.linear_probe_top1(
        features[:200], labels[:200], features[200:], labels[200:], num_classes=4, steps=200
    )
    assert top1 == 1.0


@pytest.mark.parametrize("batch_size", [None, 128])
def test_linear_probe_on_digit_pixels(batch_size):
    pixels, labels = datasets.load_digits(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels.astype(np.float32), labels, test_size=0.3, random_state=0
    )
    top1 = evaluate.linear_probe_top1(
        train_x, train_y, test_x, test_y, num_classes=10, steps=500, batch_size=batch_size
    )
    assert top1 >= 0.9


def test_linear_probe_is_deterministic_given_seed():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(64, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 64)
    fit = lambda seed: evaluate.train_linear_probe(
        features, labels, num_classes=3, steps=20, batch_size=16, seed=seed
    )
    first, again, other = fit(0), fit(0), fit(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.weights, other.weights)


def test_linear_probe_logits_have_one_column_per_class():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(40, 6)).astype(np.float32)
    probe = evaluate.train_linear_probe(features, rng.integers(0, 3, 40), num_classes=3, steps=50)
    logits = evaluate.linear_probe_logits(probe, features)
    assert logits.shape == (40, 3)
    np.testing.assert_allclose(logits, ((features - probe.feature_mean) / probe.feature_scale) @ probe.weights + probe.bias, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Clustering metrics


@pytest.mark.parametrize("seed", range(6))
def test_clustering_metrics_match_sklearn_on_random_labelings(seed):
    rng = np.random.default_rng(seed)
    num_samples = int(rng.integers(2, 400))
    num_clusters, num_classes = rng.integers(1, 15, 2)
    cluster_ids = rng.integers(0, num_clusters, num_samples) * 3 + 5  # Ids need not be contiguous.
    # Classes correlated with clusters on half the samples, with imbalanced sizes.
    labels = np.where(
        rng.random(num_samples) < 0.5,
        cluster_ids % num_classes,
        rng.choice(num_classes, num_samples, p=rng.dirichlet(np.ones(num_classes))),
    )
    assert evaluate.nmi(cluster_ids, labels) == pytest.approx(
        metrics.normalized_mutual_info_score(labels, cluster_ids), abs=1e-12
    )
    assert evaluate.adjusted_nmi(cluster_ids, labels) == pytest.approx(
        metrics.adjusted_mutual_info_score(labels, cluster_ids), abs=1e-10
    )
    assert evaluate.ari(cluster_ids, labels) == pytest.approx(
        metrics.adjusted_rand_score(labels, cluster_ids), abs=1e-12
    )


@pytest.mark.parametrize(
    "cluster_ids,labels",
    [
        ([0, 0, 0], [1, 1, 1]),
        ([0, 0, 0, 0], [0, 1, 2, 3]),
        ([0, 1, 2], [5, 6, 7]),
        ([3], [3]),
        ([0, 0, 1, 1], [0, 1, 0, 1]),
    ],
)
def test_clustering_metrics_match_sklearn_on_degenerate_partitions(cluster_ids, labels):
    cluster_ids, labels = np.array(cluster_ids), np.array(labels)
    assert evaluate.nmi(cluster_ids, labels) == pytest.approx(
        metrics.normalized_mutual_info_score(labels, cluster_ids)
    )
    assert evaluate.adjusted_nmi(cluster_ids, labels) == pytest.approx(
        metrics.adjusted_mutual_info_score(labels, cluster_ids), abs=1e-12
    )
    assert evaluate.ari(cluster_ids, labels) == pytest.approx(
        metrics.adjusted_rand_score(labels, cluster_ids)
    )


def test_identical_and_renamed_partitions_score_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    renamed = rng.permutation(10)[labels] + 100
    for cluster_ids in (labels, renamed):
        for name, metric in evaluate.CLUSTERING_METRICS.items():
            assert metric(cluster_ids, labels) == pytest.approx(1.0), name


def test_independent_partitions_score_about_zero():
    rng = np.random.default_rng(0)
    cluster_ids, labels = rng.integers(0, 10, (2, 20000))
    assert evaluate.nmi(cluster_ids, labels) < 0.01
    assert abs(evaluate.adjusted_nmi(cluster_ids, labels)) < 0.01
    assert abs(evaluate.ari(cluster_ids, labels)) < 0.01
    assert evaluate.cluster_accuracy(cluster_ids, labels) < 0.15


def brute_force_cluster_accuracy(cluster_ids, labels, num_clusters, num_classes):
    """Best accuracy over every one-to-one matching between clusters and classes, counted sample by sample."""
    best = 0.0
    if num_clusters <= num_classes:
        for class_of_cluster in itertools.permutations(range(num_classes), num_clusters):
            best = max(best, np.mean(np.array(class_of_cluster, np.float64)[cluster_ids] == labels))
    else:
        for cluster_of_class in itertools.permutations(range(num_clusters), num_classes):
            correct = sum(
                np.sum((cluster_ids == cluster) & (labels == c)) for c, cluster in enumerate(cluster_of_class)
            )
            best = max(best, correct / len(labels))
    return best


@pytest.mark.parametrize("num_clusters,num_classes", [(4, 4), (4, 4), (5, 4), (3, 4), (6, 3)])
def test_cluster_accuracy_matches_brute_force(num_clusters, num_classes):
    rng = np.random.default_rng(num_clusters * 10 + num_classes)
    cluster_ids = rng.integers(0, num_clusters, 120)
    labels = np.where(rng.random(120) < 0.6, cluster_ids % num_classes, rng.integers(0, num_classes, 120))
    assert evaluate.cluster_accuracy(cluster_ids, labels) == pytest.approx(
        brute_force_cluster_accuracy(cluster_ids, labels, num_clusters, num_classes), abs=1e-12
    )


def test_clustering_report_over_heads():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 100)
    heads = np.stack([labels, rng.integers(0, 6, 100), np.where(rng.random(100) < 0.5, labels, 0)])
    report = evaluate.clustering_report(heads, labels)
    for name, metric in evaluate.CLUSTERING_METRICS.items():
        per_head = [metric(head, labels) for head in heads]
        assert [report[f"{name}_head{t}"] for t in range(3)] == per_head
        assert report[name] == pytest.approx(np.mean(per_head))
        assert report[f"{name}_best"] == max(per_head) == report[f"{name}_head0"] == pytest.approx(1.0)
    single = evaluate.clustering_report(heads[1], labels)
    assert single["ari"] == single["ari_best"] == single["ari_head0"] == report["ari_head1"]
    assert "ari_head1" not in single


# ----------------------------------------------------------------------------------------------------------------
# Bad input


def test_label_out_of_range_names_label_and_num_classes():
    features = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"label 7 .*num_classes=5"):
        evaluate.knn_top1(features, np.array([0, 1, 7, 2]), features, np.zeros(4, int), num_classes=5)
    with pytest.raises(ValueError, match=r"test_labels contains label 9 .*num_classes=5"):
        evaluate.linear_probe_top1(
            features, np.zeros(4, int), features, np.array([0, 9, 1, 1]), num_classes=5
        )
    with pytest.raises(ValueError, match=r"label 3 .*num_classes=3"):
        evaluate.top1_accuracy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"label -1"):
        evaluate.train_linear_probe(features, np.array([0, -1, 0, 0]), num_classes=2)
    with pytest.raises(ValueError, match="integer"):
        evaluate.top1_accuracy(np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_mismatched_shapes_raise():
    features = np.ones((4, 3), np.float32)
    labels = np.zeros(4, int)
    with pytest.raises(ValueError, match="train_labels has 3 rows"):
        evaluate.knn_predict(features, labels[:3], features, num_classes=2)
    with pytest.raises(ValueError, match="dimension 2 but train_features have 3"):
        evaluate.knn_top1(features, labels, features[:, :2], labels, num_classes=2)
    with pytest.raises(ValueError, match="dimension 2 but train_features have 3"):
        evaluate.linear_probe_top1(features, labels, features[:, :2], labels, num_classes=2)
    with pytest.raises(ValueError, match="test_labels has 3 rows"):
        evaluate.knn_top1(features, labels, features, labels[:3], num_classes=2)
    with pytest.raises(ValueError, match="labels has 3 rows"):
        evaluate.top1_accuracy(np.zeros((4, 2)), labels[:3])
    with pytest.raises(ValueError, match="scores must have 2"):
        evaluate.top1_accuracy(np.zeros(4), labels)
    with pytest.raises(ValueError, match="temperature"):
        evaluate.knn_predict(features, labels, features, num_classes=2, temperature=0.0)
    with pytest.raises(ValueError, match="cluster_ids has 3 entries but labels has 4"):
        evaluate.nmi(labels[:3], labels)
    with pytest.raises(ValueError, match=r"\[T, N\]"):
        evaluate.clustering_report(np.zeros((2, 2, 4), int), labels)
