"""A second development set that is not the digits: letters rendered from matplotlib's fonts, run through
`configs/folder.py` as a new user's image folder would be.

    python experiments/glyphs.py --root /tmp/glyphs [--rows supervised,suave_scratch,suave,daino,sela] [--seeds 0,1,2]
    python experiments/glyphs.py --root /tmp/glyphs --build_only        # just the folder

The folder (`ROOT/data/{train,test}/<letter>/*.png`): the capital letters A-Z (26 classes, so the label
count is not the digits' 10), each image one letter in one of the TrueType fonts that ship with
matplotlib (DejaVu, STIX and Computer Modern faces, upright, bold and slanted), under a random affine
map (rotation, shear, anisotropic scale, shift), an elastic distortion, blur and pixel noise, grey,
`--size` px (28). Train and test draw from the same fonts and distortions with different seeds.

Each row then runs as `python -m selax.main --config=configs/folder.py:METHOD
--config.dataset.train_dir=ROOT/data/train --config.dataset.test_dir=ROOT/data/test` (`suave`: SwAV
pre-training on the folder, then Suave, the config's default; `suave_scratch`: Suave alone,
`--config.pretrain=`; `supervised`: Suave's network on the labeled images alone,
`--config.suave.supervised_only=True --config.pretrain=`), per seed, one run
at a time (skipped where its `metrics.json` exists). Beside them, the classical baselines on the
same test images: k-means on raw pixels (NMI, the number SeLa must beat) and label spreading on raw
pixels (sklearn's kNN graph, 7 neighbours) from 2 labels per class, drawn by
`selax.data.splits.labeled_subset` (split seed 0) over the train images in sorted path order. Prints a
table of the rows run; writes experiments/results/glyphs.json (merged: the rows run replace their
earlier values, the others stay) and a sheet of sample images, experiments/results/glyphs_samples.png.
"""

import argparse
import json
import os
import string
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # The repository.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "experiments", "results")
CLASSES = tuple(string.ascii_uppercase)
CANVAS = 96  # Letters are drawn at this side, distorted, then reduced to --size.
BASELINE_SEEDS = (0, 1, 2)  # k-means restarts' seeds.
CLASSIFIER_METRICS = ("test/prototype_top1", "test/linear_top1", "test/knn_top1")
# Each row: the method of `configs/folder.py`, its flags, and the metrics read from its metrics.json.
ROWS = {
    "suave": ("suave", [], CLASSIFIER_METRICS),  # SwAV pre-training, then Suave (folder.py:suave's default).
    "suave_scratch": ("suave", ["--config.pretrain="], CLASSIFIER_METRICS),
    "daino": ("daino", [], CLASSIFIER_METRICS),
    "sela": ("sela", [], ("test/nmi", "test/cluster_accuracy", "test/knn_top1")),
    # The labels alone.
    "supervised": ("suave", ["--config.suave.supervised_only=True", "--config.pretrain="], CLASSIFIER_METRICS),
}


def font_paths() -> list[str]:
    """The text faces that ship with matplotlib (its symbol-only fonts left out)."""
    import matplotlib

    folder = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")
    text_faces = ("DejaVuSans", "DejaVuSerif", "STIXGeneral", "cmr10", "cmss10", "cmtt10", "cmti10", "cmb10")
    return sorted(
        os.path.join(folder, name)
        for name in os.listdir(folder)
        if name.endswith(".ttf") and name.startswith(text_faces) and "Display" not in name
    )


