"""The base every config file builds on: each shared field and default declared once, the config
argument's parser, and the one `:smoke` variant.

A config file (`configs/*.py`) defines `get_config(arg)`: it starts from `base(method)`, changes what
its recipe changes, and ends with `finish(config, args)`, which applies `:smoke` when asked. A field
left `None` means "the default": for `config.augment`, the dataset's recipe (its registry entry,
`selax.data.datasets.DATASETS`); for a method's section, what its `HParams` says.
"""

import copy
import importlib.util
import os
import types
import typing
from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder

from selax.methods import get_method
from selax.methods.base import config_defaults
from selax.data.datasets import IMAGE_FOLDER
from selax.models import encoder_for_image_size, get_encoder

# The `:smoke` variant: a few steps on the embedded digits, logging, evaluating and checkpointing on the way.
SMOKE_STEPS = 6
SMOKE_IMAGE_SIZE = 8
SMOKE_BATCH = dict(unlabeled=64, labeled=16, eval=128)


def augment_overrides() -> ml_collections.ConfigDict:
    """`config.augment`: every augmentation parameter, `None` = the dataset's default."""
    return ml_collections.ConfigDict(
        dict(
            global_size=placeholder(int),
            global_scale=placeholder(tuple),
            local_size=placeholder(int),
            local_scale=placeholder(tuple),
            num_local=placeholder(int),
            ratio=placeholder(tuple),
            flip_prob=placeholder(float),
            jitter_prob=placeholder(float),
            jitter_strength=placeholder(float),
            gray_prob=placeholder(float),
            blur_prob=placeholder(float),
            blur_sigma=placeholder(tuple),
            solarize_prob=placeholder(float),
            labeled_pad=placeholder(int),
            labeled_flip_prob=placeholder(float),
        )
    )


def _placeholder_type(annotation: Any) -> type:
    """The config type of an optional hyper-parameter: `int | None` -> int, `tuple[float, ...] | None` -> tuple;
    several types (`tuple[float, ...] | str | None`) -> object, which the command line fills with either."""
    inner = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(inner) > 1:
        return object
    return typing.get_origin(inner[0]) or inner[0]


def method_fields(method: str, **overrides: Any) -> ml_collections.ConfigDict:
    """`config.<method>`: the method's configurable hyper-parameters with their `HParams` defaults."""
    hparams = get_method(method).hparams
    hints = typing.get_type_hints(hparams)
    fields = {
        name: placeholder(_placeholder_type(hints[name])) if default is None else default
        for name, default in config_defaults(hparams).items()
    }
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"config.{method} has no field(s) {unknown}; its fields are {sorted(fields)}.")
    config = ml_collections.ConfigDict(fields)
    config.update(overrides)
    return config


