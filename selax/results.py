"""Results out of a trained run: one row per image, plus its features and embedding (used by
`python -m selax.export` and `python -m selax.predict`).

`export` writes `OUT/<split>.csv` (one row per image: its index, name (file path, or position), true label, and the
method's predictions) and `OUT/<split>.npz` (`features [N, D]`, `embedding [N, E]`, `head_scores`, `labels`,
`names`). The run is rebuilt from `W/config.json` and its latest checkpoint. Prediction columns, by the
evaluations the method declares: classification (Suave, Daino): `predicted_label`, `predicted_class` and
`confidence`; clustering (SeLa, SwAV, DINO): `cluster_head<t>` and `cluster_confidence_head<t>` per head
and, on the training split, each head's current pseudo-label `pseudo_label_head<t>` where the method keeps
them. `selax.predict` labels new images the same way.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from selax import evaluate, sharding, train
from selax.checkpoint import Checkpointer
from selax.data.readers import SplitReader
from selax.methods.base import CLASSIFICATION, CLUSTERING

SPLITS = ("train", "labeled", "test")


def load_run(workdir: str) -> tuple[train.Experiment, train.TrainState]:
    """The experiment of `workdir/config.json` and the state of its latest checkpoint."""
    config_file = os.path.join(workdir, train.CONFIG_FILE)
    if not os.path.exists(config_file):
        raise FileNotFoundError(
            f"{config_file} is missing: {workdir!r} is not the workdir of a selax run (python -m selax.main"
            " writes it at the start)."
        )
    with open(config_file) as f:
        config = ml_collections.ConfigDict(json.load(f))
    config.model.init_checkpoint = ""  # The checkpoint holds every weight.
    experiment = train.Experiment(config, sharding.data_mesh())
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    if checkpointer.latest_step is None:
        raise FileNotFoundError(f"{workdir} holds no checkpoint yet: train it first (python -m selax.main).")
    state = checkpointer.restore(experiment.init_state())
    checkpointer.close()
    return experiment, state


def prediction_columns(
    evaluations: Sequence[str],
    probabilities: np.ndarray,
    class_names: Sequence[str] | None,
    pseudo_labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The method's prediction columns for N images.

    Args:
      evaluations: the method's `evaluations` (which say what its head predicts).
      probabilities: [N, K] or [N, T, K] (T heads), the head's probabilities (`Method.head_probabilities`).
      class_names: K names, or None.
      pseudo_labels: int [T, N] current pseudo-labels of these images, or None.
    Returns:
      column name -> [N] values.
    """
    columns: dict[str, np.ndarray] = {}
    per_head = probabilities if probabilities.ndim == 3 else probabilities[:, None]
    if CLASSIFICATION in evaluations:
        predicted = per_head[:, 0].argmax(-1)
        columns["predicted_label"] = predicted
        if class_names is not None:
            names = evaluate.output_names(class_names, per_head.shape[-1])
            columns["predicted_class"] = np.asarray(names, dtype=object)[predicted]
        columns["confidence"] = per_head[:, 0].max(-1)
    elif CLUSTERING in evaluations:
        for head in range(per_head.shape[1]):
            columns[f"cluster_head{head}"] = per_head[:, head].argmax(-1)
            columns[f"cluster_confidence_head{head}"] = per_head[:, head].max(-1)
    if pseudo_labels is not None:
        for head, labels in enumerate(np.asarray(pseudo_labels)):
            columns[f"pseudo_label_head{head}"] = labels
    return columns


def write_table(path: str, columns: dict[str, np.ndarray]) -> None:
    """A CSV with one row per image; floats with 4 decimals."""
    names = list(columns)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for row in zip(*(columns[n] for n in names)):
            writer.writerow(f"{v:.4f}" if isinstance(v, (float, np.floating)) else v for v in row)


def export_split(
    experiment: train.Experiment,
    state: train.TrainState,
    split: SplitReader,
    out_prefix: str,
    pseudo_labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Writes `out_prefix.csv` and `out_prefix.npz` for every image of `split`; returns the CSV's columns."""
    outputs = experiment.predict(state, split, keys=("features", "embedding", "head_scores", "labels"))
    probabilities = np.asarray(experiment.method.head_probabilities(experiment.hp, outputs["head_scores"]))
    names = np.asarray(split.names if split.names is not None else [str(i) for i in range(split.size)], dtype=object)
    labels = outputs["labels"]
    class_names = experiment.class_names
    known = np.array([str(y) if y >= 0 else "" for y in labels], dtype=object)  # Empty: no label.
    columns = {"index": np.arange(split.size), "name": names, "label": known}
    if class_names is not None:
        columns["class"] = np.array([class_names[y] if y >= 0 else "" for y in labels], dtype=object)
    columns.update(prediction_columns(experiment.method.evaluations, probabilities, class_names, pseudo_labels))
    os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
    write_table(out_prefix + ".csv", columns)
    np.savez(out_prefix + ".npz", names=names.astype(str), **outputs)
    logging.info("Wrote %s.csv and %s.npz (%d images).", out_prefix, out_prefix, split.size)
    return columns


def checked_splits(splits: Sequence[str]) -> tuple[str, ...]:
    """`splits`, each one of `SPLITS`; ValueError naming the others."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"Unknown split(s) {unknown}; choose from {list(SPLITS)}.")
    return tuple(splits)


def export_splits(
    experiment: train.Experiment, state: train.TrainState, splits: Sequence[str], out_dir: str
) -> dict[str, str]:
    """`export_split` of each of `splits` (`checked_splits`) into `out_dir`, the training split with the
    method's pseudo-labels; returns split -> CSV path."""
    written = {}
    for name in checked_splits(splits):
        pseudo_labels = experiment.cluster_labels(state) if name == "train" else None
        export_split(experiment, state, getattr(experiment, name), os.path.join(out_dir, name), pseudo_labels)
        written[name] = os.path.join(out_dir, f"{name}.csv")
    return written


def export(workdir: str, splits: Sequence[str] = ("test",), out_dir: str | None = None) -> dict[str, str]:
    """Exports `splits` of the run in `workdir` to `out_dir` (default `workdir/export`); returns split ->
    CSV path."""
    checked_splits(splits)  # Before the run is rebuilt.
    experiment, state = load_run(workdir)
    return export_splits(experiment, state, splits, out_dir or os.path.join(workdir, "export"))


def export_weights(experiment: train.Experiment, state: train.TrainState, path: str) -> int:
    """Writes the evaluated network of a run (`load_run`: encoder, projector and head; Daino and DINO: the
    teacher) as a PyTorch state dict at `path` (`.pth`, or `.safetensors`), the encoder in torchvision's
    ResNet / DINO's ViT layout (`selax.models.convert.torch_state_dict`); returns the number of tensors."""
    from selax.models.convert import save_torch_state_dict, torch_state_dict  # pylint: disable=g-import-not-at-top

    variables = jax.device_get(experiment.eval_variables(state))
    state_dict = torch_state_dict(variables, modules=("encoder", "projector", "head"))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_torch_state_dict(state_dict, path)
    logging.info("Wrote %d tensors to %s.", len(state_dict), path)
    return len(state_dict)
