"""Suave, ImageNet with the SimCLR 1% labeled subset, ResNet-50 from SwAV: `configs/imagenet_1pct.py[:devices=N][,smoke]`.

    python -m selax.models.convert --arch swav_resnet50 --input swav_800ep_pretrain.pth.tar \
        --output ~/selax_checkpoints/swav_800ep_resnet50
    python -m selax.main --config=configs/imagenet_1pct.py --workdir=/tmp/suave_imagenet_1pct

Data: `imagenet2012` and `imagenet2012_subset/1pct` prepared by tfds from your ILSVRC tars (see the
README). Recipe in `selax.config_fields.suave_imagenet`; published Suave top-1: 66.2.
"""

import ml_collections

from selax.config_fields import parse_arg, suave_imagenet


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return suave_imagenet("1pct", parse_arg(arg))
