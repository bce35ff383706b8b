"""Fine-tuning stage after `configs/imagenet_10pct.py`: `configs/imagenet_10pct_finetune.py[:smoke]`.

    python -m selax.main --config=configs/imagenet_10pct_finetune.py \
        --config.model.init_checkpoint=/tmp/suave_imagenet_10pct --workdir=/tmp/suave_imagenet_10pct_finetune

Recipe in `selax.config_fields.suave_imagenet_finetune`.
"""

import ml_collections

from selax.config_fields import parse_arg, suave_imagenet_finetune


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return suave_imagenet_finetune("10pct", parse_arg(arg))
