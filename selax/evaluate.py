"""Evaluation shared by SeLa, Suave and Daino: top-1 accuracies of classifiers on features, clustering metrics.

Every function is a pure function of arrays and names the metric it returns:

- `top1_accuracy`: top-1 of given scores (e.g. prototype or teacher logits) against labels.
- `knn_top1`: top-1 of a similarity-weighted cosine k-nearest-neighbour classifier (DINO / solo-learn protocol).
- `linear_probe_top1`: top-1 of a multinomial logistic regression trained on frozen features.
- `nmi`, `adjusted_nmi`, `ari`, `cluster_accuracy`, `clustering_report`: agreement of predicted cluster ids
  with ground-truth classes (SeLa's label quality).

The heavy parts (kNN, linear probe) are jitted JAX and accept sharded `jax.Array` inputs (e.g. the training set
sharded over its rows); the clustering metrics are small combinatorics on a contingency table in NumPy/SciPy.

`EVALUATIONS` are what a method's `evaluations` name: each maps the predictions of a run
(`RunPredictions`) to its named metrics.
"""

import functools
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize
import scipy.special

from selax.models.heads import l2_normalize

ArrayLike = jax.Array | np.ndarray

# ----------------------------------------------------------------------------------------------------------------
# Input validation


def _check_rows(name: str, array: ArrayLike, ndim: int, num_rows: int | None = None) -> None:
    """Raises ValueError unless `array` has `ndim` dimensions (and `num_rows` rows when given)."""
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(array.shape)}.")
    if num_rows is not None and array.shape[0] != num_rows:
        raise ValueError(
            f"{name} has {array.shape[0]} rows but must have {num_rows} (one per sample); got shape "
            f"{tuple(array.shape)}."
        )


def _check_labels(name: str, labels: ArrayLike, num_classes: int) -> None:
    """Raises ValueError unless the integer `labels [N]` lie in [0, num_classes)."""
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{name} must be integer class ids, got dtype {labels.dtype}.")
    labels = jnp.asarray(labels)
    largest, smallest = int(jnp.max(labels)), int(jnp.min(labels))
    if largest >= num_classes:
        raise ValueError(
            f"{name} contains label {largest} but num_classes={num_classes}: labels must lie in "
            f"[0, num_classes); pass the right num_classes or remap the labels."
        )
    if smallest < 0:
        raise ValueError(
            f"{name} contains label {smallest}: labels must lie in [0, num_classes={num_classes}); leave"
            " unlabeled rows out."
        )


def _fraction_correct(predictions: jax.Array, labels: jax.Array) -> float:
    """Fraction of rows where `predictions [N] == labels [N]`."""
    return float(jnp.mean(predictions == labels))


# ----------------------------------------------------------------------------------------------------------------
# Top-1 of given scores


def output_names(class_names: Sequence[str], num_outputs: int) -> tuple[str, ...]:
    """Names of a classifier head's `num_outputs` outputs: the class names, then `prototype k` for each
    output beyond the classes (Suave's free prototypes, `suave.num_prototypes` > classes)."""
    return (*class_names, *(f"prototype {k}" for k in range(len(class_names), num_outputs)))