def base(method: str) -> ml_collections.ConfigDict:
    """Every field a run reads, with the defaults of a small digits run; recipes change what differs."""
    config = ml_collections.ConfigDict()
    config.method = method
    config.seed = 0
    config.state_sharding = "replicated"  # "fsdp": params, optimizer state and extras split over devices.
    # labels_per_class: labeled images per class (0: every labeled image); unlabeled_classes: classes
    # with no labeled example, left for the extra prototypes to discover; image_size: the side images are
    # decoded to on the host (None: the dataset's own; an image folder's from its images). The folders
    # and switches of `image_folder` (selax.data.folders, configs/folder.py): train_dir, test_dir (None:
    # hold out test_fraction of train_dir, by split_seed), unlabeled_dir, strict_images (an undecodable
    # file is an error instead of skipped).
    config.dataset = dict(
        name="digits",
        data_dir=placeholder(str),
        labels_per_class=2,
        split_seed=0,
        unlabeled_classes=(),
        image_size=placeholder(int),
        train_dir=placeholder(str),
        test_dir=placeholder(str),
        unlabeled_dir=placeholder(str),
        test_fraction=0.2,
        strict_images=False,
    )
    config.model = dict(
        encoder="small_cnn",
        encoder_kwargs=dict(),
        projector_hidden=placeholder(tuple),  # None: the head sits on the encoder features.
        embedding_dim=0,
        init_checkpoint="",  # A converted checkpoint or the workdir of a selax (pre-)training run.
    )
    config.augment = augment_overrides()
    config.batch = dict(unlabeled=256, labeled=40, eval=256)  # labeled=0: no labeled stream.
    config.num_steps = 600
    # Set: the run lasts max(num_steps, ceil(num_epochs * training images / batch.unlabeled)) steps; when
    # that is longer, the schedule's step counts scale with it (`scaled_schedule`).
    config.num_epochs = placeholder(float)
    config.optimizer = dict(
        name="sgd",
        base_lr=0.1,
        final_lr=0.0,
        warmup_steps=0,
        weight_decay=5e-4,
        final_weight_decay=placeholder(float),  # Set: a cosine from weight_decay to it (sgd, adamw).
        momentum=0.9,
        decay_boundaries=(),  # Steps of a step decay by decay_factor, instead of warm-up and cosine.
        decay_factor=0.1,
    )
    config[method] = method_fields(method)
    config.eval = dict(knn_k=20, knn_temperature=0.07)
    config.log_every_steps = 50
    config.eval_every_steps = 200  # 0: only the final evaluation.
    config.checkpoint = dict(every_steps=200, keep=2)
    config.logging = dict(wandb_project=placeholder(str))  # Set: also log to Weights & Biases (pip install wandb).
    config.pictures = True  # At the end: embedding map, confusion matrix or cluster gallery (selax.pictures).
    # A logged loss over `factor` times the median of the earlier ones warns, or with `stop` ends the run.
    config.divergence = dict(factor=10.0, stop=False)
    # Set (a config file, `path.py[:arg]` as for --config): a pre-training stage trained first, in
    # WORKDIR/pretrain, on this run's data, seed and network (`PRETRAINING_SHARES`); this run then starts
    # from its encoder and projector. "": none.
    config.pretrain = ""
    return config


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """The words of a config argument (`configs/x.py:2500,devices=16,smoke`) as a ConfigDict of `defaults`.

    A `key=value` word sets `key`, a bare word sets a boolean default to True, and any other bare word
    sets the first non-boolean default (the config's positional argument). Values take the type of
    their default. Any other word is refused, listing the accepted ones.
    """
    args = ml_collections.ConfigDict(dict(defaults))
    positional = [k for k, v in defaults.items() if not isinstance(v, bool)][:1]
    accepted = ", ".join(f"{k}={v!r}" if not isinstance(v, bool) else k for k, v in defaults.items()) or "none"
    for word in (w.strip() for w in (arg or "").split(",")):
        if not word:
            continue
        key, value = word.split("=", 1) if "=" in word else (None, word)
        if key is None and isinstance(defaults.get(word), bool):
            key, value = word, "True"
        elif key is None and positional:
            key = positional[0]
        if key not in defaults:
            raise ValueError(f"Unknown config argument {word!r}; this config accepts: {accepted}.")
        kind = type(defaults[key])
        try:
            args[key] = (value == "True") if kind is bool else kind(value)
        except ValueError as error:
            raise ValueError(f"Config argument {word!r}: {key} takes a {kind.__name__} ({error}).") from None
    return args


def sibling(config_file: str, name: str) -> types.ModuleType:
    """The config module `name` beside `config_file` (configs import each other by path, so they load
    from any working directory)."""
    return _config_module(sibling_path(config_file, name))


def sibling_path(config_file: str, name: str) -> str:
    """The absolute path of the config file `name` (no `.py`) beside `config_file`."""
    return os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")


def _config_module(path: str) -> types.ModuleType:
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"selax_configs.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What a pre-training stage (`config.pretrain`) takes from the run it starts: the same data and seed, and
# the network whose encoder and projector the run then loads.
PRETRAINING_SHARES = ("dataset", "seed", "model", "state_sharding")


