"""Suave on the embedded 8x8 digits: 2 labels per class (20 labels), a small CNN, 2 CPU cores, minutes.

    python -m selax.main --config=configs/default.py --workdir=/tmp/selax_default

`--config=configs/default.py:smoke` runs a few steps (the tests use it);
`--config.suave.supervised_only=True` is the baseline trained on the 20 labels alone (and, with
`--config.model.init_checkpoint=W`, the fine-tuning stage after a Suave run in W); to start from a
SwAV pre-training run (`configs/swav_default.py`), pass its workdir as `--config.model.init_checkpoint`.
"""

import ml_collections

from selax.config_fields import base, finish, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, smoke=False)
    config = base("suave")
    config.model.encoder_kwargs = dict(stage_widths=(32, 64, 128))
    config.model.projector_hidden, config.model.embedding_dim = (256,), 64
    config.augment.num_local = 0  # 8x8 digits have no room for local crops.
    config.optimizer.warmup_steps = 100
    config.suave.labeled_weight = 0.5
    return finish(config, args)
