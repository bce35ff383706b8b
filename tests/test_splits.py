"""selax.data.splits.labeled_subset."""

import numpy as np
import pytest

from selax.data import splits


def _labels(counts, seed=0):
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


@pytest.mark.parametrize("per_class", splits.CIFAR100_LABELS_PER_CLASS)
def test_cifar_sizes_balance_and_order(per_class):
    labels = _labels([500] * 100)
    subset = splits.labeled_subset(labels, per_class, seed=3)
    assert subset.shape == (100 * per_class,)
    assert np.all(np.diff(subset) > 0)
    np.testing.assert_array_equal(np.bincount(labels[subset], minlength=100), per_class)


def test_same_seed_same_subset_other_seed_other_subset():
    labels = _labels([30, 40, 50])
    first = splits.labeled_subset(labels, 5, seed=1)
    np.testing.assert_array_equal(first, splits.labeled_subset(labels, 5, seed=1))
    assert not np.array_equal(first, splits.labeled_subset(labels, 5, seed=2))


def test_more_labels_per_class_add_to_the_fewer_ones_images():
    labels = _labels([30, 40, 50])
    fewer = None
    for per_class in (1, 2, 4, 10, 30):
        subset = splits.labeled_subset(labels, per_class, seed=7)
        if fewer is not None:
            assert set(fewer) < set(subset), per_class
        fewer = subset


def test_subsets_for_different_seeds_cover_the_classes_uniformly():
    labels = _labels([20, 20])
    hits = np.zeros(40)
    for seed in range(400):
        hits[splits.labeled_subset(labels, 2, seed)] += 1
    # Each example of a 20-example class is drawn with probability 2/20: 40 of 400 draws.
    assert np.all(np.abs(hits - 40) < 25)


def test_short_class_is_named_with_its_count():
    labels = _labels([10, 10, 3, 10])
    with pytest.raises(ValueError, match="class 2 has 3"):
        splits.labeled_subset(labels, 4, seed=0)
    with pytest.raises(ValueError, match="per_class"):
        splits.labeled_subset(labels, 0, seed=0)
    with pytest.raises(ValueError, match="no -1 labels"):
        splits.labeled_subset(np.array([0, 1, -1]), 1, seed=0)


def test_unlabeled_classes_get_no_label_and_the_others_keep_their_draw():
    labels = _labels([12, 9, 15, 11, 10])
    full = splits.labeled_subset(labels, 3, seed=5)
    without = splits.labeled_subset(labels, 3, seed=5, unlabeled_classes=(3, 1))
    np.testing.assert_array_equal(np.bincount(labels[without], minlength=5), [3, 0, 3, 0, 3])
    np.testing.assert_array_equal(without, full[~np.isin(labels[full], (1, 3))])
    # A class left unlabeled may have fewer examples than per_class.
    short = _labels([10, 2, 10])
    subset = splits.labeled_subset(short, 4, seed=0, unlabeled_classes=(1,))
    np.testing.assert_array_equal(np.bincount(short[subset], minlength=3), [4, 0, 4])


@pytest.mark.parametrize("unlabeled_classes", [(5,), (-1,), (2, 2), (0, 1, 2, 3, 4)])
def test_bad_unlabeled_classes_name_the_config_field(unlabeled_classes):
    with pytest.raises(ValueError, match=r"config\.dataset\.unlabeled_classes.*0\.\.4"):
        splits.labeled_subset(_labels([6] * 5), 2, seed=0, unlabeled_classes=unlabeled_classes)
