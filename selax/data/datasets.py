"""Datasets through tfds, readable without TensorFlow.

Every dataset is read with a tfds data source over array_record files, which needs no TensorFlow:

* ``digits``: sklearn's bundled 8x8 digits (1,797 images, offline), built by a selax tfds builder on
  first use and cached under ``data_dir``. Images are uint8 [8, 8, 1] (sklearn's 0..16 scaled to
  0..255 by ``round(v * 255 / 16)``); a fixed stratified 70/30 split (sklearn ``train_test_split``,
  ``random_state=0``) gives 1,257 train and 540 test images.
* ``digits_longtail``: the digits train split subsampled to a long-tailed class profile
  (imbalance ratio 10, exponential over classes, deterministic); its test split is digits' own.
* ``image_folder``: the user's images, ``config.dataset.train_dir/<class>/...`` with optional test and
  unlabeled folders, stored by a selax builder (no TensorFlow; see `selax.data.folders`).
* ``cifar100``, ``imagenet2012``, ``imagenet2012_subset/1pct``, ``imagenet2012_subset/10pct``: the
  official tfds builders. Preparing them needs TensorFlow (``pip install 'selax[tf]'``) and, for
  ImageNet, the ILSVRC tars (and the SimCLR subset lists) in a manual directory; `prepare` checks
  those prerequisites before calling into tfds. Once prepared in array_record format, reading needs
  no TensorFlow. ImageNet does not fit in memory: read it with `data_source`.

Arrays are returned in increasing id order, so positions are stable across hosts and runs; the
samplers in `selax.data.pipeline` index these positions.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from selax.data import augment, folders
from selax.data.readers import ArraySplit, SplitReader, array_reader, built, encoded_reader, joined_reader, subset_reader
from selax.data.splits import labeled_subset

DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0
LONGTAIL_IMBALANCE_RATIO = 10.0
LONGTAIL_SEED = 0

IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
SUBSET_LISTS = {"1pct": "1percent.txt", "10pct": "10percent.txt"}
CIFAR100_ARCHIVE = "cifar-100-binary.tar.gz"


def _data_dir(data_dir: str | os.PathLike | None) -> str:
    """The tfds data directory: ``data_dir``, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))
    return os.path.expanduser(os.fspath(data_dir))


# ----------------------------------------------------------------------------------------------
# digits


def digits_split_ids(split: str) -> np.ndarray:
    """Indices into sklearn's digits of the fixed stratified 70/30 split: int64 [1257] or [540]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    train_ids, test_ids = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_FRACTION,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    return np.sort({"train": train_ids, "test": test_ids}[split])


class SelaxDigits(tfds.core.GeneratorBasedBuilder):
    """sklearn's 8x8 digits as a tfds dataset (array_record, tensors only: builds without TF)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified 70/30 split, random_state=0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="sklearn digits, 0..16 rescaled to uint8 0..255",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.Scalar(dtype=np.int32),
                    "id": tfds.features.Scalar(dtype=np.int32),
                }
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)[..., None]
        for index in digits_split_ids(split):
            yield (
                int(index),
                {
                    "image": images[index],
                    "label": np.int32(digits.target[index]),
                    "id": np.int32(index),
                },
            )


def longtail_counts(class_counts: Sequence[int], imbalance_ratio: float) -> np.ndarray:
    """Per-class sizes of an exponential long-tailed profile.

    Class c keeps ``floor(n_max * imbalance_ratio ** (-c / (K - 1)))`` examples, n_max being the
    smallest available class count, so class 0 keeps n_max and class K-1 about n_max / ratio.

    Args:
      class_counts: int [K], available examples per class.
      imbalance_ratio: largest over smallest class size, >= 1.
    Returns:
      int64 [K].
    """
    counts = np.asarray(class_counts)
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    exponents = np.arange(len(counts)) / max(len(counts) - 1, 1)
    return np.floor(counts.min() * imbalance_ratio ** (-exponents)).astype(np.int64)


def longtail_indices(
    labels: np.ndarray, imbalance_ratio: float = LONGTAIL_IMBALANCE_RATIO, seed: int = LONGTAIL_SEED
) -> np.ndarray:
    """Positions of a deterministic long-tailed subsample (see `longtail_counts`), sorted.

    Args:
      labels: int [N] in 0..K-1.
    Returns:
      int64 [sum of longtail_counts].
    """
    num_classes = int(labels.max()) + 1
    keep = longtail_counts(np.bincount(labels, minlength=num_classes), imbalance_ratio)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[: keep[c]] for c in range(num_classes)]
    return np.sort(np.concatenate(chosen))


