"""Suave on CIFAR-100 with a WideResNet-28-8: `configs/cifar100.py:LABELS[,smoke]`, LABELS in 400/2500/10000.

    python -m selax.main --config=configs/cifar100.py:2500 --workdir=/tmp/suave_cifar100_2500

Needs CIFAR-100 prepared by tfds's official builder (`pip install 'selax[tf]'`, then
`python -m selax.prepare --config=configs/cifar100.py`; offline, add `--manual_dir=DIR` holding
cifar-100-binary.tar.gz). Published Suave top-1:
64.6 / 77.0 / 81.6 for 400 / 2500 / 10000 labels. The optimizer, schedule and batch below are
selax's choice for this backbone (SGD, cosine), not a reproduction of the paper's numbers.
"""

import ml_collections

from selax.config_fields import base, finish, parse_arg

LABELS_PER_CLASS = {400: 4, 2500: 25, 10000: 100}
TRAIN_IMAGES = 50_000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, labels=2500, smoke=False)
    if args.labels not in LABELS_PER_CLASS:
        raise ValueError(f"configs/cifar100.py takes one of {sorted(LABELS_PER_CLASS)} labels, got {arg!r}.")
    config = base("suave")
    config.dataset.update(name="cifar100", labels_per_class=LABELS_PER_CLASS[args.labels])
    config.model.update(encoder="wide_resnet28_8", projector_hidden=(2048,), embedding_dim=128)
    # config.augment: the CIFAR defaults, 2 x 32 + 4 x 18 crops.
    config.batch = dict(unlabeled=256, labeled=64, eval=512)
    steps_per_epoch = TRAIN_IMAGES // config.batch.unlabeled
    config.num_steps = 200 * steps_per_epoch
    config.optimizer.update(final_lr=1e-4, warmup_steps=10 * steps_per_epoch)
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint = dict(every_steps=2000, keep=3)
    return finish(config, args)
