"""Studies on the digits: a class prior in the Sinkhorn (Suave and SeLa), classes with no labeled example
(Suave), and what SeLa's label step sees.

    python experiments/digits_studies.py [--study prior|novel|sela_prior|sela_views|all] [--seeds 0,1,2]
        [--variants ROW,...]

Every run is `configs/default.py` from scratch (Suave, `pretrain=""`, small CNN, 600 steps, 2 labels per class), or for `sela_prior`
and `sela_views` `configs/sela_default.py` (SeLa, no label), trained through `selax.train.run` in a
fresh workdir under a temporary directory, then restored to predict the test split.

* `prior`: the long-tailed digits (`dataset.name=digits_longtail`: train classes 0..9 shrink
  exponentially, 122 -> 12 images (494 in all), imbalance ratio 10; the test split is digits' own,
  balanced, 52-55 per class). The labeled subset is still 2 images per class. Rows: Sinkhorn targets
  equipartitioned (the paper), with `suave.prototype_marginals` set to the true train class
  frequencies, or estimated (`"estimate"`: label spreading from the labeled images over the train images'
  embeddings, before step 0; the prior unknown to the method); and on the
  balanced digits, equipartition against the estimate (`balanced_*`: what estimating costs when the
  classes are balanced); and equipartition relaxed to a KL penalty of weight tau
  (`suave.prototype_relaxation`, rows `relaxed_TAU` and `balanced_relaxed_TAU`); rows `swav_*`: the
  same after SwAV pre-training (`config.pretrain`, as `configs/default.py` itself). The estimates are
  plotted against the truth in experiments/results/estimated_prior.png (`_swav.png` for the `swav_*` rows). Reported: test top-1 of the prototype classifier, of the online linear head and of
  kNN, and the prototype top-1 on the 5 head classes (0-4) and the 5 tail classes (5-9).
* `novel`: the digits with `dataset.unlabeled_classes=(8, 9)` (16 labels, classes 8 and 9 only in the
  unlabeled stream) and `suave.num_prototypes` = 10 or 12, equipartitioned, and 12 with the known
  class masses as `suave.prototype_marginals` (`12_prototypes_prior`), and 10 with the masses relaxed to a
  penalty (`10_prototypes_relaxed_TAU`: a labeled prototype may take more than its tenth). Labeled class c trains
  prototype c; the other prototypes are free and get unlabeled images only through the Sinkhorn
  (the labeled images are targets for their own class's prototype alone). Reported: prototype
  top-1 on the test images of the 8 labeled classes, and for the test images of classes 8 and 9 the
  NMI and cluster accuracy (Hungarian) of their prototype argmax against their true class, and the
  fraction of them whose argmax is a free prototype; `nmi_all` is the NMI of the argmax over the whole
  test split.
* `sela_prior`: SeLa on the long-tailed digits, its label step equipartitioned (the paper) or with
  `sela.cluster_marginals` set to the true train class frequencies. Reported: test NMI and cluster
  accuracy (mean over the 4 heads), NMI of the final train pseudo-labels, and kNN top-1.
* `sela_views`: SeLa on the digits, its label step reading one training view per image
  (`sela.label_views="augmented"`, the default, as the reference code) or the clean images (`clean`).
  Reported as for `sela_prior`.

Prints one line per row (mean and standard deviation over the seeds) and writes
experiments/results/digits_studies.json with every seed's numbers, each row's UTC date (before
2026-12-07: the labeled draws before they were nested), per-class top-1 and, for `novel`,
the prototype histogram of each unlabeled class.
"""

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from selax import evaluate, sharding, train  # noqa: E402
from selax.checkpoint import Checkpointer  # noqa: E402
from selax.data import datasets  # noqa: E402

