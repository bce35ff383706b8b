"""selax.results: configs/folder.py end to end on a user's folders, then selax.export and selax.predict."""

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from selax import results, train
from selax.methods.base import CLASSIFICATION, CLUSTERING
from test_configs import EXPECTED_METRICS, REPO, load_config

FOLDER_METHODS = ("suave", "daino", "sela", "swav", "dino")
CLASSIFIERS = ("suave", "daino")


@pytest.fixture(scope="module")
def folder_runs(image_folders, tmp_path_factory):
    """`method -> (config, workdir, final metrics)` of `configs/folder.py:<method>,smoke` on the folders."""
    runs = {}

    def run(method):
        if method not in runs:
            config = load_config("folder", f"{method},smoke")
            config.dataset.update(train_dir=image_folders["train"], unlabeled_dir=image_folders["unlabeled"])
            config.pictures = True
            workdir = tmp_path_factory.mktemp(f"folder_{method}")
            runs[method] = (config, workdir, train.run(config, str(workdir)))
        return runs[method]

    return run


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("method", FOLDER_METHODS)
def test_folder_config_trains_each_method_and_exports_every_image(folder_runs, image_folders, method):
    config, workdir, final = folder_runs(method)
    assert config.dataset.name == "image_folder" and final["train/steps"] == config.num_steps
    for key in EXPECTED_METRICS[method]:
        assert 0.0 <= final[key] <= 1.0, key
    with open(workdir / "config.json") as f:
        assert json.load(f)["dataset"]["train_dir"] == image_folders["train"]

    pictures = ["embedding_map", "confusion_matrix" if method in CLASSIFIERS else "cluster_gallery"]
    for name in pictures:
        with Image.open(workdir / f"{name}.png") as image:
            assert image.size[0] > 200 and image.size[1] > 100, name
    assert glob.glob(str(workdir / "tensorboard" / "events.*"))

    written = results.export(str(workdir), ["test", "train"])
    test_rows, train_rows = _rows(written["test"]), _rows(written["train"])
    assert len(test_rows) == 6 and len(train_rows) == 18 + 6  # 75% of 24 labeled images, then 6 unlabeled.
    assert all(r["name"].startswith(image_folders["train"]) for r in test_rows)
    assert [r["label"] for r in train_rows[-6:]] == [""] * 6 and train_rows[-1]["name"].startswith(image_folders["unlabeled"])
    assert {r["class"] for r in test_rows} == {"a_red", "b_blue", "c_grey"}
    saved = np.load(os.path.join(workdir, "export", "test.npz"))
    assert saved["features"].shape[0] == 6 and list(saved["names"]) == [r["name"] for r in test_rows]
    if method == "sela":  # Two heads in the smoke run, and pseudo-labels of the training images.
        assert {"cluster_head0", "cluster_head1", "pseudo_label_head1"} <= set(train_rows[0])
        assert "pseudo_label_head0" not in test_rows[0]
    elif method not in CLASSIFIERS:  # SwAV, DINO: the prototype / output each image falls in.
        assert "cluster_head0" in test_rows[0] and "predicted_label" not in test_rows[0]
        assert not any(name.startswith("pseudo_label") for name in train_rows[0])
    else:
        assert {r["predicted_class"] for r in test_rows} <= {"a_red", "b_blue", "c_grey"}
        assert all(1 / 3 - 1e-4 <= float(r["confidence"]) <= 1.0 for r in test_rows)


def test_prediction_columns_follow_the_methods_evaluations():
    probabilities = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    columns = results.prediction_columns((CLASSIFICATION,), probabilities, ["x", "y", "z"])
    np.testing.assert_array_equal(columns["predicted_label"], [1, 0])
    assert list(columns["predicted_class"]) == ["y", "x"] and list(columns["confidence"]) == [0.7, 0.6]
    # More outputs than classes (free prototypes): the extra ones are named, not an index error.
    free = results.prediction_columns((CLASSIFICATION,), probabilities[:, ::-1], ["x", "y"])
    assert list(free["predicted_class"]) == ["y", "prototype 2"]
    heads = np.stack([probabilities, probabilities[:, ::-1]], axis=1)  # [N, T=2, K]
    columns = results.prediction_columns((CLUSTERING,), heads, None, pseudo_labels=np.array([[0, 1], [2, 2]]))
    np.testing.assert_array_equal(columns["cluster_head1"], [1, 2])
    np.testing.assert_array_equal(columns["pseudo_label_head1"], [2, 2])


def test_predict_labels_new_images_from_the_command_line(folder_runs, image_folders, tmp_path):
    _, workdir, _ = folder_runs("suave")
    new_image = os.path.join(image_folders["test"], "a_red", "00.png")
    out = tmp_path / "new"
    command = [
        sys.executable, "-m", "selax.predict", f"--workdir={workdir}",
        f"--images={image_folders['unlabeled']},{new_image},{image_folders['train']}/a_red/notes.txt",
        f"--out={out}",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(f"{out}.csv")
    assert len(rows) == 7 and rows[-1]["name"] == new_image and "notes.txt" in done.stderr
    assert {r["predicted_class"] for r in rows} <= {"a_red", "b_blue", "c_grey"}


def test_export_of_a_workdir_without_a_run_says_what_it_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not the workdir of a selax run"):
        results.export(str(tmp_path))
    with pytest.raises(ValueError, match="Unknown split"):
        results.export(str(tmp_path), ["validation"])


def test_resuming_with_another_config_warns_and_refuses_another_model(tmp_path, caplog):
    config = load_config("default", "smoke")
    train.record_config(config, str(tmp_path))
    config.optimizer.base_lr = 0.5
    with caplog.at_level("WARNING"):
        train.record_config(config, str(tmp_path))
    assert "optimizer.base_lr: 0.1 -> 0.5" in caplog.text
    config.model.encoder = "resnet18"
    with pytest.raises(ValueError, match="(?s)another model or method.*model.encoder: .small_cnn. -> .resnet18."):
        train.record_config(config, str(tmp_path))


def test_trained_weights_leave_as_a_state_dict_that_converts_back(folder_runs, tmp_path):
    pytest.importorskip("safetensors")
    from selax.models.convert import load_torch_state_dict, torch_state_dict

    _, workdir, _ = folder_runs("suave")
    path = str(tmp_path / "suave.safetensors")
    experiment, state = results.load_run(str(workdir))
    count = results.export_weights(experiment, state, path)
    state_dict = load_torch_state_dict(path)
    expected = torch_state_dict(experiment.eval_variables(state), modules=("encoder", "projector", "head"))
    assert count == len(state_dict) == len(expected) and state_dict["conv0.weight"].shape[1:] == (3, 3, 3)  # OIHW, RGB
    for name, value in expected.items():
        np.testing.assert_array_equal(state_dict[name], value, err_msg=name)
    assert any(name.startswith("head.") for name in state_dict)
