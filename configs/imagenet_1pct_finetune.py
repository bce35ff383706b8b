"""Fine-tuning stage after `configs/imagenet_1pct.py`: `configs/imagenet_1pct_finetune.py[:smoke]`.

    python -m selax.main --config=configs/imagenet_1pct_finetune.py \
        --config.model.init_checkpoint=/tmp/suave_imagenet_1pct --workdir=/tmp/suave_imagenet_1pct_finetune

Recipe in `selax.config_fields.suave_imagenet_finetune`.
"""

import ml_collections

from selax.config_fields import parse_arg, suave_imagenet_finetune


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return suave_imagenet_finetune("1pct", parse_arg(arg))
