"""The training loop: sharded step equality, exact resume after SIGKILL/SIGTERM, NaN stop, config errors."""

import importlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from selax import sharding, train, workdir
from selax.checkpoint import Checkpointer
from selax.config_fields import SMOKE_BATCH
from selax.optimizers import optimizer_from_config
from selax.reporting import HISTORY_FILE, read_history
from test_reporting import read_events

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from configs import default  # noqa: E402

# Long enough to be killed in the middle, short enough for CI.
# Checkpoints every 3 steps, records every 2: most resumes start between two records.
RESUME_FLAGS = ["--config.num_steps=12", "--config.checkpoint.every_steps=3", "--config.eval_every_steps=0"]


def smoke_config(**overrides):
    config = default.get_config("smoke")
    config.unlock()
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


def main_command(workdir, *flags):
    return [
        sys.executable,
        "-m",
        "selax.main",
        "--config=configs/default.py:smoke",
        f"--workdir={workdir}",
        *flags,
    ]


def test_a_run_with_no_device_count_set_uses_a_cpu_device_per_core(tmp_path):
    """Without $JAX_NUM_CPU_DEVICES (which every other test sets), selax.main splits its batches over one
    CPU device per core, as many as the batch sizes divide into."""
    environment = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    expected = sharding.cpu_device_count(list(SMOKE_BATCH.values()), len(os.sched_getaffinity(0)))
    flags = ("--config.num_steps=2", "--config.eval_every_steps=0", "--export=")
    run = subprocess.run(main_command(tmp_path, *flags), cwd=REPO, env=environment, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Process 0 of 1, {expected} devices." in run.stderr


def test_step_on_8_devices_equals_1_device():
    config = smoke_config()
    params = []
    for devices in (jax.devices()[:1], jax.devices()[:8]):
        experiment = train.Experiment(config, sharding.data_mesh(devices))
        state = experiment.init_state()
        for step in range(2):
            state, metrics = experiment.train_step(state, experiment.load_batch(step))
        params.append(jax.device_get(state.params))
        assert np.isfinite(float(metrics["total_loss"]))
    differences = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), *params)
    assert max(jax.tree_util.tree_leaves(differences)) <= 1e-5, differences


@pytest.mark.parametrize("config_module", ["default", "daino_default"])
def test_fsdp_step_equals_replicated_step_with_less_memory_per_device(tmp_path, config_module):
    """Suave, and Daino (whose teacher lives in the extras): 2 steps on 8 devices with the state split
    over them give the params of the replicated state; a checkpoint restores into either layout."""
    config = importlib.import_module(f"configs.{config_module}").get_config("smoke")
    # The digits configs' own widths: their last convolution (3 x 3 x 64 x 128) is big enough to split.
    config.model.encoder_kwargs.stage_widths = (32, 64, 128)
    mesh = sharding.data_mesh(jax.devices()[:8])
    states = {}
    for kind in sharding.STATE_SHARDINGS:
        config.state_sharding = kind
        experiment = train.Experiment(config, mesh)
        state = experiment.init_state()
        for step in range(2):
            state, _ = experiment.train_step(state, experiment.load_batch(step))
        states[kind] = state
    replicated, fsdp = states["replicated"], states["fsdp"]
    differences = jax.tree_util.tree_map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), replicated.params, fsdp.params
    )
    assert max(jax.tree_util.tree_leaves(differences)) <= 1e-5, differences

    split = [leaf for leaf in jax.tree_util.tree_leaves(fsdp) if "data" in leaf.sharding.spec]
    assert any(leaf.size >= sharding.FSDP_MIN_SIZE for leaf in split)
    assert all(leaf.addressable_shards[0].data.size == leaf.size // 8 for leaf in split)
    per_device = {kind: max(sharding.bytes_per_device(s).values()) for kind, s in states.items()}
    leaves = jax.tree_util.tree_leaves(fsdp)
    assert per_device["replicated"] == sum(leaf.nbytes for leaf in leaves)
    held = sum(leaf.nbytes // 8 if "data" in leaf.sharding.spec else leaf.nbytes for leaf in leaves)
    assert per_device["fsdp"] == held < per_device["replicated"], per_device

    checkpointer = Checkpointer(str(tmp_path / "checkpoints"))
    checkpointer.save(2, fsdp, force=True)
    checkpointer.close()
    restored = Checkpointer(str(tmp_path / "checkpoints")).restore(replicated)
    for leaf, target in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(replicated)):
        assert leaf.sharding.is_equivalent_to(target.sharding, leaf.ndim)
    equal = jax.tree_util.tree_map(
        lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), restored.params, fsdp.params
    )
    assert all(jax.tree_util.tree_leaves(equal))