PRIOR_PLOT = os.path.join(REPO, "experiments", "results", "estimated_prior{}.png")  # "" or "_swav".
PRETRAINING = os.path.join(REPO, "configs", "swav_default.py")  # The `swav_*` rows' `config.pretrain`.
RESULTS = os.path.join(REPO, "experiments", "results", "digits_studies.json")
HEAD_CLASSES = (0, 1, 2, 3, 4)
NOVEL_CLASSES = (8, 9)
RELAXATIONS = (0.02, 0.05, 0.2)  # `suave.prototype_relaxation` of the relaxed rows of `prior` and `novel`.


STUDY_CONFIGS = {
    "prior": "default",
    "novel": "default",
    "sela_prior": "sela_default",
    "sela_views": "sela_default",
}


def base_config(name: str):
    """`configs/<name>.py`'s config, from scratch (no pre-training stage: the studies' runs are single runs)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.pretrain = ""
    return config


def longtail_train_frequencies() -> tuple[float, ...]:
    """The class frequencies `[10]` of the long-tailed train split: the prior the `prior` study knows."""
    labels = datasets.load_arrays("digits_longtail", "train").labels
    counts = np.bincount(labels, minlength=10)
    return tuple(float(c) for c in counts / counts.sum())


def variants(study: str) -> dict[str, dict]:
    """Each row's config overrides, `{row name: {dotted field: value}}`."""
    if study in ("prior", "sela_prior"):
        longtail = {"dataset.name": "digits_longtail"}
        prior_field = "suave.prototype_marginals" if study == "prior" else "sela.cluster_marginals"
        rows = {
            "equipartition": longtail,
            "true_prior": {**longtail, prior_field: longtail_train_frequencies()},
        }
        if study == "prior":  # The prior estimated from the images, on the long tail and the balanced digits.
            rows["estimated_prior"] = {**longtail, prior_field: "estimate"}
            rows["balanced_equipartition"] = {}
            rows["balanced_estimated_prior"] = {prior_field: "estimate"}
            for tau in RELAXATIONS:  # Equipartition as a penalty, not a constraint.
                rows[f"relaxed_{tau}"] = {**longtail, "suave.prototype_relaxation": tau}
                rows[f"balanced_relaxed_{tau}"] = {"suave.prototype_relaxation": tau}
            # The same after SwAV pre-training on the same images (configs/default.py's own stage).
            for row in ("equipartition", "true_prior", "estimated_prior", "balanced_estimated_prior"):
                rows[f"swav_{row}"] = {**rows[row], "pretrain": PRETRAINING}
        return rows
    if study == "sela_views":
        return {views: {"sela.label_views": views} for views in ("augmented", "clean")}
    novel = {"dataset.unlabeled_classes": NOVEL_CLASSES}
    rows = {f"{k}_prototypes": {**novel, "suave.num_prototypes": k} for k in (10, 12)}
    # 12 prototypes with the known class masses: 1/10 on each labeled class, the unlabeled classes'
    # 2/10 shared by the 4 free prototypes.
    free_share = len(NOVEL_CLASSES) / 10 / (12 - 10 + len(NOVEL_CLASSES))
    marginals = tuple(0.1 if c < 10 - len(NOVEL_CLASSES) else free_share for c in range(12))
    rows["12_prototypes_prior"] = {**rows["12_prototypes"], "suave.prototype_marginals": marginals}
    for tau in RELAXATIONS:  # A labeled prototype may hold more than its tenth.
        rows[f"10_prototypes_relaxed_{tau}"] = {**rows["10_prototypes"], "suave.prototype_relaxation": tau}
    return rows


def configured(study: str, overrides: dict, seed: int):
    config = base_config(STUDY_CONFIGS[study])
    config.seed = seed
    for field, value in overrides.items():
        *section, name = field.split(".")
        (config[section[0]] if section else config)[name] = value
    return config


def train_and_predict(config, workdir: str) -> tuple[dict[str, float], dict[str, np.ndarray], dict]:
    """Trains `config` in `workdir`; returns the final metrics, the test predictions of the last state and
    its extras (host arrays)."""
    final = train.run(config, workdir)
    experiment = train.Experiment(config, sharding.data_mesh())
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    state = checkpointer.restore(experiment.init_state())
    checkpointer.close()
    return final, experiment.predict(state, experiment.test), jax.device_get(state.extras)


