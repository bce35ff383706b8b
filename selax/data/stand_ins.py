"""Small archives laid out as the official ones, to check a preparation offline before the real thing.

`imagenet_archives` writes ``ILSVRC2012_img_train.tar`` (one inner ``<synset>.tar`` per class of tfds's
label list, its JPEGs named ``<synset>_<n>.JPEG``: every file the given SimCLR subset lists name, plus
``extra_per_class`` more, so that a subset is a strict subset of the train split; the one PNG and one
of the CMYK JPEGs that tfds's builder repairs are among them under their real names) and
``ILSVRC2012_img_val.tar`` (``ILSVRC2012_val_00000001.JPEG`` onwards, which tfds labels from its bundled
validation list in name order, so the first ``num_validation`` labels are the true ones).
`cifar100_archive` writes ``cifar-100-binary.tar.gz`` in the binary layout tfds reads (a coarse and a
fine label byte, then 3,072 bytes of channel-major 32x32 RGB per image).

Every image's colour is a function of its class (``class_colour``), so a prepared split can be checked
pixel by pixel and a model can learn something from it. Needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

IMAGENET_PNG_FILE = "n02105855_2933.JPEG"  # Stored as PNG in the real archive; tfds re-encodes it.
IMAGENET_CMYK_FILE = "n01739381_1309.JPEG"  # One of the CMYK JPEGs tfds converts to RGB.
CIFAR100_ARCHIVE = "cifar-100-binary.tar.gz"
CIFAR_SIZE = 32
# Overrides of `python -m selax.main` that turn a shipped config into a CPU run of seconds on the stand-ins:
# a small CNN from scratch, four steps, no warm-up or queue, one evaluation at the end.
QUICK_RUN_FLAGS = (
    "--config.model.encoder=small_cnn",
    "--config.model.init_checkpoint=",
    "--config.num_steps=4",
    "--config.optimizer.warmup_steps=1",
    "--config.suave.queue_length=0",
    "--config.suave.queue_start_step=0",
    "--config.eval_every_steps=0",
    "--config.log_every_steps=2",
    "--config.checkpoint.every_steps=4",
    "--config.pictures=False",
)


def class_colour(label: int, num_classes: int) -> tuple[int, int, int]:
    """The RGB colour of class ``label``'s stand-in images: distinct for up to 1,000 classes."""
    fraction = (label + 0.5) / num_classes
    return (int(255 * fraction), int(255 * (1 - fraction)), int(128 + 127 * np.cos(2 * np.pi * fraction * 7)))