# ----------------------------------------------------------------------------------------------
# official builders: prerequisites checked here, tfds imported into only once they hold


def _tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _prepared_dir(name: str, data_dir: str) -> str | None:
    """The version directory of a prepared official dataset with array_record files, else None."""
    base = name.split("/")[0]
    infos = glob.glob(os.path.join(data_dir, name, "*", "dataset_info.json"))
    versions = {
        os.path.dirname(info): tuple(map(int, re.findall(r"\d+", os.path.basename(os.path.dirname(info)))))
        for info in infos
    }
    newest_first = sorted(versions, key=versions.get, reverse=True)
    for version_dir in newest_first:
        if glob.glob(os.path.join(version_dir, f"{base}-*.array_record-*")):
            return version_dir
    return None


def _manual_files(name: str) -> tuple[str, ...]:
    """The files `prepare` reads from ``manual_dir`` for official dataset ``name``."""
    if name == "cifar100":
        return (CIFAR100_ARCHIVE,)
    if name.startswith("imagenet2012_subset/"):
        return IMAGENET_TARS + (SUBSET_LISTS[name.split("/")[1]],)
    return IMAGENET_TARS


def _missing_manual_files(name: str, manual_dir: str | None) -> list[str]:
    """Files ``manual_dir`` lacks (cifar100 without a ``manual_dir`` is downloaded: nothing is missing)."""
    if name == "cifar100" and not manual_dir:
        return []
    present = set(os.listdir(manual_dir)) if manual_dir and os.path.isdir(manual_dir) else set()
    return [f for f in _manual_files(name) if f not in present]


def _check_manual_checksums(name: str, manual_dir: str) -> None:
    """ValueError where a file of ``manual_dir`` that tfds knows the size and sha256 of (the SimCLR
    subset lists, the CIFAR-100 archive) is not that file: tfds would try to download it again, which
    stalls offline. The ILSVRC tars are not hashed (tfds does not check them; 140 GiB)."""
    from tensorflow_datasets.core.download import checksums

    registered = tfds.builder_cls(name.split("/")[0]).url_infos or {}
    by_file = {info.filename: (url, info) for url, info in registered.items() if info.filename}
    for file in _manual_files(name):
        if file not in by_file:
            continue
        url, expected = by_file[file]
        path = os.path.join(manual_dir, file)
        found = checksums.compute_url_info(path)
        if (int(found.size), found.checksum) != (int(expected.size), expected.checksum):
            raise ValueError(
                f"{path} is not the file tfds prepares {name} from: it has {int(found.size)} bytes and sha256"
                f" {found.checksum}, tfds expects {int(expected.size)} bytes and sha256 {expected.checksum}."
                f" Download it again, unmodified, from {url} (a truncated download or an edited list shows"
                " this)."
            )


def _prepare_instructions(name: str, data_dir: str, manual_dir: str | None) -> str:
    lines = [
        "Prepare it once (needs TensorFlow: pip install 'selax[tf]'), writing array_record files:",
        f"  python -m selax.prepare --dataset={name} --data_dir={data_dir}"
        + (" --manual_dir=MANUAL_DIR" if name.startswith("imagenet") else " [--manual_dir=MANUAL_DIR]"),
    ]
    where = manual_dir or "MANUAL_DIR"
    if name.startswith("imagenet2012"):
        needed = ", ".join(_manual_files(name))
        lines.append(f"with these files in {where}: {needed}")
        lines.append(
            "(ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org; "
            "1percent.txt / 10percent.txt from github.com/google-research/simclr, "
            "imagenet_subsets/; "
            "without the list file tfds tries to download it and stalls offline.)"
        )
    else:
        lines.append(
            f"Without --manual_dir tfds downloads {CIFAR100_ARCHIVE} (needs internet); offline, put that"
            f" file (www.cs.toronto.edu/~kriz/) in {where}."
        )
    return "\n".join(lines)


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> str:
    """Prepares an official tfds dataset in array_record format; returns its version directory.

    Checks, before calling into tfds, that ``manual_dir`` holds what ``name`` is prepared from
    (ImageNet: ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and, for subsets, SimCLR's 1percent.txt
    or 10percent.txt, which must be the exact files; cifar100: cifar-100-binary.tar.gz, the original
    archive) and that TensorFlow is installed. cifar100 without ``manual_dir`` is downloaded by tfds
    (needs internet). The configs of the ImageNet subsets also read ``imagenet2012`` (its train split
    is the unlabeled stream): `required` lists what a dataset reads.
    """
    if name not in get(name).official:
        preparable = [key for key, entry in DATASETS.items() if key in entry.official]
        raise ValueError(f"{name!r} is built by selax on first use; prepare() is for {preparable}.")
    data_dir = _data_dir(data_dir)
    prepared = _prepared_dir(name, data_dir)
    if prepared is not None:
        return prepared
    missing = _missing_manual_files(name, manual_dir)
    if missing:
        raise FileNotFoundError(
            f"{name}: manual_dir {manual_dir!r} lacks {', '.join(missing)}.\n"
            + _prepare_instructions(name, data_dir, manual_dir)
        )
    if manual_dir:
        _check_manual_checksums(name, manual_dir)
    if not _tensorflow_available():
        raise ImportError(
            f"Preparing {name} needs TensorFlow, which is not installed: pip install 'selax[tf]' "
            "(reading it afterwards does not)."
        )
    # No attempt at tfds's own prepared copies on GCS: it needs internet, and it is the same data.
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=download_config)
    return os.fspath(builder.data_dir)


