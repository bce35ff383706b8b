"""Prepares the official tfds datasets a run reads, once, before training (needs TensorFlow: `selax[tf]`).

    python -m selax.prepare --config=configs/imagenet_1pct.py --manual_dir=~/ilsvrc2012
    python -m selax.prepare --dataset=cifar100 [--manual_dir=DIR_WITH_cifar-100-binary.tar.gz]

`--config` prepares what that config's dataset reads (`selax.data.datasets.required`: the ImageNet
subsets read `imagenet2012` too), in `config.dataset.data_dir` or `--data_dir` (default
$TFDS_DATA_DIR, else ~/tensorflow_datasets). Prints each dataset's split sizes, time and disk.
Training afterwards needs no TensorFlow and no network.
"""

import os
import time

import tensorflow_datasets as tfds
from absl import app, flags, logging
from ml_collections import config_flags

from selax.data import datasets

_CONFIG = config_flags.DEFINE_config_file("config", None, "A config file (configs/*.py[:arg]) whose dataset to prepare.")
_DATASET = flags.DEFINE_string("dataset", None, "A dataset name instead of --config (e.g. cifar100, imagenet2012).")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Folder with the archives (ILSVRC tars, SimCLR lists, cifar-100-binary.tar.gz)."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data directory (default: the config's, $TFDS_DATA_DIR).")


def _disk_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if (_CONFIG.value is None) == (_DATASET.value is None):
        raise app.UsageError("Give exactly one of --config=configs/X.py and --dataset=NAME.")
    name = _DATASET.value or _CONFIG.value.dataset.name
    data_dir = _DATA_DIR.value or (_CONFIG.value.dataset.data_dir if _CONFIG.value is not None else None)
    manual_dir = os.path.expanduser(_MANUAL_DIR.value) if _MANUAL_DIR.value else None
    needed = datasets.required(name)
    if not needed:
        logging.info("%s is built by selax at first use: nothing to prepare.", name)
    for official in needed:
        start = time.perf_counter()
        version_dir = datasets.prepare(official, data_dir, manual_dir)
        splits = tfds.builder_from_directory(version_dir).info.splits
        sizes = {split: splits[split].num_examples for split in sorted(splits)}
        print(
            f"{official}: {', '.join(f'{split} {count:,}' for split, count in sizes.items())} examples,"
            f" {_disk_bytes(version_dir) / 2**20:,.1f} MiB in {version_dir}, {time.perf_counter() - start:,.1f} s"
        )


if __name__ == "__main__":
    app.run(main)