def elastic(image: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """Simard-style elastic distortion of a float `[H, W]` image: a smoothed random displacement field
    of `alpha` pixels, bilinear resampling."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    side = image.shape[0]
    dy = gaussian_filter(rng.uniform(-1, 1, image.shape), sigma) * alpha
    dx = gaussian_filter(rng.uniform(-1, 1, image.shape), sigma) * alpha
    y, x = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return map_coordinates(image, [y + dy, x + dx], order=1, mode="constant")


def render(letter: str, font_path: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One distorted letter, uint8 `[size, size]`, white on black."""
    font = ImageFont.truetype(font_path, int(CANVAS * rng.uniform(0.5, 0.7)))
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
    draw.text(((CANVAS - left - right) / 2, (CANVAS - top - bottom) / 2), letter, fill=255, font=font)
    # Random affine about the centre: rotation, shear, anisotropic scale, shift (PIL maps output to input).
    angle, shear = np.deg2rad(rng.uniform(-15, 15)), rng.uniform(-0.25, 0.25)
    scale_x, scale_y = rng.uniform(0.8, 1.15, size=2)
    forward = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = forward @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([scale_x, scale_y])
    inverse = np.linalg.inv(forward)
    centre = np.array([CANVAS / 2, CANVAS / 2])
    shift = rng.uniform(-0.08, 0.08, size=2) * CANVAS
    offset = centre - inverse @ (centre + shift)
    coefficients = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    pixels = elastic(np.asarray(canvas, np.float64), rng, alpha=CANVAS * 0.06, sigma=CANVAS * 0.06)
    small = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(rng.uniform(0.0, 1.5))
    )
    small = np.asarray(small.resize((size, size), Image.Resampling.LANCZOS), np.float64)
    noisy = small + rng.normal(0, rng.uniform(5, 25), small.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def build(root: str, size: int, train_per_class: int, test_per_class: int, seed: int) -> tuple[str, dict]:
    """Writes `root/data/{train,test}/<letter>/<i>.png` unless it is complete; returns `root/data` and
    what it was built with (read from its marker file when it already existed)."""
    data = os.path.join(root, "data")
    marker = os.path.join(data, "COMPLETE")
    if os.path.exists(marker):
        with open(marker) as f:
            return data, json.load(f)
    fonts = font_paths()
    for split, count, split_seed in (("train", train_per_class, seed), ("test", test_per_class, seed + 1)):
        rng = np.random.default_rng(split_seed)
        for letter in CLASSES:
            folder = os.path.join(data, split, letter)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                image = render(letter, fonts[rng.integers(len(fonts))], size, rng)
                Image.fromarray(image).save(os.path.join(folder, f"{i:04d}.png"))
    built = dict(size=size, train_per_class=train_per_class, test_per_class=test_per_class)
    with open(marker, "w") as f:
        json.dump(built, f)
    return data, built


def load_folder(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """`(pixels float [N, size * size] in [0, 1], labels [N])` of one split, classes in sorted order."""
    images, labels = [], []
    for label, letter in enumerate(sorted(os.listdir(folder))):
        for name in sorted(os.listdir(os.path.join(folder, letter))):
            images.append(np.asarray(Image.open(os.path.join(folder, letter, name)), np.float64) / 255.0)
            labels.append(label)
    return np.stack(images).reshape(len(images), -1), np.asarray(labels)


def sample_sheet(data: str, path: str, per_class: int = 8) -> None:
    """A grid of the first train images of every class: one row per letter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    letters = sorted(os.listdir(os.path.join(data, "train")))
    fig, axes = plt.subplots(per_class, len(letters), figsize=(len(letters) * 0.5, per_class * 0.55))
    for column, letter in enumerate(letters):
        names = sorted(os.listdir(os.path.join(data, "train", letter)))[:per_class]
        for row, name in enumerate(names):
            axes[row, column].imshow(Image.open(os.path.join(data, "train", letter, name)), cmap="gray")
            axes[row, column].axis("off")
        axes[0, column].set_title(letter, fontsize=8)
    fig.suptitle("glyphs: train samples (one column per class)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def baselines(data: str, labels_per_class: int, split_seed: int) -> dict[str, float]:
    """k-means on raw test pixels (NMI, cluster accuracy; mean over `BASELINE_SEEDS`) and label spreading
    from `labels_per_class` labeled train images per class (test top-1)."""
    from sklearn.cluster import KMeans
    from sklearn.semi_supervised import LabelSpreading

    from selax import evaluate
    from selax.data import splits

    train_pixels, train_labels = load_folder(os.path.join(data, "train"))
    test_pixels, test_labels = load_folder(os.path.join(data, "test"))
    reports = [
        evaluate.clustering_report(
            KMeans(n_clusters=len(CLASSES), n_init=10, random_state=s).fit_predict(test_pixels), test_labels
        )
        for s in BASELINE_SEEDS
    ]
    labeled = splits.labeled_subset(train_labels, labels_per_class, split_seed)
    targets = np.full(len(train_labels), -1)
    targets[labeled] = train_labels[labeled]
    spreading = LabelSpreading(kernel="knn", n_neighbors=7, alpha=0.2, max_iter=1000).fit(train_pixels, targets)
    return {
        "kmeans_raw_pixels/test_nmi": float(np.mean([r["nmi"] for r in reports])),
        "kmeans_raw_pixels/test_cluster_accuracy": float(np.mean([r["cluster_accuracy"] for r in reports])),
        "label_spreading/test_top1": float(np.mean(spreading.predict(test_pixels) == test_labels)),
    }


def run(row: str, data: str, workdir: str, seed: int, extra: list[str]) -> dict:
    """One `selax.main` run of a row of `ROWS` (skipped when its metrics.json exists)."""
    method, flags, _ = ROWS[row]
    metrics_path = os.path.join(workdir, "metrics.json")
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            return json.load(f)
    command = [
        sys.executable, "-m", "selax.main", f"--config=configs/folder.py:{method}", f"--workdir={workdir}",
        f"--config.dataset.train_dir={data}/train", f"--config.dataset.test_dir={data}/test",
        f"--config.seed={seed}", "--export=", *flags, *extra,
    ]  # fmt: skip
    start, load_at_start = time.perf_counter(), os.getloadavg()
    subprocess.run(command, check=True, cwd=REPO)
    with open(metrics_path) as f:
        metrics = json.load(f)
    metrics.update(command_seconds=time.perf_counter() - start, load_average_at_start=load_at_start)
    with open(metrics_path, "w") as f:
        json.dump(metrics, f)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the folder and the runs' workdirs go here")
    parser.add_argument("--rows", default="supervised,suave_scratch,suave,daino,sela", help=f"some of {sorted(ROWS)}")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--train_per_class", type=int, default=60)
    parser.add_argument("--test_per_class", type=int, default=20)
    parser.add_argument("--build_only", action="store_true")
    parser.add_argument("extra", nargs="*", help="more flags for every run, e.g. --config.num_epochs=10")
    args = parser.parse_args()
    data, built = build(args.root, args.size, args.train_per_class, args.test_per_class, seed=0)
    os.makedirs(RESULTS, exist_ok=True)
    sample_sheet(data, os.path.join(RESULTS, "glyphs_samples.png"))
    if args.build_only:
        print(data)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    results_path = os.path.join(RESULTS, "glyphs.json")
    results = {"runs": {}}
    if os.path.exists(results_path):  # Rows run now replace their earlier values; the others stay.
        with open(results_path) as f:
            results.update(json.load(f))
    results.update(date=time.strftime("%Y-%m-%d"), data=built)
    results["baselines"] = baselines(data, labels_per_class=2, split_seed=0)
    rows = args.rows.split(",")
    for row in rows:
        results["runs"][row] = {
            str(seed): run(row, data, os.path.join(args.root, row, f"seed{seed}"), seed, args.extra) for seed in seeds
        }

    print(f"glyphs, {len(CLASSES)} classes, {args.size} px, 2 labels per class; mean +- std over seeds {seeds}")
    print(f"{'row':<13} {'metric':<26} {'mean':>7} {'std':>6}  per seed")
    for row in rows:
        runs = results["runs"][row]
        for metric in ROWS[row][2]:
            values = np.array([runs[str(s)][metric] for s in seeds])
            per_seed = " ".join(f"{v:.3f}" for v in values)
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            print(f"{row:<13} {metric:<26} {values.mean():7.3f} {std:6.3f}  {per_seed}")
        seconds = [runs[str(s)].get("command_seconds", float("nan")) for s in seeds]
        print(f"{row:<13} {'command seconds':<26} {np.nanmean(seconds):7.0f}")
    for name, value in results["baselines"].items():
        print(f"{'baseline':<13} {name:<26} {value:7.3f}")
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
