"""Your own images: `train_dir/<class>/*` (PNG, JPEG, ...; grey or colour; any size), trained by one method.

    python -m selax.main --config=configs/folder.py:suave --workdir=W --config.dataset.train_dir=DIR

The argument names the method (`suave`, the default; `daino`, `sela`, `swav`, `dino`) and starts from its
digits recipe (`configs/default.py`, `daino_default.py`, ...), with what depends on the images chosen
from them: the stored side (`config.dataset.image_size`, default: their median shorter side up to 64 px,
else up to 256; with no accelerator, up to 32), the augmentation (`selax.data.augment.for_image_size`) and the encoder
(`selax.models.encoder_for_image_size`: small_cnn up to 32 px, resnet18_cifar up to 64, resnet50); set
`--config.model.encoder`, `--config.dataset.image_size` or any `--config.augment.*` to choose yourself.
Suave, as its recipe, first pre-trains `configs/folder.py:swav` on the same folders (in W/pretrain) and
starts from its encoder and projector; `--config.pretrain=` skips that stage (half the time).
The run lasts `config.num_epochs` passes over the training images (at least the recipe's 600 or 2,000
steps), so it scales with the folder; on a folder large enough to lengthen it, the recipe's warm-up,
ramp-up and other step counts keep their share of the run (`selax.config_fields.scaled_schedule`).

Folders (`--config.dataset.*`): `train_dir` (one subfolder per class), `test_dir` (optional: else a
stratified `test_fraction` of train_dir, drawn by `split_seed`, is held out), `unlabeled_dir` (optional,
images without labels, flat or nested). `labels_per_class=2` labeled images per class are drawn from
train_dir; `labels_per_class=0` uses every train_dir image as labeled and `unlabeled_dir` as the rest.
`:smoke` runs a few steps on the folders at 8 px.
"""

import os

import ml_collections

from selax.config_fields import augment_overrides, finish, parse_arg, sibling

# The digits recipe each method starts from, and its passes over the training images.
RECIPES = {"suave": "default", "daino": "daino_default", "sela": "sela_default", "swav": "swav_default", "dino": "dino_default"}
NUM_EPOCHS = {"suave": 30, "daino": 30, "sela": 60, "swav": 30, "dino": 30}
PRETRAINING = {f"{recipe}.py": method for method, recipe in RECIPES.items()}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, method="suave", smoke=False)
    if args.method not in RECIPES:
        raise ValueError(f"configs/folder.py:{args.method}: the method must be one of {sorted(RECIPES)}.")
    config = sibling(__file__, RECIPES[args.method]).get_config()
    config.dataset.name = "image_folder"
    config.model.encoder, config.model.encoder_kwargs = None, {}  # From the image size.
    config.augment = augment_overrides()  # The images' own recipe.
    config.num_epochs = float(NUM_EPOCHS[args.method])
    if config.pretrain:  # The recipe's pre-training stage, on the same folders: this file's variant of it.
        config.pretrain = f"{os.path.abspath(__file__)}:{PRETRAINING[os.path.basename(config.pretrain)]}"
    if args.method == "sela":
        config.sela.num_clusters = None  # One cluster per class subfolder.
        config.augment.num_local = 0  # SeLa's views share one resolution.
    return finish(config, args)