def pretraining_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config of `config.pretrain` (`path.py[:arg]`, as for --config), with `PRETRAINING_SHARES` of `config`."""
    path, _, arg = config.pretrain.partition(":")
    if not os.path.isfile(os.path.expanduser(path)):
        raise FileNotFoundError(
            f"config.pretrain={config.pretrain!r}: no config file {path!r}. Name one as for --config"
            " (configs/swav_default.py[:arg]), or pass --config.pretrain= for no pre-training stage."
        )
    stage = _config_module(os.path.expanduser(path)).get_config(arg or None)
    for field in PRETRAINING_SHARES:
        stage[field] = copy.deepcopy(config[field])
    return stage


def _schedule_step_counts(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict, str]]:
    """`(dotted name, section, field)` of every step count of the schedule that is a share of the run: the
    optimizer's `warmup_steps` and the method's positive `*_steps` fields (ramp-ups, warm-ups, frozen
    prototypes). Not a queue's start step (it follows from the queue's length and the batch)."""
    section = config[config.method]
    fields = [("optimizer.warmup_steps", config.optimizer, "warmup_steps")]
    for field, value in section.items():
        if field.endswith("_steps") and isinstance(value, int) and value > 0:
            fields.append((f"{config.method}.{field}", section, field))
    return fields


def scaled_schedule(config: ml_collections.ConfigDict, num_steps: int) -> ml_collections.ConfigDict:
    """A copy of `config` for a run of `num_steps` steps whose schedule keeps its shape: every step count of
    the schedule (`_schedule_step_counts`) and the optimizer's `decay_boundaries`, written for a run of
    `config.num_steps`, takes the same share of the new run, and stays below its end (a boundary at least
    step 1). Intervals of logging, evaluation and checkpoints are kept."""
    config = copy.deepcopy(config)
    old_steps = max(config.num_steps, 1)

    def scaled(steps: int) -> int:
        return min(num_steps - 1, round(steps * num_steps / old_steps))

    for _, section, field in _schedule_step_counts(config):
        section[field] = scaled(section[field])
    config.optimizer.decay_boundaries = tuple(max(1, scaled(b)) for b in config.optimizer.decay_boundaries)
    config.num_steps = num_steps
    return config


def schedule_beyond_run(config: ml_collections.ConfigDict) -> list[str]:
    """The schedule's step counts that do not end before `config.num_steps` (a warm-up or ramp-up the run
    never finishes, e.g. after `--config.num_steps` was lowered alone), as `name=value` strings."""
    return [
        f"{name}={section[field]}"
        for name, section, field in _schedule_step_counts(config)
        if section[field] >= config.num_steps
    ]


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `:smoke` variant of any config: `SMOKE_STEPS` CPU steps on the embedded digits (an image folder:
    on its images at `SMOKE_IMAGE_SIZE` pixels) with a tiny member of its encoder family, keeping its method, optimizer and schedule shape, so that every shipped config
    is exercised end to end by the tests."""
    if config.dataset.name == IMAGE_FOLDER:  # The user's folders, at the digits' size.
        config.dataset.update(image_size=SMOKE_IMAGE_SIZE, labels_per_class=min(config.dataset.labels_per_class, 2))
    else:
        config.dataset.update(name="digits", data_dir=None, labels_per_class=2, unlabeled_classes=())
    config.model.init_checkpoint = config.pretrain = ""
    config.model.encoder = config.model.encoder or encoder_for_image_size(SMOKE_IMAGE_SIZE)
    dtype = config.model.encoder_kwargs.get("dtype")
    config.model.encoder_kwargs = dict(get_encoder(config.model.encoder).smoke_kwargs)
    if dtype is not None:
        config.model.encoder_kwargs.dtype = dtype
    if config.model.projector_hidden is not None:
        config.model.projector_hidden, config.model.embedding_dim = (32,), 16
    num_local = config.augment.num_local
    config.augment = augment_overrides()
    config.augment.num_local = None if num_local is None else min(num_local, 1)
    config.augment.local_size = 4  # Local crops of the 8x8 digits that the tiny ViT's 4-pixel patches tile.
    config.batch = dict(SMOKE_BATCH, labeled=SMOKE_BATCH["labeled"] if config.batch.labeled else 0)
    config = scaled_schedule(config, SMOKE_STEPS)
    config.num_epochs = None
    section = config[config.method]
    for field, value in get_method(config.method).smoke.items():
        section[field] = value(section[field]) if callable(value) else value
    config.log_every_steps, config.eval_every_steps = 2, 4
    config.checkpoint = dict(every_steps=4, keep=2)
    config.pictures = False  # A 2-D map takes seconds; the tests that look at pictures ask for them.
    return config


def finish(config: ml_collections.ConfigDict, args: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config as `get_config` returns it: shrunk by `smoke` when the argument says `smoke`."""
    return smoke(config) if args.get("smoke") else config
