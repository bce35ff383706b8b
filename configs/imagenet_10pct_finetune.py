"""Fine-tuning stage after `configs/imagenet_10pct.py`: `configs/imagenet_10pct_finetune.py[:smoke]`.

    python -m selax.main --config=configs/imagenet_10pct_finetune.py \
        --config.model.init_checkpoint=/tmp/suave_imagenet_10pct --workdir=/tmp/suave_imagenet_10pct_finetune

The whole network on the labeled subset, from the pre-training workdir named by
`--config.model.init_checkpoint` (default `/tmp/suave_imagenet_{subset}`), prototypes and linear head
included: 5 epochs at lr 0.03 for 10%, 3 epochs at lr 0.02 for 1% (`configs/imagenet_1pct_finetune.py`),
SGD, no unlabeled image.
"""

import ml_collections

from selax.config_fields import finish, parse_arg, sibling

LABELED_IMAGES = {"10pct": 128_116, "1pct": 12_811}


def get_config(arg: str | None = None, subset: str = "10pct") -> ml_collections.ConfigDict:
    args = parse_arg(arg, devices=8, smoke=False)
    config = sibling(__file__, "imagenet_10pct").get_config(f"devices={args.devices}", subset=subset)
    epochs, base_lr = (5, 0.03) if subset == "10pct" else (3, 0.02)
    config.model.init_checkpoint = f"/tmp/suave_imagenet_{subset}"
    config.augment.num_local = 0
    config.suave.update(supervised_only=True, queue_length=0, unlabeled_mixup_alpha=0.0)
    config.batch.unlabeled = args.devices  # The unlabeled stream is not read by a supervised-only step.
    config.num_steps = epochs * LABELED_IMAGES[subset] // config.batch.labeled
    config.optimizer.update(name="sgd", base_lr=base_lr, final_lr=0.0, warmup_steps=0, weight_decay=0.0)
    config.eval_every_steps = 0
    return finish(config, args)