def top1_accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy: fraction of rows whose highest score is at their label.

    Args:
      scores: `[N, K]` logits, probabilities or similarities, one column per class.
      labels: `[N]` integer class ids in [0, K).

    Returns:
      Top-1 accuracy in [0, 1].
    """
    _check_rows("scores", scores, 2)
    num_rows, num_classes = scores.shape
    _check_rows("labels", labels, 1, num_rows)
    _check_labels("labels", labels, num_classes)
    return _fraction_correct(jnp.argmax(scores, axis=-1), jnp.asarray(labels))


# ----------------------------------------------------------------------------------------------------------------
# Weighted cosine k-nearest neighbours


@functools.partial(jax.jit, static_argnames=("k", "num_classes", "batch_size"))
def _knn_predict(
    train_features, train_labels, test_features, temperature, *, k, num_classes, batch_size
):
    """Jitted body of `knn_predict`; inputs already validated, `k <= N`."""
    train_unit = l2_normalize(train_features)
    test_unit = l2_normalize(test_features)

    def predict_one(query_unit):  # [D] -> scalar; vmapped over `batch_size` queries at a time by lax.map.
        similarities = jnp.dot(train_unit, query_unit, precision=jax.lax.Precision.HIGHEST)  # [N]
        neighbour_similarities, neighbour_ids = jax.lax.top_k(similarities, k)  # [k], descending
        # exp(s / T) up to a per-query factor exp(-s_max / T), which leaves the argmax unchanged and avoids overflow.
        # jnp.max, not neighbour_similarities[0]: slicing top_k's output makes XLA:CPU fall back to a full sort (~40x).
        weights = jnp.exp(
            (neighbour_similarities - jnp.max(neighbour_similarities)) / temperature
        )  # [k]
        votes = jnp.zeros((num_classes,), jnp.float32).at[train_labels[neighbour_ids]].add(weights)  # [C]
        return jnp.argmax(votes)

    return jax.lax.map(predict_one, test_unit, batch_size=batch_size)


def knn_predict(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    *,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 256,
) -> jax.Array:
    """Class predictions of a similarity-weighted cosine kNN classifier (the DINO / solo-learn kNN protocol).

    Features are L2-normalized; each test row takes its k most cosine-similar training rows, which vote for their
    labels with weight `exp(similarity / temperature)`; the prediction is the class with the largest total vote.

    Test rows are processed `batch_size` at a time (`jax.lax.map`), so peak memory is about
    `batch_size * N * 4` bytes for the similarities whatever the number of test rows. The training arrays may be
    `jax.Array`s sharded over their rows; the compiler inserts the collectives.

    Args:
      train_features: `[N, D]` features of the labeled reference set.
      train_labels: `[N]` integer class ids in [0, num_classes).
      test_features: `[M, D]` features to classify.
      num_classes: number of classes C.
      k: neighbours per test row; clipped to N when larger.
      temperature: T > 0 of the vote weights `exp(similarity / T)`.
      batch_size: test rows per chunk.

    Returns:
      `[M]` int32 predicted class ids.
    """
    _check_rows("train_features", train_features, 2)
    num_train, dim = train_features.shape
    _check_rows("train_labels", train_labels, 1, num_train)
    _check_rows("test_features", test_features, 2)
    if test_features.shape[1] != dim:
        raise ValueError(
            f"test_features have dimension {test_features.shape[1]} but train_features have {dim}; "
            "both must come from the same feature extractor."
        )
    if k < 1 or batch_size < 1 or num_classes < 1:
        raise ValueError(
            f"k, batch_size and num_classes must be >= 1, got k={k}, batch_size={batch_size}, "
            f"num_classes={num_classes}."
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    _check_labels("train_labels", train_labels, num_classes)
    return _knn_predict(
        train_features,
        jnp.asarray(train_labels),
        test_features,
        jnp.float32(temperature),
        k=min(k, num_train),
        num_classes=num_classes,
        batch_size=batch_size,
    ).astype(jnp.int32)


def knn_top1(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    *,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 256,
) -> float:
    """kNN top-1 accuracy: fraction of test rows that `knn_predict` classifies correctly.

    Args:
      train_features, train_labels, num_classes, k, temperature, batch_size: as in `knn_predict`.
      test_features: `[M, D]` features to classify.
      test_labels: `[M]` integer class ids in [0, num_classes).

    Returns:
      kNN top-1 accuracy in [0, 1].
    """
    _check_rows("test_features", test_features, 2)
    num_test = test_features.shape[0]
    _check_rows("test_labels", test_labels, 1, num_test)
    _check_labels("test_labels", test_labels, num_classes)
    predictions = knn_predict(
        train_features,
        train_labels,
        test_features,
        num_classes=num_classes,
        k=k,
        temperature=temperature,
        batch_size=batch_size,
    )
    return _fraction_correct(predictions, jnp.asarray(test_labels))


# ----------------------------------------------------------------------------------------------------------------
# Linear probe


class LinearProbe(NamedTuple):
    """Multinomial logistic regression on standardized features: `logits = ((x - mean) / scale) @ weights + bias`."""

    weights: jax.Array  # [D, C]
    bias: jax.Array  # [C]
    feature_mean: jax.Array  # [D], of the training features
    feature_scale: jax.Array  # [D], their standard deviation (1 where it is ~0)


def linear_probe_logits(probe: LinearProbe, features: ArrayLike) -> jax.Array:
    """`features [M, D] -> logits [M, C]` of a trained `LinearProbe`."""
    standardized = (jnp.asarray(features, jnp.float32) - probe.feature_mean) / probe.feature_scale
    return standardized @ probe.weights + probe.bias


@functools.partial(jax.jit, static_argnames=("num_classes", "steps", "batch_size"))
def _fit_linear_probe(
    features, labels, learning_rate, weight_decay, key, *, num_classes, steps, batch_size
):
    """Jitted body of `train_linear_probe`; inputs already validated."""
    features = features.astype(jnp.float32)
    mean = jnp.mean(features, axis=0)
    std = jnp.sqrt(jnp.mean(jnp.square(features - mean), axis=0))
    scale = jnp.where(std > 1e-6, std, 1.0)
    standardized = (features - mean) / scale  # [N, D]

    def loss_fn(params, x, y):
        logits = x @ params["weights"] + params["bias"]
        cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.mean(cross_entropy) + 0.5 * weight_decay * jnp.sum(
            jnp.square(params["weights"])
        )

    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    params = {
        "weights": jnp.zeros((features.shape[1], num_classes), jnp.float32),
        "bias": jnp.zeros((num_classes,), jnp.float32),
    }

    def step(carry, step_index):
        params, opt_state = carry
        if batch_size is None:
            x, y = standardized, labels
        else:
            rows = jax.random.randint(
                jax.random.fold_in(key, step_index), (batch_size,), 0, features.shape[0]
            )
            x, y = standardized[rows], labels[rows]
        grads = jax.grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(steps))
    return LinearProbe(params["weights"], params["bias"], mean, scale)


def train_linear_probe(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    *,
    num_classes: int,
    steps: int = 1000,
    learning_rate: float = 0.01,
    weight_decay: float = 1e-4,
    batch_size: int | None = None,
    seed: int = 0,
) -> LinearProbe:
    """Fits a multinomial logistic regression on frozen, standardized features.

    Features are standardized with the training rows' mean and standard deviation; weights and bias start
    at zero and take `steps` Adam steps (cosine-decayed learning rate) on the mean cross-entropy plus
    `0.5 * weight_decay * ||weights||^2`. Full-batch when `batch_size` is None (exact and seed-free; fine for up to a
    few hundred thousand rows), else minibatches of `batch_size` rows drawn with replacement from `seed`. The result
    is deterministic given the inputs and the seed.

    Args:
      train_features: `[N, D]` frozen features (may be sharded over rows).
      train_labels: `[N]` integer class ids in [0, num_classes).
      num_classes: number of classes C.
      steps: optimizer steps.
      learning_rate: peak Adam learning rate.
      weight_decay: L2 penalty coefficient on the weights (not the bias).
      batch_size: rows per step, or None for full batch.
      seed: seed of the minibatch sampling.

    Returns:
      The trained `LinearProbe` (weights `[D, C]`, bias `[C]`, standardization `[D]`).
    """
    _check_rows("train_features", train_features, 2)
    num_train = train_features.shape[0]
    _check_rows("train_labels", train_labels, 1, num_train)
    if steps < 1 or num_classes < 1 or (batch_size is not None and batch_size < 1):
        raise ValueError(
            f"steps, num_classes and batch_size must be >= 1, got steps={steps}, "
            f"num_classes={num_classes}, batch_size={batch_size}."
        )
    _check_labels("train_labels", train_labels, num_classes)
    return _fit_linear_probe(
        jnp.asarray(train_features),
        jnp.asarray(train_labels),
        jnp.float32(learning_rate),
        jnp.float32(weight_decay),
        jax.random.key(seed),
        num_classes=num_classes,
        steps=steps,
        batch_size=batch_size,
    )


def linear_probe_top1(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    test_labels: ArrayLike,
    *,
    num_classes: int,
    steps: int = 1000,
    learning_rate: float = 0.01,
    weight_decay: float = 1e-4,
    batch_size: int | None = None,
    seed: int = 0,
) -> float:
    """Linear-probe top-1 accuracy: trains `train_linear_probe` on the training features, scores the test rows.

    Args:
      train_features, train_labels, num_classes, steps, learning_rate, weight_decay, batch_size, seed:
        as in `train_linear_probe`.
      test_features: `[M, D]` frozen features from the same extractor.
      test_labels: `[M]` integer class ids in [0, num_classes).

    Returns:
      Linear-probe top-1 accuracy in [0, 1]. Call `train_linear_probe` and `linear_probe_logits` for the weights.
    """
    _check_rows("train_features", train_features, 2)
    _check_rows("test_features", test_features, 2)
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"test_features have dimension {test_features.shape[1]} but train_features have "
            f"{train_features.shape[1]}; both must come from the same feature extractor."
        )
    _check_rows("test_labels", test_labels, 1, test_features.shape[0])
    _check_labels("test_labels", test_labels, num_classes)
    probe = train_linear_probe(
        train_features,
        train_labels,
        num_classes=num_classes,
        steps=steps,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
    )
    predictions = jnp.argmax(linear_probe_logits(probe, test_features), axis=-1)
    return _fraction_correct(predictions, jnp.asarray(test_labels))


# ----------------------------------------------------------------------------------------------------------------
# Clustering metrics (NumPy / SciPy on the contingency table)


def _contingency_table(cluster_ids: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """`int64 [R, C]` counts of samples per (cluster, class) pair, over the R clusters and C classes that occur."""
    cluster_ids, labels = np.asarray(cluster_ids), np.asarray(labels)
    for name, ids in (("cluster_ids", cluster_ids), ("labels", labels)):
        if ids.ndim != 1:
            raise ValueError(f"{name} must have 1 dimension (one id per sample), got shape {ids.shape}.")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{name} must be integer ids, got dtype {ids.dtype}.")
    if cluster_ids.shape != labels.shape:
        raise ValueError(
            f"cluster_ids has {cluster_ids.size} entries but labels has {labels.size}; both need one id "
            "per sample."
        )
    if cluster_ids.size == 0:
        raise ValueError("cluster_ids and labels are empty; clustering metrics need at least one sample.")
    _, cluster_index = np.unique(cluster_ids, return_inverse=True)
    _, class_index = np.unique(labels, return_inverse=True)
    table = np.zeros((cluster_index.max() + 1, class_index.max() + 1), np.int64)
    np.add.at(table, (cluster_index, class_index), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of the distribution proportional to `counts [R]`."""
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def _mutual_information(table: np.ndarray) -> float:
    """Mutual information (nats) between rows and columns of the contingency `table [R, C]`."""
    total = table.sum()
    rows, cols = np.nonzero(table)
    joint = table[rows, cols] / total
    row_marginal = table.sum(axis=1)[rows] / total
    col_marginal = table.sum(axis=0)[cols] / total
    return float(max(np.sum(joint * np.log(joint / (row_marginal * col_marginal))), 0.0))


