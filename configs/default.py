"""Suave on the embedded 8x8 digits: 2 labels per class (20 labels), a small CNN, 2 CPU cores, minutes.

    python -m selax.main --config=configs/default.py --workdir=/tmp/selax_default

`--config=configs/default.py:smoke` runs a few steps (the tests use it);
`--config.supervised_only=True` is the baseline trained on the 20 labels alone.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from selax.config_fields import augment_overrides, digits_smoke_schedule, suave_fields


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.method = "suave"
    config.seed = 0
    config.state_sharding = "replicated"  # "fsdp": params, optimizer state and extras split over devices.

    # unlabeled_classes: classes with no labeled example, left for the extra prototypes to discover.
    config.dataset = dict(
        name="digits", data_dir=placeholder(str), labels_per_class=2, split_seed=0, unlabeled_classes=()
    )
    config.model = dict(
        encoder="small_cnn",
        encoder_kwargs=dict(stage_widths=(32, 64, 128)),
        projector_hidden=(256,),
        embedding_dim=64,
        init_checkpoint="",
    )
    # None: the dataset's default (selax.data.augment.defaults). 8x8 digits have no room for local crops.
    config.augment = augment_overrides()
    config.augment.num_local = 0
    config.batch = dict(unlabeled=256, labeled=40, eval=256)
    config.num_steps = 600
    config.optimizer = dict(
        name="sgd", base_lr=0.1, final_lr=0.0, warmup_steps=100, weight_decay=5e-4, momentum=0.9
    )
    config.suave = suave_fields(labeled_weight=0.5)
    config.supervised_only = False
    config.eval = dict(knn_k=20, knn_temperature=0.07)
    config.log_every_steps = 50
    config.eval_every_steps = 200
    config.checkpoint = dict(every_steps=200, keep=2)

    if arg == "smoke":
        digits_smoke_schedule(config)
    return config
