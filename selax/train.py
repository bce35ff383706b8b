"""The training loop, read top to bottom: config, mesh, data, model and state, step, resume, loop, report.

`run(config, workdir)` trains the method named by `config.method` and returns the final evaluation.
The config is read here, at the edge; everything it calls is pure functions of arrays and pytrees.
"""

import concurrent.futures
import contextlib
import copy
import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.training import train_state

from selax import evaluate, pictures, sharding
from selax.checkpoint import Checkpointer, load_pretrained
from selax.config_fields import pretraining_config, scaled_schedule, schedule_beyond_run
from selax.data import augment, datasets, pipeline
from selax.methods import get_method
from selax.methods.base import CLASSIFICATION, Method, RunInfo, SplitEmbeddings, StepInputs
from selax.models import encoder_for_image_size
from selax.models.network import network_from_config
from selax.optimizers import optimizer_from_config
from selax.reporting import METRICS_FILE, Reporter
from selax.workdir import lock as lock_workdir


class TrainState(train_state.TrainState):
    """Params, optimizer state and step, plus BatchNorm statistics, the method's extras and the run's key.

    `nonfinite_steps` counts steps whose loss or updated params were NaN or inf. Such a step leaves the
    state as it was, so the state, and every checkpoint of it, is the last good one.
    """

    batch_stats: Any
    extras: Any
    rng: jax.Array
    nonfinite_steps: jax.Array