def _expected_mutual_information(table: np.ndarray) -> float:
    """Expected mutual information (nats) of two random labelings with the marginals of `table [R, C]`.

    Under the permutation (hypergeometric) model, a cell of row size a and column size b holds n samples with
    probability `C(a, n) C(N - a, b - n) / C(N, b)` and contributes `(n / N) log(N n / (a b))`. Cells are grouped by
    their distinct (a, b) marginals, so the cost is about #distinct(a) * #distinct(b) * max(n).
    """
    total = int(table.sum())
    row_sizes, row_multiplicity = np.unique(table.sum(axis=1), return_counts=True)
    col_sizes, col_multiplicity = np.unique(table.sum(axis=0), return_counts=True)
    gammaln = scipy.special.gammaln
    b = col_sizes.astype(np.float64)[:, None]  # [Cb, 1]
    expected = 0.0
    for a, a_multiplicity in zip(row_sizes.astype(np.float64), row_multiplicity):
        n = np.arange(1, min(a, col_sizes.max()) + 1, dtype=np.float64)[None, :]  # [1, n_max]
        valid = (n >= a + b - total) & (n <= np.minimum(a, b))  # [Cb, n_max]
        n_, b_ = np.broadcast_arrays(n, b)
        n_, b_ = n_[valid], b_[valid]
        log_probability = (
            gammaln(a + 1)
            + gammaln(b_ + 1)
            + gammaln(total - a + 1)
            + gammaln(total - b_ + 1)
            - gammaln(total + 1)
            - gammaln(n_ + 1)
            - gammaln(a - n_ + 1)
            - gammaln(b_ - n_ + 1)
            - gammaln(total - a - b_ + n_ + 1)
        )
        term = n_ / total * np.log(total * n_ / (a * b_)) * np.exp(log_probability)
        multiplicity = np.broadcast_to(col_multiplicity[:, None], valid.shape)[valid]
        expected += a_multiplicity * float(np.sum(term * multiplicity))
    return expected


