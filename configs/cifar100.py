"""Suave on CIFAR-100 with a WideResNet-28-8: `configs/cifar100.py:LABELS[,smoke]`, LABELS in 400/2500/10000.

    python -m selax.main --config=configs/cifar100.py:2500 --workdir=/tmp/suave_cifar100_2500

Needs CIFAR-100 prepared by tfds's official builder (`pip install 'selax[tf]'`, then
`python -c "from selax.data import datasets; datasets.prepare('cifar100')"`). Published Suave top-1:
64.6 / 77.0 / 81.6 for 400 / 2500 / 10000 labels. The optimizer, schedule and batch below are
selax's choice for this backbone (SGD, cosine), not a reproduction of the paper's numbers.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from selax.config_fields import augment_overrides, suave_fields, parse_arg, shrink_for_smoke

LABELS_PER_CLASS = {"400": 4, "2500": 25, "10000": 100}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    words = parse_arg(arg)
    labels = [w for w in words if w != "smoke"] or ["2500"]
    if labels[0] not in LABELS_PER_CLASS or len(labels) > 1:
        raise ValueError(f"configs/cifar100.py takes one of {sorted(LABELS_PER_CLASS)} labels, got {arg!r}.")
    config = ml_collections.ConfigDict()
    config.method = "suave"
    config.seed = 0
    config.state_sharding = "replicated"  # "fsdp": params, optimizer state and extras split over devices.
    config.dataset = dict(
        name="cifar100", data_dir=placeholder(str), labels_per_class=LABELS_PER_CLASS[labels[0]], split_seed=0
    )
    config.model = dict(
        encoder="wide_resnet28_8",
        encoder_kwargs=dict(),
        projector_hidden=(2048,),
        embedding_dim=128,
        init_checkpoint="",
    )
    config.augment = augment_overrides()  # CIFAR defaults: 2 x 32 + 4 x 18 crops.
    config.batch = dict(unlabeled=256, labeled=64, eval=512)
    epochs = 200
    config.num_steps = epochs * 50_000 // 256
    config.optimizer = dict(
        name="sgd",
        base_lr=0.1,
        final_lr=1e-4,
        warmup_steps=10 * 50_000 // 256,
        weight_decay=5e-4,
        momentum=0.9,
    )
    config.suave = suave_fields()
    config.supervised_only = False
    config.eval = dict(knn_k=20, knn_temperature=0.07)
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint = dict(every_steps=2000, keep=3)
    if "smoke" in words:
        shrink_for_smoke(config)
        config.model.encoder_kwargs = dict(depth=10, widen_factor=1)
        config.model.projector_hidden = (32,)
        config.model.embedding_dim = 16
    return config
