"""selax.data.datasets: digits builder, long tail, the registry's splits, official-builder messages."""

import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tensorflow_datasets.core import registered

from conftest import SUBSET_LIST_1PCT
from selax.data import datasets, readers


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def digits(data_dir):
    return {split: datasets.load_arrays("digits", split, data_dir) for split in ("train", "test")}


def test_digits_split_matches_sklearn_reference(digits):
    reference = load_digits()
    train_ref, test_ref = train_test_split(
        np.arange(1797), test_size=0.3, stratify=reference.target, random_state=0
    )
    for split, ids in (("train", train_ref), ("test", test_ref)):
        arrays = digits[split]
        np.testing.assert_array_equal(arrays.ids, np.sort(ids))
        expected = np.round(reference.images[arrays.ids] * 255 / 16).astype(np.uint8)[..., None]
        np.testing.assert_array_equal(arrays.images, expected)
        np.testing.assert_array_equal(arrays.labels, reference.target[arrays.ids])
        assert arrays.images.dtype == np.uint8 and arrays.labels.dtype == np.int32
        assert arrays.num_classes == 10
    assert len(digits["train"].ids) == 1257 and len(digits["test"].ids) == 540
    assert not set(digits["train"].ids) & set(digits["test"].ids)


def test_digits_split_is_stratified(digits):
    train = np.bincount(digits["train"].labels, minlength=10)
    total = train + np.bincount(digits["test"].labels, minlength=10)
    assert np.all(np.abs(train - 0.7 * total) <= 1)


def test_digits_rebuild_is_identical_and_needs_no_tensorflow(digits, tmp_path):
    again = datasets.load_arrays("digits", "train", str(tmp_path))
    for field in ("images", "labels", "ids"):
        np.testing.assert_array_equal(getattr(again, field), getattr(digits["train"], field))
    assert os.path.isdir(tmp_path / "selax_digits")
    assert "tensorflow" not in sys.modules


def test_longtail_counts_follow_exponential_profile():
    counts = datasets.longtail_counts([120, 130, 125, 140], imbalance_ratio=8.0)
    reference = np.floor(120 * 8.0 ** (-np.arange(4) / 3.0))
    np.testing.assert_array_equal(counts, reference)
    with pytest.raises(ValueError, match="imbalance_ratio"):
        datasets.longtail_counts([5, 5], 0.5)


def test_digits_longtail_is_a_deterministic_subset(digits, data_dir):
    longtail = datasets.load_arrays("digits_longtail", "train", data_dir)
    counts = np.bincount(longtail.labels, minlength=10)
    assert np.all(np.diff(counts) <= 0)
    assert 9.5 <= counts[0] / counts[-1] <= 10.5
    assert set(longtail.ids) <= set(digits["train"].ids)
    position = np.searchsorted(digits["train"].ids, longtail.ids)
    np.testing.assert_array_equal(longtail.images, digits["train"].images[position])
    again = datasets.load_arrays("digits_longtail", "train", data_dir)
    np.testing.assert_array_equal(again.ids, longtail.ids)
    test = datasets.load_arrays("digits_longtail", "test", data_dir)
    np.testing.assert_array_equal(test.ids, digits["test"].ids)


FIELDS = dict(labels_per_class=2, split_seed=0, unlabeled_classes=())


def test_open_splits_leaves_the_unlabeled_classes_out_of_the_labeled_reader(data_dir):
    splits = datasets.open_splits("digits", dict(FIELDS, unlabeled_classes=(8, 9)), data_dir)
    train, labeled = splits.train, splits.labeled
    _, labeled_labels = labeled.read(np.arange(labeled.size))
    np.testing.assert_array_equal(np.bincount(labeled_labels, minlength=10), [2] * 8 + [0, 0])
    _, train_labels = train.read(np.arange(train.size))
    assert train.size == 1257 and {8, 9} <= set(train_labels) and labeled.num_classes == 10
    assert splits.augment is datasets.get("digits").augment and splits.class_names is None
    with pytest.raises(ValueError, match="unlabeled_classes"):
        datasets.open_splits("imagenet2012", dict(FIELDS, unlabeled_classes=(1,)), data_dir)


def test_labels_per_class_0_labels_every_training_image_but_the_unlabeled_classes(data_dir):
    labeled = datasets.open_splits("digits", dict(FIELDS, labels_per_class=0, unlabeled_classes=(3,)), data_dir).labeled
    _, labels = labeled.read(np.arange(labeled.size))
    counts = np.bincount(datasets.load_arrays("digits", "train", data_dir).labels, minlength=10)
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.where(np.arange(10) == 3, 0, counts))


def test_unknown_name_lists_known_datasets():
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'") as error:
        datasets.load_arrays("mnist", "train")
    for name in ("digits", "digits_longtail", "cifar100", "imagenet2012", "image_folder"):
        assert name in str(error.value)


def test_unprepared_cifar_says_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        datasets.load_arrays("cifar100", "train", str(tmp_path))
    message = str(error.value)
    assert "not prepared" in message and "selax[tf]" in message and str(tmp_path) in message


@pytest.mark.parametrize(
    "name, listing",
    [
        ("imagenet2012", None),
        ("imagenet2012_subset/1pct", "1percent.txt"),
        ("imagenet2012_subset/10pct", "10percent.txt"),
    ],
)
def test_imagenet_manual_files_are_checked_before_tfds(tmp_path, name, listing):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "ILSVRC2012_img_val.tar").touch()
    with pytest.raises(FileNotFoundError) as error:
        datasets.prepare(name, str(tmp_path / "data"), str(manual))
    message = str(error.value)
    assert "ILSVRC2012_img_train.tar" in message.split("\n")[0]
    assert "ILSVRC2012_img_val.tar" not in message.split("\n")[0]
    if listing:
        assert listing in message.split("\n")[0]
    with pytest.raises(FileNotFoundError, match="not prepared"):
        datasets.data_source(name, "train", str(tmp_path / "data"))
    with pytest.raises(ValueError, match="does not fit in memory"):
        datasets.load_arrays(name, "train", str(tmp_path / "data"))


