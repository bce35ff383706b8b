"""Train-step throughput of the Suave recipes beside the input pipeline's rate: is a run input-bound?

Recipes: ``configs/imagenet_10pct.py`` (ResNet-50, 2 x 224 + 8 x 96 crops, bfloat16, LARS, queue 3,840,
batch 256 unlabeled + 128 labeled) and ``configs/cifar100.py:2500`` (WideResNet-28-8, 2 x 32 + 4 x 18
crops, float32, SGD, batch 256 + 64).

What is timed: ``selax.train.Experiment(config, data_mesh()).train_step``, the recipe's own jitted step
(on-device multi-crop and light augmentation, forward and backward of every view, Sinkhorn targets,
queue, optimizer update) sharded over every device present. Only the data are synthetic: while the
experiment is built, ``selax.data.datasets.open_splits`` returns in-memory ``SplitReader``s of the
recipe's split sizes (ImageNet 1,281,167 train / 128,116 labeled; CIFAR-100 50,000 / 2,500) and stored
image size (256 x 256 for ImageNet, as the real reader decodes and resizes on the host; 32 x 32 for
CIFAR), whose images are random uint8 from a pool of 256 (position modulo 256) with random labels.
Two further changes, neither of which changes the work per step: no ``init_checkpoint`` (random
initialization instead of converted SwAV weights), and ``queue_start_step=0`` so the queue is in use
from the first step, as in the steady state.

Timing: the batches are on the devices before the clock starts; the first step (compilation) is timed
separately and excluded; then ``--steps`` steps, each waited for; the median step time t gives
unlabeled images/s = Bu / t and labeled images/s = Bl / t.

Input rate: ``Experiment.load_batch`` (index streams, the split readers, transfer to the devices) on
the synthetic readers, in (Bu + Bl) images/s. For CIFAR-100 this is the real path (selax holds it in
memory). For ImageNet the real reader also decodes each JPEG on the host, in a pool of one thread per
host core (``selax.data.readers.gather_encoded``), while the previous step runs; that loader's rate
on this host, measured by ``experiments/bench_input.py`` (``experiments/results/bench_input.json``,
row (c)), is the input rate. A run is input-bound when the input rate is below the step's
(Bu + Bl) / t.

Reduced sizes for a CPU: ``--batch_scale`` multiplies the three batch sizes (rounded to a multiple of
the device count, at least one per device), ``--image_scale`` the stored image size and every view's
size (global, local and labeled crops). The table says which sizes were run.

    python experiments/bench_train.py                                    # full recipes (accelerators)
    python experiments/bench_train.py --batch_scale=0.03125 --image_scale=0.5 --steps=3    # a CPU

``--state_shardings=replicated,fsdp`` runs each recipe with both layouts of the train state
(`config.state_sharding`) and reports the state's MiB per device beside the step time.

Prints a table and writes experiments/results/bench_train.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import time
from typing import Any
from unittest import mock

import jax
import ml_collections
import numpy as np

from selax import sharding, train
from selax.data import augment, datasets, readers

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
POOL_SIZE = 256

# (config file, config argument, train images, labeled images, classes, stored image size)
RECIPES = {
    "imagenet_10pct": ("imagenet_10pct.py", None, 1_281_167, 128_116, 1000, 256),
    "cifar100_2500": ("cifar100.py", "2500", 50_000, 2_500, 100, 32),
}


def load_config(file_name: str, arg: str | None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of `configs/<file_name>`."""
    spec = importlib.util.spec_from_file_location(file_name[:-3], os.path.join(REPO, "configs", file_name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def synthetic_reader(size: int, num_classes: int, image_size: int, seed: int) -> readers.SplitReader:
    """A `SplitReader` of `size` positions over a pool of `POOL_SIZE` random uint8 images [S, S, 3]."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (POOL_SIZE, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, POOL_SIZE, dtype=np.int32)

    def read(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(positions) % POOL_SIZE
        return images[rows], labels[rows]

    return readers.SplitReader(size, num_classes, (image_size, image_size, 3), read)


def scaled(size: int, scale: float, multiple: int = 1) -> int:
    """`size * scale` rounded to a positive multiple of `multiple`."""
    return max(multiple, round(size * scale / multiple) * multiple)


def scaled_augment_specs(image_scale: float):
    """`selax.data.augment.specs_from_config` with every view size (global, local, labeled) times `image_scale`."""
    recipe_specs = augment.specs_from_config

    def specs(recipe: augment.DatasetAugment, overrides: ml_collections.ConfigDict):
        crop_spec, labeled_spec, eval_spec = recipe_specs(recipe, overrides)

        def view(spec: augment.ViewSpec) -> augment.ViewSpec:
            return dataclasses.replace(spec, size=scaled(spec.size, image_scale))

        crop_spec = dataclasses.replace(
            crop_spec,
            global_views=tuple(view(v) for v in crop_spec.global_views),
            local_view=view(crop_spec.local_view),
        )
        if labeled_spec.view is not None:
            labeled_spec = dataclasses.replace(labeled_spec, view=view(labeled_spec.view))
        return crop_spec, labeled_spec, eval_spec

    return specs


def bench_recipe(
    name: str, state_sharding: str, args: argparse.Namespace, mesh: jax.sharding.Mesh
) -> dict[str, Any]:
    """Builds the recipe's `Experiment` on synthetic data with the train state laid out as
    `state_sharding` says, and times its train step and `load_batch`."""
    file_name, arg, train_size, labeled_size, num_classes, image_size = RECIPES[name]
    config = load_config(file_name, arg)
    config.state_sharding = state_sharding
    config.model.init_checkpoint = ""
    config.suave.queue_start_step = 0
    for field in ("unlabeled", "labeled", "eval"):
        config.batch[field] = scaled(config.batch[field], args.batch_scale, mesh.size)
    stored_size = scaled(image_size, args.image_scale)
    recipe = datasets.get(config.dataset.name).augment
    splits = datasets.Splits(
        synthetic_reader(train_size, num_classes, stored_size, seed=0),
        synthetic_reader(labeled_size, num_classes, stored_size, seed=1),
        synthetic_reader(POOL_SIZE, num_classes, stored_size, seed=2),
        recipe,
    )
    with (
        mock.patch.object(datasets, "open_splits", lambda *a, **k: splits),
        mock.patch.object(augment, "specs_from_config", scaled_augment_specs(args.image_scale)),
    ):
        experiment = train.Experiment(config, mesh)
    crop_spec, labeled_spec, _ = scaled_augment_specs(args.image_scale)(recipe, config.augment)
    state = experiment.init_state()
    batches = [experiment.load_batch(step) for step in range(args.steps + 1)]
    jax.block_until_ready(batches)

    start = time.perf_counter()
    state, metrics = experiment.train_step(state, batches[0])
    jax.block_until_ready((state, metrics))
    compile_seconds = time.perf_counter() - start
    step_seconds = []
    for batch in batches[1:]:
        start = time.perf_counter()
        state, metrics = experiment.train_step(state, batch)
        jax.block_until_ready((state, metrics))
        step_seconds.append(time.perf_counter() - start)
    if not np.isfinite(float(metrics["total_loss"])):
        raise FloatingPointError(f"{name}: the loss is not finite; the timing would not be of a real step.")

    read_seconds = []
    for step in range(args.steps + 1, 2 * args.steps + 1):
        start = time.perf_counter()
        jax.block_until_ready(experiment.load_batch(step))
        read_seconds.append(time.perf_counter() - start)

    unlabeled, labeled = config.batch.unlabeled, config.batch.labeled
    step_time = float(np.median(step_seconds))
    views = [v.size for v in crop_spec.global_views] + [crop_spec.local_view.size] * crop_spec.num_local
    labeled_view = labeled_spec.view.size if labeled_spec.view is not None else stored_size
    result = dict(
        recipe=f"configs/{file_name}" + (f":{arg}" if arg else ""),
        state_sharding=state_sharding,
        state_mib_per_device=round(max(sharding.bytes_per_device(state).values()) / 2**20, 1),
        encoder=config.model.encoder,
        dtype=config.model.encoder_kwargs.get("dtype", "float32"),
        batch_unlabeled=unlabeled,
        batch_labeled=labeled,
        stored_image_size=stored_size,
        unlabeled_views=views,
        labeled_view=labeled_view,
        compile_seconds=round(compile_seconds, 2),
        step_seconds=step_seconds,
        step_ms_median=round(1e3 * step_time, 1),
        unlabeled_img_per_s=round(unlabeled / step_time, 2),
        labeled_img_per_s=round(labeled / step_time, 2),
        step_demand_img_per_s=round((unlabeled + labeled) / step_time, 2),
        host_read_img_per_s=round((unlabeled + labeled) / float(np.median(read_seconds)), 1),
    )
    if name.startswith("imagenet"):
        with open(os.path.join(HERE, "results", "bench_input.json")) as f:
            decode = json.load(f)
        result.update(
            decode_img_per_s_one_core=decode["b_host_decode_resize256_img_per_s_per_core"],
            decode_img_per_s_all_cores=decode["c_threaded_gather_img_per_s"],
        )
        input_rate = result["decode_img_per_s_all_cores"]  # The loader decodes on every host core.
    else:
        input_rate = result["host_read_img_per_s"]
    result["input_img_per_s"] = input_rate
    result["input_bound"] = bool(input_rate < result["step_demand_img_per_s"])
    return result


def print_table(results: dict[str, dict[str, Any]], caption: str) -> None:
    print(caption)
    header = (
        f"{'recipe':<30} {'state':>10} {'MiB/dev':>8} {'batch U+L':>10} {'views (U | L)':>40} {'dtype':>9} {'compile s':>9} "
        f"{'step ms':>9} {'U img/s':>9} {'L img/s':>9} {'read img/s':>11} {'decode img/s':>13} {'input-bound':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results.values():
        views = f"{'+'.join(map(str, r['unlabeled_views']))} | {r['labeled_view']}"
        decode = f"{r['decode_img_per_s_all_cores']:.0f}" if "decode_img_per_s_all_cores" in r else "-"
        print(
            f"{r['recipe']:<30} {r['state_sharding']:>10} {r['state_mib_per_device']:>8.1f} "
            f"{r['batch_unlabeled']:>5}+{r['batch_labeled']:<4} {views:>40} {r['dtype']:>9} "
            f"{r['compile_seconds']:>9.1f} {r['step_ms_median']:>9.1f} {r['unlabeled_img_per_s']:>9.1f} "
            f"{r['labeled_img_per_s']:>9.1f} {r['host_read_img_per_s']:>11.0f} {decode:>13} "
            f"{r['input_bound']!s:>11}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {list(RECIPES)}")
    parser.add_argument("--batch_scale", type=float, default=1.0, help="times every batch size")
    parser.add_argument("--image_scale", type=float, default=1.0, help="times the image and view sizes")
    parser.add_argument(
        "--state_shardings",
        default="replicated",
        help=f"comma-separated layouts of the train state, of {list(sharding.STATE_SHARDINGS)}",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps after the compiling one")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "bench_train.json"))
    args = parser.parse_args()
    names = [n for n in args.recipes.split(",") if n]
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipes {unknown}; choose from {list(RECIPES)}")
    layouts = [k for k in args.state_shardings.split(",") if k]
    if set(layouts) - set(sharding.STATE_SHARDINGS):
        parser.error(f"--state_shardings: choose from {list(sharding.STATE_SHARDINGS)}")
    if args.batch_scale <= 0 or args.image_scale <= 0 or args.steps < 1:
        parser.error("--batch_scale and --image_scale must be > 0 and --steps >= 1")

    mesh = sharding.data_mesh()
    devices = jax.devices()
    print(f"{len(devices)} x {devices[0].device_kind} ({jax.default_backend()}), {os.cpu_count()} host cores")
    reduced = args.batch_scale != 1.0 or args.image_scale != 1.0
    results = {f"{n}/{k}": bench_recipe(n, k, args, mesh) for n in names for k in layouts}
    caption = (
        f"train-step throughput on {len(devices)} x {devices[0].device_kind}, {args.steps} timed steps; "
    )
    if reduced:
        caption += f"REDUCED SIZES (batch x {args.batch_scale}, images and views x {args.image_scale})"
    else:
        caption += "the recipes' batch and image sizes"
    print_table(results, caption)

    report = dict(
        devices=f"{len(devices)} x {devices[0].device_kind}",
        backend=jax.default_backend(),
        host=platform.processor() or platform.machine(),
        host_cores=os.cpu_count(),
        batch_scale=args.batch_scale,
        image_scale=args.image_scale,
        reduced_sizes=reduced,
        steps=args.steps,
        data="synthetic in-memory SplitReaders (random uint8, recipe split sizes); see the module docstring",
        results=results,
    )
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
