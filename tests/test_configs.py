"""Every shipped config builds, and its `:smoke` variant trains a few steps end to end."""

import glob
import importlib.util
import json
import os

import pytest

from selax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
# Arguments a config needs besides `smoke`.
ARGS = {"cifar100": "2500,"}
EXPECTED_METRICS = {
    "suave": ("test/prototype_top1", "test/linear_top1", "test/knn_top1"),
    "daino": ("test/prototype_top1", "test/linear_top1", "test/knn_top1"),
    "sela": (
        "test/nmi",
        "test/adjusted_nmi",
        "test/ari",
        "test/cluster_accuracy",
        "train/pseudo_label_nmi",
        "test/knn_top1",
        "test/linear_probe_top1",
    ),
}


def load_config(name: str, arg: str | None):
    spec = importlib.util.spec_from_file_location(
        f"configs.{name}", os.path.join(REPO, "configs", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_every_config_is_covered():
    assert {"default", "cifar100", "imagenet_10pct", "imagenet_1pct", "daino_default", "sela_default"} <= set(
        CONFIGS
    )


@pytest.mark.parametrize("name", [c for c in CONFIGS if c != "default"])  # default: tests/test_train.py
def test_smoke_variant_trains_end_to_end(tmp_path, name):
    config = load_config(name, ARGS.get(name, "") + "smoke")
    final = train.run(config, str(tmp_path))
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f) == pytest.approx(final)
    assert final["train/steps"] == config.num_steps
    for key in EXPECTED_METRICS[config.method]:
        assert 0.0 <= final[key] <= 1.0, (key, final[key])


def test_cifar100_takes_a_label_count():
    assert load_config("cifar100", "400").dataset.labels_per_class == 4
    assert load_config("cifar100", "10000").dataset.labels_per_class == 100
    with pytest.raises(ValueError, match="400"):
        load_config("cifar100", "300")


def test_imagenet_without_its_init_checkpoint_says_how_to_convert(tmp_path):
    config = load_config("imagenet_10pct", None)
    config.model.init_checkpoint = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="python -m selax.models.convert"):
        train.run(config, str(tmp_path))


def test_imagenet_without_data_says_which_files_go_where(tmp_path):
    config = load_config("imagenet_10pct", None)
    config.model.init_checkpoint = ""
    config.dataset.data_dir = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_train.tar"):
        train.run(config, str(tmp_path))


def test_imagenet_batch_and_learning_rate_scale_with_the_device_count():
    reference, doubled = load_config("imagenet_10pct", None), load_config("imagenet_10pct", "devices=16")
    assert (reference.batch.unlabeled, reference.batch.labeled) == (256, 128)
    assert (doubled.batch.unlabeled, doubled.batch.labeled) == (512, 256)
    assert doubled.optimizer.base_lr == 2 * reference.optimizer.base_lr
    assert abs(doubled.num_steps - reference.num_steps / 2) <= 1  # Same epochs.