def test_unknown_state_sharding_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"config.state_sharding='zero3' is not one of"):
        train.Experiment(smoke_config(state_sharding="zero3"), sharding.data_mesh(jax.devices()[:1]))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the resume configuration run from start to end in one process."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(
        main_command(workdir, *RESUME_FLAGS), cwd=REPO, check=True, capture_output=True, timeout=600
    )
    with open(workdir / "metrics.json") as f:
        return workdir, json.load(f)


def test_run_writes_metrics_curves_and_tensorboard(uninterrupted):
    workdir, metrics = uninterrupted
    for key in ("test/prototype_top1", "test/linear_top1", "test/knn_top1", "train/images_per_second"):
        assert key in metrics
        assert 0.0 <= metrics[key] if key.startswith("train") else 0.0 <= metrics[key] <= 1.0
    assert (workdir / "curves.png").stat().st_size > 0
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir / "tensorboard"))
    assert max(int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit()) == 12
    with open(workdir / "export" / "test.csv") as f:  # Written by selax.main at the end.
        rows = f.read().splitlines()
    assert rows[0].startswith("index,name,label,predicted_label,confidence") and len(rows) == 1 + 540
    # Training scalars are means over the steps since the last record: step 1 alone, step 2 alone (after
    # step 1's record), then the logging interval's 2 steps.
    _, schedule = optimizer_from_config(smoke_config().optimizer, 12)
    rates = [float(schedule(step)) for step in range(12)]
    logged = read_history(str(workdir / HISTORY_FILE), up_to_step=12)["train/learning_rate"]
    assert (logged[1], logged[2]) == pytest.approx((rates[0], rates[1]))
    for step in range(4, 13, 2):
        assert logged[step] == pytest.approx((rates[step - 2] + rates[step - 1]) / 2), step
    assert rates[2] != rates[3]  # The schedule moves inside an interval: a mean differs from a value.


