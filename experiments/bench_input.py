"""Input-pipeline throughput for the ImageNet multi-crop recipe (2 x 224 + 8 x 96).

Synthetic JPEGs of ImageNet size (500 x 375) are written with PIL to a temporary folder, then:

  (a) host decode + augment: PIL decode, then per view random resized crop, flip, colour jitter,
      grayscale, Gaussian blur, solarize with PIL/NumPy, normalize to float32 (1 process, 1 core);
  (b) host decode to 256 x 256 uint8 (`selax.data.readers.decode_square`: the host part), then
      `selax.data.augment.multi_crop` jitted on the JAX default device (CPU here: a lower bound
      for an accelerator);
  (c) the training loader itself, `selax.data.readers.gather_encoded`, which decodes (b)'s host
      part in a pool of one thread per host core, over an in-memory source of the same JPEG bytes:
      images/s on all the host's cores, and its scaling efficiency (the rate over cores x (b)).

From the per-core host rates it estimates how many host cores keep a node of 8 accelerators fed at
a given per-accelerator train-step rate, assuming host work scales linearly with cores (one
decoding process per core) and, for (b), that on-device augmentation overlaps with or is cheap
relative to the train step. Prints a table and writes experiments/results/bench_input.json.

    python experiments/bench_input.py [--images 64] [--repeats 3] [--device_batch 32]
        [--step_rate 1000]

Host rates are medians over ``--repeats`` passes; device rate the mean over ``--repeats`` batches.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from selax.data import augment, readers

RECIPE = augment.imagenet(num_local=8).multi_crop


def write_jpegs(folder: str, count: int, seed: int = 0) -> list[str]:
    """``count`` 500 x 375 JPEGs (quality 90) with smooth structure plus noise, like photos."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500] / 100.0
    paths = []
    for index in range(count):
        phase = rng.random(3) * 6.28
        smooth = np.stack([np.sin(xx * (1 + c) + yy * (2 - c) + phase[c]) for c in range(3)], -1)
        pixels = 127 + 80 * smooth + rng.normal(0, 20, smooth.shape)
        path = os.path.join(folder, f"{index:04d}.jpg")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def pil_view(rng: np.random.Generator, image: Image.Image, view: augment.ViewSpec) -> np.ndarray:
    """Host-side version of one view of the recipe; float32 [size, size, 3] normalized."""
    width, height = image.size
    area = rng.uniform(*view.scale) * width * height
    aspect = np.exp(rng.uniform(np.log(view.ratio[0]), np.log(view.ratio[1])))
    crop_w = min(width, max(1, round(np.sqrt(area * aspect))))
    crop_h = min(height, max(1, round(np.sqrt(area / aspect))))
    left, top = rng.integers(0, width - crop_w + 1), rng.integers(0, height - crop_h + 1)
    out = image.resize((view.size, view.size), Image.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
    if rng.random() < view.flip_prob:
        out = ImageOps.mirror(out)
    if rng.random() < view.jitter_prob:
        spread = 0.8 * view.jitter_strength
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            out = enhance(out).enhance(rng.uniform(1 - spread, 1 + spread))
        hsv = np.asarray(out.convert("HSV")).copy()
        shift = rng.uniform(-0.2, 0.2) * view.jitter_strength * 255
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(shift)) % 256
        out = Image.fromarray(hsv, "HSV").convert("RGB")
    if rng.random() < view.gray_prob:
        out = ImageOps.grayscale(out).convert("RGB")
    if rng.random() < view.blur_prob:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(*view.blur_sigma)))
    if rng.random() < view.solarize_prob:
        out = ImageOps.solarize(out, 128)
    pixels = np.asarray(out, np.float32) / 255.0
    return (pixels - np.asarray(RECIPE.mean, np.float32)) / np.asarray(RECIPE.std, np.float32)


def host_multi_crop(paths: list[str], seed: int = 0) -> float:
    """Seconds to decode and augment every path into all views on the host."""
    rng = np.random.default_rng(seed)
    views = list(RECIPE.global_views) + [RECIPE.local_view] * RECIPE.num_local
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            for view in views:
                pil_view(rng, image, view)
    return time.perf_counter() - start


def host_decode_resize(paths: list[str], size: int = 256) -> tuple[float, np.ndarray]:
    """Seconds to decode every path to [size, size, 3] uint8 as the training host loader does
    (`selax.data.readers.decode_square`: shorter side to size, centre crop); the batch."""
    start = time.perf_counter()
    batch = np.stack([readers.decode_square(path, size) for path in paths])
    return time.perf_counter() - start, batch


