"""Datasets through tfds, readable without TensorFlow.

Every dataset is read with a tfds data source over array_record files, which needs no TensorFlow:

* ``digits``: sklearn's bundled 8x8 digits (1,797 images, offline), built by a selax tfds builder on
  first use and cached under ``data_dir``. Images are uint8 [8, 8, 1] (sklearn's 0..16 scaled to
  0..255 by ``round(v * 255 / 16)``); a fixed stratified 70/30 split (sklearn ``train_test_split``,
  ``random_state=0``) gives 1,257 train and 540 test images.
* ``digits_longtail``: the digits train split subsampled to a long-tailed class profile
  (imbalance ratio 10, exponential over classes, deterministic); its test split is digits' own.
* ``image_folder``: the user's images, ``root_dir/<class>/*.jpg`` plus an optional folder of
  unlabeled images, decoded with PIL, resized (shorter side) and centre-cropped to a fixed
  square, stored as uint8 tensors by a selax builder (no TensorFlow).
* ``cifar100``, ``imagenet2012``, ``imagenet2012_subset/1pct``, ``imagenet2012_subset/10pct``: the
  official tfds builders. Preparing them needs TensorFlow (``pip install 'selax[tf]'``) and, for
  ImageNet, the ILSVRC tars (and the SimCLR subset lists) in a manual directory; `prepare` checks
  those prerequisites before calling into tfds. Once prepared in array_record format, reading needs
  no TensorFlow. ImageNet does not fit in memory: read it with `data_source`.

Arrays are returned in increasing id order, so positions are stable across hosts and runs; the
samplers in `selax.data.pipeline` index these positions.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fcntl
import functools
import glob
import hashlib
import importlib.util
import io
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from selax.data import augment

DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0
LONGTAIL_IMBALANCE_RATIO = 10.0
LONGTAIL_SEED = 0

IMAGE_FOLDER = "image_folder"  # Read through `data_source` / `load_arrays` with an `ImageFolder`.
_OFFICIAL = ("cifar100", "imagenet2012", "imagenet2012_subset/1pct", "imagenet2012_subset/10pct")
_IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
_SUBSET_LISTS = {"1pct": "1percent.txt", "10pct": "10percent.txt"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ArraySplit(NamedTuple):
    """One split held in memory.

    Attributes:
      images: uint8 [N, H, W, C].
      labels: int32 [N]; -1 for unlabeled images.
      ids: int32 [N], the dataset's own example ids, increasing.
      num_classes: number of classes.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    num_classes: int


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """A folder of images to read as dataset ``image_folder``.

    Attributes:
      root_dir: folder with one subfolder of images per class (sorted names give labels 0..K-1);
        read as split ``train``.
      image_size: images are resized (shorter side) and centre-cropped to
        [image_size, image_size, 3].
      unlabeled_dir: optional folder of unlabeled images (searched recursively), split ``unlabeled``
        with label -1.

    The folder is built once per (root_dir, unlabeled_dir, image_size) into
    ``data_dir/selax_image_folder/<name>_<size>px_<hash>``; delete that folder after changing files.
    Ids are positions in sorted file order.
    """

    root_dir: str
    image_size: int = 64
    unlabeled_dir: str | None = None


def check_name(name: str) -> None:
    """Raises ValueError unless ``name`` is a registered dataset (or ``image_folder``)."""
    if name != IMAGE_FOLDER:
        get(name)


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
# image folders


@dataclasses.dataclass(eq=False)
class _FolderConfig(tfds.core.BuilderConfig):
    folder: ImageFolder | None = None


def _image_files(directory: str, recursive: bool) -> list[str]:
    pattern = os.path.join(directory, "**", "*") if recursive else os.path.join(directory, "*")
    files = glob.glob(pattern, recursive=recursive)
    return sorted(f for f in files if f.lower().endswith(_IMAGE_SUFFIXES) and os.path.isfile(f))


def _class_names(root_dir: str) -> list[str]:
    return sorted(e.name for e in os.scandir(root_dir) if e.is_dir())