def per_class_top1(scores: np.ndarray, labels: np.ndarray) -> list[float]:
    return [evaluate.top1_accuracy(scores[labels == c], labels[labels == c]) for c in range(10)]


def prior_metrics(final: dict[str, float], test: dict[str, np.ndarray]) -> dict:
    scores, labels = test["head_scores"], test["labels"]
    head = np.isin(labels, HEAD_CLASSES)
    return {
        "prototype_top1": final["test/prototype_top1"],
        "linear_top1": final["test/linear_top1"],
        "knn_top1": final["test/knn_top1"],
        "head_top1": evaluate.top1_accuracy(scores[head], labels[head]),
        "tail_top1": evaluate.top1_accuracy(scores[~head], labels[~head]),
        "per_class_top1": per_class_top1(scores, labels),
        "predicted_class_counts": np.bincount(np.argmax(scores, -1), minlength=10).tolist(),
    }


def novel_metrics(final: dict[str, float], test: dict[str, np.ndarray]) -> dict:
    scores, labels = test["head_scores"], test["labels"]
    clusters = np.argmax(scores, -1)
    novel = np.isin(labels, NOVEL_CLASSES)
    labeled_classes = [c for c in range(10) if c not in NOVEL_CLASSES]
    report = evaluate.clustering_report(clusters[novel], labels[novel])
    return {
        "labeled_classes_top1": evaluate.top1_accuracy(scores[~novel], labels[~novel]),
        "novel_nmi": report["nmi"],
        "novel_cluster_accuracy": report["cluster_accuracy"],
        "novel_on_free_prototypes": float(np.mean(~np.isin(clusters[novel], labeled_classes))),
        "nmi_all": evaluate.nmi(clusters, labels),
        "prototype_top1_all": final["test/prototype_top1"],
        "novel_prototype_histograms": {
            str(c): np.bincount(clusters[labels == c], minlength=scores.shape[-1]).tolist()
            for c in NOVEL_CLASSES
        },
    }


def sela_metrics(final: dict[str, float], test: dict[str, np.ndarray]) -> dict:
    del test
    return {
        "test_nmi": final["test/nmi"],
        "test_cluster_accuracy": final["test/cluster_accuracy"],
        "train_pseudo_label_nmi": final["train/pseudo_label_nmi"],
        "knn_top1": final["test/knn_top1"],
    }


STUDY_METRICS = {
    "prior": prior_metrics,
    "novel": novel_metrics,
    "sela_prior": sela_metrics,
    "sela_views": sela_metrics,
}

SELA_COLUMNS = ("test_nmi", "test_cluster_accuracy", "train_pseudo_label_nmi", "knn_top1")
COLUMNS = {
    "prior": ("prototype_top1", "linear_top1", "knn_top1", "head_top1", "tail_top1"),
    "novel": (
        "labeled_classes_top1",
        "novel_nmi",
        "novel_cluster_accuracy",
        "novel_on_free_prototypes",
        "nmi_all",
    ),
    "sela_prior": SELA_COLUMNS,
    "sela_views": SELA_COLUMNS,
}