def _wait_for(predicate, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("kill_signal", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_same_result(tmp_path, uninterrupted, kill_signal):
    reference_dir, reference = uninterrupted
    process = subprocess.Popen(
        main_command(tmp_path, *RESUME_FLAGS),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoints = tmp_path / "checkpoints"
    _wait_for(lambda: (checkpoints / "3").is_dir(), process)
    process.send_signal(kill_signal)
    _, stderr = process.communicate(timeout=120)
    if kill_signal == signal.SIGTERM:
        # A graceful stop saves the step it stopped at and says how to resume.
        assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
        assert "Run the same command to resume" in stderr
    else:
        assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "metrics.json").exists()

    # No export at the end (`uninterrupted`'s run checks it): what is compared is the training.
    resumed = subprocess.run(main_command(tmp_path, *RESUME_FLAGS, "--export="), cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stderr
    # Only a killed run leaves its workdir lock behind; the next run takes it over.
    assert ("Taking over the workdir" in resumed.stderr) == (kill_signal == signal.SIGKILL)
    with open(tmp_path / "metrics.json") as f:
        metrics = json.load(f)
    for key in ("test/prototype_top1", "test/linear_top1", "test/knn_top1"):
        assert metrics[key] == pytest.approx(reference[key], abs=1e-6), key

    # The history covers the whole run, each logged step once, as the uninterrupted run's does: the
    # points the killed run logged past its checkpoint are superseded.
    history = read_history(str(tmp_path / HISTORY_FILE), up_to_step=12)
    expected = read_history(str(reference_dir / HISTORY_FILE), up_to_step=12)
    assert sorted(history["train/total_loss"]) == [1, 2, 4, 6, 8, 10, 12]
    assert history.keys() == expected.keys()
    for name, points in expected.items():
        assert history[name].keys() == points.keys(), name
        if name.startswith("train/"):
            assert list(history[name].values()) == pytest.approx(list(points.values()), rel=1e-5), name
    events = read_events(tmp_path / "tensorboard")
    assert events.keys() == history.keys()
    assert all([step for step, _ in events[name]] == sorted(history[name]) for name in events)


def test_nonfinite_loss_stops_with_a_message_and_keeps_good_checkpoints(tmp_path):
    config = smoke_config(**{"optimizer.base_lr": float("nan"), "optimizer.warmup_steps": 0})
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(FloatingPointError, match="NaN or inf.*no checkpoint was written yet"):
        train.run(config, str(tmp_path))
    assert not (tmp_path / "metrics.json").exists()
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C works again for the caller.


def test_divergence_is_a_loss_far_above_the_median_of_its_history():
    assert train.divergence([2.3], 10.0) is None  # Nothing to compare with yet.
    assert train.divergence([2.3, 1.2e7], 10.0) == 2.3  # Blown up by the first logged step.
    assert train.divergence([2.3, 1.5, 1.0, 0.5, 0.3, 2.0], 10.0) is None  # A bump, not a blow-up.
    assert train.divergence([2.3, 1.5, 1.0, 0.5, 0.3, 12.0], 10.0) == 1.0
    assert train.divergence([2.3, 1.5, 1.0, 0.5, 0.3, 12.0], 20.0) is None
    assert train.divergence([2.3, 1.2e7, 1.5e7], 10.0) is None  # Reported once, where it blew up.


def test_a_diverging_loss_warns_or_stops_as_configured_saying_what_to_lower(tmp_path, caplog):
    checkpointer = Checkpointer(str(tmp_path / "checkpoints"))
    advice = r"Lower config.optimizer.base_lr \(now 1000\) or raise config.optimizer.warmup_steps \(now \d+\)"
    with caplog.at_level(logging.WARNING):
        train._check_divergence([2.3, 1.2e7], 50, smoke_config(**{"optimizer.base_lr": 1e3}), checkpointer)
    assert re.search(r"loss at step 50 \(1.2e\+07\) .* training is diverging. " + advice, caplog.text)
    config = smoke_config(**{"optimizer.base_lr": 1e3, "divergence.stop": True})
    with pytest.raises(FloatingPointError, match=advice + ".*Training stopped"):
        train._check_divergence([2.3, 1.2e7], 50, config, checkpointer)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"dataset.name": "mnist"}, "Unknown dataset 'mnist'"),
        ({"method": "swa"}, "config.method='swa' is not one of"),
        ({"num_steps": -5}, "config.num_steps=-5 must be a whole number >= 1"),
        ({"checkpoint.every_steps": 0}, "config.checkpoint.every_steps=0 must be"),
        ({"log_every_steps": 0}, "config.log_every_steps=0 must be"),
        ({"eval_every_steps": -1}, "config.eval_every_steps=-1 must be"),
        ({"divergence.factor": 0.5}, "config.divergence.factor=0.5 must be a number > 1"),
        ({"optimizer.name": "adam"}, "config.optimizer.name='adam'"),
        (
            {"batch.unlabeled": 60},
            "config.batch.unlabeled=60 must be a positive multiple of the device count",
        ),
        ({"dataset.labels_per_class": 1000}, "1000"),
        ({"model.init_checkpoint": "/nonexistent/ckpt"}, "config.model.init_checkpoint='/nonexistent/ckpt'"),
        ({"augment.num_local": -1}, "num_local"),
    ],
)
def test_bad_config_fails_at_start_naming_the_field(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train.run(smoke_config(**overrides), str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()


def test_a_run_on_a_workdir_in_use_refuses_before_writing_to_it(tmp_path):
    with workdir.lock(str(tmp_path)):
        with pytest.raises(RuntimeError, match=f"workdir {tmp_path} is in use by another selax run"):
            train.run(smoke_config(), str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()


def test_config_typo_on_the_command_line_is_refused(tmp_path):
    result = subprocess.run(
        main_command(tmp_path, "--config.optimzer.base_lr=1.0"), cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "optimzer" in result.stderr


def test_init_checkpoint_replaces_the_encoder_and_keeps_fresh_prototypes(tmp_path):
    from selax.models.convert import save_converted

    experiment = train.Experiment(smoke_config(), sharding.data_mesh(jax.devices()[:1]))
    fresh = experiment.init_state()
    pretrained = {
        "params": {"encoder": jax.tree_util.tree_map(lambda x: np.asarray(x) + 1.0, fresh.params["encoder"])},
        "batch_stats": {"encoder": jax.tree_util.tree_map(np.asarray, fresh.batch_stats["encoder"])},
    }
    save_converted(pretrained, str(tmp_path / "converted"))

    config = smoke_config(**{"model.init_checkpoint": str(tmp_path / "converted")})
    state = train.Experiment(config, sharding.data_mesh(jax.devices()[:1])).init_state()
    equal = jax.tree_util.tree_map(np.array_equal, state.params["encoder"], pretrained["params"]["encoder"])
    assert all(jax.tree_util.tree_leaves(equal))
    np.testing.assert_array_equal(state.params["head"]["prototypes"], fresh.params["head"]["prototypes"])

    wrong = {"params": {"encoder": {"conv0": {"kernel": np.zeros((3, 3, 1, 5), np.float32)}}}}
    save_converted(wrong, str(tmp_path / "wrong"))
    config = smoke_config(**{"model.init_checkpoint": str(tmp_path / "wrong")})
    with pytest.raises(ValueError, match="encoder does not match the model"):
        train.Experiment(config, sharding.data_mesh(jax.devices()[:1])).init_state()


def test_fine_tuning_starts_from_a_pretraining_workdir(uninterrupted):
    import orbax.checkpoint as ocp

    workdir, _ = uninterrupted
    config = smoke_config(**{"model.init_checkpoint": str(workdir), "suave.supervised_only": True})
    state = train.Experiment(config, sharding.data_mesh(jax.devices()[:1])).init_state()
    saved = ocp.StandardCheckpointer().restore(str(workdir / "checkpoints" / "12" / "state"))
    equal = jax.tree_util.tree_map(np.array_equal, jax.device_get(state.params), saved["params"])
    assert all(jax.tree_util.tree_leaves(equal))  # prototypes and linear head included


def test_a_pretraining_stage_trains_first_on_the_runs_data_and_starts_it(tmp_path):
    """`config.pretrain`: the named config trains first in WORKDIR/pretrain, with the run's data, seed and
    network; the run then starts from that workdir. A missing file fails before anything is written."""
    swav = os.path.join(REPO, "configs", "swav_default.py")
    config = smoke_config(**{"pretrain": f"{swav}:smoke", "seed": 3, "dataset.labels_per_class": 1})
    final = train.run(config, str(tmp_path))
    stage = tmp_path / train.PRETRAINING_DIR
    with open(stage / train.CONFIG_FILE) as f:
        stage_config = json.load(f)
    assert (stage_config["method"], stage_config["seed"], stage_config["pretrain"]) == ("swav", 3, "")
    assert stage_config["dataset"]["labels_per_class"] == 1
    assert stage_config["model"] == {**json.loads(config.model.to_json()), "encoder": "small_cnn"}
    assert (stage / "metrics.json").exists() and (stage / "checkpoints" / str(stage_config["num_steps"])).exists()
    with open(tmp_path / train.CONFIG_FILE) as f:
        assert json.load(f)["model"]["init_checkpoint"] == str(stage)
    assert final["train/steps"] == config.num_steps and 0.0 <= final["test/prototype_top1"] <= 1.0
    # The same command again: the finished stage is not run (nor evaluated) again.
    stage_files = {path: path.stat().st_mtime_ns for path in stage.iterdir() if path.is_file()}
    train.run(config, str(tmp_path))
    assert {path: path.stat().st_mtime_ns for path in stage.iterdir() if path.is_file()} == stage_files

    config = smoke_config(pretrain=str(tmp_path / "swav.py"))
    with pytest.raises(FileNotFoundError, match=r"config.pretrain='.*swav.py': no config file .* --config.pretrain="):
        train.run(config, str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def test_predict_split_fetches_each_batch_before_dispatching_the_next(monkeypatch):
    """A whole-split pass returns every example once, in order, and never has two batches' programs in
    flight (two independent sharded programs can deadlock XLA:CPU's collectives on few cores)."""
    num_devices = jax.device_count()
    images = np.arange(5 * num_devices, dtype=np.float32)[:, None]

    class Split:
        size = len(images)

        def read(self, positions):
            return images[positions], positions.astype(np.int32)

    events = []
    device_get = jax.device_get

    def predict(variables, batch, key):
        events.append("dispatch")
        return {"embedding": batch["images"] * variables["scale"], "unused": batch["labels"]}

    def logged_device_get(tree):
        events.append("fetch")
        return device_get(tree)

    monkeypatch.setattr(jax, "device_get", logged_device_get)
    mesh = sharding.data_mesh(jax.devices())
    outputs = train.predict_split(predict, {"scale": 3.0}, Split(), mesh, 2 * num_devices, keys=("embedding",))
    np.testing.assert_array_equal(outputs["embedding"], 3.0 * images)
    assert list(outputs) == ["embedding"]
    assert events == ["dispatch", "fetch"] * 3  # 5 devices' worth of rows in batches of 2 per device.


def test_what_the_data_decides_is_written_into_the_run_s_config():
    from selax.config_fields import sibling

    config = sibling(os.path.join(REPO, "configs", "x.py"), "folder").get_config("daino")
    assert config.dataset.image_size is None and config.model.encoder is None
    for num_train, image_size, encoder, num_steps in ((1_000, 13, "small_cnn", 600), (25_600, 48, "resnet18_cifar", 3000)):
        resolved = train.config_for_data(config, num_train, image_size)  # 30 epochs of 256-image batches.
        assert (resolved.dataset.image_size, resolved.model.encoder) == (image_size, encoder)
        assert resolved.num_steps == num_steps
        assert resolved.daino.unlabeled_rampup_steps == round(200 * num_steps / 600)
    assert config.dataset.image_size is None and config.num_steps == 600  # The input is not changed.
    config.dataset.image_size, config.model.encoder = 20, "resnet18_cifar"  # What is set stays.
    resolved = train.config_for_data(config, 1_000, 13)
    assert (resolved.dataset.image_size, resolved.model.encoder) == (20, "resnet18_cifar")


def test_a_schedule_that_outlasts_the_run_warns_naming_its_fields(caplog):
    config = default.get_config("smoke")  # 6 steps.
    config.optimizer.warmup_steps, config.suave.unlabeled_rampup_steps = 10, 6
    with caplog.at_level(logging.WARNING):
        train.Experiment(config, sharding.data_mesh(jax.devices()[:1]))
    assert "config.num_steps=6 steps: config.optimizer.warmup_steps=10, config.suave.unlabeled_rampup_steps=6." in caplog.text
    caplog.clear()
    config.optimizer.warmup_steps, config.suave.unlabeled_rampup_steps = 5, 5
    with caplog.at_level(logging.WARNING):
        train.Experiment(config, sharding.data_mesh(jax.devices()[:1]))
    assert "outlasts" not in caplog.text
