"""Suave, ImageNet with the SimCLR 10% labeled subset, ResNet-50 from SwAV: `configs/imagenet_10pct.py[:devices=N][,smoke]`.

    python -m selax.models.convert --arch swav_resnet50 --input swav_800ep_pretrain.pth.tar \
        --output ~/selax_checkpoints/swav_800ep_resnet50
    python -m selax.main --config=configs/imagenet_10pct.py --workdir=/tmp/suave_imagenet_10pct

Data: `imagenet2012` and `imagenet2012_subset/10pct` prepared by tfds from your ILSVRC tars (see the
README). Recipe in `selax.config_fields.suave_imagenet`; published Suave top-1: 75.0.
"""

import ml_collections

from selax.config_fields import parse_arg, suave_imagenet


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return suave_imagenet("10pct", parse_arg(arg))
