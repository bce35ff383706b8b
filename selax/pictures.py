"""Pictures of a trained run, for a person to look at: where the test images land, what is confused with
what, and what each cluster holds.

Each function draws on a bare matplotlib `Figure` (pyplot's backend is left alone, so notebooks keep
their inline plots) and returns it (`selax.reporting.Reporter.write_figure` saves it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_MAP_POINTS = 3000  # The 2-D map shows at most this many test images (an even subsample).
MAX_LEGEND_CLASSES = 20  # More classes than this: a colour bar instead of a legend.


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

    return Figure(figsize=(width, height), dpi=110)


def two_d_map(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D embedding `[N, 2]` of `features [N, D]`: UMAP when `umap-learn` is installed, else t-SNE
    (scikit-learn, PCA initialization)."""
    features = np.asarray(features, np.float64)
    try:
        import umap  # pylint: disable=g-import-not-at-top

        return umap.UMAP(random_state=seed).fit_transform(features)
    except ImportError:
        from sklearn.manifold import TSNE  # pylint: disable=g-import-not-at-top

        perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def _scatter(ax, points: np.ndarray, groups: np.ndarray, names: Sequence[str], title: str) -> None:
    from matplotlib import colormaps  # pylint: disable=g-import-not-at-top

    count = len(names)
    cmap = colormaps["tab10" if count <= 10 else "tab20" if count <= 20 else "turbo"]
    colours = cmap(np.linspace(0, 1, count)) if count > 20 else [cmap(i) for i in range(count)]
    for index in range(count):
        rows = groups == index
        if rows.any():
            ax.scatter(*points[rows].T, s=6, color=colours[index], label=names[index], alpha=0.8, linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if count <= MAX_LEGEND_CLASSES:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, markerscale=2, frameon=False)


def embedding_map(
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    clusters: np.ndarray | None = None,
    seed: int = 0,
):
    """The test images' features in 2-D (`two_d_map`), coloured by true class and, given `clusters [N]`,
    in a second panel by cluster."""
    keep = np.unique(np.linspace(0, len(labels) - 1, min(len(labels), MAX_MAP_POINTS)).astype(np.int64))
    points = two_d_map(features[keep], seed)
    panels = 1 if clusters is None else 2
    figure = _figure(5.2 * panels + 1.2 * panels, 4.6)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    _scatter(axes[0], points, labels[keep], class_names, f"test images by class ({len(keep)})")
    if clusters is not None:
        num_clusters = int(clusters.max()) + 1
        _scatter(axes[1], points, clusters[keep], [f"cluster {c}" for c in range(num_clusters)], "by cluster")
    figure.tight_layout()
    return figure


def confusion_matrix(
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str],
    predicted_names: Sequence[str] | None = None,
):
    """Rows: true classes; columns: predicted (`predicted_names`, the class names and any further outputs
    such as free prototypes; default the classes); cells: fraction of the row (counts written when few)."""
    predicted_names = class_names if predicted_names is None else predicted_names
    count, columns = len(class_names), len(predicted_names)
    table = np.zeros((count, columns), np.int64)
    np.add.at(table, (labels, predicted), 1)
    fractions = table / np.maximum(table.sum(1, keepdims=True), 1)
    side = min(12.0, 2.5 + 0.45 * count)
    figure = _figure(side * columns / count + 1.0, side)
    ax = figure.subplots()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if columns <= MAX_LEGEND_CLASSES:
        ax.set_xticks(np.arange(columns), labels=predicted_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(np.arange(count), labels=class_names, fontsize=8)
        for row in range(count):
            for column in range(columns):
                if table[row, column]:
                    colour = "white" if fractions[row, column] > 0.5 else "black"
                    ax.text(column, row, table[row, column], ha="center", va="center", fontsize=7, color=colour)
    accuracy = np.trace(table) / max(table.sum(), 1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"test confusion matrix (top-1 {100 * accuracy:.1f}%)")
    figure.tight_layout()
    return figure


def gallery_positions(clusters: np.ndarray, confidences: np.ndarray, per_cluster: int = 10, max_clusters: int = 20) -> np.ndarray:
    """Sorted positions of the images `cluster_gallery` shows: each of the largest `max_clusters`
    clusters' `per_cluster` most confident (so only those need reading)."""
    return np.sort(np.concatenate([rows for _, rows in _gallery_rows(clusters, confidences, per_cluster, max_clusters)]))


def _gallery_rows(clusters, confidences, per_cluster, max_clusters) -> list[tuple[int, np.ndarray]]:
    sizes = np.bincount(clusters)
    shown = [int(c) for c in np.argsort(-sizes, kind="stable")[:max_clusters] if sizes[c] > 0]
    rows = []
    for cluster in shown:
        members = np.flatnonzero(clusters == cluster)
        rows.append((cluster, members[np.argsort(-confidences[members], kind="stable")][:per_cluster]))
    return rows


def cluster_gallery(
    images: np.ndarray,
    clusters: np.ndarray,
    confidences: np.ndarray,
    per_cluster: int = 10,
    max_clusters: int = 20,
):
    """One row per cluster (the largest `max_clusters`), its `per_cluster` most confident images.

    Args:
      images: uint8 [N, H, W, C] (C = 1 or 3).
      clusters: int [N]; confidences: float [N].
    """
    sizes = np.bincount(clusters)
    rows = _gallery_rows(clusters, confidences, per_cluster, max_clusters)
    figure = _figure(0.75 * per_cluster + 1.4, 0.75 * len(rows) + 0.6)
    axes = figure.subplots(len(rows), per_cluster + 1, squeeze=False)
    for row, (cluster, best) in zip(axes, rows):
        row[0].text(1.0, 0.5, f"{cluster}\n({sizes[cluster]})", ha="right", va="center", fontsize=8)
        for ax in row:
            ax.axis("off")
        for ax, index in zip(row[1:], best):
            image = images[index]
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
    figure.suptitle("each cluster's most confident test images (cluster, size)", fontsize=9)
    figure.subplots_adjust(wspace=0.05, hspace=0.05)
    return figure
