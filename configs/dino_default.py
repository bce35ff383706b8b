"""DINO on the embedded 8x8 digits, self-supervised: no label, a small CNN, 2 CPU cores, minutes.

    python -m selax.main --config=configs/dino_default.py --workdir=/tmp/selax_dino

The pre-training stage of the digits pipeline: Daino then starts from this run's encoder
(`python -m selax.main --config=configs/daino_default.py --config.model.init_checkpoint=/tmp/selax_dino`;
its head starts fresh). Reported: kNN and linear-probe top-1 on frozen encoder features of the teacher
with every train label (the self-supervised protocol), and the clustering metrics of its head's argmax.
`--config=configs/dino_default.py:smoke` runs a few steps.
"""

import ml_collections

from selax.config_fields import base, finish, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, smoke=False)
    config = base("dino")
    config.model.encoder_kwargs = dict(stage_widths=(32, 64, 128))  # The DINO head sits on the features.
    config.augment.num_local = 0
    config.augment.global_scale = (0.3, 1.0)
    config.batch.labeled = 0  # No label is used.
    config.optimizer.warmup_steps = 100
    config.dino.update(
        num_outputs=256,
        head_hidden_dim=256,
        head_bottleneck_dim=64,
        teacher_temperature_warmup_steps=300,
        teacher_momentum=0.7,  # As Daino on the digits: a teacher averaging over a few steps of a short run.
    )
    config.eval_every_steps = 300
    config.checkpoint.every_steps = 300
    return finish(config, args)
