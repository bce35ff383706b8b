"""Daino's teacher momentum on the digits: test top-1 against the momentum, per seed, and a picture.

    python experiments/daino_momentum.py [--momenta 0.5,0.6,0.7,0.8,0.9] [--seeds 0,1,2,3,4]
        [--variants default,no_rampup] [--root DIR]

Each point is `python -m selax.main --config=configs/daino_default.py --workdir=ROOT/VARIANT_mM_sS
--config.seed=S --config.daino.teacher_momentum=M --export=` plus the variant's flags (`default`: none;
`no_rampup`: the unlabeled term at full weight from the first step); a workdir that already holds
`metrics.json` is read, not retrained. Prints one row per variant and momentum (every seed's teacher
top-1, mean +- sample std), merges them into experiments/results/daino_momentum.json (a row run again
replaces its earlier value; each row keeps its UTC date: before 2026-12-07, the labeled draws before
they were nested) and draws every row of it in experiments/results/daino_momentum.png.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "experiments", "results")
VARIANT_FLAGS = {"default": [], "no_rampup": ["--config.daino.unlabeled_rampup_steps=0"]}


def top1(variant: str, momentum: float, seed: int, root: str) -> float:
    """The run's final teacher (prototype) test top-1, training it first unless its workdir has finished."""
    workdir = os.path.join(root, f"{variant}_m{momentum}_s{seed}")
    metrics = os.path.join(workdir, "metrics.json")
    if not os.path.exists(metrics):
        command = [sys.executable, "-m", "selax.main", "--config=configs/daino_default.py", f"--workdir={workdir}",
                   f"--config.seed={seed}", f"--config.daino.teacher_momentum={momentum}", "--export=",
                   *VARIANT_FLAGS[variant]]
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(metrics) as f:
        return float(json.load(f)["test/prototype_top1"])


def draw(rows: list[dict], path: str) -> None:
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for k, variant in enumerate(dict.fromkeys(r["variant"] for r in rows)):
        mine = [r for r in rows if r["variant"] == variant]
        momenta = np.array([r["momentum"] for r in mine])
        means = np.array([r["mean"] for r in mine])
        stds = np.array([r["std"] for r in mine])
        color = f"C{k}"
        dates = sorted({r.get("date", "before 2026-12-07") for r in mine})
        label = f"{variant} ({', '.join(dates)}): mean over {len(mine[0]['top1'])} seeds"
        axis.plot(momenta, means, "-o", color=color, label=label)
        axis.fill_between(momenta, means - stds, means + stds, color=color, alpha=0.15)
        for r in mine:
            axis.scatter([r["momentum"]] * len(r["top1"]), r["top1"], s=10, color=color, alpha=0.5)
    axis.set_xlabel("teacher momentum at step 0 (rises to 1 by a cosine)")
    axis.set_ylabel("teacher test top-1 (%)")
    axis.set_title("Daino, configs/daino_default.py (digits, 20 labels): dots are seeds", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--momenta", default="0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--variants", default="default,no_rampup")
    parser.add_argument("--root", default="/tmp/selax_daino_momentum")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for variant in args.variants.split(","):
        for momentum in (float(m) for m in args.momenta.split(",")):
            values = [100 * top1(variant, momentum, seed, args.root) for seed in seeds]
            rows.append(dict(variant=variant, momentum=momentum, seeds=seeds, top1=values,
                             mean=float(np.mean(values)), std=float(np.std(values, ddof=1)),
                             date=time.strftime("%Y-%m-%d", time.gmtime())))
            r = rows[-1]
            print(f"{variant:10s} m={momentum:<5} " + " / ".join(f"{v:.1f}" for v in values)
                  + f"   {r['mean']:.1f} +- {r['std']:.1f}", flush=True)
    path = os.path.join(RESULTS, "daino_momentum.json")
    merged = {}
    if os.path.exists(path):
        with open(path) as f:
            merged = {(r["variant"], r["momentum"]): r for r in json.load(f)}
    merged.update({(r["variant"], r["momentum"]): r for r in rows})
    rows = sorted(merged.values(), key=lambda r: (r["variant"] != "default", r["variant"], r["momentum"]))
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
    draw(rows, os.path.join(RESULTS, "daino_momentum.png"))


if __name__ == "__main__":
    main()