def _encoded(colour: Sequence[int], size: tuple[int, int], image_format: str, rng: np.random.Generator) -> bytes:
    """An image of ``colour`` with a little noise, ``size`` (width, height), as ``image_format`` bytes."""
    noise = rng.integers(-8, 9, (size[1], size[0], 3))
    pixels = np.clip(np.asarray(colour)[None, None] + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if image_format == "CMYK":
        image, image_format = image.convert("CMYK"), "JPEG"
    encoded = io.BytesIO()
    image.save(encoded, format=image_format, quality=90)
    return encoded.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _tfds_list(relative_path: str) -> list[str]:
    import tensorflow_datasets as tfds

    return tfds.core.tfds_path(relative_path).read_text().split()


def imagenet_archives(
    manual_dir: str | os.PathLike,
    subset_lists: Iterable[str | os.PathLike] = (),
    extra_per_class: int = 1,
    num_validation: int = 100,
    image_size: tuple[int, int] = (20, 16),
    seed: int = 0,
) -> dict[str, int]:
    """Writes the two ILSVRC2012 tars into ``manual_dir``.

    Args:
      subset_lists: SimCLR's ``1percent.txt`` / ``10percent.txt``: every file they name is in the train tar.
      extra_per_class: train images per class beyond those the lists name.
      num_validation: validation images (at most 50,000).
      image_size: (width, height) of every image; not square, so decoding crops.
    Returns:
      counts: ``train`` and ``validation`` images written.
    """
    synsets = _tfds_list("datasets/imagenet2012/labels.txt")
    validation_labels = _tfds_list("datasets/imagenet2012/validation_labels.txt")[:num_validation]
    label_of = {synset: label for label, synset in enumerate(synsets)}
    files: dict[str, set[str]] = {synset: set() for synset in synsets}
    for listing in subset_lists:
        with open(listing) as f:
            for name in f.read().split():
                files[name.split("_")[0]].add(name)
    for synset, names in files.items():
        names.update(f"{synset}_{900_000 + k}.JPEG" for k in range(extra_per_class))
    files[IMAGENET_PNG_FILE.split("_")[0]].add(IMAGENET_PNG_FILE)
    files[IMAGENET_CMYK_FILE.split("_")[0]].add(IMAGENET_CMYK_FILE)
    special_format = {IMAGENET_PNG_FILE: "PNG", IMAGENET_CMYK_FILE: "CMYK"}

    rng = np.random.default_rng(seed)
    os.makedirs(manual_dir, exist_ok=True)
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"), "w") as train:
        for synset in synsets:
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                colour = class_colour(label_of[synset], len(synsets))
                for name in sorted(files[synset]):
                    _add(inner, name, _encoded(colour, image_size, special_format.get(name, "JPEG"), rng))
            _add(train, f"{synset}.tar", inner_bytes.getvalue())
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"), "w") as validation:
        for index, synset in enumerate(validation_labels, start=1):
            colour = class_colour(label_of[synset], len(synsets))
            _add(validation, f"ILSVRC2012_val_{index:08d}.JPEG", _encoded(colour, image_size, "JPEG", rng))
    return {"train": sum(len(names) for names in files.values()), "validation": len(validation_labels)}


def cifar100_fine_to_coarse(fine: np.ndarray) -> np.ndarray:
    """The stand-in's superclass of each fine class (five consecutive classes per superclass)."""
    return np.asarray(fine) // 5


def cifar100_archive(
    manual_dir: str | os.PathLike, train_per_class: int = 5, test_per_class: int = 1, seed: int = 0
) -> str:
    """Writes ``cifar-100-binary.tar.gz`` into ``manual_dir``; returns its path.

    Train images are class-major (class 0's first), as the real file is not; labels can be checked
    against the colours (`class_colour`). The label-name files hold placeholder names.
    """
    rng = np.random.default_rng(seed)
    path = os.path.join(manual_dir, CIFAR100_ARCHIVE)
    os.makedirs(manual_dir, exist_ok=True)

    def records(per_class: int) -> bytes:
        fine = np.repeat(np.arange(100), per_class)
        rows = []
        for label in fine:
            noise = rng.integers(-8, 9, (CIFAR_SIZE, CIFAR_SIZE, 3))
            pixels = np.clip(np.asarray(class_colour(int(label), 100))[None, None] + noise, 0, 255)
            image = pixels.astype(np.uint8).transpose(2, 0, 1)  # Channel-major, as the binary layout stores it.
            rows.append(bytes([int(cifar100_fine_to_coarse(label)), int(label)]) + image.tobytes())
        return b"".join(rows)

    with gzip.open(path, "wb") as compressed, tarfile.open(fileobj=compressed, mode="w") as archive:
        _add(archive, "cifar-100-binary/train.bin", records(train_per_class))
        _add(archive, "cifar-100-binary/test.bin", records(test_per_class))
        _add(archive, "cifar-100-binary/fine_label_names.txt", "\n".join(f"fine_{c:02d}" for c in range(100)).encode())
        _add(archive, "cifar-100-binary/coarse_label_names.txt", "\n".join(f"coarse_{c:02d}" for c in range(20)).encode())
    return path


@contextlib.contextmanager
def checksums_registered(name: str, manual_dir: str | os.PathLike) -> Iterator[None]:
    """Within this context, tfds (and `selax.data.datasets.prepare`) expects the stand-ins in
    ``manual_dir`` in place of the files whose checksums it registers for ``name`` (the CIFAR-100
    archive): for a preparation from stand-ins only, in this process only."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import checksums

    builder_cls = tfds.builder_cls(name.split("/")[0])
    infos = dict(builder_cls.url_infos or {})
    for url, info in infos.items():
        path = os.path.join(manual_dir, info.filename or "")
        if info.filename and os.path.isfile(path):
            infos[url] = checksums.compute_url_info(path)
    assert "url_infos" not in vars(builder_cls), "url_infos is tfds's own property, inherited"
    builder_cls.url_infos = infos
    try:
        yield
    finally:
        del builder_cls.url_infos
