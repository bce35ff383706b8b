"""Daino on ImageNet with 10% of the labels (the SimCLR subset): ViT-S/16 from DINO, 60 epochs.

    python -m selax.main --config=configs/daino_imagenet_10pct.py --workdir=DIR \
        --config.model.init_checkpoint=/path/to/converted/dino_vits16 --config.dataset.data_dir=...

Recipe (Daino paper): start from DINO's 800-epoch ViT-S/16 (convert it with `python -m
selax.models.convert`), AdamW lr 2.4e-4 x unlabeled batch / 256, weight decay 0.04 -> 0.4 (cosine),
batch 1024 unlabeled + 512 labeled, 2 x 224 global + 8 x 96 local crops, teacher temperature
0.04 -> 0.07 over 10 epochs, teacher momentum 0.990 -> 1. The unlabeled stream is the whole train set;
the labeled stream is the SimCLR subset (`dataset.name='imagenet2012_subset/10pct'`).
`--config=configs/daino_imagenet_10pct.py:smoke` runs a few steps of a tiny ViT on the digits (CPU,
seconds), so that this file cannot break unnoticed.
"""

import ml_collections

from selax.config_fields import base, finish, parse_arg

TRAIN_IMAGES = 1_281_167


def get_config(arg: str | None = None, labeled_subset: str = "10pct") -> ml_collections.ConfigDict:
    args = parse_arg(arg, smoke=False)
    config = base("daino")
    # Unlabeled: imagenet2012 train; labeled: the subset.
    config.dataset.update(name=f"imagenet2012_subset/{labeled_subset}", labels_per_class=0)
    config.model.update(
        encoder="vit_s16",  # The DINO head sits on the cls token.
        init_checkpoint="~/selax_checkpoints/dino_vits16",  # `python -m selax.models.convert --arch dino_vits16`.
    )
    config.augment.num_local = 8
    config.batch = dict(unlabeled=1024, labeled=512, eval=1024)
    steps_per_epoch = TRAIN_IMAGES // config.batch.unlabeled
    config.num_steps = 60 * steps_per_epoch
    config.optimizer.update(
        name="adamw",
        base_lr=2.4e-4 * config.batch.unlabeled / 256,
        final_lr=1e-6,
        warmup_steps=steps_per_epoch,
        weight_decay=0.04,
        final_weight_decay=0.4,
    )
    # labeled_weight unset: per-row frequency weighting, as the reference code.
    config.daino.teacher_temperature_warmup_steps = 10 * steps_per_epoch
    config.log_every_steps = 100
    config.eval_every_steps = 5 * steps_per_epoch
    config.checkpoint = dict(every_steps=steps_per_epoch, keep=3)
    return finish(config, args)
