"""The official tfds builders offline, end to end, on stand-in archives: how long each step takes here,
and an estimate of preparing the real archives.

    pip install -e ".[tf]"
    python experiments/official_builders.py [--image_size 400x300] [--subset_list tests/data/imagenet_subsets/1percent.txt]

Writes stand-in ILSVRC2012 tars (every file of SimCLR's 1% list plus one more image per class, 100
validation images) and a stand-in cifar-100-binary.tar.gz (`selax.data.stand_ins`), prepares
imagenet2012, imagenet2012_subset/1pct and cifar100 with `selax.data.datasets.prepare` (the CIFAR
stand-in under its own checksum), then trains `configs/imagenet_1pct.py` and `configs/cifar100.py:400`
from them for four steps with `python -m selax.main` (`stand_ins.QUICK_RUN_FLAGS`). Prints a table and
writes experiments/results/official_builders.json. The full-size figures are extrapolated from this
run's bytes per second and prepared-over-archive size ratio: an estimate, not a measurement.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from selax.data import datasets, stand_ins  # noqa: E402

RESULTS = os.path.join(REPO, "experiments", "results", "official_builders.json")
# The real archives (tfds's registered sizes; ILSVRC2012's published counts): train and validation tars.
FULL_IMAGENET_BYTES = 147_897_477_120 + 6_744_924_160
FULL_IMAGENET_IMAGES = 1_281_167 + 50_000


def _bytes_under(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def _timed(action):
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_size", default="400x300", help="WIDTHxHEIGHT of the stand-in ImageNet JPEGs.")
    parser.add_argument("--subset_list", default=os.path.join(REPO, "tests", "data", "imagenet_subsets", "1percent.txt"))
    parser.add_argument("--root", default=None, help="Where to write (default: a new temporary folder, removed).")
    args = parser.parse_args()
    width, height = (int(v) for v in args.image_size.split("x"))
    root = args.root or tempfile.mkdtemp(prefix="official_builders_")
    manual, data_dir = os.path.join(root, "manual"), os.path.join(root, "tensorflow_datasets")
    rows, load_before = [], os.getloadavg()

    counts, seconds = _timed(lambda: stand_ins.imagenet_archives(manual, [args.subset_list], image_size=(width, height)))
    shutil.copy(args.subset_list, os.path.join(manual, os.path.basename(args.subset_list)))
    stand_ins.cifar100_archive(manual)
    train_tar = os.path.getsize(os.path.join(manual, "ILSVRC2012_img_train.tar"))
    val_tar = os.path.getsize(os.path.join(manual, "ILSVRC2012_img_val.tar"))
    rows.append(dict(step="write stand-in archives", seconds=seconds, detail=f"{counts['train']:,} + {counts['validation']} JPEGs, {(train_tar + val_tar) / 2**20:.1f} MiB"))

    prepared = {}
    for name in ("imagenet2012", "imagenet2012_subset/1pct", "cifar100"):
        if name == "cifar100":
            with stand_ins.checksums_registered(name, manual):
                version_dir, seconds = _timed(lambda: datasets.prepare(name, data_dir, manual))
        else:
            version_dir, seconds = _timed(lambda: datasets.prepare(name, data_dir, manual))
        prepared[name] = dict(seconds=seconds, bytes=_bytes_under(version_dir))
        rows.append(dict(step=f"prepare {name}", seconds=seconds, detail=f"{prepared[name]['bytes'] / 2**20:.1f} MiB written"))

    environment = dict(os.environ, TFDS_DATA_DIR=data_dir)
    runs = {
        "configs/imagenet_1pct.py:devices=1": ["--config.dataset.image_size=32"],
        "configs/cifar100.py:400": ["--config.batch.unlabeled=64", "--config.batch.labeled=32"],
    }
    trained = {}
    for config, overrides in runs.items():
        workdir = os.path.join(root, "runs", config.split("/")[1].split(".")[0])
        command = [sys.executable, "-m", "selax.main", f"--config={config}", f"--workdir={workdir}", *stand_ins.QUICK_RUN_FLAGS, *overrides]
        _, seconds = _timed(lambda: subprocess.run(command, cwd=REPO, env=environment, check=True, capture_output=True))
        with open(os.path.join(workdir, "metrics.json")) as f:
            trained[config] = json.load(f)
        rows.append(dict(step=f"train {config} (4 steps + evaluation)", seconds=seconds, detail=f"test/knn_top1 {trained[config]['test/knn_top1']:.3f}"))

    imagenet = prepared["imagenet2012"]
    bytes_per_second = (train_tar + val_tar) / imagenet["seconds"]
    images_per_second = (counts["train"] + counts["validation"]) / imagenet["seconds"]
    estimate = dict(  # Whichever of bytes and images limits this run's rate, the slower extrapolation.
        hours=max(FULL_IMAGENET_BYTES / bytes_per_second, FULL_IMAGENET_IMAGES / images_per_second) / 3600,
        prepared_gib=FULL_IMAGENET_BYTES * imagenet["bytes"] / (train_tar + val_tar) / 2**30,
        bytes_per_second=bytes_per_second,
        images_per_second=images_per_second,
    )
    print(f"{'step':<58} {'seconds':>8}  detail")
    for row in rows:
        print(f"{row['step']:<58} {row['seconds']:>8.1f}  {row['detail']}")
    print(
        f"Estimate for the real ILSVRC2012 tars ({FULL_IMAGENET_BYTES / 2**30:.0f} GiB), at this run's"
        f" {bytes_per_second / 2**20:.1f} MiB/s and {images_per_second:,.0f} images/s: imagenet2012 about {estimate['hours']:.1f} h and"
        f" {estimate['prepared_gib']:.0f} GiB of array_record files; each subset reads the whole train tar again"
        " (about as long) and writes 1% or 10% of that."
    )
    load_after = os.getloadavg()
    print(f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}, {os.cpu_count()} cores")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(
            dict(
                date=time.strftime("%Y-%m-%d"),
                image_size=[width, height],
                rows=rows,
                prepared=prepared,
                trained=trained,
                full_size_estimate=estimate,
                load_average=[load_before[0], load_after[0]],
                cores=os.cpu_count(),
            ),
            f,
            indent=2,
        )
    if args.root is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