def decode_square(image_file: str | bytes, size: int) -> np.ndarray:
    """Decodes an image (path or encoded bytes) with PIL, resizes its shorter side to ``size``
    (bicubic; JPEGs are first reduced in the DCT domain where that stays >= size) and centre-crops.

    Returns:
      uint8 [size, size, 3].
    """
    from PIL import Image

    opened = io.BytesIO(image_file) if isinstance(image_file, bytes) else image_file
    with Image.open(opened) as image:
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        scale = size / min(image.size)
        width = max(size, round(image.width * scale))
        height = max(size, round(image.height * scale))
        image = image.resize((width, height), Image.BICUBIC)
        left, top = (width - size) // 2, (height - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


class SelaxImageFolder(tfds.core.GeneratorBasedBuilder):
    """A user's image folder as fixed-size uint8 tensors (PIL decoding, builds without TF)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS: list = []

    def _info(self) -> tfds.core.DatasetInfo:
        folder = self.builder_config.folder
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Images of {folder.root_dir} at {folder.image_size}px",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(folder.image_size, folder.image_size, 3), dtype=np.uint8
                    ),
                    "label": tfds.features.Scalar(dtype=np.int32),
                    "id": tfds.features.Scalar(dtype=np.int32),
                }
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        folder = self.builder_config.folder
        classes = _class_names(folder.root_dir)
        labeled = [
            (path, label)
            for label, name in enumerate(classes)
            for path in _image_files(os.path.join(folder.root_dir, name), recursive=True)
        ]
        splits = {"train": self._generate_examples(labeled)}
        if folder.unlabeled_dir is not None:
            unlabeled = [(path, -1) for path in _image_files(folder.unlabeled_dir, recursive=True)]
            splits["unlabeled"] = self._generate_examples(unlabeled)
        return splits

    def _generate_examples(self, files: list[tuple[str, int]]) -> Iterator[tuple[int, dict[str, Any]]]:
        size = self.builder_config.folder.image_size
        for index, (path, label) in enumerate(files):
            yield (
                index,
                {
                    "image": decode_square(path, size),
                    "label": np.int32(label),
                    "id": np.int32(index),
                },
            )


def _built(make_builder: Callable[[], tfds.core.DatasetBuilder], data_dir: str) -> Any:
    """A prepared builder, made and prepared under an exclusive lock in ``data_dir``: concurrent
    processes (e.g. several JAX processes on one machine) build once, the others then read it."""
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, ".selax_build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = make_builder()  # made under the lock, so it sees a finished build's metadata
        builder.download_and_prepare()
    return builder


def _folder_builder(folder: ImageFolder, data_dir: str) -> SelaxImageFolder:
    if not os.path.isdir(folder.root_dir):
        raise FileNotFoundError(
            f"image_folder: root_dir {folder.root_dir!r} is not a directory; it should hold one "
            "subfolder of images per class, e.g. root_dir/cat/001.jpg, root_dir/dog/002.jpg."
        )
    if not _class_names(folder.root_dir):
        raise ValueError(f"image_folder: {folder.root_dir!r} has no class subfolders.")
    if folder.unlabeled_dir is not None and not os.path.isdir(folder.unlabeled_dir):
        raise FileNotFoundError(f"image_folder: unlabeled_dir {folder.unlabeled_dir!r} is missing.")
    key = f"{folder.root_dir}|{folder.unlabeled_dir}|{folder.image_size}"
    stem = re.sub(r"[^a-z0-9]+", "_", os.path.basename(os.path.normpath(folder.root_dir)).lower())
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    config = _FolderConfig(
        name=f"{stem.strip('_') or 'images'}_{folder.image_size}px_{digest}", folder=folder
    )
    return SelaxImageFolder(config=config, data_dir=data_dir, file_format="array_record")


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


def _missing_manual_files(name: str, manual_dir: str | None) -> list[str]:
    if not name.startswith("imagenet2012"):
        return []
    needed = list(_IMAGENET_TARS)
    if name.startswith("imagenet2012_subset/"):
        needed.append(_SUBSET_LISTS[name.split("/")[1]])
    present = set(os.listdir(manual_dir)) if manual_dir and os.path.isdir(manual_dir) else set()
    return [f for f in needed if f not in present]


def _prepare_instructions(name: str, data_dir: str, manual_dir: str | None) -> str:
    lines = [
        "Prepare it once (needs TensorFlow: pip install 'selax[tf]'), writing array_record files:",
        f"  selax.data.datasets.prepare({name!r}, data_dir={data_dir!r}"
        + (", manual_dir=MANUAL_DIR)" if name.startswith("imagenet") else ")"),
    ]
    if name.startswith("imagenet2012"):
        where = manual_dir or "MANUAL_DIR"
        needed = ", ".join(_missing_manual_files(name, None))
        lines.append(f"with these files in {where}: {needed}")
        lines.append(
            "(ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org; "
            "1percent.txt / 10percent.txt from github.com/google-research/simclr, "
            "imagenet_subsets/; "
            "without the list file tfds tries to download it and stalls offline.)"
        )
    return "\n".join(lines)


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None) -> str:
    """Prepares an official tfds dataset in array_record format; returns its version directory.

    Checks, before calling into tfds, that (ImageNet) ``manual_dir`` holds
    ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and, for subsets, 1percent.txt or
    10percent.txt, and that TensorFlow is installed. cifar100 is downloaded by tfds (needs
    internet).
    """
    check_name(name)
    if name not in _OFFICIAL:
        raise ValueError(f"{name!r} is built by selax on first use; prepare() is for {_OFFICIAL}.")
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
    if not _tensorflow_available():
        raise ImportError(
            f"Preparing {name} needs TensorFlow, which is not installed: pip install 'selax[tf]' "
            "(reading it afterwards does not)."
        )
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=download_config)
    return os.fspath(builder.data_dir)


def data_source(
    name: str,
    split: str,
    data_dir: str | None = None,
    folder: ImageFolder | None = None,
    encoded_images: bool = False,
) -> Any:
    """A random-access tfds data source (``len``, ``[i]``, ``__getitems__``) over one split.

    selax's own datasets are built on first use; official ones must have been prepared (see
    `prepare`), else FileNotFoundError says how. ``folder`` is required for ``image_folder``.
    ``digits_longtail`` is a subsample of digits: use `load_arrays`. With ``encoded_images``,
    official datasets return the stored image bytes undecoded (decode them with `decode_square`,
    e.g. through `gather_encoded`).
    """
    check_name(name)
    data_dir = _data_dir(data_dir)
    if name in ("digits", "digits_longtail"):
        if name == "digits_longtail" or split not in ("train", "test"):
            raise ValueError("digits has splits 'train' and 'test'; read digits_longtail via load_arrays.")
        builder = _built(lambda: SelaxDigits(data_dir=data_dir, file_format="array_record"), data_dir)
        return builder.as_data_source(split=split)
    if name == IMAGE_FOLDER:
        if folder is None:
            raise ValueError("image_folder needs folder=ImageFolder(root_dir=..., image_size=...).")
        builder = _built(lambda: _folder_builder(folder, data_dir), data_dir)
        if split not in builder.info.splits:
            raise ValueError(f"image_folder has splits {list(builder.info.splits)}, not {split!r}.")
        return builder.as_data_source(split=split)
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


def load_arrays(
    name: str, split: str, data_dir: str | None = None, folder: ImageFolder | None = None
) -> ArraySplit:
    """Reads a whole split into memory, ordered by example id.

    Args:
      name: one of ``digits``, ``digits_longtail``, ``cifar100``, ``image_folder``.
      split: ``train`` / ``test`` (``unlabeled`` for an image folder with one).
      data_dir: tfds data directory (default $TFDS_DATA_DIR or ~/tensorflow_datasets).
      folder: the `ImageFolder` for ``image_folder``.
    Returns:
      `ArraySplit` with images uint8 [N, H, W, C], labels/ids int32 [N].
    """
    check_name(name)
    if name.startswith("imagenet2012"):
        raise ValueError(f"{name} does not fit in memory; read it with data_source({name!r}, ...).")
    if name == "digits_longtail":
        digits = load_arrays("digits", split, data_dir)
        if split != "train":
            return digits
        keep = longtail_indices(digits.labels)
        return ArraySplit(digits.images[keep], digits.labels[keep], digits.ids[keep], 10)
    source = data_source(name, split, data_dir, folder)
    records = source.__getitems__(range(len(source)))
    ids = np.array([_example_id(r["id"]) for r in records], dtype=np.int32)
    order = np.argsort(ids, kind="stable")
    images = np.stack([records[i]["image"] for i in order]).astype(np.uint8)
    labels = np.array([records[i]["label"] for i in order], dtype=np.int32)
    num_classes = len(_class_names(folder.root_dir)) if name == IMAGE_FOLDER else DATASETS[name].num_classes
    return ArraySplit(images, labels, ids[order], num_classes)


# ----------------------------------------------------------------------------------------------
# What the training loop reads


class SplitReader(NamedTuple):
    """A split read by position: ``read(positions int [b]) -> (images uint8 [b, S, S, C], labels int32 [b])``.

    Attributes:
      size: number of examples N.
      num_classes: number of classes.
      image_shape: (S, S, C) of the images ``read`` returns.
      read: the reader; positions are 0..N-1.
    """

    size: int
    num_classes: int
    image_shape: tuple[int, int, int]
    read: Any


def _array_reader(split: ArraySplit, positions: np.ndarray | None = None) -> SplitReader:
    rows = np.arange(len(split.labels)) if positions is None else np.asarray(positions)
    return SplitReader(
        len(rows),
        split.num_classes,
        split.images.shape[1:],
        lambda p: (split.images[rows[p]], split.labels[rows[p]]),
    )


@functools.cache
def _decode_pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="decode")


def gather_encoded(source: Any, positions: np.ndarray, image_size: int) -> dict[str, np.ndarray]:
    """Host-side batch of a split too large for memory (ImageNet), decoded and made square.

    Args:
      source: `data_source(..., encoded_images=True)`.
      positions: int [b] positions in the split.
      image_size: S; shorter side resized to S, centre crop (augmented on device afterwards).
    Returns:
      dict with images uint8 [b, S, S, 3], labels int32 [b], ids int32 [b] (the positions).

    Images are decoded by a pool of threads, one per host core (PIL releases the GIL while decoding).
    """
    records = source.__getitems__([int(p) for p in positions])
    images = _decode_pool().map(lambda r: decode_square(r["image"], image_size), records)
    return {
        "images": np.stack(list(images)),
        "labels": np.array([r["label"] for r in records], dtype=np.int32),
        "ids": np.asarray(positions, dtype=np.int32),
    }


def _encoded_reader(source: Any, num_classes: int, image_size: int) -> SplitReader:
    def read(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = gather_encoded(source, positions, image_size)
        return batch["images"], batch["labels"]

    return SplitReader(len(source), num_classes, (image_size, image_size, 3), read)


Readers = tuple[SplitReader, SplitReader, SplitReader]


def _in_memory_splits(
    name: str, data_dir: str | None, labels_per_class: int, split_seed: int, unlabeled_classes: Sequence[int], image_size: int
) -> Readers:
    """Train and test held in memory; ``labels_per_class`` labeled train images per class, chosen by
    ``split_seed`` (`selax.data.splits.labeled_subset`), none of the ``unlabeled_classes``."""
    from selax.data.splits import labeled_subset

    del image_size  # Stored at their own size.
    train = load_arrays(name, "train", data_dir)
    test = load_arrays(name, "test", data_dir)
    labeled_ids = labeled_subset(train.labels, labels_per_class, split_seed, unlabeled_classes)
    return _array_reader(train), _array_reader(train, labeled_ids), _array_reader(test)


def _imagenet_splits(
    name: str, data_dir: str | None, labels_per_class: int, split_seed: int, unlabeled_classes: Sequence[int], image_size: int
) -> Readers:
    """The unlabeled stream is ``imagenet2012`` train, the labeled one the SimCLR subset's train split
    (``imagenet2012`` alone: the whole train split, for methods that read no label), the test split
    ``imagenet2012`` validation; images decoded on the host to ``image_size`` squares."""
    del labels_per_class, split_seed  # The labeled subset is a fixed list.
    if unlabeled_classes:
        raise ValueError(
            f"config.dataset.unlabeled_classes is for in-memory datasets; {name} reads its labeled"
            " subset from a fixed list: leave it empty."
        )
    train = _encoded_reader(data_source("imagenet2012", "train", data_dir, encoded_images=True), 1000, image_size)
    labeled = train
    if name != "imagenet2012":
        labeled = _encoded_reader(data_source(name, "train", data_dir, encoded_images=True), 1000, image_size)
    test = _encoded_reader(data_source("imagenet2012", "validation", data_dir, encoded_images=True), 1000, image_size)
    return train, labeled, test


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset the loop trains on: one registry entry.

    Attributes:
      description: one line for listings and errors.
      num_classes: K.
      open: ``(name, data_dir, labels_per_class, split_seed, unlabeled_classes, image_size) -> (train,
        labeled, test)`` readers.
      augment: its augmentation recipe (`selax.data.augment.DatasetAugment`), which `config.augment` overrides.
    """

    description: str
    num_classes: int
    open: Callable[..., Readers]
    augment: augment.DatasetAugment


