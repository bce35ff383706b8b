"""Your own images as a dataset: ``train_dir/<class>/...`` (and optional test and unlabeled folders) in,
readers of fixed-size uint8 squares out.

The files are checked once and stored, encoded as they are, in a selax tfds dataset (array_record, no
TensorFlow) under ``data_dir/selax_image_folder/``; an index beside it keeps each image's path and label.
The build is keyed by the folders' paths and by every file's name, size and modification time, so a
changed folder (files added, removed or modified) is rebuilt on the next run, and the build of its
previous contents is deleted. Files PIL cannot decode (corrupt images, notes, `Thumbs.db`) are skipped
and named in one warning (`strict=True`: an error naming the first); hidden files are ignored.

Images are decoded with PIL, shorter side resized and centre-cropped to ``image_size`` (default: from
the images, `default_image_size`), grey when every image is grey. A split whose decoded images fit in
`IN_MEMORY_BYTES` is decoded once into memory; larger ones are decoded batch by batch as they are read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from selax.data import augment, readers

IN_MEMORY_BYTES = 2 * 2**30  # Decoded images up to this size are held in memory.
INDEX_FILE = "selax_index.json"
LARGE_IMAGE_SIZE = 256  # Larger images are stored at up to this size (crops of 7/8 of it are trained).
# With no accelerator, images are stored at up to this size: the small CNN's, minutes on a laptop where a
# ResNet on larger images would take hours.
CPU_IMAGE_SIZE = 32
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_SKIPPED_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """A user's folders of images.

    Attributes:
      train_dir: one subfolder of images per class (sorted names give labels 0..K-1), searched recursively.
      test_dir: optional, the same class subfolders (a subset of them may be present).
      unlabeled_dir: optional folder of unlabeled images, flat or nested.
    """

    train_dir: str
    test_dir: str | None = None
    unlabeled_dir: str | None = None


class FolderIndex(NamedTuple):
    """A built folder: its tfds builder and what each split holds.

    Attributes:
      builder: the prepared `SelaxImageFolder`.
      classes: class names, label order.
      paths: split -> file path of each stored example, in id order.
      labels: split -> int32 [N] labels (-1 in ``unlabeled``).
      skipped: (path, reason) of every file that was not stored.
      grey: every stored image is grey.
      median_short_side: median shorter side of the ``train`` images, pixels.
    """

    builder: Any
    classes: list[str]
    paths: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    skipped: list[tuple[str, str]]
    grey: bool
    median_short_side: int


# ----------------------------------------------------------------------------------------------
# Listing and checking the folders


def _visible(name: str) -> bool:
    return not name.startswith(".")


def list_files(directory: str) -> list[str]:
    """Every visible file under ``directory``, recursively, sorted."""
    found = []
    for parent, subdirs, names in os.walk(directory, followlinks=True):  # Linked folders count too.
        subdirs[:] = sorted(d for d in subdirs if _visible(d))
        found.extend(os.path.join(parent, n) for n in names if _visible(n))
    return sorted(found)


def _class_names(train_dir: str) -> list[str]:
    return sorted(e.name for e in os.scandir(train_dir) if e.is_dir(follow_symlinks=True) and _visible(e.name))


def _listing(folder: ImageFolder) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """The class names and, per split, (path, label) of each candidate file; errors name the path."""
    if not os.path.isdir(folder.train_dir):
        raise FileNotFoundError(
            f"config.dataset.train_dir={folder.train_dir!r} is not a directory; it should hold one subfolder"
            " of images per class, e.g. train_dir/cat/001.jpg, train_dir/dog/002.png."
        )
    classes = _class_names(folder.train_dir)
    if len(classes) < 2:
        raise ValueError(
            f"config.dataset.train_dir={folder.train_dir!r} has {len(classes)} class subfolder(s) {classes};"
            " it needs one subfolder of images per class, at least 2 classes."
        )
    splits = {"train": _labeled_files(folder.train_dir, classes, classes)}
    if folder.test_dir is not None:
        if not os.path.isdir(folder.test_dir):
            raise FileNotFoundError(f"config.dataset.test_dir={folder.test_dir!r} is not a directory.")
        unknown = sorted(set(_class_names(folder.test_dir)) - set(classes))
        if unknown:
            raise ValueError(
                f"config.dataset.test_dir={folder.test_dir!r} has classes {unknown} that train_dir"
                f" {folder.train_dir!r} lacks; its subfolders must be among {classes}."
            )
        present = [c for c in classes if os.path.isdir(os.path.join(folder.test_dir, c))]
        splits["test"] = _labeled_files(folder.test_dir, present, classes)
    if folder.unlabeled_dir is not None:
        if not os.path.isdir(folder.unlabeled_dir):
            raise FileNotFoundError(f"config.dataset.unlabeled_dir={folder.unlabeled_dir!r} is not a directory.")
        splits["unlabeled"] = [(path, -1) for path in list_files(folder.unlabeled_dir)]
        if not splits["unlabeled"]:
            raise ValueError(f"config.dataset.unlabeled_dir={folder.unlabeled_dir!r} holds no file.")
    return classes, splits


def _labeled_files(directory: str, present: Sequence[str], classes: Sequence[str]) -> list[tuple[str, int]]:
    files = []
    for name in present:
        found = list_files(os.path.join(directory, name))
        if not found:
            raise ValueError(
                f"Class folder {os.path.join(directory, name)!r} is empty: put its images in it or remove it."
            )
        files.extend((path, classes.index(name)) for path in found)
    return files


def _fingerprint(splits: Mapping[str, list[tuple[str, int]]]) -> str:
    """A digest of every candidate file's split, path, label, size and modification time."""
    digest = hashlib.sha1()
    for split, files in sorted(splits.items()):
        for path, label in files:
            stat = os.stat(path)
            digest.update(f"{split}|{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def _inspect(path: str) -> tuple[bytes, bool, int] | str:
    """(the file's bytes, whether it is grey, its shorter side), or why PIL cannot decode it."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # Decodes every pixel: a truncated file fails here.
            return data, image.mode in _GREY_MODES, min(image.size)
    except Image.UnidentifiedImageError:
        return "not an image format PIL reads"
    except Exception as error:  # pylint: disable=broad-except  (any undecodable file is skipped, named)
        return f"{type(error).__name__}: {error}"


# ----------------------------------------------------------------------------------------------
# The tfds builder


@dataclasses.dataclass(eq=False)
class _FolderConfig(tfds.core.BuilderConfig):
    splits: dict[str, list[tuple[str, int]]] = dataclasses.field(default_factory=dict, repr=False)


class SelaxImageFolder(tfds.core.GeneratorBasedBuilder):
    """A user's image folders as their encoded files, labels and paths (builds without TensorFlow)."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"2.0.0": "Encoded files, keyed by the folders' contents."}
    BUILDER_CONFIGS: list = []

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.kept: dict[str, list[tuple[str, int, bool, int]]] = {}
        self.skipped: list[tuple[str, str]] = []

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="A user's image folders, files stored encoded",
            disable_shuffling=True,  # Records in id order: position i of a split is its i-th indexed file.
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                    "label": tfds.features.Scalar(dtype=np.int32),
                    "id": tfds.features.Scalar(dtype=np.int32),
                }
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        return {split: self._generate_examples(split, files) for split, files in self.builder_config.splits.items()}

    def _generate_examples(self, split: str, files: list[tuple[str, int]]) -> Iterator[tuple[int, dict[str, Any]]]:
        kept = self.kept.setdefault(split, [])
        chunk = 4 * (os.cpu_count() or 1)
        for start in range(0, len(files), chunk):
            part = files[start : start + chunk]
            for (path, label), inspected in zip(part, readers.decode_pool().map(_inspect, [p for p, _ in part])):
                if isinstance(inspected, str):
                    self.skipped.append((path, inspected))
                    continue
                data, grey, short_side = inspected
                yield len(kept), {"image": data, "label": np.int32(label), "id": np.int32(len(kept))}
                kept.append((path, label, grey, short_side))


