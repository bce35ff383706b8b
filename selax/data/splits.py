"""Labeled subsets for semi-supervised training.

`labeled_subset` draws ``per_class`` examples of every class, deterministically from a seed. The
usual CIFAR-100 settings are 4, 25 and 100 labels per class (400 / 2,500 / 10,000 labels). ImageNet
does not use this: its 1% and 10% labeled sets are the SimCLR lists, read through the tfds builders
``imagenet2012_subset/1pct`` and ``/10pct`` (see `selax.data.datasets`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CIFAR100_LABELS_PER_CLASS = (4, 25, 100)


def labeled_subset(
    labels: np.ndarray,
    per_class: int,
    seed: int,
    unlabeled_classes: Sequence[int] = (),
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Positions of ``per_class`` examples of each class, drawn without replacement.

    Args:
      labels: int [N], classes 0..K-1 (K = max label + 1; every labeled class must be present).
      per_class: examples kept per class, >= 1.
      seed: the same seed always gives the same subset, and a larger ``per_class`` keeps a smaller one's
        examples (labels added to a labeled set, not a new draw).
      unlabeled_classes: classes left without any labeled example (classes to discover). The other
        classes keep the very examples they get without it.
      class_names: names of the classes 0..K-1 for the errors (an image folder's subfolders), or None.
    Returns:
      int64 [(K - len(unlabeled_classes)) * per_class], sorted positions into ``labels``.
    Raises:
      ValueError: ``per_class`` < 1, negative labels, a labeled class with fewer than ``per_class``
        examples (named with its count), or ``unlabeled_classes`` not distinct classes in 0..K-1
        that leave one class labeled.
    """
    labels = np.asarray(labels)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}.")
    if labels.ndim != 1 or labels.size == 0 or labels.min() < 0:
        raise ValueError("labels must be a non-empty 1-D array of classes 0..K-1 (no -1 labels).")
    counts = np.bincount(labels)
    left_out = set(int(c) for c in unlabeled_classes)
    if (
        len(left_out) != len(unlabeled_classes)
        or not left_out <= set(range(counts.size))
        or len(left_out) == counts.size
    ):
        raise ValueError(
            "unlabeled_classes (config.dataset.unlabeled_classes) must be distinct classes in"
            f" 0..{counts.size - 1} that leave at least one class labeled, got {tuple(unlabeled_classes)}."
        )
    short = [c for c in np.flatnonzero(counts < per_class) if c not in left_out]
    if short:
        details = ", ".join(f"class {c if class_names is None else repr(class_names[c])} has {counts[c]}" for c in short)
        raise ValueError(
            f"config.dataset.labels_per_class={per_class} labeled images per class are needed, but {details};"
            " lower labels_per_class, add images or use a larger split."
        )
    # Each class is ordered by its own stream of the seed and its first ``per_class`` are kept: more labels
    # per class add to the fewer ones' images, and leaving classes out does not change the others' draws.
    kept = [
        np.random.default_rng([seed, c]).permutation(np.flatnonzero(labels == c))[:per_class]
        for c in range(counts.size)
        if c not in left_out
    ]
    return np.sort(np.concatenate(kept)).astype(np.int64)
