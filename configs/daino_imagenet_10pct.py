"""Daino on ImageNet with 10% of the labels (the SimCLR subset): ViT-S/16 from DINO, 60 epochs.

    python -m selax.main --config=configs/daino_imagenet_10pct.py --workdir=DIR \
        --config.model.init_checkpoint=/path/to/converted/dino_vits16 --config.dataset.data_dir=...

Recipe (Daino paper): start from DINO's 800-epoch ViT-S/16 (convert it with `python -m
selax.models.convert`), AdamW lr 2.4e-4 x unlabeled batch / 256, weight decay 0.04 -> 0.4 (cosine),
batch 1024 unlabeled + 512 labeled, 2 x 224 global + 8 x 96 local crops, teacher temperature
0.04 -> 0.07 over 10 epochs, teacher momentum 0.990 -> 1. The unlabeled stream is the whole train set;
the labeled stream is the SimCLR subset (`dataset.name='imagenet2012_subset/10pct'`).
`--config=configs/daino_imagenet_10pct.py:smoke` runs a few steps of a shrunken ViT on the digits
(CPU, seconds), so that this file cannot break unnoticed.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from selax.config_fields import augment_overrides

TRAIN_IMAGES = 1_281_167


def get_config(arg: str | None = None, labeled_subset: str = "10pct") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.method = "daino"
    config.seed = 0
    config.state_sharding = "replicated"  # "fsdp": params, optimizer state and extras split over devices.

    config.dataset = dict(
        name=f"imagenet2012_subset/{labeled_subset}",  # Unlabeled: imagenet2012 train; labeled: the subset.
        data_dir=placeholder(str),
        labels_per_class=placeholder(int),
        split_seed=0,
    )
    config.model = dict(
        encoder="vit_s16",
        encoder_kwargs=dict(),
        projector_hidden=None,  # The DINO head sits on the cls token.
        embedding_dim=0,
        init_checkpoint="~/selax_checkpoints/dino_vits16",  # `python -m selax.models.convert --arch dino_vits16`.
    )
    config.augment = augment_overrides()
    config.augment.num_local = 8
    config.batch = dict(unlabeled=1024, labeled=512, eval=1024)
    steps_per_epoch = TRAIN_IMAGES // config.batch.unlabeled
    config.num_steps = 60 * steps_per_epoch
    config.optimizer = dict(
        name="adamw",
        base_lr=2.4e-4 * config.batch.unlabeled / 256,
        final_lr=1e-6,
        warmup_steps=steps_per_epoch,
        weight_decay=0.04,
        final_weight_decay=0.4,
        momentum=0.9,
    )
    config.daino = dict(
        head_hidden_dim=2048,
        head_bottleneck_dim=256,
        head_layers=3,
        student_temperature=0.1,
        teacher_temperature=0.07,
        warmup_teacher_temperature=0.04,
        teacher_temperature_warmup_steps=10 * steps_per_epoch,
        teacher_momentum=0.990,
        center_momentum=0.9,
        label_smoothing=0.01,
        labeled_weight=placeholder(float),  # None: per-row frequency weighting, as the reference code.
        num_global_views=2,
    )
    config.eval = dict(knn_k=20, knn_temperature=0.07)
    config.log_every_steps = 100
    config.eval_every_steps = 5 * steps_per_epoch
    config.checkpoint = dict(every_steps=steps_per_epoch, keep=3)

    if arg == "smoke":
        config.dataset = dict(name="digits", data_dir=placeholder(str), labels_per_class=2, split_seed=0)
        config.model.encoder_kwargs = dict(patch_size=4, embed_dim=32, depth=1, num_heads=2, image_size=8)
        config.model.init_checkpoint = ""
        config.augment.num_local = 2
        config.augment.local_size = 4
        config.batch = dict(unlabeled=32, labeled=16, eval=128)
        config.num_steps = 4
        config.optimizer.base_lr = 1e-3
        config.optimizer.warmup_steps = 1
        config.daino.update(head_hidden_dim=32, head_bottleneck_dim=16, teacher_temperature_warmup_steps=2)
        config.log_every_steps = 2
        config.eval_every_steps = 0
        config.checkpoint = dict(every_steps=4, keep=1)
    return config