def _index(builder: SelaxImageFolder, classes: list[str]) -> dict[str, Any]:
    """What the build found, for `INDEX_FILE`."""
    kept = [entry for files in builder.kept.values() for entry in files]
    if not builder.kept.get("train"):
        raise ValueError(
            f"No image in train_dir could be decoded ({len(builder.skipped)} files skipped, e.g."
            f" {builder.skipped[:1]})."
        )
    return dict(
        classes=classes,
        paths={split: [e[0] for e in files] for split, files in builder.kept.items()},
        labels={split: [e[1] for e in files] for split, files in builder.kept.items()},
        skipped=builder.skipped,
        grey=all(e[2] for e in kept),
        median_short_side=int(np.median([e[3] for e in builder.kept["train"]])),
    )


def build(folder: ImageFolder, data_dir: str) -> FolderIndex:
    """The folder's tfds dataset, built (once per content, under a lock) if needed, and its index."""
    classes, splits = _listing(folder)
    places = "|".join(os.path.abspath(d) if d else "" for d in (folder.train_dir, folder.test_dir, folder.unlabeled_dir))
    stem = re.sub(r"[^a-z0-9]+", "_", os.path.basename(os.path.normpath(folder.train_dir)).lower()).strip("_")
    prefix = f"{stem or 'images'}_{hashlib.sha1(places.encode()).hexdigest()[:8]}_"
    config = _FolderConfig(name=prefix + _fingerprint(splits), splits=splits)

    def make() -> SelaxImageFolder:
        return SelaxImageFolder(config=config, data_dir=data_dir, file_format="array_record")

    with readers.build_lock(data_dir):
        builder = make()
        index_file = os.path.join(builder.data_dir, INDEX_FILE)
        if not os.path.exists(index_file):  # Not built, or a build interrupted before its index.
            if builder.is_prepared():
                shutil.rmtree(builder.data_dir)
                builder = make()
            logging.info("Building image folder %s (%d files) into %s.", folder.train_dir,
                         sum(map(len, splits.values())), builder.data_dir)
            builder.download_and_prepare()
            with open(index_file + ".tmp", "w") as f:
                json.dump(_index(builder, classes), f)
            os.replace(index_file + ".tmp", index_file)
            _remove_older_builds(os.path.dirname(os.path.dirname(builder.data_dir)), prefix, config.name)
    with open(index_file) as f:
        index = json.load(f)
    return FolderIndex(
        builder=builder,
        classes=index["classes"],
        paths=index["paths"],
        labels={split: np.asarray(v, np.int32) for split, v in index["labels"].items()},
        skipped=[tuple(s) for s in index["skipped"]],
        grey=index["grey"],
        median_short_side=index["median_short_side"],
    )


