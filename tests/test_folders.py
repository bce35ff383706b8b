"""selax.data.folders and the `image_folder` dataset: a user's folders in, readers and a recipe out."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import write_image_folders
from selax.data import augment, datasets, folders

FIELDS = dict(
    labels_per_class=2, split_seed=0, unlabeled_classes=(), image_size=None, train_dir=None, test_dir=None,
    unlabeled_dir=None, test_fraction=0.25, strict_images=False,
)
CLASSES = ["a_red", "b_blue", "c_grey"]


def _open(data_dir, **fields):
    return datasets.open_splits("image_folder", dict(FIELDS, **fields), str(data_dir))


def test_build_indexes_every_decodable_image_skips_the_others_and_warns_once(image_folders, tmp_path, caplog):
    folder = folders.ImageFolder(image_folders["train"], image_folders["test"], image_folders["unlabeled"])
    index = folders.build(folder, str(tmp_path))
    assert index.classes == CLASSES
    np.testing.assert_array_equal(index.labels["train"], np.repeat([0, 1, 2], 8))
    np.testing.assert_array_equal(index.labels["unlabeled"], [-1] * 6)
    assert sorted(os.path.basename(p) for p, _ in index.skipped) == ["broken.png", "notes.txt"]
    assert not any(".DS_Store" in p for p in index.paths["train"])  # Hidden files are not candidates.
    assert not index.grey and index.median_short_side == 13
    with caplog.at_level("WARNING"):
        folders.report_skipped(index, strict=False)
    assert "Skipped 2 file(s)" in caplog.text and "broken.png" in caplog.text
    with pytest.raises(ValueError, match=r"notes.txt. is not an image.*2 such file.*strict_images=False"):
        folders.report_skipped(index, strict=True)


def test_readers_decode_in_memory_and_on_the_fly_alike_in_index_order(image_folders, tmp_path, monkeypatch):
    index = folders.build(folders.ImageFolder(image_folders["train"]), str(tmp_path))
    in_memory = folders.split_readers(index, 12, 3)["train"]
    monkeypatch.setattr(folders, "IN_MEMORY_BYTES", 0)
    on_the_fly = folders.split_readers(index, 12, 3)["train"]
    positions = np.array([23, 0, 9])
    images, labels = in_memory.read(positions)
    np.testing.assert_array_equal(images, on_the_fly.read(positions)[0])
    np.testing.assert_array_equal(labels, [2, 0, 1])
    assert images.shape == (3, 12, 12, 3) and images.dtype == np.uint8
    assert on_the_fly.names[9] == os.path.join(image_folders["train"], "b_blue", "01.jpg")
    # Each image is its class's colour (noise aside): red, blue, grey.
    np.testing.assert_allclose(images.mean((1, 2)), [[128] * 3, [200, 30, 30], [30, 30, 200]], atol=12)


def test_held_out_split_is_stratified_disjoint_and_seeded(image_folders, tmp_path):
    splits = _open(tmp_path, train_dir=image_folders["train"], unlabeled_dir=image_folders["unlabeled"])
    test_names, train_names = set(splits.test.names), set(splits.train.names)
    assert not test_names & train_names and splits.test.size == 6  # 25% of 8 per class.
    _, test_labels = splits.test.read(np.arange(splits.test.size))
    np.testing.assert_array_equal(np.bincount(test_labels), [2, 2, 2])
    _, train_labels = splits.train.read(np.arange(splits.train.size))
    np.testing.assert_array_equal(train_labels, [0] * 6 + [1] * 6 + [2] * 6 + [-1] * 6)  # Unlabeled last.
    _, labeled_labels = splits.labeled.read(np.arange(splits.labeled.size))
    np.testing.assert_array_equal(labeled_labels, [0, 0, 1, 1, 2, 2])
    assert set(splits.labeled.names) <= train_names and splits.class_names == tuple(CLASSES)
    other = _open(tmp_path, train_dir=image_folders["train"], split_seed=1)
    assert set(other.test.names) != test_names


def test_a_given_test_dir_and_every_label_with_labels_per_class_0(image_folders, tmp_path):
    splits = _open(tmp_path, train_dir=image_folders["train"], test_dir=image_folders["test"], labels_per_class=0)
    assert splits.test.size == 9 and splits.labeled.size == splits.train.size == 24
    assert splits.test.names[0].startswith(image_folders["test"])


def test_image_size_recipe_and_channels_come_from_the_images(image_folders, tmp_path):
    splits = _open(tmp_path, train_dir=image_folders["train"])
    assert splits.train.image_shape == (13, 13, 3)  # The median shorter side, colour (not all grey).
    crops = splits.augment.multi_crop
    assert crops.global_views[0].size == 13 and crops.global_views[0].flip_prob == 0.5 and len(crops.mean) == 3
    grey_root = tmp_path / "grey"
    for name in ("x", "y"):
        shutil.copytree(os.path.join(image_folders["train"], "c_grey"), grey_root / name)
    grey = _open(tmp_path, train_dir=str(grey_root), image_size=10)
    assert grey.train.image_shape == (10, 10, 1)
    assert grey.augment.multi_crop.global_views[0].flip_prob == 0.0
    np.testing.assert_allclose(grey.augment.multi_crop.mean, [128 / 255], atol=0.03)


def test_larger_images_are_stored_at_the_small_cnn_s_size_on_a_cpu_host_saying_how_to_keep_theirs(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for index in range(4):
            pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)  # Shorter side 40 px.
            Image.fromarray(pixels).save(tmp_path / "train" / name / f"{index}.png")
    with caplog.at_level("WARNING"):
        splits = _open(tmp_path / "data", train_dir=str(tmp_path / "train"))
    assert splits.train.image_shape == (folders.CPU_IMAGE_SIZE, folders.CPU_IMAGE_SIZE, 3)
    assert "median shorter side is 40 px" in caplog.text and "--config.dataset.image_size=40" in caplog.text
    assert _open(tmp_path / "data", train_dir=str(tmp_path / "train"), image_size=40).train.image_shape == (40, 40, 3)


def test_defaults_by_image_size():
    sides = (5, 28, 64, 100, 500)
    assert [folders.default_image_size(s, accelerator=True) for s in sides] == [8, 28, 64, 96, 256]
    assert [folders.default_image_size(s, accelerator=False) for s in sides] == [8, 28, 32, 32, 32]
    small, large = augment.for_image_size(28, 1, (0.5,), (0.2,)), augment.for_image_size(256, 3, (0.5,) * 3, (0.2,) * 3)
    assert small.multi_crop.local_view.size == 16 and small.light.pad == 3 and small.eval.crop is None
    assert large.multi_crop.global_views[0].size == 224 and large.multi_crop.local_view.size == 96
    assert large.eval == augment.EvalSpec(resize=256, crop=224, mean=(0.5,) * 3, std=(0.2,) * 3)
    assert augment.imagenet().multi_crop.global_views[1].solarize_prob == 0.2


def test_a_changed_folder_is_rebuilt_and_its_old_build_removed(tmp_path):
    paths = write_image_folders(tmp_path / "images")
    folder = folders.ImageFolder(paths["train"])
    first = folders.build(folder, str(tmp_path / "tfds"))
    assert folders.build(folder, str(tmp_path / "tfds")).builder.data_dir == first.builder.data_dir
    Image.new("RGB", (16, 16), (200, 30, 30)).save(os.path.join(paths["train"], "a_red", "new.png"))
    second = folders.build(folder, str(tmp_path / "tfds"))
    assert second.builder.data_dir != first.builder.data_dir and len(second.paths["train"]) == 25
    assert not os.path.exists(first.builder.data_dir)


@pytest.mark.parametrize(
    "change, fields, message",
    [
        (None, dict(train_dir="{root}/missing"), "train_dir='.*missing' is not a directory"),
        (None, dict(train_dir=None), "needs config.dataset.train_dir"),
        ("one_class", dict(train_dir="{root}/one"), "1 class subfolder"),
        ("empty_class", dict(train_dir="{root}/train"), "Class folder '.*empty' is empty"),
        ("test_class", dict(train_dir="{root}/train", test_dir="{root}/test"), r"classes \['zebra'\]"),
        (None, dict(train_dir="{root}/train", unlabeled_dir="{root}/nowhere"), "unlabeled_dir=.*not a directory"),
        (None, dict(train_dir="{root}/train", test_fraction=1.5), "test_fraction=1.5"),
        (None, dict(train_dir="{root}/train", labels_per_class=7), "labels_per_class=7 .*'a_red' has 6"),
    ],
)
def test_folder_errors_name_the_path_or_field(tmp_path, change, fields, message):
    root = tmp_path / "images"
    paths = write_image_folders(root) if change != "one_class" else {}
    if change == "one_class":
        (root / "one" / "only").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "one" / "only" / "a.png")
    elif change == "empty_class":
        os.makedirs(os.path.join(paths["train"], "empty"))
    elif change == "test_class":
        os.makedirs(os.path.join(paths["test"], "zebra"))
    fields = {k: v.format(root=root) if isinstance(v, str) else v for k, v in fields.items()}
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        _open(tmp_path / "tfds", **fields)


def test_sixteen_bit_grey_and_rotated_photos_decode_as_a_viewer_shows_them(tmp_path):
    from selax.data.readers import decode_square

    ramp = (np.arange(16, dtype=np.uint16)[None, :] * 4000).repeat(16, 0)  # 0..60000 of 65535.
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    decoded = decode_square(str(tmp_path / "deep.png"), 16, channels=1)[..., 0]
    assert decoded[:, 0].max() == 0 and decoded[:, -1].min() == 255  # Its own range, not clipped.
    assert np.all(np.diff(decoded[0].astype(int)) >= 0)
    photo = Image.new("RGB", (20, 10), (0, 0, 0))
    photo.paste((255, 255, 255), (0, 0, 10, 10))  # White left half.
    exif = photo.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view.
    photo.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = decode_square(str(tmp_path / "rotated.jpg"), 10)  # Viewed 10 wide x 20 tall: white on top.
    assert upright[:2].mean() > 200 and upright[-2:].mean() < 50