def nmi(cluster_ids: ArrayLike, labels: ArrayLike) -> float:
    """Normalized mutual information `MI / mean(H(clusters), H(labels))` (arithmetic mean, as sklearn's default).

    Args:
      cluster_ids: `[N]` integer predicted cluster ids (any values; K may differ from the number of classes).
      labels: `[N]` integer ground-truth classes.

    Returns:
      NMI in [0, 1]; 1 for identical partitions up to renaming (including two single-cluster labelings).
    """
    table = _contingency_table(cluster_ids, labels)
    if table.shape == (1, 1):
        return 1.0
    mutual_information = _mutual_information(table)
    if mutual_information == 0.0:
        return 0.0
    mean_entropy = 0.5 * (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0)))
    return mutual_information / mean_entropy


def adjusted_nmi(cluster_ids: ArrayLike, labels: ArrayLike) -> float:
    """Adjusted (for chance) mutual information `(MI - E[MI]) / (mean(H(clusters), H(labels)) - E[MI])`.

    E[MI] is exact under the hypergeometric permutation model (Vinh et al. 2010), arithmetic-mean normalization as
    in sklearn's `adjusted_mutual_info_score` default.

    Args:
      cluster_ids: `[N]` integer predicted cluster ids.
      labels: `[N]` integer ground-truth classes.

    Returns:
      Adjusted NMI: 1 for identical partitions, about 0 for independent ones (can be slightly negative).
    """
    table = _contingency_table(cluster_ids, labels)
    if (
        np.count_nonzero(table) == table.shape[0] == table.shape[1]
    ):  # Identical up to renaming, even when 0 / 0.
        return 1.0
    expected = _expected_mutual_information(table)
    mean_entropy = 0.5 * (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0)))
    denominator = mean_entropy - expected
    denominator = (
        min(denominator, -np.finfo(np.float64).eps)
        if denominator < 0
        else max(denominator, np.finfo(np.float64).eps)
    )
    return (_mutual_information(table) - expected) / denominator


