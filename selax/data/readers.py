"""What the training loop reads a split through, and the image decoding behind it.

A split is read by position (`SplitReader`): from arrays held in memory (`array_reader`) or from encoded
records decoded on the host as they are read (`encoded_reader`), and several parts can be read as one
split (`joined_reader`: an image folder's labeled and unlabeled images form one unlabeled stream).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import functools
import io
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np


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


class SplitReader(NamedTuple):
    """A split read by position: ``read(positions int [b]) -> (images uint8 [b, S, S, C], labels int32 [b])``.

    Attributes:
      size: number of examples N.
      num_classes: number of classes.
      image_shape: (S, S, C) of the images ``read`` returns.
      read: the reader; positions are 0..N-1.
      names: a name per example (an image folder's file paths), or None (examples are known by position).
    """

    size: int
    num_classes: int
    image_shape: tuple[int, int, int]
    read: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    names: tuple[str, ...] | None = None


def array_reader(split: ArraySplit) -> SplitReader:
    """An in-memory split, row by row (`subset_reader` reads some of its rows)."""
    return SplitReader(len(split.labels), split.num_classes, split.images.shape[1:], lambda p: (split.images[p], split.labels[p]))


def subset_reader(reader: SplitReader, positions: np.ndarray) -> SplitReader:
    """The examples ``positions`` of ``reader``, in that order."""
    positions = np.asarray(positions)
    names = None if reader.names is None else tuple(reader.names[p] for p in positions)
    return SplitReader(
        len(positions), reader.num_classes, reader.image_shape, lambda p: reader.read(positions[p]), names
    )


def joined_reader(parts: Sequence[SplitReader]) -> SplitReader:
    """One split made of ``parts`` read one after the other (same classes and image shape)."""
    if len({(p.num_classes, tuple(p.image_shape)) for p in parts}) != 1:
        raise ValueError("joined_reader: parts differ in classes or image shape.")
    starts = np.cumsum([0] + [p.size for p in parts])

    def read(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions)
        part_of = np.searchsorted(starts, positions, side="right") - 1
        images = np.empty((len(positions), *parts[0].image_shape), np.uint8)
        labels = np.empty(len(positions), np.int32)
        for index in np.unique(part_of):
            rows = part_of == index
            images[rows], labels[rows] = parts[index].read(positions[rows] - starts[index])
        return images, labels

    names = None
    if all(p.names is not None for p in parts):
        names = tuple(name for p in parts for name in p.names)
    return SplitReader(int(starts[-1]), parts[0].num_classes, parts[0].image_shape, read, names)


_WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def decode_square(image_file: str | bytes, size: int, channels: int = 3) -> np.ndarray:
    """Decodes an image (path or encoded bytes) with PIL, resizes its shorter side to ``size``
    (bicubic; JPEGs are first reduced in the DCT domain where that stays >= size) and centre-crops.
    EXIF orientation is applied; 16-bit and float grey images are scaled from their own min..max to 0..255.

    Returns:
      uint8 [size, size, channels]: RGB for 3 channels, luminance for 1.
    """
    from PIL import Image, ImageOps

    opened = io.BytesIO(image_file) if isinstance(image_file, bytes) else image_file
    mode = {1: "L", 3: "RGB"}[channels]
    with Image.open(opened) as image:
        image.draft(mode, (size, size))
        image = ImageOps.exif_transpose(image)  # Upright, as a viewer shows it (camera JPEGs).
        if image.mode in _WIDE_GREY_MODES:  # 16-bit or float grey (microscopy, medical): its own range.
            values = np.asarray(image, np.float64)
            low, high = values.min(), values.max()
            image = Image.fromarray(np.uint8(np.round(255 * (values - low) / max(high - low, 1e-12))))
        image = image.convert(mode)
        scale = size / min(image.size)
        width = max(size, round(image.width * scale))
        height = max(size, round(image.height * scale))
        image = image.resize((width, height), Image.BICUBIC)
        left, top = (width - size) // 2, (height - size) // 2
        square = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return square.reshape(size, size, channels)


@functools.cache
def decode_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that decode images, one per host core (PIL releases the GIL while decoding)."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="decode")


def gather_encoded(
    source: Any, positions: np.ndarray, image_size: int, channels: int = 3
) -> dict[str, np.ndarray]:
    """Host-side batch of a split stored encoded (ImageNet, large image folders), decoded and made square.

    Args:
      source: a tfds data source whose records hold the encoded ``image`` bytes and a ``label``.
      positions: int [b] positions in the split.
      image_size: S; shorter side resized to S, centre crop (augmented on device afterwards).
      channels: 3 (RGB) or 1 (grey).
    Returns:
      dict with images uint8 [b, S, S, channels], labels int32 [b], ids int32 [b] (the positions).
    """
    records = source.__getitems__([int(p) for p in positions])
    images = decode_pool().map(lambda r: decode_square(r["image"], image_size, channels), records)
    return {
        "images": np.stack(list(images)),
        "labels": np.array([r["label"] for r in records], dtype=np.int32),
        "ids": np.asarray(positions, dtype=np.int32),
    }


def encoded_reader(source: Any, num_classes: int, image_size: int, channels: int = 3) -> SplitReader:
    """A split of encoded records (see `gather_encoded`), decoded as it is read."""

    def read(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = gather_encoded(source, positions, image_size, channels)
        return batch["images"], batch["labels"]

    return SplitReader(len(source), num_classes, (image_size, image_size, channels), read)


@contextlib.contextmanager
def build_lock(data_dir: str) -> Iterator[None]:
    """An exclusive lock on building datasets in ``data_dir``: concurrent processes (e.g. several JAX
    processes on one machine) build once, the others then read what was built."""
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, ".selax_build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def built(make_builder: Callable[[], Any], data_dir: str) -> Any:
    """A tfds builder made and prepared under `build_lock` (made under it, so it sees a finished build)."""
    with build_lock(data_dir):
        builder = make_builder()
        builder.download_and_prepare()
    return builder
