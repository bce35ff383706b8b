"""Config fields shared by every config file, declared once so that `--config.x=...` can override them.

A field left `None` means "the default": for `augment_overrides`, the dataset's recipe in
`selax.data.augment.defaults`.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def augment_overrides() -> ml_collections.ConfigDict:
    """`config.augment`: every augmentation parameter, `None` = the dataset's default."""
    return ml_collections.ConfigDict(
        dict(
            global_size=placeholder(int),
            global_scale=placeholder(tuple),
            local_size=placeholder(int),
            local_scale=placeholder(tuple),
            num_local=placeholder(int),
            ratio=placeholder(tuple),
            flip_prob=placeholder(float),
            jitter_prob=placeholder(float),
            jitter_strength=placeholder(float),
            gray_prob=placeholder(float),
            blur_prob=placeholder(float),
            blur_sigma=placeholder(tuple),
            solarize_prob=placeholder(float),
            labeled_pad=placeholder(int),
            labeled_flip_prob=placeholder(float),
        )
    )