def ari(cluster_ids: ArrayLike, labels: ArrayLike) -> float:
    """Adjusted Rand index: pair-counting agreement of the two partitions, corrected for chance (Hubert & Arabie).

    Args:
      cluster_ids: `[N]` integer predicted cluster ids.
      labels: `[N]` integer ground-truth classes.

    Returns:
      ARI: 1 for identical partitions, about 0 for independent ones (negative below chance).
    """
    table = _contingency_table(cluster_ids, labels)
    pairs = lambda counts: int(np.sum(counts * (counts - 1) // 2))  # Python ints: exact for any dataset size.
    same_both = pairs(table)
    same_cluster = pairs(table.sum(axis=1))
    same_class = pairs(table.sum(axis=0))
    total = int(table.sum())
    all_pairs = total * (total - 1) // 2
    numerator = same_both * all_pairs - same_cluster * same_class
    denominator = (same_cluster + same_class) * all_pairs - 2 * same_cluster * same_class
    if denominator == 0:  # Both partitions are all-in-one or all-singletons, hence identical.
        return 1.0
    return 2 * numerator / denominator


def cluster_accuracy(cluster_ids: ArrayLike, labels: ArrayLike) -> float:
    """Cluster accuracy: top-1 under the best one-to-one matching of clusters to classes (Hungarian algorithm).

    The matching maximizes the number of correctly assigned samples over the contingency table. When there are more
    clusters than classes, samples of the unmatched clusters count as wrong (and vice versa for classes).

    Args:
      cluster_ids: `[N]` integer predicted cluster ids.
      labels: `[N]` integer ground-truth classes.

    Returns:
      Cluster accuracy in [0, 1].
    """
    table = _contingency_table(cluster_ids, labels)
    matched_clusters, matched_classes = scipy.optimize.linear_sum_assignment(table, maximize=True)
    return float(table[matched_clusters, matched_classes].sum() / table.sum())


CLUSTERING_METRICS = {
    "nmi": nmi,
    "adjusted_nmi": adjusted_nmi,
    "ari": ari,
    "cluster_accuracy": cluster_accuracy,
}


def clustering_report(cluster_ids: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """All clustering metrics of one or several clustering heads against the ground truth.

    Args:
      cluster_ids: `[T, N]` predicted cluster ids of T heads (SeLa's several clusterings), or `[N]` for one.
      labels: `[N]` integer ground-truth classes.

    Returns:
      Flat dict of floats; for each metric m in `CLUSTERING_METRICS` ('nmi', 'adjusted_nmi', 'ari',
      'cluster_accuracy'): `m` (mean over heads), `m_best` (max over heads) and `m_head{t}` for each head t.
    """
    cluster_ids = np.asarray(cluster_ids)
    if cluster_ids.ndim == 1:
        cluster_ids = cluster_ids[None]
    if cluster_ids.ndim != 2:
        raise ValueError(f"cluster_ids must be [T, N] (T heads) or [N], got shape {cluster_ids.shape}.")
    report = {}
    for name, metric in CLUSTERING_METRICS.items():
        per_head = [metric(head_ids, labels) for head_ids in cluster_ids]
        report[name] = float(np.mean(per_head))
        report[f"{name}_best"] = float(np.max(per_head))
        report.update({f"{name}_head{t}": value for t, value in enumerate(per_head)})
    return report


# ----------------------------------------------------------------------------------------------------------------
# What a run reports: the evaluations a method names


class RunPredictions(Protocol):
    """The predictions of a trained network that evaluations read (the loop predicts each split once, on first use).

    `test()`: `features [M, D]`, `head_scores [M, K]` (or `[M, T, K]` for T heads), `linear_logits [M, C]`,
    `labels [M]` of the test split; `labeled()` and `train()`: `features` and `labels` of the labeled
    training images and of every training image (label -1 where none is known); `cluster_labels()`: the method's pseudo-labels `[T, N]` of
    the training split, or None.
    """

    num_classes: int

    def test(self) -> dict[str, np.ndarray]: ...

    def labeled(self) -> dict[str, np.ndarray]: ...

    def train(self) -> dict[str, np.ndarray]: ...

    def cluster_labels(self) -> np.ndarray | None: ...


def classification_metrics(predictions: RunPredictions, knn_k: int, knn_temperature: float) -> dict[str, float]:
    """`test/prototype_top1` (the head's argmax), `test/linear_top1` (the online linear head) and
    `test/knn_top1` (kNN on encoder features, the labeled training images as the bank)."""
    test, bank = predictions.test(), predictions.labeled()
    return {
        "test/prototype_top1": top1_accuracy(test["head_scores"], test["labels"]),
        "test/linear_top1": top1_accuracy(test["linear_logits"], test["labels"]),
        "test/knn_top1": knn_top1(
            bank["features"],
            bank["labels"],
            test["features"],
            test["labels"],
            num_classes=predictions.num_classes,
            k=min(knn_k, len(bank["labels"])),
            temperature=knn_temperature,
        ),
    }


def representation_metrics(predictions: RunPredictions, knn_k: int, knn_temperature: float) -> dict[str, float]:
    """`test/knn_top1` and `test/linear_probe_top1` on frozen encoder features with every training label: the
    standard self-supervised protocol."""
    test, train = predictions.test(), predictions.train()
    known = train["labels"] >= 0  # An image folder's unlabeled images have no label to probe with.
    bank = {k: v[known] for k, v in train.items()}
    num_classes = predictions.num_classes
    return {
        "test/knn_top1": knn_top1(
            bank["features"],
            bank["labels"],
            test["features"],
            test["labels"],
            num_classes=num_classes,
            k=knn_k,
            temperature=knn_temperature,
        ),
        "test/linear_probe_top1": linear_probe_top1(
            bank["features"], bank["labels"], test["features"], test["labels"], num_classes=num_classes
        ),
    }


def clustering_metrics(predictions: RunPredictions, knn_k: int, knn_temperature: float) -> dict[str, float]:
    """`test/<m>`: each head's argmax on the test split against the true classes, for the metrics m of
    `clustering_report` (mean over heads, best head, per head); with pseudo-labels,
    `train/pseudo_label_<m>` (mean and best over heads) against the true training classes."""
    del knn_k, knn_temperature
    test = predictions.test()
    clusters = np.argmax(test["head_scores"], axis=-1)  # [M] or [M, T]
    report = {f"test/{k}": v for k, v in clustering_report(clusters.T, test["labels"]).items()}
    pseudo_labels = predictions.cluster_labels()
    if pseudo_labels is not None:
        train_labels = predictions.train()["labels"]
        known = train_labels >= 0
        report.update(
            {
                f"train/pseudo_label_{k}": v
                for k, v in clustering_report(pseudo_labels[:, known], train_labels[known]).items()
                if "_head" not in k
            }
        )
    return report


EVALUATIONS = {
    "classification": classification_metrics,
    "representation": representation_metrics,
    "clustering": clustering_metrics,
}