def run_study(study: str, seeds: list[int], root: str, only: list[str] | None = None) -> list[dict]:
    """Runs every variant of `study` (those named in `only`, when given) for every seed."""
    rows = []
    for variant, overrides in variants(study).items():
        if only and variant not in only:
            continue
        runs = []
        for seed in seeds:
            config = configured(study, overrides, seed)
            start = time.perf_counter()
            final, test, extras = train_and_predict(config, os.path.join(root, f"{study}_{variant}_seed{seed}"))
            metrics = STUDY_METRICS[study](final, test)
            if "prototype_prior" in extras:  # `prototype_marginals="estimate"`: what it estimated.
                metrics["estimated_prior"] = [float(m) for m in extras["prototype_prior"]]
            runs.append({"seed": seed, "wall_seconds": time.perf_counter() - start, **metrics})
            print(
                f"  {study}/{variant} seed {seed}: "
                + ", ".join(f"{k}={metrics[k]:.3f}" for k in COLUMNS[study])
            )
        summary = {k: {"mean": float(np.mean([r[k] for r in runs])), "std": sample_std([r[k] for r in runs])}
                   for k in COLUMNS[study]}
        overrides_json = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
        rows.append(
            {
                "study": study,
                "variant": variant,
                "date": time.strftime("%Y-%m-%d", time.gmtime()),  # From 2026-12-07: nested labeled draws.
                "overrides": overrides_json,
                "summary": summary,
                "runs": runs,
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    for study in dict.fromkeys(r["study"] for r in rows):
        columns = COLUMNS[study]
        print(f"\n{study} (mean +- sample std over seeds)")
        print(f"{'variant':<16}" + "".join(f"{c:>26}" for c in columns))
        for r in (r for r in rows if r["study"] == study):
            cells = "".join(
                f"{r['summary'][c]['mean']:>19.3f} +-{r['summary'][c]['std']:.3f}" for c in columns
            )
            print(f"{r['variant']:<16}{cells}")


def sample_std(values: list[float]) -> float:
    """The standard deviation over seeds with Bessel's correction; 0 for one seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def plot_estimated_priors(rows: list[dict], path: str, prefix: str = "") -> None:
    """Bars of the true train class proportions against the estimated ones (mean and std over the seeds),
    one panel for the long-tailed digits and one for the balanced digits; `prefix` "swav_": the rows
    after SwAV pre-training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (f"{prefix}estimated_prior", "long-tailed digits (digits_longtail)", np.asarray(longtail_train_frequencies())),
        (f"{prefix}balanced_estimated_prior", "balanced digits", np.full(10, 0.1)),
    ]
    by_variant = {r["variant"]: r for r in rows if r["study"] == "prior"}
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    classes = np.arange(10)
    for axis, (variant, title, truth) in zip(axes, panels):
        estimates = np.array([run["estimated_prior"] for run in by_variant[variant]["runs"]])
        axis.bar(classes - 0.2, truth, width=0.4, color="0.6", label="true proportion")
        axis.bar(
            classes + 0.2, estimates.mean(0), width=0.4, yerr=estimates.std(0, ddof=1), capsize=2,
            color="tab:blue", label=f"estimated (mean +- sample std, {len(estimates)} seeds)",
        )
        axis.set(title=title, xlabel="class", xticks=classes)
    axes[0].set_ylabel("share of the unlabeled training images")
    axes[0].legend(fontsize=8)
    after = ", after SwAV pre-training" if prefix else ""
    figure.suptitle(f'Suave{after}, suave.prototype_marginals="estimate": the prior from label spreading')
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", choices=(*STUDY_CONFIGS, "all"), default="all")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds")
    parser.add_argument("--variants", default="", help="comma-separated rows to run (default: all)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    only = [v for v in args.variants.split(",") if v]
    studies = tuple(STUDY_CONFIGS) if args.study == "all" else (args.study,)
    with tempfile.TemporaryDirectory(prefix="digits_studies_") as root:
        rows = [row for study in studies for row in run_study(study, seeds, root, only)]
    print_table(rows)
    previous = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            previous = {(r["study"], r["variant"]): r for r in json.load(f)["rows"]}
    previous.update({(r["study"], r["variant"]): r for r in rows})  # A study rerun replaces its rows only.
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(
            {"dataset": "digits", "configs": STUDY_CONFIGS, "rows": list(previous.values())},
            f,
            indent=2,
        )
    print(f"wrote {RESULTS}")
    for prefix in ("", "swav_"):
        if {f"{prefix}estimated_prior", f"{prefix}balanced_estimated_prior"} <= {v for (study, v) in previous if study == "prior"}:
            path = PRIOR_PLOT.format(f"_{prefix[:-1]}" if prefix else "")
            plot_estimated_priors(list(previous.values()), path, prefix)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
