"""tfds's official builders, offline, end to end: stand-in ILSVRC2012 and CIFAR-100 archives
(`selax.data.stand_ins`) prepared by `python -m selax.prepare` for imagenet2012, imagenet2012_subset/1pct
and cifar100, read back by `selax.data.datasets`, then trained from by `python -m selax.main` with
`configs/imagenet_1pct.py` and `configs/cifar100.py:400` (a small CNN and a few steps by overrides).

Preparing needs TensorFlow (`pip install -e ".[tf]"`): without it the module is skipped. CI runs it as
its own step with TensorFlow installed (`.ci/run`). `tests/data/imagenet_subsets/1percent.txt` is
SimCLR's list, unmodified (tfds checks its sha256).
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="preparing the official builders needs TensorFlow: pip install -e '.[tf]'")

from conftest import SUBSET_LIST_1PCT  # noqa: E402
from selax.data import datasets, readers, stand_ins  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_VALIDATION = 100
CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS = 5, 1


# Every HTTP(S) request of the commands goes to a closed local port and fails at once: nothing may need the network.
NO_NETWORK = dict(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="", no_proxy="")


def _run(command: list[str], data_dir: str) -> str:
    """Runs a selax command with `data_dir` as the tfds directory and no network; its output, or the test
    fails showing it."""
    environment = dict(os.environ, TFDS_DATA_DIR=data_dir, **NO_NETWORK)
    done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done.stdout


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict:
    """Stand-in archives in a manual dir, prepared into a tfds data dir by `python -m selax.prepare`
    (ImageNet through the config, CIFAR-100 under the stand-in's own checksum)."""
    root = tmp_path_factory.mktemp("official")
    manual, data_dir = str(root / "manual"), str(root / "tensorflow_datasets")
    counts = stand_ins.imagenet_archives(manual, [SUBSET_LIST_1PCT], num_validation=NUM_VALIDATION)
    shutil.copy(SUBSET_LIST_1PCT, os.path.join(manual, "1percent.txt"))
    stand_ins.cifar100_archive(manual, CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS)
    printed = _run(
        [sys.executable, "-m", "selax.prepare", "--config=configs/imagenet_1pct.py", f"--manual_dir={manual}"],
        data_dir,
    )
    cifar = (
        "from selax.data import datasets, stand_ins\n"
        f"with stand_ins.checksums_registered('cifar100', {manual!r}):\n"
        f"    datasets.prepare('cifar100', {data_dir!r}, {manual!r})\n"
    )
    _run([sys.executable, "-c", cifar], data_dir)
    return dict(manual=manual, data_dir=data_dir, counts=counts, printed=printed, root=root)


def _records(name: str, split: str, data_dir: str) -> list[dict]:
    source = datasets.data_source(name, split, data_dir, encoded_images=True)
    return source.__getitems__(range(len(source)))


def _name(record: dict) -> str:
    value = record["file_name"]
    return value.decode() if isinstance(value, bytes) else value


def test_imagenet_splits_labels_and_subset(prepared):
    import tensorflow_datasets as tfds

    data_dir = prepared["data_dir"]
    assert f"imagenet2012: train {prepared['counts']['train']:,}, validation {NUM_VALIDATION}" in prepared["printed"]
    assert "imagenet2012_subset/1pct: train 12,811" in prepared["printed"]
    synsets = tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()
    validation_synsets = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt").read_text().split()

    train = _records("imagenet2012", "train", data_dir)
    subset = _records("imagenet2012_subset/1pct", "train", data_dir)
    with open(SUBSET_LIST_1PCT) as f:
        listed = set(f.read().split())
    train_names, subset_names = {_name(r) for r in train}, {_name(r) for r in subset}
    assert len(train) == prepared["counts"]["train"] and subset_names == listed
    assert subset_names < train_names  # The labeled stream is a strict subset of the unlabeled one.
    for record in train[:500] + subset:  # Labels are the synset's index in tfds's (and selax's) class list.
        assert record["label"] == synsets.index(_name(record).split("_")[0])

    validation = _records("imagenet2012", "validation", data_dir)
    assert len(validation) == NUM_VALIDATION
    for record in validation:
        number = int(_name(record)[len("ILSVRC2012_val_") : -len(".JPEG")])
        assert record["label"] == synsets.index(validation_synsets[number - 1])

    by_name = {_name(r): r for r in train}  # tfds re-encodes the PNG and the CMYK JPEG; colours survive.
    for repaired in (stand_ins.IMAGENET_PNG_FILE, stand_ins.IMAGENET_CMYK_FILE):
        record = by_name[repaired]
        pixels = readers.decode_square(record["image"], 8).reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(pixels, stand_ins.class_colour(record["label"], 1000), atol=24)


def test_cifar100_prepared_from_the_stand_in(prepared):
    train = datasets.load_arrays("cifar100", "train", prepared["data_dir"])
    test = datasets.load_arrays("cifar100", "test", prepared["data_dir"])
    assert train.images.shape == (100 * CIFAR_TRAIN_PER_CLASS, 32, 32, 3) and len(test.labels) == 100
    np.testing.assert_array_equal(train.labels, np.repeat(np.arange(100), CIFAR_TRAIN_PER_CLASS))
    colours = np.array([stand_ins.class_colour(int(c), 100) for c in train.labels])
    np.testing.assert_allclose(train.images.reshape(len(train.labels), -1, 3).mean(axis=1), colours, atol=3)


@pytest.mark.parametrize(
    "config, overrides, test_images",
    [
        ("configs/imagenet_1pct.py:devices=1", ["--config.dataset.image_size=32"], NUM_VALIDATION),
        ("configs/cifar100.py:400", ["--config.batch.unlabeled=64", "--config.batch.labeled=32"], 100),
    ],
)
def test_train_from_the_prepared_dataset(prepared, tmp_path, config, overrides, test_images):
    workdir = tmp_path / "run"
    _run(
        [sys.executable, "-m", "selax.main", f"--config={config}", f"--workdir={workdir}", *stand_ins.QUICK_RUN_FLAGS, *overrides],
        prepared["data_dir"],
    )
    with open(workdir / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["train/steps"] == 4
    # kNN against the labeled images: the stand-ins' colours follow their class, so it is far above chance
    # (1 in 100 or 1000) only if the labeled subset and the evaluated split agree on the labels.
    assert metrics["test/knn_top1"] > 0.5, metrics
    with open(workdir / "export" / "test.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == test_images  # Evaluation read the validation (test) split, every image of it.
