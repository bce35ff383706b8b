"""SeLa on ImageNet, unsupervised: ResNet-50, 10 heads x 3000 clusters, the published 400-epoch schedule.

    python -m selax.main --config=configs/sela_imagenet.py --workdir=DIR --config.dataset.data_dir=...

Recipe (Asano et al. 2020): SGD momentum 0.9, weight decay 1e-5, batch 256, lr 0.05 decayed x0.1 at
epochs 150, 300 and 350 of 400; label updates with lambda = 25, about 90 of them, denser early.
Each label update predicts the embeddings of all 1.28M training images, each through one training view
as in the reference code (`sela.label_views`), [N, 2048] float32 = 9.8 GiB of host memory, then solves
the heads one at a time (`python experiments/bench_label_step.py`: about 320 s and 8.2 GiB beyond the
embeddings per head on a 2-core CPU, in bfloat16).
`--config=configs/sela_imagenet.py:smoke` runs a few steps of a shrunken ResNet-50 on the digits.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from selax.config_fields import augment_overrides

TRAIN_IMAGES = 1_281_167


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.method = "sela"
    config.seed = 0
    config.state_sharding = "replicated"  # "fsdp": params, optimizer state and extras split over devices.

    config.dataset = dict(
        name="imagenet2012", data_dir=placeholder(str), labels_per_class=placeholder(int), split_seed=0
    )
    config.model = dict(
        encoder="resnet50",
        encoder_kwargs=dict(),
        projector_hidden=None,  # Linear heads on the pooled features.
        embedding_dim=0,
        init_checkpoint="",
    )
    config.augment = augment_overrides()
    config.augment.num_local = 0  # Two global views.
    config.batch = dict(unlabeled=256, labeled=0, eval=1024)
    steps_per_epoch = TRAIN_IMAGES // config.batch.unlabeled
    config.num_steps = 400 * steps_per_epoch
    config.optimizer = dict(
        name="sgd",
        base_lr=0.05,
        final_lr=0.0,
        warmup_steps=0,
        weight_decay=1e-5,
        final_weight_decay=placeholder(float),
        momentum=0.9,
        decay_boundaries=tuple(e * steps_per_epoch for e in (150, 300, 350)),
        decay_factor=0.1,
    )
    config.sela = dict(
        num_clusters=3000,
        num_heads=10,
        num_label_updates=90,
        lam=25.0,
        sinkhorn_tol=1e-3,
        sinkhorn_max_iters=1000,
        sinkhorn_chunk_size=4096,
        label_step_dtype="bfloat16",  # Per head [N, K]: 7.2 GiB; "float32": 14.3 GiB, for devices with room.
        label_views="augmented",  # The label step sees one training view per image; "clean": eval views.
        cluster_marginals=placeholder(tuple),  # None: equal cluster sizes; else a known class prior.
        aux_num_heads=0,  # Overclustering heads (trained, not evaluated); 0: none.
        aux_num_clusters=0,
    )
    config.eval = dict(knn_k=20, knn_temperature=0.07)
    config.log_every_steps = 100
    config.eval_every_steps = 10 * steps_per_epoch
    config.checkpoint = dict(every_steps=steps_per_epoch, keep=3)

    if arg == "smoke":
        config.dataset = dict(name="digits", data_dir=placeholder(str), labels_per_class=2, split_seed=0)
        config.model.encoder_kwargs = dict(stage_sizes=(1, 1, 1, 1), base_width=4, cifar_stem=True)
        config.batch = dict(unlabeled=32, labeled=0, eval=128)
        config.num_steps = 4
        config.optimizer.decay_boundaries = (2, 3)
        config.sela.update(num_clusters=12, num_heads=2, num_label_updates=2)
        config.log_every_steps = 2
        config.eval_every_steps = 0
        config.checkpoint = dict(every_steps=4, keep=1)
    return config
