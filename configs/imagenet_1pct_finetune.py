"""Fine-tuning stage after `configs/imagenet_1pct.py`: `configs/imagenet_1pct_finetune.py[:smoke]`.

    python -m selax.main --config=configs/imagenet_1pct_finetune.py \
        --config.model.init_checkpoint=/tmp/suave_imagenet_1pct --workdir=/tmp/suave_imagenet_1pct_finetune

The recipe of `configs/imagenet_10pct_finetune.py`: 3 epochs of the 1% subset at lr 0.02.
"""

import ml_collections

from selax.config_fields import sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return sibling(__file__, "imagenet_10pct_finetune").get_config(arg, subset="1pct")