def required(name: str) -> tuple[str, ...]:
    """The official datasets that training on ``name`` reads, each to `prepare` first (none: selax
    builds its own datasets at first use)."""
    return get(name).official


def data_source(
    name: str,
    split: str,
    data_dir: str | None = None,
    encoded_images: bool = False,
) -> Any:
    """A random-access tfds data source (``len``, ``[i]``, ``__getitems__``) over one split.

    selax's own datasets are built on first use; official ones must have been prepared (see
    `prepare`), else FileNotFoundError says how (image folders: `selax.data.folders`).
    ``digits_longtail`` is a subsample of digits: use `load_arrays`. With ``encoded_images``,
    official datasets return the stored image bytes undecoded (decode them with `decode_square`,
    e.g. through `gather_encoded`).
    """
    get(name)
    data_dir = _data_dir(data_dir)
    if name in ("digits", "digits_longtail"):
        if name == "digits_longtail" or split not in ("train", "test"):
            raise ValueError("digits has splits 'train' and 'test'; read digits_longtail via load_arrays.")
        builder = built(lambda: SelaxDigits(data_dir=data_dir, file_format="array_record"), data_dir)
        return builder.as_data_source(split=split)
    if name == IMAGE_FOLDER:
        raise ValueError("An image folder is read through selax.data.folders (config.dataset.train_dir).")
    prepared = _prepared_dir(name, data_dir)
    if prepared is None:
        raise FileNotFoundError(
            f"{name} is not prepared in array_record format under {data_dir}.\n"
            + _prepare_instructions(name, data_dir, None)
        )
    decoders = {"image": tfds.decode.SkipDecoding()} if encoded_images else None
    return tfds.builder_from_directory(prepared).as_data_source(split=split, decoders=decoders)


def _example_id(value: Any) -> int:
    """Integer id of an example: ints as they are, strings like b'train_01234' by their number."""
    if isinstance(value, (bytes, str)):
        text = value.decode() if isinstance(value, bytes) else value
        return int(re.findall(r"\d+", text)[-1])
    return int(value)


def load_arrays(name: str, split: str, data_dir: str | None = None) -> ArraySplit:
    """Reads a whole split into memory, ordered by example id.

    Args:
      name: one of ``digits``, ``digits_longtail``, ``cifar100``.
      split: ``train`` / ``test``.
      data_dir: tfds data directory (default $TFDS_DATA_DIR or ~/tensorflow_datasets).
    Returns:
      `ArraySplit` with images uint8 [N, H, W, C], labels/ids int32 [N].
    """
    get(name)
    if name.startswith("imagenet2012"):
        raise ValueError(f"{name} does not fit in memory; read it with data_source({name!r}, ...).")
    if name == "digits_longtail":
        digits = load_arrays("digits", split, data_dir)
        if split != "train":
            return digits
        keep = longtail_indices(digits.labels)
        return ArraySplit(digits.images[keep], digits.labels[keep], digits.ids[keep], 10)
    source = data_source(name, split, data_dir)
    records = source.__getitems__(range(len(source)))
    ids = np.array([_example_id(r["id"]) for r in records], dtype=np.int32)
    order = np.argsort(ids, kind="stable")
    images = np.stack([records[i]["image"] for i in order]).astype(np.uint8)
    labels = np.array([records[i]["label"] for i in order], dtype=np.int32)
    return ArraySplit(images, labels, ids[order], DATASETS[name].num_classes)


