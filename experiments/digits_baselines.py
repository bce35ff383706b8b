"""Classical baselines on the embedded digits, the numbers SeLa and the semi-supervised defaults must beat.

    python experiments/digits_baselines.py

Clustering on raw pixels (k-means, spectral clustering with a k-nearest-neighbour graph), 10 clusters,
fitted separately on the train (1,257), test (540) and all 1,797 images, mean over 3 seeds, scored with `selax.evaluate`'s NMI,
adjusted NMI, ARI and cluster accuracy; and sklearn's LabelSpreading on the 20-label split of the
default configs (2 labels per class, split seed 0) with sklearn's default kNN-graph settings (7
neighbours, alpha 0.2), fitted on the train split and scored by top-1 on the test split. Prints a table
and writes experiments/results/digits_baselines.json.
"""

import json
import os
import sys

import numpy as np
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.semi_supervised import LabelSpreading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from selax import evaluate  # noqa: E402
from selax.data import datasets, splits  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "digits_baselines.json")
SEEDS = (0, 1, 2)


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 `[N, 8, 8, 1] -> float64 [N, 64]` in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float64) / 255.0


def clusterers(seed: int) -> dict:
    return {
        "kmeans": KMeans(n_clusters=10, n_init=10, random_state=seed),
        "spectral_knn10": SpectralClustering(
            n_clusters=10,
            affinity="nearest_neighbors",
            n_neighbors=10,
            assign_labels="kmeans",
            random_state=seed,
        ),
    }


def main() -> None:
    train = datasets.load_arrays("digits", "train")
    test = datasets.load_arrays("digits", "test")
    rows = []
    all_images = np.concatenate([train.images, test.images])
    all_labels = np.concatenate([train.labels, test.labels])
    for split_name, images, labels in (
        ("train", train.images, train.labels),
        ("test", test.images, test.labels),
        ("all", all_images, all_labels),
    ):
        features = pixels(images)
        for name in clusterers(0):
            reports = [
                evaluate.clustering_report(clusterers(s)[name].fit_predict(features), labels) for s in SEEDS
            ]
            row = {"method": name, "split": split_name, "seeds": len(SEEDS)}
            for metric in evaluate.CLUSTERING_METRICS:
                row[metric] = float(np.mean([r[metric] for r in reports]))
            rows.append(row)

    labeled = splits.labeled_subset(train.labels, 2, 0)
    targets = np.full(len(train.labels), -1)
    targets[labeled] = train.labels[labeled]
    spreading = LabelSpreading(kernel="knn", n_neighbors=7, alpha=0.2, max_iter=1000).fit(
        pixels(train.images), targets
    )
    top1 = float(np.mean(spreading.predict(pixels(test.images)) == test.labels))
    rows.append(
        {"method": "label_spreading_knn7", "split": "test", "labels": int(len(labeled)), "top1": top1}
    )

    header = f"{'method':<22}{'split':<7}{'nmi':>7}{'adj_nmi':>9}{'ari':>7}{'clu_acc':>9}{'top1':>7}"
    print(header)
    for r in rows:
        cells = [
            f"{r[m]:.3f}" if m in r else ""
            for m in ("nmi", "adjusted_nmi", "ari", "cluster_accuracy", "top1")
        ]
        print(
            f"{r['method']:<22}{r['split']:<7}{cells[0]:>7}{cells[1]:>9}{cells[2]:>7}{cells[3]:>9}{cells[4]:>7}"
        )
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump({"dataset": "digits", "rows": rows}, f, indent=2)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
