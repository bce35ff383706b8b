"""Labeled subsets for semi-supervised training.

`labeled_subset` draws ``per_class`` examples of every class, deterministically from a seed. The
usual CIFAR-100 settings are 4, 25 and 100 labels per class (400 / 2,500 / 10,000 labels). ImageNet
does not use this: its 1% and 10% labeled sets are the SimCLR lists, read through the tfds builders
``imagenet2012_subset/1pct`` and ``/10pct`` (see `selax.data.datasets`).
"""

from __future__ import annotations

import numpy as np

CIFAR100_LABELS_PER_CLASS = (4, 25, 100)


def labeled_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Positions of ``per_class`` examples of each class, drawn without replacement.

    Args:
      labels: int [N], classes 0..K-1 (K = max label + 1; every class must be present).
      per_class: examples kept per class, >= 1.
      seed: the same seed always gives the same subset.
    Returns:
      int64 [K * per_class], sorted positions into ``labels``.
    Raises:
      ValueError: ``per_class`` < 1, negative labels, or a class with fewer than ``per_class``
        examples (named with its count).
    """
    labels = np.asarray(labels)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}.")
    if labels.ndim != 1 or labels.size == 0 or labels.min() < 0:
        raise ValueError("labels must be a non-empty 1-D array of classes 0..K-1 (no -1 labels).")
    counts = np.bincount(labels)
    short = np.flatnonzero(counts < per_class)
    if short.size:
        details = ", ".join(f"class {c} has {counts[c]}" for c in short)
        raise ValueError(
            f"labeled_subset needs {per_class} examples per class, but {details}; "
            "lower per_class or use a larger split."
        )
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(counts.size)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