# ----------------------------------------------------------------------------------------------
# What the training loop reads


class Splits(NamedTuple):
    """The readers of a run and the augmentation recipe of its images.

    Attributes:
      train: every training image (the unlabeled stream; label -1 where none is known).
      labeled: the labeled training images.
      test: the evaluation split.
      augment: the dataset's recipe (`selax.data.augment.DatasetAugment`), which `config.augment` overrides.
      class_names: a name per class (an image folder's subfolders), or None (classes are numbers).
    """

    train: SplitReader
    labeled: SplitReader
    test: SplitReader
    augment: augment.DatasetAugment
    class_names: tuple[str, ...] | None = None


def _labeled_positions(
    labels: np.ndarray, fields: Mapping[str, Any], class_names: Sequence[str] | None = None
) -> np.ndarray:
    """Positions of the labeled images: ``labels_per_class`` per class drawn by ``split_seed``
    (`selax.data.splits.labeled_subset`, whose errors name the classes by `class_names`), or every
    labeled image when it is 0; none of the ``unlabeled_classes``."""
    unlabeled_classes = tuple(fields.get("unlabeled_classes") or ())
    if fields["labels_per_class"] == 0:
        return np.flatnonzero((labels >= 0) & ~np.isin(labels, unlabeled_classes))
    return labeled_subset(labels, fields["labels_per_class"], fields["split_seed"], unlabeled_classes, class_names)


def _in_memory_splits(name: str, fields: Mapping[str, Any], data_dir: str | None) -> Splits:
    """Train and test held in memory, the labeled images chosen by `_labeled_positions`."""
    train = load_arrays(name, "train", data_dir)
    test = load_arrays(name, "test", data_dir)
    train_reader = array_reader(train)
    labeled = subset_reader(train_reader, _labeled_positions(train.labels, fields))
    return Splits(train_reader, labeled, array_reader(test), DATASETS[name].augment)


def _imagenet_splits(name: str, fields: Mapping[str, Any], data_dir: str | None) -> Splits:
    """The unlabeled stream is ``imagenet2012`` train, the labeled one the SimCLR subset's train split
    (``imagenet2012`` alone: the whole train split), the test split ``imagenet2012`` validation; images
    decoded on the host to ``config.dataset.image_size`` squares (default 256), the recipe for that size
    (`selax.data.augment.imagenet`)."""
    if fields.get("unlabeled_classes"):
        raise ValueError(
            f"config.dataset.unlabeled_classes is for in-memory datasets; {name} reads its labeled"
            " subset from a fixed list: leave it empty."
        )
    image_size = fields.get("image_size") or folders.LARGE_IMAGE_SIZE

    def reader(dataset: str, split: str) -> SplitReader:
        return encoded_reader(data_source(dataset, split, data_dir, encoded_images=True), 1000, image_size)

    train = reader("imagenet2012", "train")
    labeled = train if name == "imagenet2012" else reader(name, "train")
    return Splits(train, labeled, reader("imagenet2012", "validation"), augment.imagenet(image_size))