# ------------------------------------------------------------------------------------------------------
# The step: pure, jitted over the mesh by `run`.


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    method: Method,
    hp: Any,
    crop_spec: augment.MultiCropSpec,
    labeled_spec: augment.LightSpec,
    schedule: optax.Schedule,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a global batch.

    `batch`: `unlabeled_images [Bu, H, W, C]` uint8, `unlabeled_positions [Bu]` int32 (train positions),
    and, unless the run has no labeled stream, `labeled_images [Bl, H, W, C]` uint8, `labels [Bl]` int32.
    Augmentation runs here, on the device, from a key that depends only on the run's key and the step, so
    a resumed run draws the same views as an uninterrupted one. The method sees `views`: `unlabeled` (the
    multi-crop views), `unlabeled_positions` and, with a labeled stream, `labeled`.
    """
    step_key = jax.random.fold_in(state.rng, state.step)
    crop_key, labeled_key, loss_key = jax.random.split(step_key, 3)
    views = dict(
        unlabeled=augment.multi_crop(crop_key, batch["unlabeled_images"], crop_spec),
        unlabeled_positions=batch["unlabeled_positions"],
    )
    if "labeled_images" in batch:
        views["labeled"] = augment.light_augment(labeled_key, batch["labeled_images"], labeled_spec)

    inputs = StepInputs(
        state.apply_fn, state.batch_stats, state.extras, views, batch.get("labels"), state.step, loss_key
    )

    def loss_fn(params):
        return method.loss_fn(hp, params, inputs)

    (loss, (batch_stats, extras, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = method.mask_gradients(hp, grads, state.step)
    updated = state.apply_gradients(grads=grads, batch_stats=batch_stats, extras=extras)
    params, extras = method.after_update(hp, updated.params, updated.extras, state.step)
    updated = updated.replace(params=params, extras=extras)

    finite = jnp.isfinite(loss) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(updated.params)])
    )
    new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), updated, state)
    new_state = new_state.replace(nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32))
    return new_state, dict(metrics, total_loss=loss, learning_rate=schedule(state.step))


# The outputs of `predict_fn` that evaluation reads (`embedding` is read by label updates).
EVAL_OUTPUTS = ("features", "head_scores", "linear_logits", "labels")

# What the network sees when predicting: `(images [B, H, W, C] uint8, positions [B] int32, key) ->
# network input`.
InputTransform = Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array]


def eval_input(spec: augment.EvalSpec) -> InputTransform:
    """The deterministic evaluation view (`key` and `positions` unused)."""
    return lambda images, positions, key: augment.eval_transform(images, spec)


def training_view_input(spec: augment.MultiCropSpec) -> InputTransform:
    """One training view per image (the first global view of `spec`), drawn from `key` and the image's
    position in the split, so the same on any number of devices or processes."""
    return lambda images, positions, key: augment.training_view_at_positions(key, positions, images, spec)


def predict_fn(
    apply_fn: Callable[..., Any], transform: InputTransform
) -> Callable[..., dict[str, jax.Array]]:
    """`(variables, {images [B, H, W, C] uint8, labels [B], positions [B]}, key) -> {features [B, D],
    embedding [B, E], head_scores [B, K], linear_logits [B, C], labels [B]}` of the network in eval mode on
    `transform`'s view of the images; jitted with replicated outputs, every process gets all rows.

    Several heads' scores `[T, B, K]` are returned as `[B, T, K]`, batch first like every output.
    """

    def predict(variables: Any, batch: dict[str, jax.Array], key: jax.Array | None) -> dict[str, jax.Array]:
        images = transform(batch["images"], batch["positions"], key)
        outputs = apply_fn(variables, images, train=False)
        if outputs["head_scores"].ndim == 3:
            outputs = dict(outputs, head_scores=jnp.swapaxes(outputs["head_scores"], 0, 1))
        return dict(
            {k: outputs[k] for k in ("features", "embedding", "head_scores", "linear_logits")},
            labels=batch["labels"],
        )

    return predict


def predict_split(
    predict: Callable[..., Any],
    variables: Any,
    split: datasets.SplitReader,
    mesh: jax.sharding.Mesh,
    batch_size: int,
    keys: tuple[str, ...] = EVAL_OUTPUTS,
    key: jax.Array | None = None,
) -> dict[str, np.ndarray]:
    """The outputs `keys` of `predict` (with PRNG `key`, for random views) over every example of `split`
    (no dropped remainder: the last batch is padded and the padding cut off), as host arrays with
    `split.size` rows.

    As in the training loop, the next batch is read (and decoded) on a host thread while the current one
    runs. One batch is computed at a time: the batches do not depend on each other, and two sharded
    programs in flight at once can deadlock XLA:CPU (`Experiment.one_program_at_a_time`)."""

    def load(positions: np.ndarray) -> dict[str, jax.Array]:
        images, labels = split.read(positions)
        return pipeline.global_batch(mesh, dict(images=images, labels=labels, positions=positions.astype(np.int32)))

    outputs: dict[str, list[np.ndarray]] = {}

    def fetch(result: dict[str, jax.Array]) -> None:
        for name, value in jax.device_get(result).items():
            outputs.setdefault(name, []).append(np.asarray(value))

    batches = [positions for positions, _ in pipeline.eval_batches(split.size, batch_size)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-read") as reader:
        next_batch = reader.submit(load, batches[0])
        for index in range(len(batches)):
            batch = next_batch.result()
            if index + 1 < len(batches):
                next_batch = reader.submit(load, batches[index + 1])
            fetch({k: v for k, v in predict(variables, batch, key).items() if k in keys})
    return {name: np.concatenate(values)[: split.size] for name, values in outputs.items()}


# ------------------------------------------------------------------------------------------------------
# The run.


COUNTS = ("num_steps", "log_every_steps", "checkpoint.every_steps", "checkpoint.keep", "eval.knn_k")


def validate_config(config: ml_collections.ConfigDict, method: Method, num_devices: int) -> None:
    """Fails at start-up, naming the field, on a config that cannot run."""
    for field in COUNTS:
        value = functools.reduce(getattr, field.split("."), config)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"config.{field}={value!r} must be a whole number >= 1.")
    if config.num_epochs is not None and not config.num_epochs > 0:
        raise ValueError(f"config.num_epochs={config.num_epochs!r} must be > 0 (or None: config.num_steps steps).")
    if not isinstance(config.dataset.labels_per_class, int) or config.dataset.labels_per_class < 0:
        raise ValueError(
            f"config.dataset.labels_per_class={config.dataset.labels_per_class!r} must be a whole number >= 0"
            " (0: every labeled image)."
        )
    if not isinstance(config.divergence.factor, (int, float)) or not config.divergence.factor > 1:
        raise ValueError(f"config.divergence.factor={config.divergence.factor!r} must be a number > 1.")
    if not isinstance(config.eval_every_steps, int) or config.eval_every_steps < 0:
        raise ValueError(
            f"config.eval_every_steps={config.eval_every_steps!r} must be a whole number >= 0 (0: only the"
            " final evaluation)."
        )
    datasets.get(config.dataset.name)
    for field in ("unlabeled", "labeled", "eval"):
        size = config.batch[field]
        if field == "labeled" and size == 0 and not method.uses_labels:
            continue  # No labeled stream: a method that reads no label.
        if size <= 0 or size % num_devices:
            raise ValueError(
                f"config.batch.{field}={size} must be a positive multiple of the device count ({num_devices}):"
                f" set it to {max(num_devices, size - size % num_devices)} or a multiple of {num_devices}."
            )
    init = config.model.get("init_checkpoint")
    if init and not os.path.exists(os.path.expanduser(init)):
        raise ValueError(
            f"config.model.init_checkpoint={init!r} does not exist: convert your PyTorch weights with"
            " `python -m selax.models.convert` and point the config at the output directory (or name the"
            " workdir of a selax pre-training run)."
        )


def config_for_data(config: ml_collections.ConfigDict, num_train: int, image_size: int) -> ml_collections.ConfigDict:
    """A copy of `config` with what the training split (`num_train` images of side `image_size`) decides
    written in, so that the run's `config.json` rebuilds the same run (a resume, `selax.export`, on
    another host): the stored side and its encoder where unset, and, when `num_epochs` passes take more
    than `num_steps` steps, that many steps with the schedule scaled to them (`scaled_schedule`)."""
    config = copy.deepcopy(config)
    config.dataset.image_size = config.dataset.image_size or image_size
    config.model.encoder = config.model.encoder or encoder_for_image_size(image_size)
    if config.num_epochs is None:
        return config
    epoch_steps = math.ceil(config.num_epochs * num_train / config.batch.unlabeled)
    if epoch_steps <= config.num_steps:
        return config
    logging.info(
        "%g epochs of %d images: %d steps, the schedule's step counts scaled from a %d-step run.",
        config.num_epochs, num_train, epoch_steps, config.num_steps,
    )
    return scaled_schedule(config, epoch_steps)


class _RunPredictions:
    """`evaluate.RunPredictions` of one state: each split predicted once, on first use."""

    def __init__(self, experiment: "Experiment", state: TrainState):
        self.experiment, self.state = experiment, state
        self.num_classes = experiment.train.num_classes
        self._outputs: dict[str, dict[str, np.ndarray]] = {}

    def _split(self, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        if name not in self._outputs:
            self._outputs[name] = self.experiment.predict(self.state, getattr(self.experiment, name), keys)
        return self._outputs[name]

    def test(self) -> dict[str, np.ndarray]:
        return self._split("test", EVAL_OUTPUTS)

    def labeled(self) -> dict[str, np.ndarray]:
        return self._split("labeled", ("features", "labels"))

    def train(self) -> dict[str, np.ndarray]:
        return self._split("train", ("features", "labels"))

    def cluster_labels(self) -> np.ndarray | None:
        return self.experiment.cluster_labels(self.state)


class Experiment:
    """Everything a run needs, built from the config (the edge): data, model, jitted step and evaluation.

    `init_state()`, `load_batch(step)`, `train_step(state, batch)`, `update_extras(state, step)` and
    `evaluate(state)` are what the loop calls; tests call them directly, for example on meshes of
    different sizes.
    """

    def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
        self.method = method = get_method(config.method)
        validate_config(config, method, mesh.size)
        # XLA:CPU runs each device's part of a sharded program on one shared pool of worker threads, and a
        # part waiting at a collective holds its thread: two sharded programs in flight at once can hold
        # every thread on a few cores and deadlock (seen with 2 CPU devices on 2 cores). On a CPU mesh of
        # several devices the loop therefore lets each step and label update finish before the next.
        self.one_program_at_a_time = mesh.size > 1 and mesh.devices.flat[0].platform == "cpu"

        # --- Data ----------------------------------------------------------------------------------
        splits = datasets.open_splits(config.dataset.name, config.dataset, config.dataset.data_dir)
        self.train, self.labeled, self.test = splits.train, splits.labeled, splits.test
        self.class_names = splits.class_names
        config = config_for_data(config, self.train.size, self.train.image_shape[0])
        unfinished = schedule_beyond_run(config)
        if unfinished:
            logging.warning(
                "The schedule outlasts the run of config.num_steps=%d steps: config.%s. Lower it too, or set"
                " config.num_epochs (with num_steps at the recipe's), which scales the whole schedule.",
                config.num_steps, ", config.".join(unfinished),
            )
        self.config, self.mesh, self.num_steps = config, mesh, config.num_steps
        num_epochs = self.num_steps * config.batch.unlabeled / self.train.size
        info = RunInfo(
            self.train.num_classes,
            self.train.size,
            self.num_steps,
            config.seed,
            num_epochs,
            pretrained=bool(config.model.init_checkpoint),
        )
        self.hp = hp = method.hparams_from_config(config.method, config[config.method], info)
        self.unlabeled_stream, self.labeled_stream = pipeline.semi_supervised_streams(
            self.train.size,
            np.arange(self.labeled.size),
            config.batch.unlabeled,
            config.batch.labeled or self.labeled.size,  # Unused when there is no labeled stream.
            config.seed,
        )
        self.update_steps = frozenset(method.update_steps(hp))
        crop_spec, labeled_spec, self.eval_spec = augment.specs_from_config(splits.augment, config.augment)

        # --- Model and optimizer -------------------------------------------------------------------
        self.model = network_from_config(config.model, method.build_head(hp), self.train.num_classes)
        self.optimizer, schedule = optimizer_from_config(config.optimizer, self.num_steps)

        # --- Shardings and compiled functions -------------------------------------------------------
        replicated = sharding.replicated(mesh)
        abstract_state = jax.eval_shape(self._init_state, jax.random.PRNGKey(0))
        self.state_sharding = sharding.state_shardings(mesh, abstract_state, config.state_sharding)
        self._init = jax.jit(self._init_state, out_shardings=self.state_sharding)
        step = functools.partial(
            train_step,
            method=method,
            hp=hp,
            crop_spec=crop_spec,
            labeled_spec=labeled_spec,
            schedule=schedule,
        )
        self.train_step = jax.jit(
            step,
            in_shardings=(self.state_sharding, sharding.batch_sharded(mesh)),
            out_shardings=(self.state_sharding, replicated),
            donate_argnums=(0,),
        )
        self._predictors = {
            "eval": jax.jit(predict_fn(self.model.apply, eval_input(self.eval_spec)), out_shardings=replicated),
            "training": jax.jit(
                predict_fn(self.model.apply, training_view_input(crop_spec)), out_shardings=replicated
            ),
        }

    def _init_state(self, rng: jax.Array) -> TrainState:
        init_key, run_key = jax.random.split(rng)
        example = jnp.zeros((1, *self.train.image_shape), jnp.float32)
        variables = self.model.init(init_key, example, train=False)
        params, _ = self.method.after_update(self.hp, variables["params"], None, jnp.zeros((), jnp.int32))
        return TrainState.create(
            apply_fn=self.model.apply,
            params=params,
            tx=self.optimizer,
            batch_stats=variables.get("batch_stats", {}),
            extras=self.method.init_extras(self.hp, params, variables.get("batch_stats", {})),
            rng=run_key,
            nonfinite_steps=jnp.zeros((), jnp.int32),
        )

    def init_state(self) -> TrainState:
        """The state at step 0, laid out by `config.state_sharding`: a pure function of `config.seed`, with
        the encoder (and projector) taken from `config.model.init_checkpoint` when one is named."""
        state = self._init(jax.random.PRNGKey(self.config.seed))
        if not self.config.model.init_checkpoint:
            return state
        variables = load_pretrained(
            {"params": state.params, "batch_stats": state.batch_stats}, self.config.model.init_checkpoint
        )
        # The method's extras start from the pretrained network (Daino's teacher is a copy of it: its own
        # buffers, as the step donates the whole state and a buffer may be donated only once).
        extras = jax.tree.map(jnp.copy, self.method.init_extras(self.hp, variables["params"], variables["batch_stats"]))
        state = state.replace(params=variables["params"], batch_stats=variables["batch_stats"], extras=extras)
        return jax.device_put(state, self.state_sharding)

    def load_batch(self, step: int) -> dict[str, jax.Array]:
        """The global batch of `step`: this process reads its slice of both streams."""
        unlabeled = self.unlabeled_stream.local_batch(step)
        unlabeled_images, _ = self.train.read(unlabeled)
        local = dict(unlabeled_images=unlabeled_images, unlabeled_positions=unlabeled.astype(np.int32))
        if self.config.batch.labeled:
            labeled_images, labels = self.labeled.read(self.labeled_stream.local_batch(step))
            local.update(labeled_images=labeled_images, labels=labels)
        return pipeline.global_batch(self.mesh, local)

    def cluster_labels(self, state: TrainState) -> np.ndarray | None:
        """The method's pseudo-labels `[T, N]` of the training split (SeLa's), on the host, or None."""
        labels = self.method.cluster_labels(state.extras)
        return None if labels is None else np.asarray(jax.device_get(labels))

    def eval_variables(self, state: TrainState) -> dict[str, Any]:
        """The variables the method evaluates (Daino and DINO: the teacher's)."""
        return self.method.eval_variables(state.params, state.batch_stats, state.extras)

    def update_extras(self, state: TrainState, step: int) -> TrainState:
        """Before the method's scheduled steps (SeLa's label updates, Suave's estimates of the class
        prior), recomputes the extras over whole splits (`SplitEmbeddings`); otherwise returns `state`."""
        if step not in self.update_steps:
            return state

        def labeled() -> tuple[np.ndarray, np.ndarray]:
            outputs = self.predict(state, self.labeled, keys=("embedding", "labels"))
            return outputs["embedding"], outputs["labels"]

        embed = SplitEmbeddings(functools.partial(self.train_embeddings, state), labeled)
        params = self.eval_variables(state)["params"]
        extras = self.method.update_extras(self.hp, state.extras, params, step, embed)
        extras = jax.device_put(extras, self.state_sharding.extras)
        if self.one_program_at_a_time:
            jax.block_until_ready(extras)
        return state.replace(extras=extras)

    def train_embeddings(self, state: TrainState, view: str, key: jax.Array | None) -> np.ndarray:
        """The embeddings `[N, E]` of the training split in train order, each image through `view`:
        "training" (one training view, drawn from `key` and the image's position, so the same on any number
        of devices or processes) or "eval" (the evaluation transform)."""
        outputs = predict_split(
            self._predictors[view],
            self.eval_variables(state),
            self.train,
            self.mesh,
            self.config.batch.eval,
            keys=("embedding",),
            key=key,
        )
        return outputs["embedding"]

    def predict(
        self,
        state: TrainState,
        split: datasets.SplitReader,
        keys: tuple[str, ...] = EVAL_OUTPUTS,
    ) -> dict[str, np.ndarray]:
        """The evaluation outputs `keys` (`predict_fn`) of the method's eval variables on every example of
        `split` (e.g. `self.test`), as host arrays in split order."""
        return predict_split(
            self._predictors["eval"], self.eval_variables(state), split, self.mesh, self.config.batch.eval, keys
        )

    def evaluate(self, state: TrainState, predictions: "_RunPredictions | None" = None) -> dict[str, float]:
        """The metrics of the evaluations the method names (`selax.evaluate.EVALUATIONS`), from `predictions`
        of `state` when given (each split is predicted once)."""
        predictions = predictions or _RunPredictions(self, state)
        report = {}
        for name in self.method.evaluations:
            report.update(
                evaluate.EVALUATIONS[name](predictions, self.config.eval.knn_k, self.config.eval.knn_temperature)
            )
        return report

    def pictures(self, predictions: "_RunPredictions") -> dict[str, Any]:
        """The run's figures (`selax.pictures`) on the test split: a 2-D map of the features by class (and
        by the head's cluster, for a clustering method), the confusion matrix of a classifier, and each
        cluster's most confident images."""
        test = predictions.test()
        labels = test["labels"]
        names = self.class_names or tuple(str(c) for c in range(self.test.num_classes))
        probabilities = np.asarray(self.method.head_probabilities(self.hp, test["head_scores"]))
        first_head = probabilities if probabilities.ndim == 2 else probabilities[:, 0]
        predicted, confidence = first_head.argmax(-1), first_head.max(-1)
        figures = {}
        if CLASSIFICATION in self.method.evaluations:
            figures["embedding_map"] = pictures.embedding_map(test["features"], labels, names, seed=self.config.seed)
            outputs = evaluate.output_names(names, probabilities.shape[-1])
            figures["confusion_matrix"] = pictures.confusion_matrix(labels, predicted, names, outputs)
        else:
            figures["embedding_map"] = pictures.embedding_map(
                test["features"], labels, names, clusters=predicted, seed=self.config.seed
            )
            shown = pictures.gallery_positions(predicted, confidence)
            images = np.zeros((self.test.size, *self.test.image_shape), np.uint8)
            images[shown] = self.test.read(shown)[0]
            figures["cluster_gallery"] = pictures.cluster_gallery(images, predicted, confidence)
        return figures


CONFIG_FILE = "config.json"
# Fields whose change makes a workdir's checkpoints another model's: a resume with other values is refused.
SHAPE_FIELDS = ("method", "model.", "dataset.name")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def record_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes the run's config as `workdir/config.json` (what `selax.export` rebuilds the run from). When
    the workdir already holds one that differs, warns naming the fields, or refuses when a changed field
    changes what the checkpoints hold (`SHAPE_FIELDS`)."""
    path = os.path.join(workdir, CONFIG_FILE)
    current = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        with open(path) as f:
            previous_flat, current_flat = _flat(json.load(f)), _flat(current)
        changed = sorted(k for k in previous_flat.keys() | current_flat.keys() if previous_flat.get(k) != current_flat.get(k))
        details = "\n".join(f"  {k}: {previous_flat.get(k)!r} -> {current_flat.get(k)!r}" for k in changed)
        if any(k == f or (f.endswith(".") and k.startswith(f)) for k in changed for f in SHAPE_FIELDS):
            raise ValueError(
                f"{workdir} holds a run of another model or method:\n{details}\nUse a new --workdir, or the"
                " workdir's own config."
            )
        if changed:
            logging.warning("Resuming %s with a config that differs from its %s:\n%s", workdir, CONFIG_FILE, details)
    with open(path + ".tmp", "w") as f:
        json.dump(current, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


PRETRAINING_DIR = "pretrain"


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains and evaluates as `config` says, checkpointing to and resuming from `workdir`.

    With `config.pretrain`, its stage runs first in `workdir/pretrain` (resuming there too; a finished
    stage, one with its metrics file, is not run again), and this run starts from that workdir's encoder
    and projector.
    """
    if config.pretrain:
        stage = pretraining_config(config)  # A bad file name fails here, before anything runs.
        validate_config(config, get_method(config.method), sharding.data_mesh().size)
        stage_dir = os.path.join(workdir, PRETRAINING_DIR)
        if os.path.exists(os.path.join(stage_dir, METRICS_FILE)):
            logging.info("Pre-training stage (config.pretrain=%s) finished in %s.", config.pretrain, stage_dir)
        else:
            logging.info("Pre-training stage (config.pretrain=%s) in %s.", config.pretrain, stage_dir)
            run(stage, stage_dir)
        config = copy.deepcopy(config)
        config.model.init_checkpoint = stage_dir
    experiment = Experiment(config, sharding.data_mesh())
    os.makedirs(workdir, exist_ok=True)
    # One run per workdir; the processes of one multi-process job share it, process 0 holding it.
    with lock_workdir(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        return _train(experiment, workdir)


def _train(experiment: Experiment, workdir: str) -> dict[str, float]:
    """`run` in the workdir it holds: resume, loop, final evaluation and report."""
    config = experiment.config
    is_main = jax.process_index() == 0
    if is_main:
        record_config(config, workdir)
    state = experiment.init_state()
    total_steps = experiment.num_steps

    # --- Resume ------------------------------------------------------------------------------------
    checkpointer = Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep, every_steps=config.checkpoint.every_steps
    )
    state, restored = checkpointer.restore_newest(state)
    start_step = int(state.step)
    # JAX's preemption sync picks the step after the newest one any process has reported: report this one
    # before anything else can take time, so that a SIGTERM from now on stops the job inside this run.
    checkpointer.reached_preemption(start_step)
    if restored is not None:
        logging.info("Resumed from %s at step %d.", workdir, restored)

    # --- Loop --------------------------------------------------------------------------------------
    images_per_step = config.batch.unlabeled + config.batch.labeled
    reporter = Reporter(
        workdir,
        total_steps,
        start_step,
        active=is_main,
        wandb_project=config.logging.wandb_project,
        run_config=config.to_dict(),
    )
    # Several processes: SIGTERM is JAX's preemption notice (its handler tells every process), not ours.
    stop = _StopOnSignal((signal.SIGINT,) if jax.process_count() > 1 else (signal.SIGTERM, signal.SIGINT))
    reporter.start_timer(start_step)
    wall_start = time.perf_counter()
    rates = []
    prefetcher = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
    next_batch = prefetcher.submit(experiment.load_batch, start_step)
    # The sums since the last record that the checkpoint resumed from was saved with (its step need not
    # be a record's): the records go on as in a run that was never stopped.
    metric_sums, summed_steps = reporter.resumed_sums()
    try:
        for step in range(start_step, total_steps):
            state = experiment.update_extras(state, step)
            batch = next_batch.result()
            if step + 1 < total_steps:  # Read the next batch while this step runs.
                next_batch = prefetcher.submit(experiment.load_batch, step + 1)
            state, metrics = experiment.train_step(state, batch)
            if experiment.one_program_at_a_time:
                jax.block_until_ready(metrics)
            # Sums on the device since the last record (off a CPU mesh, without waiting for the step).
            metric_sums = metrics if metric_sums is None else jax.tree.map(jnp.add, metric_sums, metrics)
            summed_steps += 1
            done = step + 1
            log = done % config.log_every_steps == 0 or done == total_steps
            # Step 1 is recorded too (with no progress line: its time is the compilation's): the loss at
            # the start is the scale a divergence is measured against.
            if log or done == 1:
                _check_finite(state, done, checkpointer)
                # The means over the steps since the last record.
                scalars = {f"train/{k}": float(v) / summed_steps for k, v in jax.device_get(metric_sums).items()}
                metric_sums, summed_steps = None, 0
                if log:
                    loss = {"loss": scalars["train/total_loss"]}
                    rates.append(reporter.progress(done, loss, images_per_step))
                reporter.write_scalars(done, scalars)
                _check_divergence(reporter.values("train/total_loss"), done, config, checkpointer)
            if config.eval_every_steps and done % config.eval_every_steps == 0 and done < total_steps:
                scalars = experiment.evaluate(state)
                logging.info(
                    "step %d: %s", done, ", ".join(f"{k}={v:.4f}" for k, v in sorted(scalars.items()))
                )
                reporter.write_scalars(done, scalars)
            # Orbax decides, asked at every step on every process: the interval, or the step a
            # multi-process job agreed on after a SIGTERM (JAX's preemption sync).
            preempted = checkpointer.reached_preemption(done)
            if checkpointer.should_save(done) or stop.signum is not None:
                _check_finite(state, done, checkpointer)
                checkpointer.save(done, state, force=True)
                reporter.keep_sums(done, jax.device_get(metric_sums), summed_steps)
            if stop.signum is not None or preempted:
                checkpointer.close()
                signum = stop.signum or signal.SIGTERM
                logging.warning(
                    "Stopped by signal %d at step %d%s; checkpoint saved. Run the same command to resume.",
                    signum,
                    done,
                    " (the step every process agreed on)" if preempted else "",
                )
                raise SystemExit(128 + signum)
    finally:  # Also on a stop or an error: the caller gets its signal handlers back.
        stop.restore()
        prefetcher.shutdown()
    train_seconds = time.perf_counter() - wall_start

    # --- Final evaluation and report ---------------------------------------------------------------
    _check_finite(state, total_steps, checkpointer)
    if checkpointer.latest_step != total_steps:
        checkpointer.save(total_steps, state, force=True)
    checkpointer.close()
    predictions = _RunPredictions(experiment, state)
    final = experiment.evaluate(state, predictions)
    if is_main and config.pictures:
        for name, figure in experiment.pictures(predictions).items():
            reporter.write_figure(total_steps, name, figure)
    final.update(
        {
            "train/steps": total_steps,
            "train/wall_seconds_this_run": train_seconds,
            "train/images_per_second": float(np.median(rates[1:] if len(rates) > 1 else rates))
            if rates
            else 0.0,
        }
    )
    reporter.write_scalars(total_steps, {k: v for k, v in final.items() if k.startswith("test/")})
    reporter.finish(workdir, final)
    logging.info("Final: %s", ", ".join(f"{k}={v:.4g}" for k, v in sorted(final.items())))
    return final


def _check_finite(state: TrainState, step: int, checkpointer: Checkpointer) -> None:
    """Stops the run when a loss was NaN or inf; the saved checkpoints hold only good states."""
    bad = int(jax.device_get(state.nonfinite_steps))
    if bad:
        checkpointer.close()
        kept = checkpointer.latest_step
        kept = "no checkpoint was written yet" if kept is None else f"the last good checkpoint (step {kept}) is kept"
        raise FloatingPointError(
            f"The loss was NaN or inf at {bad} step(s) up to step {step}; training stopped. Those steps were"
            f" not applied and {kept}. Lower config.optimizer.base_lr, raise warmup_steps or check the input"
            " data, then rerun."
        )


def divergence(losses: Sequence[float], factor: float) -> float | None:
    """The median of the earlier `losses` (logged losses in step order) when the last one exceeds it
    `factor` times, a loss blowing up relative to its own history; otherwise None."""
    if len(losses) < 2:
        return None
    reference = float(np.median(losses[:-1]))
    return reference if 0 < reference and factor * reference < losses[-1] else None


def _check_divergence(
    losses: Sequence[float], step: int, config: ml_collections.ConfigDict, checkpointer: Checkpointer
) -> None:
    """Warns on a diverging loss (`divergence`), or stops the run when `config.divergence.stop`."""
    reference = divergence(losses, config.divergence.factor)
    if reference is None:
        return
    message = (
        f"The loss at step {step} ({losses[-1]:.4g}) is over {config.divergence.factor:g} times the median of"
        f" the losses logged before it ({reference:.4g}): training is diverging. Lower"
        f" config.optimizer.base_lr (now {config.optimizer.base_lr:g}) or raise config.optimizer.warmup_steps"
        f" (now {config.optimizer.warmup_steps}), and rerun in a fresh workdir (this one's checkpoints hold"
        " the diverging state)."
    )
    if not config.divergence.stop:
        logging.warning("%s (config.divergence.stop=True stops the run on this.)", message)
        return
    checkpointer.close()
    raise FloatingPointError(f"{message} Training stopped (config.divergence.stop=True).")


class _StopOnSignal:
    """Records `signals` so the loop can save a checkpoint and exit at the end of the step."""

    def __init__(self, signals: tuple[int, ...]):
        self.signum: int | None = None
        self._previous = {s: signal.signal(s, self._handle) for s in signals}

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        self.signum = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