DATASETS: dict[str, Dataset] = {
    "digits": Dataset(
        "sklearn 8x8 digits, 10 classes, 1257 train / 540 test (built offline)", 10, _in_memory_splits, augment.DIGITS
    ),
    "digits_longtail": Dataset(
        "digits with a long-tailed train split (imbalance ratio 10)", 10, _in_memory_splits, augment.DIGITS
    ),
    "cifar100": Dataset(
        "CIFAR-100 (official tfds builder; preparing needs TensorFlow)", 100, _in_memory_splits, augment.CIFAR100
    ),
    "imagenet2012": Dataset(
        "ImageNet-1k (official tfds builder; manual ILSVRC tars, TF to prepare)",
        1000,
        _imagenet_splits,
        augment.imagenet(num_local=6),
    ),
    "imagenet2012_subset/1pct": Dataset(
        "SimCLR 1% labeled ImageNet subset (manual tars + 1percent.txt)",
        1000,
        _imagenet_splits,
        augment.imagenet(num_local=6),
    ),
    "imagenet2012_subset/10pct": Dataset(
        "SimCLR 10% labeled ImageNet subset (manual tars + 10percent.txt)",
        1000,
        _imagenet_splits,
        augment.imagenet(num_local=6),
    ),
}


def get(name: str) -> Dataset:
    """The registry entry of dataset ``name``; ValueError listing the known ones otherwise."""
    if name not in DATASETS:
        known = "\n".join(f"  {key}: {entry.description}" for key, entry in DATASETS.items())
        raise ValueError(
            f"Unknown dataset {name!r}. Known datasets:\n{known}\n  {IMAGE_FOLDER}: your images,"
            " root_dir/<class>/*.jpg, read with data_source / load_arrays and an ImageFolder (not yet a"
            " config.dataset.name)"
        )
    return DATASETS[name]


def open_splits(
    name: str,
    data_dir: str | None,
    *,
    labels_per_class: int,
    split_seed: int,
    unlabeled_classes: Sequence[int] = (),
    image_size: int = 256,
) -> Readers:
    """(train, labeled, test) readers for training on dataset ``name`` (its registry entry's ``open``).

    In-memory datasets (digits, digits_longtail, cifar100) take ``labels_per_class`` labeled train
    images per class, chosen by ``split_seed``, none of the classes in ``unlabeled_classes`` (still in
    the unlabeled stream, to be discovered). The ImageNet entries read the SimCLR subset lists and
    decode images on the host to ``image_size``.
    """
    return get(name).open(name, data_dir, labels_per_class, split_seed, tuple(unlabeled_classes), image_size)
