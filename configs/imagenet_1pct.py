"""Suave, ImageNet with the SimCLR 1% labeled subset, ResNet-50 from SwAV: `configs/imagenet_1pct.py[:devices=N][,smoke]`.

    python -m selax.main --config=configs/imagenet_1pct.py --workdir=/tmp/suave_imagenet_1pct

The recipe of `configs/imagenet_10pct.py` with the 1% labeled stream; published Suave top-1: 66.2.
"""

import ml_collections

from selax.config_fields import sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return sibling(__file__, "imagenet_10pct").get_config(arg, subset="1pct")
