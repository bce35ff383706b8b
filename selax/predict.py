"""Labels new images with a trained run: the columns of `selax.export`, one row per image.

    python -m selax.predict --workdir=W --images=DIR_OR_FILES [--out=PREDICTIONS]

`--images` takes folders (searched recursively) and files, comma-separated; each image is decoded and
made square at the run's image size, as its training images were. Files that are not decodable images
are skipped with a warning. Writes `OUT.csv` and `OUT.npz` (default `W/export/predictions`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from absl import app, flags, logging

from selax.data import readers
from selax.data.folders import list_files
from selax.results import export_split, load_run


def image_reader(paths: Sequence[str], image_size: int, channels: int, num_classes: int) -> readers.SplitReader:
    """The decodable images among `paths` as an in-memory split with no labels, named by path."""
    decoded, kept, skipped = [], [], []
    for path, image in zip(paths, readers.decode_pool().map(lambda p: _decode(p, image_size, channels), paths)):
        if isinstance(image, str):
            skipped.append(f"  {path}: {image}")
        else:
            decoded.append(image)
            kept.append(path)
    if skipped:
        logging.warning("Skipped %d file(s) that are not decodable images:\n%s", len(skipped), "\n".join(skipped[:5]))
    if not kept:
        raise ValueError(f"None of the {len(paths)} file(s) given is a decodable image.")
    split = readers.ArraySplit(
        np.stack(decoded), np.full(len(kept), -1, np.int32), np.arange(len(kept), dtype=np.int32), num_classes
    )
    return readers.array_reader(split)._replace(names=tuple(kept))


def _decode(path: str, image_size: int, channels: int) -> np.ndarray | str:
    try:
        return readers.decode_square(path, image_size, channels)
    except Exception as error:  # pylint: disable=broad-except  (any undecodable file is skipped, named)
        return f"{type(error).__name__}: {error}"


def predict(workdir: str, images: Sequence[str], out: str | None = None) -> str:
    """Writes the predictions of the run in `workdir` for `images` (files and folders); returns the CSV path."""
    paths = []
    for entry in images:
        if os.path.isdir(entry):
            paths.extend(list_files(entry))
        elif os.path.isfile(entry):
            paths.append(entry)
        else:
            raise FileNotFoundError(f"--images: {entry!r} is neither a file nor a folder.")
    experiment, state = load_run(workdir)
    size, _, channels = experiment.train.image_shape
    reader = image_reader(paths, size, channels, experiment.train.num_classes)
    out = out or os.path.join(workdir, "export", "predictions")
    export_split(experiment, state, reader, out)
    return out + ".csv"


_WORKDIR = flags.DEFINE_string("workdir", None, "The workdir of a trained selax run.")
_IMAGES = flags.DEFINE_list("images", None, "Image files and folders, comma-separated.")
_OUT = flags.DEFINE_string("out", None, "Output path without extension (default: WORKDIR/export/predictions).")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print(predict(_WORKDIR.value, _IMAGES.value, _OUT.value))


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir", "images"])
    app.run(main)
