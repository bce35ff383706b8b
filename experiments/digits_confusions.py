"""Where Suave's weak seeds lose their points on the digits: test confusions per seed, and a picture.

    python experiments/digits_confusions.py [--study default|scratch|novel] [--seeds 0,1,2,3,4] [--root DIR]

Each seed is `python -m selax.main --config=configs/default.py --workdir=ROOT/STUDY_seedS --config.seed=S`
(`default`: SwAV pre-training, then Suave; `scratch` adds `--config.pretrain=`, Suave alone; `novel` adds
that and `--config.dataset.unlabeled_classes="(8, 9)"`: classes 8 and 9 have no label and take the two
free prototypes, or not); a workdir that already holds `metrics.json` is read, not retrained (and its
command time is not known).
From each run's `export/test.npz` the script prints, per seed, the test top-1 and every true class
whose images went to another prototype than its own (at least `--min_errors` of them; an unlabeled
class's own prototype is the free one it is matched to, Hungarian over its images), writes them to
experiments/results/digits_confusions_STUDY.json, and draws experiments/results/digits_confusions_STUDY.png:
the labeled training images (`dataset.split_seed`, the same for every seed), then for each seed the
test images of its most-confused classes, grouped by the prototype they went to.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from selax.data import datasets, splits  # noqa: E402

STUDY_FLAGS = {
    "default": [],
    "scratch": ["--config.pretrain="],
    "novel": ["--config.pretrain=", "--config.dataset.unlabeled_classes=(8, 9)"],
}
SHOWN_PER_GROUP = 6
WORST_SHOWN = 3  # classes per seed in the picture


def run(study: str, seed: int, workdir: str) -> dict[str, float]:
    """Trains the seed's run unless its workdir has finished; the command's seconds and the 1-minute load
    average at its start when it ran."""
    if os.path.exists(os.path.join(workdir, "metrics.json")):
        return {}
    command = [sys.executable, "-m", "selax.main", "--config=configs/default.py", f"--workdir={workdir}",
               f"--config.seed={seed}", *STUDY_FLAGS[study]]
    load, start = os.getloadavg()[0], time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"command_seconds": time.perf_counter() - start, "load_average_at_start": load}


def own_prototypes(predicted: np.ndarray, labels: np.ndarray, unlabeled_classes: tuple[int, ...],
                   num_prototypes: int) -> np.ndarray:
    """`[C]`: each class's own prototype: a labeled class's is its index; the unlabeled classes share the
    prototypes no labeled class owns, matched (Hungarian) so that most of their images are on their own."""
    num_classes = int(labels.max()) + 1
    own = np.arange(num_classes)
    if unlabeled_classes:
        free = np.setdiff1d(np.arange(num_prototypes), np.setdiff1d(own, unlabeled_classes))
        table = np.array([[np.sum((labels == c) & (predicted == p)) for p in free]
                          for c in unlabeled_classes])
        rows, columns = scipy.optimize.linear_sum_assignment(table, maximize=True)
        own[np.asarray(unlabeled_classes)[rows]] = free[columns]
    return own


def confusions(workdir: str, min_errors: int, unlabeled_classes: tuple[int, ...]) -> dict:
    """`{top1, classes: {true class: {prototype: count}}, own [C], predicted [N], labels [N], names [N]}`
    (the export's names of digits images are their positions in the test split; `own_prototypes`)."""
    test = np.load(os.path.join(workdir, "export", "test.npz"))
    predicted, labels = np.argmax(test["head_scores"], -1), test["labels"]
    own = own_prototypes(predicted, labels, unlabeled_classes, test["head_scores"].shape[-1])
    classes = {}
    for c in np.unique(labels):
        counts = np.bincount(predicted[labels == c], minlength=test["head_scores"].shape[-1])
        errors = {int(p): int(n) for p, n in enumerate(counts) if p != own[c] and n >= min_errors}
        if errors:
            classes[int(c)] = {"correct": int(counts[own[c]]), "of": int(counts.sum()), "went_to": errors,
                               "own_prototype": int(own[c])}
    return dict(top1=float(np.mean(predicted == own[labels])), classes=classes, own=own,
                predicted=predicted, labels=labels, names=test["names"])


def draw(study: str, per_seed: dict[int, dict], dataset: dict, path: str) -> None:
    """The picture; `dataset` is the runs' `config.dataset` (from WORKDIR/config.json)."""
    train, test = datasets.load_arrays("digits", "train"), datasets.load_arrays("digits", "test")
    labeled = splits.labeled_subset(
        train.labels, dataset["labels_per_class"], dataset["split_seed"], dataset["unlabeled_classes"] or ()
    )
    labeled = labeled[np.argsort(train.labels[labeled], kind="stable")]
    rows = [("labeled (all seeds)", [(train.images[p], f"{train.labels[p]}") for p in labeled])]
    for seed, found in per_seed.items():
        worst = sorted(found["classes"], key=lambda c: found["classes"][c]["correct"])[:WORST_SHOWN]
        for c in worst:
            cells = []
            for prototype in [found["own"][c], *found["classes"][c]["went_to"]]:
                chosen = np.flatnonzero((found["labels"] == c) & (found["predicted"] == prototype))
                cells += [(test.images[int(found["names"][i])], f"{c}->{prototype}") for i in chosen[:SHOWN_PER_GROUP]]
            rows.append((f"seed {seed}, class {c}", cells))
    width = max(len(cells) for _, cells in rows)
    figure, axes = plt.subplots(len(rows), width, figsize=(0.62 * width + 1.6, 0.8 * len(rows)), squeeze=False)
    for r, (title, cells) in enumerate(rows):
        for k in range(width):
            axis = axes[r, k]
            axis.set_xticks([]), axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(k < len(cells))
            if k < len(cells):
                image, caption = cells[k]
                axis.imshow(image[..., 0], cmap="gray_r")
                axis.set_title(caption, fontsize=7, pad=2)
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
    unlabeled = dataset["unlabeled_classes"]
    matched = ""
    if unlabeled:
        matched = (f"\nclasses {tuple(unlabeled)} have no label: each one's own prototype is the free one"
                   " most of it took")
    figure.suptitle(f"Suave, configs/default.py ({study}): test images of each seed's worst classes, "
                    f"captioned true -> predicted prototype{matched}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDY_FLAGS), default="default")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--root", default="/tmp/selax_digits_confusions")
    parser.add_argument("--min_errors", type=int, default=4)
    args = parser.parse_args()
    per_seed = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        workdir = os.path.join(args.root, f"{args.study}_seed{seed}")
        timing = run(args.study, seed, workdir)
        with open(os.path.join(workdir, "config.json")) as f:
            dataset = json.load(f)["dataset"]
        unlabeled_classes = tuple(dataset["unlabeled_classes"] or ())
        per_seed[seed] = found = {**confusions(workdir, args.min_errors, unlabeled_classes), **timing}
        lost = ", ".join(f"{c}: {v['correct']}/{v['of']} right, to {v['went_to']}" for c, v in found["classes"].items())
        took = f" ({timing['command_seconds']:.0f} s, load {timing['load_average_at_start']:.1f})" if timing else ""
        matched = ""
        if unlabeled_classes:
            free = found["own"][list(unlabeled_classes)]
            matched = f", classes {unlabeled_classes} on free prototypes {free}"
        print(f"seed {seed}: prototype top-1 {100 * found['top1']:.1f}{took}{matched}; {lost}")
    top1 = [100 * found["top1"] for found in per_seed.values()]
    print(f"mean {np.mean(top1):.1f} +/- {np.std(top1, ddof=1) if len(top1) > 1 else 0:.1f} (sample std), worst {min(top1):.1f}")
    results = os.path.join(REPO, "experiments", "results")
    with open(os.path.join(results, f"digits_confusions_{args.study}.json"), "w") as f:
        kept = ("top1", "classes", "command_seconds", "load_average_at_start")
        json.dump({str(s): {k: v for k, v in found.items() if k in kept} for s, found in per_seed.items()},
                  f, indent=1)
    draw(args.study, per_seed, dataset, os.path.join(results, f"digits_confusions_{args.study}.png"))


if __name__ == "__main__":
    main()
