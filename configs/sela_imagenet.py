"""SeLa on ImageNet, unsupervised: ResNet-50, 10 heads x 3000 clusters, the published 400-epoch schedule.

    python -m selax.main --config=configs/sela_imagenet.py --workdir=DIR --config.dataset.data_dir=...

Recipe (Asano et al. 2020): SGD momentum 0.9, weight decay 1e-5, batch 256, lr 0.05 decayed x0.1 at
epochs 150, 300 and 350 of 400; label updates with lambda = 25, about 90 of them, denser early.
Each label update predicts the embeddings of all 1.28M training images, each through one training view
as in the reference code (`sela.label_views`), [N, 2048] float32 = 9.8 GiB of host memory, then solves
the heads one at a time (`python experiments/bench_label_step.py`: about 320 s and 8.2 GiB beyond the
embeddings per head on a 2-core CPU, in bfloat16).
`--config=configs/sela_imagenet.py:smoke` runs a few steps of a tiny ResNet-50 on the digits.
"""

import ml_collections

from selax.config_fields import base, finish, parse_arg

TRAIN_IMAGES = 1_281_167


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, smoke=False)
    config = base("sela")
    config.dataset.update(name="imagenet2012", labels_per_class=0)
    config.model.encoder = "resnet50"  # Linear heads on the pooled features.
    config.augment.num_local = 0  # Two global views.
    config.batch = dict(unlabeled=256, labeled=0, eval=1024)
    steps_per_epoch = TRAIN_IMAGES // config.batch.unlabeled
    config.num_steps = 400 * steps_per_epoch
    config.optimizer.update(
        base_lr=0.05,
        weight_decay=1e-5,
        decay_boundaries=tuple(e * steps_per_epoch for e in (150, 300, 350)),
        decay_factor=0.1,
    )
    config.sela.update(
        num_clusters=3000,
        num_heads=10,
        num_label_updates=90,
        label_step_dtype="bfloat16",  # Per head [N, K]: 7.2 GiB; "float32": 14.3 GiB, for devices with room.
    )
    config.log_every_steps = 100
    config.eval_every_steps = 10 * steps_per_epoch
    config.checkpoint = dict(every_steps=steps_per_epoch, keep=3)
    return finish(config, args)
