"""Daino on ImageNet with 1% of the labels (the SimCLR subset): the 10% recipe with the 1% labeled stream.

    python -m selax.main --config=configs/daino_imagenet_1pct.py --workdir=DIR \
        --config.model.init_checkpoint=/path/to/converted/dino_vits16

`--config=configs/daino_imagenet_1pct.py:smoke` runs a few steps of a tiny ViT on the digits.
"""

import ml_collections

from selax.config_fields import sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return sibling(__file__, "daino_imagenet_10pct").get_config(arg, labeled_subset="1pct")