def test_a_subset_list_that_is_not_simclrs_is_refused_before_tfds(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in datasets.IMAGENET_TARS:
        (manual / name).touch()
    (manual / "1percent.txt").write_text("n01440764_10026.JPEG\n")  # An edited or truncated list.
    with pytest.raises(ValueError) as error:
        datasets.prepare("imagenet2012_subset/1pct", str(tmp_path / "data"), str(manual))
    message = str(error.value)
    assert "1percent.txt" in message and "21 bytes" in message and "260323 bytes" in message
    assert "71e82a48ba78252683ae334c4d019ebd5c6e855b9599c1389fbe83eb9549cf17" in message
    assert "raw.githubusercontent.com/google-research/simclr" in message
    assert not (tmp_path / "data" / "imagenet2012_subset").exists()


def test_cifar100_offline_needs_its_archive_in_the_manual_dir(tmp_path):
    (tmp_path / "manual").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks cifar-100-binary.tar.gz") as error:
        datasets.prepare("cifar100", str(tmp_path / "data"), str(tmp_path / "manual"))
    assert "www.cs.toronto.edu" in str(error.value)
    (tmp_path / "manual" / datasets.CIFAR100_ARCHIVE).write_bytes(b"not the archive")
    with pytest.raises(ValueError, match="is not the file tfds prepares cifar100 from"):
        datasets.prepare("cifar100", str(tmp_path / "data"), str(tmp_path / "manual"))


def test_what_each_dataset_needs_prepared():
    assert datasets.required("digits") == () and datasets.required("image_folder") == ()
    assert datasets.required("cifar100") == ("cifar100",)
    assert datasets.required("imagenet2012_subset/10pct") == ("imagenet2012", "imagenet2012_subset/10pct")
    with pytest.raises(ValueError, match="built by selax on first use"):
        datasets.prepare("digits")


def test_prepare_without_tensorflow_says_what_to_install(tmp_path, monkeypatch):
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        (manual / name).touch()
    shutil.copy(SUBSET_LIST_1PCT, manual / "1percent.txt")  # Past the checksum check, to the install.
    monkeypatch.setattr(datasets, "_tensorflow_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'selax\[tf\]'"):
        datasets.prepare("imagenet2012_subset/1pct", str(tmp_path / "data"), str(manual))


def _prepare_fake_cifar100(data_dir):
    """A stand-in with cifar100's name, features and array_record layout, as `prepare` writes;
    images are grey levels 10 * id, rectangular (40 x 32) so that decoding to a square crops."""

    with registered.skip_registration():

        class Cifar100(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("3.0.2")

            def _info(self):
                return tfds.core.DatasetInfo(
                    builder=self,
                    features=tfds.features.FeaturesDict(
                        {
                            "id": tfds.features.Text(),
                            "image": tfds.features.Image(shape=(None, None, 3)),
                            "label": tfds.features.ClassLabel(num_classes=100),
                        }
                    ),
                )

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples()}

            def _generate_examples(self):
                for index in (7, 2, 5):
                    encoded = io.BytesIO()
                    Image.new("RGB", (40, 32), (index * 10,) * 3).save(encoded, format="PNG")
                    yield index, {"id": f"train_{index:05d}", "image": encoded.getvalue(), "label": index * 3}

        Cifar100(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


def test_prepared_official_layout_reads_without_tensorflow(tmp_path):
    _prepare_fake_cifar100(tmp_path)
    arrays = datasets.load_arrays("cifar100", "train", str(tmp_path))
    np.testing.assert_array_equal(arrays.ids, [2, 5, 7])
    np.testing.assert_array_equal(arrays.labels, [6, 15, 21])
    np.testing.assert_array_equal(arrays.images[:, 0, 0, 0], [20, 50, 70])
    assert arrays.images.shape == (3, 32, 40, 3) and arrays.num_classes == 100
    assert datasets.prepare("cifar100", str(tmp_path)).endswith("3.0.2")
    assert "tensorflow" not in sys.modules


def test_encoded_source_decodes_to_squares_on_the_host(tmp_path):
    _prepare_fake_cifar100(tmp_path)
    source = datasets.data_source("cifar100", "train", str(tmp_path), encoded_images=True)
    assert isinstance(source[0]["image"], bytes)
    batch = readers.gather_encoded(source, np.array([2, 0]), image_size=16)
    assert batch["images"].shape == (2, 16, 16, 3) and batch["images"].dtype == np.uint8
    levels = {int(record["label"]) // 3 * 10 for record in source.__getitems__([2, 0])}
    assert {int(v) for v in batch["images"][:, 8, 8, 0]} == levels
    np.testing.assert_array_equal(batch["ids"], [2, 0])


def test_concurrent_processes_build_digits_once(tmp_path):
    script = (
        "import sys; from selax.data import datasets; "
        "a = datasets.load_arrays('digits', 'train', sys.argv[1]); print(int(a.ids.sum()))"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    sums = [out.strip().splitlines()[-1] for out, _ in outputs]  # tfds also prints to stdout
    assert sums[0] == sums[1] == str(datasets.digits_split_ids("train").sum())
