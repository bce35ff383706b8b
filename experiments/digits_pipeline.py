"""The self-supervised -> semi-supervised pipeline on the digits: SwAV then Suave, DINO then Daino.

    python experiments/digits_pipeline.py [--seeds 0,1,2] [--labels 1,2,4] [--pairs suave,daino]
        [--starts scratch,pretrained]

For each seed, pre-trains `configs/swav_default.py` (and `configs/dino_default.py`) without labels, then
trains `configs/default.py` (Suave) and `configs/daino_default.py` (Daino) with 1, 2 and 4 labels per
class, from scratch and from the pre-training workdir (`--config.model.init_checkpoint=W`: encoder and
projector loaded, the head of another shape fresh). Every run is `selax.train.run` in a fresh workdir,
the same as `python -m selax.main --config=configs/X.py --workdir=W --config.seed=S
--config.dataset.labels_per_class=L [--config.model.init_checkpoint=W_PRE]`. `--starts pretrained` runs
only the second column, `--starts scratch` only the first (and no pre-training).

Prints one line per row (mean and standard deviation over the seeds): the semi-supervised runs'
`test/prototype_top1` (Suave: prototypes; Daino: the teacher head), and the pre-training runs' kNN and
linear-probe top-1 on frozen features with every train label. Writes
experiments/results/digits_pipeline.json with every run's metrics and wall time, merged into what the
file already holds (a row run again replaces its earlier value; every other row stays), after every
run. Each pair keeps the load average at its own start (`load_average_at_start[pair]`), each run the
1-minute load average at its start, and its UTC date (a run before 2026-12-07 used the labeled draws
before they were nested).
"""

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from selax import train  # noqa: E402

RESULTS = os.path.join(REPO, "experiments", "results", "digits_pipeline.json")
# (semi-supervised config, its pre-training config) per method pair.
PAIRS = {"suave": ("default", "swav_default"), "daino": ("daino_default", "dino_default")}
PRETRAINING_METRICS = ("test/knn_top1", "test/linear_probe_top1", "test/nmi")


def load_config(name: str):
    """`configs/<name>.py`'s config with no pre-training stage of its own: the script runs that stage once
    per seed and names its workdir (what `configs/default.py`'s `pretrain` does in one command)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.pretrain = ""
    return config


def timed_run(config, workdir: str) -> dict[str, float | str]:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    final = train.run(config, workdir)
    date = time.strftime("%Y-%m-%d", time.gmtime())  # Labeled draws are nested from 2026-12-07 on.
    return dict(final, command_seconds=time.perf_counter() - start, load_average_at_start=load, date=date)


def load_results() -> dict:
    """What the results file holds, in the per-pair form (an older file's single load average is Suave's,
    the only pair it held)."""
    results = {"load_average_at_start": {}, "runs": {}}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            results = json.load(f)
        load = results.get("load_average_at_start", {})
        results["load_average_at_start"] = load if isinstance(load, dict) else {"suave": load}
        results.setdefault("runs", {})
    return results


def save(results: dict) -> None:
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=1)


def summary(values: list[float]) -> str:
    return f"{100 * np.mean(values):5.1f} +/- {100 * np.std(values):4.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--labels", default="1,2,4", help="labels per class")
    parser.add_argument("--pairs", default="suave,daino")
    parser.add_argument(
        "--starts", default="scratch,pretrained", help="the columns: from scratch, from the pre-training, or both"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    labels = [int(n) for n in args.labels.split(",")]
    starts = args.starts.split(",")
    if not set(starts) <= {"scratch", "pretrained"}:
        parser.error(f"--starts={args.starts}: give scratch, pretrained or both, comma-separated")

    def columns(pre_name: str) -> list[str]:
        """The starts of one pair's runs: "scratch" or the pre-training config's name."""
        return [pre_name if start == "pretrained" else start for start in starts]
    results = load_results()
    root = tempfile.mkdtemp(prefix="selax_digits_pipeline_")
    for pair in args.pairs.split(","):
        semi_name, pre_name = PAIRS[pair]
        results["load_average_at_start"][pair] = os.getloadavg()[0]
        for seed in seeds:
            pre_dir = os.path.join(root, f"{pre_name}_seed{seed}")
            if "pretrained" in starts:
                config = load_config(pre_name)
                config.seed = seed
                results["runs"][f"{pre_name}/seed{seed}"] = timed_run(config, pre_dir)
                save(results)
            for num_labels in labels:
                for start in columns(pre_name):
                    config = load_config(semi_name)
                    config.seed = seed
                    config.dataset.labels_per_class = num_labels
                    if start != "scratch":
                        config.model.init_checkpoint = pre_dir
                    workdir = os.path.join(root, f"{semi_name}_{num_labels}_{start}_seed{seed}")
                    results["runs"][f"{semi_name}/{num_labels}/{start}/seed{seed}"] = timed_run(config, workdir)
                    save(results)

    runs = results["runs"]
    print(f"\n{'row':<44} {'mean +/- std over seeds ' + args.seeds:>30}")
    for pair in args.pairs.split(","):
        semi_name, pre_name = PAIRS[pair]
        for metric in PRETRAINING_METRICS if "pretrained" in starts else ():
            values = [runs[f"{pre_name}/seed{s}"][metric] for s in seeds]
            print(f"{pre_name + ' ' + metric:<44} {summary(values):>30}")
        for num_labels in labels:
            for start in columns(pre_name):
                values = [runs[f"{semi_name}/{num_labels}/{start}/seed{s}"]["test/prototype_top1"] for s in seeds]
                print(f"{f'{semi_name} {num_labels}/class from {start}':<44} {summary(values):>30}")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
