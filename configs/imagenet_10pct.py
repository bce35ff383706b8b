"""Suave, ImageNet with the SimCLR 10% labeled subset, ResNet-50 from SwAV: `configs/imagenet_10pct.py[:devices=N][,smoke]`.

    python -m selax.models.convert --arch swav_resnet50 --input swav_800ep_pretrain.pth.tar \
        --output ~/selax_checkpoints/swav_800ep_resnet50
    python -m selax.main --config=configs/imagenet_10pct.py --workdir=/tmp/suave_imagenet_10pct

Data: `imagenet2012` and `imagenet2012_subset/10pct` prepared by tfds from your ILSVRC tars and SimCLR's
10percent.txt: `python -m selax.prepare --config=configs/imagenet_10pct.py --manual_dir=DIR` (README, Data).
Published Suave top-1: 75.0 (10%), 66.2 (1%, `configs/imagenet_1pct.py`, the same recipe).

Recipe: from a SwAV 800-epoch checkpoint (prototypes re-initialized), 100 epochs, LARS lr 0.4 -> 0.001
cosine, 5 warm-up epochs, weight decay 1e-6, batch 256 unlabeled + 128 labeled on 8 devices (`devices=N`
scales the batch to 32 + 16 per device and the learning rate linearly, keeping the epochs), 2 x 224 +
8 x 96 crops, a queue of 3,840 embeddings, unlabeled mixup, bfloat16 compute. Reported metric:
test/linear_top1 (a linear head on the projector's first layer).
"""

import ml_collections

from selax.config_fields import base, finish, parse_arg

TRAIN_IMAGES = 1_281_167


def get_config(arg: str | None = None, subset: str = "10pct") -> ml_collections.ConfigDict:
    args = parse_arg(arg, devices=8, smoke=False)
    if args.devices < 1:
        raise ValueError(f"devices={args.devices}: give a positive device count.")
    config = base("suave")
    config.dataset.update(name=f"imagenet2012_subset/{subset}", labels_per_class=0)
    config.model.update(
        encoder="resnet50",
        encoder_kwargs=dict(dtype="bfloat16"),
        projector_hidden=(2048,),
        embedding_dim=128,
        init_checkpoint="~/selax_checkpoints/swav_800ep_resnet50",
    )
    config.augment.num_local = 8
    scale = args.devices / 8  # The recipe's batch is 256 + 128 on 8 GPUs: 32 + 16 per device.
    config.batch = dict(unlabeled=32 * args.devices, labeled=16 * args.devices, eval=64 * args.devices)
    steps_per_epoch = TRAIN_IMAGES // config.batch.unlabeled
    config.num_steps = 100 * steps_per_epoch
    config.optimizer.update(
        name="lars", base_lr=0.4 * scale, final_lr=0.001, warmup_steps=5 * steps_per_epoch, weight_decay=1e-6
    )
    config.suave.update(
        queue_length=3840, queue_start_step=-(-3840 // config.batch.unlabeled), unlabeled_mixup_alpha=1.0
    )
    config.log_every_steps = 100
    config.eval_every_steps = 10 * steps_per_epoch
    config.checkpoint = dict(every_steps=2000, keep=3)
    return finish(config, args)
