"""SwAV on the embedded 8x8 digits, self-supervised: no label, 30 prototypes, a small CNN, 2 CPU cores, minutes.

    python -m selax.main --config=configs/swav_default.py --workdir=/tmp/selax_swav

The pre-training stage of the digits pipeline: Suave then starts from this run's encoder and projector
(`python -m selax.main --config=configs/default.py --config.model.init_checkpoint=/tmp/selax_swav`;
its class prototypes start fresh). Reported: kNN and linear-probe top-1 on frozen encoder features with
every train label (the self-supervised protocol), and the clustering metrics of the prototypes' argmax.
`--config=configs/swav_default.py:smoke` runs a few steps.
"""

import ml_collections

from selax.config_fields import base, finish, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, smoke=False)
    config = base("swav")
    config.model.encoder_kwargs = dict(stage_widths=(32, 64, 128))
    config.model.projector_hidden, config.model.embedding_dim = (256,), 64
    config.augment.num_local = 0  # 8x8 digits have no room for local crops.
    config.augment.global_scale = (0.3, 1.0)
    config.batch.labeled = 0  # No label is used.
    config.optimizer.warmup_steps = 100
    # About one epoch of the 1,257 images with frozen prototypes, as the paper's first epoch.
    config.swav.update(num_prototypes=30, freeze_prototypes_steps=5)
    return finish(config, args)
