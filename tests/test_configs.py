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
SELF_SUPERVISED = ("test/knn_top1", "test/linear_probe_top1", "test/nmi", "test/cluster_accuracy")
EXPECTED_METRICS = {
    "suave": ("test/prototype_top1", "test/linear_top1", "test/knn_top1"),
    "daino": ("test/prototype_top1", "test/linear_top1", "test/knn_top1"),
    "swav": SELF_SUPERVISED,
    "dino": SELF_SUPERVISED,
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
    assert {
        "default",
        "cifar100",
        "imagenet_10pct",
        "imagenet_1pct",
        "daino_default",
        "sela_default",
        "swav_default",
        "dino_default",
        "folder",
    } <= set(CONFIGS)


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """`run(name) -> (config, workdir, final metrics)` of the `:smoke` variant of config `name`, trained once
    per distinct config (the 1% and 10% ImageNet recipes differ only in the labeled list, which `:smoke`
    replaces by the digits: their smoke configs are equal and share one run)."""
    runs = {}

    def run(name):
        config = load_config(name, ARGS.get(name, "") + "smoke")
        key = config.to_json(sort_keys=True)
        if key not in runs:
            workdir = tmp_path_factory.mktemp(f"smoke_{name}")
            runs[key] = (config, workdir, train.run(config, str(workdir)))
        return runs[key]

    return run


# default: tests/test_train.py; folder (a user's folders, not the digits): tests/test_export.py.
@pytest.mark.parametrize("name", [c for c in CONFIGS if c not in ("default", "folder")])
def test_smoke_variant_trains_end_to_end(smoke_runs, name):
    config, workdir, final = smoke_runs(name)
    with open(workdir / "metrics.json") as f:
        assert json.load(f) == pytest.approx(final)
    assert final["train/steps"] == config.num_steps
    for key in EXPECTED_METRICS[config.method]:
        assert 0.0 <= final[key] <= 1.0, (key, final[key])


@pytest.mark.parametrize("name, pretraining", [("default", "swav_default"), ("daino_default", "dino_default")])
def test_semi_supervised_runs_start_from_a_self_supervised_pretraining_workdir(smoke_runs, name, pretraining):
    """The pipeline SwAV -> Suave and DINO -> Daino: the encoder (and projector) come from the pre-training
    run's last checkpoint, the head of another shape starts fresh, and Daino's teacher is the loaded network."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    from selax import sharding

    _, workdir, _ = smoke_runs(pretraining)
    saved = ocp.StandardCheckpointer().restore(str(workdir / "checkpoints" / "6" / "state"))
    config = load_config(name, "smoke")
    mesh = sharding.data_mesh(jax.devices()[:1])
    fresh = train.Experiment(config, mesh).init_state()
    config.model.init_checkpoint = str(workdir)
    experiment = train.Experiment(config, mesh)
    state = experiment.init_state()
    for module in ("encoder", "projector"):
        if module in fresh.params:
            same = jax.tree_util.tree_map(np.array_equal, state.params[module], saved["params"][module])
            assert all(jax.tree_util.tree_leaves(same)), module
    shapes = [jax.tree_util.tree_map(np.shape, params["head"]) for params in (saved["params"], fresh.params)]
    assert shapes[0] != shapes[1]  # The pre-training head is free of classes.
    same_head = jax.tree_util.tree_map(np.array_equal, state.params["head"], fresh.params["head"])
    assert all(jax.tree_util.tree_leaves(same_head))  # Another method's head: not loaded.
    if "teacher_params" in state.extras:
        same = jax.tree_util.tree_map(np.array_equal, state.extras["teacher_params"], state.params)
        assert all(jax.tree_util.tree_leaves(same))
    # It trains: the state, donated to the step, holds no buffer twice (the teacher is a copy).
    stepped, metrics = experiment.train_step(state, experiment.load_batch(0))
    assert int(stepped.step) == 1 and np.isfinite(float(metrics["total_loss"]))


def test_the_shipped_pretraining_stages_load_with_the_runs_data():
    """Suave's recipes name SwAV's as their stage (the folder's on the same folders); the others none."""
    from selax.config_fields import pretraining_config

    for name, arg in (("default", ""), ("folder", "suave")):
        config = load_config(name, arg)
        config.dataset.train_dir, config.seed = "/data/train", 4
        stage = pretraining_config(config)
        assert (stage.method, stage.dataset.name, stage.dataset.train_dir, stage.seed) == (
            "swav", config.dataset.name, "/data/train", 4
        )
        assert stage.batch.labeled == 0 and not stage.pretrain
        assert not load_config(name, f"{arg},smoke" if arg else "smoke").pretrain  # :smoke runs one stage.
    for name, arg in (("daino_default", ""), ("sela_default", ""), ("folder", "daino"), ("cifar100", "400")):
        assert not load_config(name, arg).pretrain


def test_config_arguments_are_typed_and_unknown_ones_refused():
    with pytest.raises(ValueError, match="Unknown config argument 'smok'; this config accepts: smoke"):
        load_config("default", "smok")
    with pytest.raises(ValueError, match="this config accepts: devices=8, smoke"):
        load_config("imagenet_10pct", "devics=16")
    with pytest.raises(ValueError, match="devices takes a int"):
        load_config("imagenet_10pct", "devices=many")
    assert load_config("imagenet_10pct", "smoke,devices=16").num_steps == load_config("default", "smoke").num_steps
    for name in CONFIGS:
        expected = "image_folder" if name == "folder" else "digits"
        assert load_config(name, ARGS.get(name, "") + "smoke").dataset.name == expected
    with pytest.raises(ValueError, match="configs/folder.py:simclr: the method must be one of"):
        load_config("folder", "simclr")


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


def test_a_class_prior_is_set_from_the_command_line_as_masses_or_estimate():
    from absl import flags
    from ml_collections import config_flags

    for value, expected in (("estimate", "estimate"), ("(0.5,0.25,0.25)", (0.5, 0.25, 0.25))):
        config_file = os.path.join(REPO, "configs", "default.py")
        argv = ["selax.main", f"--config={config_file}", f"--config.suave.prototype_marginals={value}"]
        flag_values = flags.FlagValues()  # As `python -m selax.main` parses its command line.
        config_flags.DEFINE_config_file("config", None, flag_values=flag_values, sys_argv=argv)
        flag_values(argv)
        assert flag_values.config.suave.prototype_marginals == expected


def test_a_schedule_scaled_to_another_run_length_keeps_each_step_count_s_share_of_the_run():
    from selax.config_fields import scaled_schedule

    config = load_config("daino_default", None)
    config.optimizer.decay_boundaries = (300, 500)
    longer = scaled_schedule(config, 3 * config.num_steps)
    assert longer.num_steps == 1800
    assert (longer.optimizer.warmup_steps, longer.optimizer.decay_boundaries) == (300, (900, 1500))
    assert (longer.daino.unlabeled_rampup_steps, longer.daino.teacher_temperature_warmup_steps) == (600, 900)
    assert (longer.eval_every_steps, longer.checkpoint.every_steps) == (config.eval_every_steps, 300)
    assert (config.num_steps, config.daino.unlabeled_rampup_steps) == (600, 200)  # The input is not changed.
    with pytest.raises(TypeError):  # The copy keeps the fields' types.
        longer.dataset.image_size = "large"
    shorter = scaled_schedule(config, 3)  # Every count stays inside the run; a boundary after step 0.
    assert (shorter.optimizer.warmup_steps, shorter.optimizer.decay_boundaries) == (0, (2, 2))
    assert shorter.daino.teacher_temperature_warmup_steps == 2
    swav = load_config("imagenet_10pct", None)  # A queue's start follows from its length, not the run's.
    assert scaled_schedule(swav, 2 * swav.num_steps).suave.queue_start_step == swav.suave.queue_start_step


@pytest.mark.parametrize("num_epochs, num_steps, rampup_steps", [(0.1, 6, 2), (1.0, 20, 7)])
def test_a_run_lengthened_by_num_epochs_stretches_its_schedule(num_epochs, num_steps, rampup_steps):
    from selax import sharding

    config = load_config("daino_default", "smoke")  # 6 steps, the ramp-up over 2 of them.
    config.num_epochs = num_epochs  # 1,257 train images at 64 per step: 2 or 20 steps.
    experiment = train.Experiment(config, sharding.data_mesh())
    assert (experiment.num_steps, experiment.config.num_steps) == (num_steps, num_steps)
    assert experiment.hp.unlabeled_rampup_steps == rampup_steps
    assert experiment.hp.num_steps == num_steps  # The teacher's momentum schedule spans the run.
