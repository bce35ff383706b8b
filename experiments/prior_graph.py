"""How well the estimated class prior (`suave.prototype_marginals="estimate"`) reads the class shares from
SwAV features, for each graph of the label spreading: neighbours per image x how far labels travel.

    python experiments/prior_graph.py [--seeds 0,1,2,3,4] [--neighbors 5,10,20]
        [--alphas 0.5,0.7,0.8,0.9,0.95,0.99]

For the balanced digits and the long-tailed digits (`dataset.name=digits_longtail`), each seed runs the
pre-training stage of `configs/default.py` (SwAV, 600 steps, on that seed and data; the `swav_*` rows of
`digits_studies.py --study prior`), then embeds the labeled and training images with the network Suave
starts from, as Suave's estimate does before step 0. Each (neighbours, alpha) pair then spreads the 20 labels
(`selax.label_spreading`, the function Suave calls) and counts the training images' spread labels. No
Suave training: the table is the estimate's error alone, L1 distance between the estimated and the true
class shares of the training images (0: exact, 2: disjoint), per data set and seed, and the share given to
class 1 on the balanced digits (whose unanchored 1s are the estimate's usual error, README). Writes
experiments/results/prior_graph.json.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits_studies import configured, variants  # noqa: E402

from selax import sharding, train  # noqa: E402
from selax.config_fields import pretraining_config  # noqa: E402
from selax.label_spreading import label_spreading, spread_label_counts  # noqa: E402

RESULTS = os.path.join(REPO, "experiments", "results", "prior_graph.json")
# The data sets, as rows of `digits_studies.py --study prior` (their SwAV stage and data).
DATA = {"balanced": "swav_balanced_estimated_prior", "long_tail": "swav_estimated_prior"}
NUM_CLASSES = 10  # The digits.


def starting_embeddings(row: str, seed: int, workdir: str) -> dict[str, np.ndarray]:
    """Pre-trains the study row's SwAV stage in `workdir`; the labeled and train embeddings of the network
    Suave starts from, the labeled images' labels and the train images' true class shares."""
    config = configured("prior", variants("prior")[row], seed)
    train.run(pretraining_config(config), workdir)
    config.pretrain, config.model.init_checkpoint = "", workdir
    experiment = train.Experiment(config, sharding.data_mesh())
    state = experiment.init_state()
    labeled = experiment.predict(state, experiment.labeled, keys=("embedding", "labels"))
    train_split = experiment.predict(state, experiment.train, keys=("embedding", "labels"))
    return {
        "labeled": labeled["embedding"],
        "labels": labeled["labels"],
        "train": train_split["embedding"],
        "true_shares": np.bincount(train_split["labels"], minlength=NUM_CLASSES) / len(train_split["labels"]),
    }


def estimated_shares(data: dict[str, np.ndarray], num_neighbors: int, alpha: float) -> np.ndarray:
    scores = label_spreading(
        data["labeled"], data["labels"], data["train"], NUM_CLASSES, num_neighbors=num_neighbors, alpha=alpha
    )
    counts = np.asarray(spread_label_counts(scores))
    return counts / counts.sum()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--neighbors", default="5,10,20")
    parser.add_argument("--alphas", default="0.5,0.7,0.8,0.9,0.95,0.99")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    neighbors = [int(k) for k in args.neighbors.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    start = time.time()
    sets = {}
    with tempfile.TemporaryDirectory(prefix="prior_graph_") as root:
        for name, row in DATA.items():
            for seed in seeds:
                sets[(name, seed)] = starting_embeddings(row, seed, os.path.join(root, f"{name}_seed{seed}"))
    rows = []
    for k in neighbors:
        for alpha in alphas:
            errors, class_1 = {}, []
            for (name, seed), data in sets.items():
                shares = estimated_shares(data, k, alpha)
                errors[f"{name}_seed{seed}"] = float(np.abs(shares - data["true_shares"]).sum())
                if name == "balanced":
                    class_1.append(float(shares[1]))
            rows.append(
                {
                    "neighbors": k,
                    "alpha": alpha,
                    "l1": errors,
                    "mean_l1": {
                        n: float(np.mean([e for s, e in errors.items() if s.startswith(n)])) for n in DATA
                    },
                    "balanced_class_1_share": class_1,
                }
            )
    header = f"{'balanced L1 (seeds)':<36} mean  | {'long tail L1 (seeds)':<36} mean  | class-1 share"
    print(f"{'k':>3} {'alpha':>5} | {header}")
    for row in rows:
        cells = []
        for name in DATA:
            values = [v for s, v in row["l1"].items() if s.startswith(name)]
            cells.append(" ".join(f"{v:.3f}" for v in values).ljust(36) + f" {row['mean_l1'][name]:.3f}")
        shares = " ".join(f"{v:.3f}" for v in row["balanced_class_1_share"])
        print(f"{row['neighbors']:>3} {row['alpha']:>5} | {cells[0]} | {cells[1]} | {shares}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(
            {
                "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(start)),
                "seconds": time.time() - start,
                "load_average": os.getloadavg(),
                "seeds": seeds,
                "rows": rows,
            },
            f,
            indent=1,
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
