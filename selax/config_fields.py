"""Config fields shared by every config file, declared once so that `--config.x=...` can override them.

A field left `None` means "the default": for `augment_overrides`, the dataset's recipe in
`selax.data.augment.defaults`.
"""

import ml_collections
from ml_collections.config_dict import placeholder


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


def suave_fields(**overrides) -> ml_collections.ConfigDict:
    """`config.suave`: Suave's hyper-parameters (`selax.methods.suave.HParams`), the paper's defaults.

    `labeled_weight` unset is the per-row frequency weighting of the reference code; a float w gives
    w * labeled + (1 - w) * unlabeled. `prototype_marginals` unset is equipartition. `num_prototypes`
    unset is one prototype per class; more leave free prototypes (e.g. for `dataset.unlabeled_classes`).
    """
    fields = dict(
        num_prototypes=placeholder(int),
        temperature=0.1,
        sinkhorn_epsilon=0.05,
        sinkhorn_iters=3,
        label_smoothing=0.01,
        labeled_weight=placeholder(float),
        num_global_views=2,
        queue_length=0,
        queue_start_step=0,
        freeze_prototypes_steps=0,
        prototype_marginals=placeholder(tuple),
        labeled_mixup_alpha=0.0,
        unlabeled_mixup_alpha=0.0,
    )
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


def device_count(words: list[str], default: int) -> int:
    """The `devices=N` word of a config argument (the number of accelerators to scale the batch to)."""
    counts = [int(w.split("=", 1)[1]) for w in words if w.startswith("devices=")]
    if len(counts) > 1 or (counts and counts[0] < 1):
        raise ValueError(f"Give one positive devices=N in the config argument, got {words}.")
    return counts[0] if counts else default


def parse_arg(arg: str | None) -> list[str]:
    """The comma-separated words of a config argument: `configs/x.py:2500,smoke` -> ['2500', 'smoke']."""
    return [word.strip() for word in (arg or "").split(",") if word.strip()]


def digits_smoke_schedule(config: ml_collections.ConfigDict, labeled_batch: int = 16) -> None:
    """The `:smoke` variant of a digits config: 6 steps, logging, evaluating and checkpointing on the way."""
    config.num_steps = 6
    config.log_every_steps = 2
    config.eval_every_steps = 4
    config.checkpoint.every_steps = 4
    config.batch = dict(unlabeled=64, labeled=labeled_batch, eval=128)


def shrink_for_smoke(config: ml_collections.ConfigDict) -> None:
    """Turns a recipe into a few CPU steps on the embedded digits, keeping its method, optimizer and
    schedule shape, so that every shipped config is exercised by the tests."""
    config.dataset.name = "digits"
    config.dataset.labels_per_class = 2
    config.dataset.data_dir = None
    config.model.init_checkpoint = ""
    config.augment = augment_overrides()
    config.augment.num_local = 1
    config.augment.local_size = 6
    config.batch.unlabeled, config.batch.labeled, config.batch.eval = 32, 16, 128
    config.num_steps = 3
    config.optimizer.warmup_steps = 1
    config.log_every_steps = 1
    config.eval_every_steps = 0
    config.checkpoint.every_steps = 2


def suave_imagenet(subset: str, words: list[str]) -> ml_collections.ConfigDict:
    """Suave's ImageNet ResNet-50 recipe on the SimCLR `subset` ('1pct' or '10pct') of labels.

    From a SwAV 800-epoch checkpoint converted with `python -m selax.models.convert --arch
    swav_resnet50` (prototypes re-initialized): 100 epochs, LARS lr 0.4 -> 0.001 cosine, 5 warm-up
    epochs, weight decay 1e-6, batch 256 unlabeled + 128 labeled on 8 devices (`devices=N` in the
    config argument scales the batch to 32 + 16 per device and the learning rate linearly, keeping the
    epochs), 2 x 224 + 8 x 96 crops, a queue of
    3,840 embeddings, bfloat16 compute. Reported metric: test/linear_top1 (a linear head on the
    projector's first layer).
    """
    train_images = 1_281_167
    config = ml_collections.ConfigDict()
    config.method = "suave"
    config.seed = 0
    config.state_sharding = "replicated"  # "fsdp": params, optimizer state and extras split over devices.
    config.dataset = dict(
        name=f"imagenet2012_subset/{subset}", data_dir=placeholder(str), labels_per_class=0, split_seed=0
    )
    config.model = dict(
        encoder="resnet50",
        encoder_kwargs=dict(dtype="bfloat16"),
        projector_hidden=(2048,),
        embedding_dim=128,
        init_checkpoint="~/selax_checkpoints/swav_800ep_resnet50",
    )
    config.augment = augment_overrides()
    config.augment.num_local = 8
    devices = device_count(words, default=8)
    scale = devices / 8  # The recipe's batch is 256 + 128 on 8 GPUs: 32 + 16 per device.
    config.batch = dict(unlabeled=32 * devices, labeled=16 * devices, eval=64 * devices)
    steps_per_epoch = train_images // config.batch.unlabeled
    config.num_steps = 100 * steps_per_epoch
    config.optimizer = dict(
        name="lars",
        base_lr=0.4 * scale,
        final_lr=0.001,
        warmup_steps=5 * steps_per_epoch,
        weight_decay=1e-6,
        momentum=0.9,
    )
    config.suave = suave_fields(
        queue_length=3840, queue_start_step=-(-3840 // config.batch.unlabeled), unlabeled_mixup_alpha=1.0
    )
    config.supervised_only = False
    config.eval = dict(knn_k=20, knn_temperature=0.07)
    config.log_every_steps = 100
    config.eval_every_steps = 10 * steps_per_epoch
    config.checkpoint = dict(every_steps=2000, keep=3)
    if "smoke" in words:
        shrink_for_smoke(config)
        config.model.encoder = "resnet18"
        config.model.encoder_kwargs = dict(dtype="bfloat16")
        config.model.projector_hidden = (32,)
        config.model.embedding_dim = 16
        config.suave.queue_length = 64
        config.suave.queue_start_step = 2
    return config


def suave_imagenet_finetune(subset: str, words: list[str]) -> ml_collections.ConfigDict:
    """The short fine-tuning stage after `suave_imagenet`: the whole network on the labeled subset.

    Starts from the pre-training workdir named by `--config.model.init_checkpoint` (default
    `/tmp/suave_imagenet_{subset}`), prototypes and linear head included; 5 epochs at lr 0.03 for
    10%, 3 epochs at lr 0.02 for 1% (of the labeled subset), SGD, no unlabeled images.
    """
    config = suave_imagenet(subset, [w for w in words if w != "smoke"])
    labeled_images = {"10pct": 128_116, "1pct": 12_811}[subset]
    epochs, base_lr = (5, 0.03) if subset == "10pct" else (3, 0.02)
    config.supervised_only = True
    config.model.init_checkpoint = f"/tmp/suave_imagenet_{subset}"
    config.augment.num_local = 0
    config.suave.queue_length = 0
    config.suave.unlabeled_mixup_alpha = 0.0
    config.batch.unlabeled = 8  # The unlabeled stream is not read by a supervised-only step.
    config.num_steps = epochs * labeled_images // config.batch.labeled
    config.optimizer = dict(
        name="sgd", base_lr=base_lr, final_lr=0.0, warmup_steps=0, weight_decay=0.0, momentum=0.9
    )
    config.eval_every_steps = 0
    if "smoke" in words:
        shrink_for_smoke(config)
        config.model.encoder = "resnet18"
        config.model.projector_hidden = (32,)
        config.model.embedding_dim = 16
    return config