class EncodedSource:
    """The encoded-image data source `gather_encoded` reads (`__getitems__`), over JPEG bytes in memory."""

    def __init__(self, paths: list[str]):
        self._records = []
        for path in paths:
            with open(path, "rb") as f:
                self._records.append({"image": f.read(), "label": 0})

    def __getitems__(self, positions: list[int]) -> list[dict]:
        return [self._records[p % len(self._records)] for p in positions]


def threaded_gather(source: EncodedSource, count: int, size: int = 256) -> float:
    """Seconds for `selax.data.readers.gather_encoded` to decode `count` images to [size, size, 3]."""
    start = time.perf_counter()
    readers.gather_encoded(source, np.arange(count), size)
    return time.perf_counter() - start


def device_multi_crop(batch: np.ndarray, device_batch: int, repeats: int) -> tuple[float, float]:
    """(compile seconds, seconds per batch) for jitted multi_crop of [device_batch, 256, 256, 3]."""
    images = jax.device_put(np.resize(batch, (device_batch,) + batch.shape[1:]))
    run = jax.jit(augment.multi_crop, static_argnums=2)
    start = time.perf_counter()
    jax.block_until_ready(run(jax.random.key(0), images, RECIPE))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for step in range(repeats):
        jax.block_until_ready(run(jax.random.key(step + 1), images, RECIPE))
    return compile_s, (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--device_batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accelerators", type=int, default=8)
    parser.add_argument(
        "--step_rate", type=float, default=1000.0, help="images/s one accelerator's train step consumes"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, args.images)
        jpeg_kib = np.mean([os.path.getsize(p) for p in paths]) / 1024
        host_multi_crop(paths[:2])  # warm caches
        host_a = args.images / np.median([host_multi_crop(paths, r) for r in range(args.repeats)])
        timings = [host_decode_resize(paths) for _ in range(args.repeats)]
        host_b = args.images / np.median([seconds for seconds, _ in timings])
        batch = timings[0][1]
        source = EncodedSource(paths)
    threaded_gather(source, len(paths))  # start the decode threads
    threaded = args.images / np.median([threaded_gather(source, args.images) for _ in range(args.repeats)])
    cores = os.cpu_count() or 1
    compile_s, batch_s = device_multi_crop(batch, args.device_batch, args.repeats)
    device_b = args.device_batch / batch_s
    demand = args.accelerators * args.step_rate

    results = {
        "recipe": f"{RECIPE.num_global}x{RECIPE.global_views[0].size} + "
        f"{RECIPE.num_local}x{RECIPE.local_view.size}, flip/jitter/gray/blur/solarize",
        "images": args.images,
        "repeats": args.repeats,
        "jpeg_kib_mean": round(float(jpeg_kib), 1),
        "a_host_decode_augment_img_per_s_per_core": round(host_a, 1),
        "b_host_decode_resize256_img_per_s_per_core": round(host_b, 1),
        "b_jax_augment_img_per_s": round(device_b, 1),
        "c_threaded_gather_img_per_s": round(threaded, 1),
        "c_host_cores": cores,
        "c_scaling_efficiency": round(threaded / (cores * host_b), 2),
        "b_jax_device": str(jax.devices()[0].platform),
        "b_jax_cpu_threads": os.cpu_count(),
        "b_jax_compile_s": round(compile_s, 2),
        "node_demand_img_per_s": demand,
        "a_host_cores_needed": int(np.ceil(demand / host_a)),
        "b_host_cores_needed": int(np.ceil(demand / host_b)),
        "assumption": (
            f"{args.accelerators} accelerators x {args.step_rate:g} img/s; host work "
            "scales linearly with cores; in (b) the accelerators augment on device, "
            "overlapped with or small next to the train step"
        ),
    }
    rows = [
        (
            "(a) host decode + PIL multi-crop",
            f"{host_a:.1f} img/s/core",
            f"{results['a_host_cores_needed']} cores",
        ),
        (
            "(b) host decode + resize 256",
            f"{host_b:.1f} img/s/core",
            f"{results['b_host_cores_needed']} cores",
        ),
        (
            f"(c) gather_encoded, {cores} decode threads",
            f"{threaded:.1f} img/s",
            f"{results['c_scaling_efficiency']:.2f} of {cores} x (b)",
        ),
        (
            f"(b) jitted multi_crop on {results['b_jax_device']}",
            f"{device_b:.1f} img/s",
            f"compile {compile_s:.1f} s",
        ),
    ]
    print(f"{results['recipe']}; {args.images} synthetic 500x375 JPEGs (~{jpeg_kib:.0f} KiB)")
    print(f"{'stage':40s} {'rate':>18s} {'for ' + format(demand, 'g') + ' img/s':>18s}")
    for stage, rate, need in rows:
        print(f"{stage:40s} {rate:>18s} {need:>18s}")
    print("assumption:", results["assumption"])
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "bench_input.json"), "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