def _folder_splits(name: str, fields: Mapping[str, Any], data_dir: str | None) -> Splits:
    """A user's folders (`selax.data.folders`): the unlabeled stream is every train_dir image not held
    out plus unlabeled_dir; the test split test_dir, or a stratified ``test_fraction`` of train_dir drawn
    by ``split_seed``; the recipe and image size from the images."""
    del name
    if not fields.get("train_dir"):
        raise ValueError(
            "config.dataset.name='image_folder' needs config.dataset.train_dir=DIR, a folder with one"
            " subfolder of images per class (see configs/folder.py)."
        )
    folder = folders.ImageFolder(fields["train_dir"], fields.get("test_dir"), fields.get("unlabeled_dir"))
    index = folders.build(folder, _data_dir(data_dir))
    folders.report_skipped(index, strict=fields["strict_images"])
    image_size = fields.get("image_size")
    if not image_size:
        accelerator = jax.default_backend() != "cpu"
        image_size = folders.default_image_size(index.median_short_side, accelerator)
        if image_size < index.median_short_side and not accelerator:
            logging.warning(
                "The images' median shorter side is %d px; with no accelerator they are stored at %d px, so"
                " that the run takes minutes on this CPU. For their own size (slow here: a ResNet), set"
                " --config.dataset.image_size=%d.",
                index.median_short_side, image_size, folders.default_image_size(index.median_short_side, True),
            )
    channels = 1 if index.grey else 3
    parts = folders.split_readers(index, image_size, channels)
    if "test" in parts:
        pool, test = np.arange(parts["train"].size), parts["test"]
    else:
        pool, held_out = folders.held_out_split(
            index.labels["train"], index.classes, fields["test_fraction"], fields["split_seed"]
        )
        test = subset_reader(parts["train"], held_out)
    labeled_pool = subset_reader(parts["train"], pool)
    labeled = subset_reader(labeled_pool, _labeled_positions(index.labels["train"][pool], fields, index.classes))
    train = joined_reader([labeled_pool] + ([parts["unlabeled"]] if "unlabeled" in parts else []))
    mean, std = folders.channel_statistics(labeled_pool)
    logging.info(
        "Image folder %s: %d classes, %d training images (%d labeled), %d test images, %dx%dx%d, mean %s std %s.",
        folder.train_dir, len(index.classes), train.size, labeled.size, test.size, image_size, image_size,
        channels, mean, std,
    )
    recipe = augment.for_image_size(image_size, channels, mean, std)
    return Splits(train, labeled, test, recipe, tuple(index.classes))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset the loop trains on: one registry entry.

    Attributes:
      description: one line for listings and errors.
      num_classes: K (None: found in the data, an image folder's class subfolders).
      open: ``(name, config.dataset, data_dir) -> Splits``.
      augment: its augmentation recipe (None: chosen when opened, from the images or `config.dataset.image_size`).
      official: the official tfds datasets it reads, which `prepare` builds (see `required`).
    """

    description: str
    num_classes: int | None
    open: Callable[[str, Mapping[str, Any], str | None], Splits]
    augment: augment.DatasetAugment | None
    official: tuple[str, ...] = ()


IMAGE_FOLDER = "image_folder"

DATASETS: dict[str, Dataset] = {
    "digits": Dataset(
        "sklearn 8x8 digits, 10 classes, 1257 train / 540 test (built offline)", 10, _in_memory_splits, augment.DIGITS
    ),
    "digits_longtail": Dataset(
        "digits with a long-tailed train split (imbalance ratio 10)", 10, _in_memory_splits, augment.DIGITS
    ),
    "cifar100": Dataset(
        "CIFAR-100 (official tfds builder; preparing needs TensorFlow)",
        100,
        _in_memory_splits,
        augment.CIFAR100,
        ("cifar100",),
    ),
    "imagenet2012": Dataset(
        "ImageNet-1k (official tfds builder; manual ILSVRC tars, TF to prepare)",
        1000,
        _imagenet_splits,
        None,
        ("imagenet2012",),
    ),
    "imagenet2012_subset/1pct": Dataset(
        "SimCLR 1% labeled ImageNet subset (manual tars + 1percent.txt)",
        1000,
        _imagenet_splits,
        None,
        ("imagenet2012", "imagenet2012_subset/1pct"),
    ),
    "imagenet2012_subset/10pct": Dataset(
        "SimCLR 10% labeled ImageNet subset (manual tars + 10percent.txt)",
        1000,
        _imagenet_splits,
        None,
        ("imagenet2012", "imagenet2012_subset/10pct"),
    ),
    IMAGE_FOLDER: Dataset(
        "your images: config.dataset.train_dir/<class>/* (+ test_dir, unlabeled_dir; configs/folder.py)",
        None,
        _folder_splits,
        None,
    ),
}


def get(name: str) -> Dataset:
    """The registry entry of dataset ``name``; ValueError listing the known ones otherwise."""
    if name not in DATASETS:
        known = "\n".join(f"  {key}: {entry.description}" for key, entry in DATASETS.items())
        raise ValueError(f"Unknown dataset {name!r}. Known datasets:\n{known}")
    return DATASETS[name]


def open_splits(name: str, fields: Mapping[str, Any], data_dir: str | None = None) -> Splits:
    """The readers and recipe for training on dataset ``name`` (its registry entry's ``open``), as the
    fields of ``config.dataset`` say: ``labels_per_class`` labeled images per class (0: every label)
    drawn by ``split_seed``, none of ``unlabeled_classes`` (still in the unlabeled stream, to be
    discovered); ``image_size`` where images are decoded on the host; the folders of ``image_folder``.
    """
    return get(name).open(name, fields, data_dir)