def _remove_older_builds(builds_dir: str, prefix: str, current: str) -> None:
    for entry in os.scandir(builds_dir):
        if entry.name.startswith(prefix) and entry.name != current:
            shutil.rmtree(entry.path, ignore_errors=True)
            logging.info("Removed the build of the folder's previous contents, %s.", entry.path)


def report_skipped(index: FolderIndex, strict: bool) -> None:
    """Warns once, counting and naming the first few skipped files; with ``strict``, an error instead."""
    if not index.skipped:
        return
    path, reason = index.skipped[0]
    if strict:
        raise ValueError(
            f"{path!r} is not an image PIL can decode ({reason}); {len(index.skipped)} such file(s) in all."
            " Remove them, or set config.dataset.strict_images=False to skip them."
        )
    shown = "\n".join(f"  {p}: {r}" for p, r in index.skipped[:_SKIPPED_SHOWN])
    more = len(index.skipped) - _SKIPPED_SHOWN
    logging.warning(
        "Skipped %d file(s) that are not decodable images:\n%s%s",
        len(index.skipped),
        shown,
        f"\n  ... and {more} more" if more > 0 else "",
    )


# ----------------------------------------------------------------------------------------------
# Reading


def default_image_size(median_short_side: int, accelerator: bool) -> int:
    """The side images are stored at when `config.dataset.image_size` is not set. With an `accelerator`:
    small images (median shorter side <= `augment.SMALL_IMAGE_MAX`) at their own size, larger ones at up
    to `LARGE_IMAGE_SIZE`, a multiple of 8. Without: at their own size up to `CPU_IMAGE_SIZE`."""
    if not accelerator:
        return max(min(median_short_side, CPU_IMAGE_SIZE), 8)
    if median_short_side <= augment.SMALL_IMAGE_MAX:
        return max(median_short_side, 8)
    return min(LARGE_IMAGE_SIZE, median_short_side) // 8 * 8


def split_readers(
    index: FolderIndex, image_size: int, channels: int
) -> dict[str, readers.SplitReader]:
    """A reader of every split of the built folder, in memory when the decoded images fit."""
    sizes = {split: len(paths) for split, paths in index.paths.items()}
    in_memory = sum(sizes.values()) * image_size * image_size * channels <= IN_MEMORY_BYTES
    out = {}
    for split in sizes:
        source = index.builder.as_data_source(split=split)
        reader = readers.encoded_reader(source, len(index.classes), image_size, channels)
        if in_memory:
            positions = np.arange(len(source))
            batches = [reader.read(positions[i : i + 1024]) for i in range(0, len(source), 1024)]
            images, labels = (np.concatenate(parts) for parts in zip(*batches))
            split_array = readers.ArraySplit(images, labels, positions.astype(np.int32), len(index.classes))
            reader = readers.array_reader(split_array)
        out[split] = reader._replace(names=tuple(index.paths[split]))
    return out


def held_out_split(
    labels: np.ndarray, classes: Sequence[str], test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) positions: a stratified ``test_fraction`` of every class held out for testing,
    drawn by ``seed``; each class keeps at least one image and gives at least one."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"config.dataset.test_fraction={test_fraction} must be in (0, 1), or set config.dataset.test_dir.")
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label, name in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < 2:
            raise ValueError(
                f"Class {name!r} has {len(members)} image(s): holding out a test split needs at least 2 per"
                " class. Add images, or give a test folder as config.dataset.test_dir."
            )
        count = min(max(1, round(test_fraction * len(members))), len(members) - 1)
        held.append(members[:count])
        kept.append(members[count:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def channel_statistics(reader: readers.SplitReader, max_images: int = 2000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation in [0, 1] over up to ``max_images`` evenly spaced images."""
    positions = np.unique(np.linspace(0, reader.size - 1, min(reader.size, max_images)).astype(np.int64))
    images = reader.read(positions)[0].astype(np.float64) / 255.0
    mean = images.mean(axis=(0, 1, 2))
    std = np.maximum(images.std(axis=(0, 1, 2)), 1e-3)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)
