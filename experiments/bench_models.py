"""Train-step throughput (images/s) of selax encoders in JAX vs the same models in PyTorch, on this CPU.

A step is forward + backward + SGD-momentum update of the encoder and a 10-way linear classifier
(cross-entropy on random labels), jitted in JAX; compile and warm-up steps are excluded. Each row runs
in its own subprocess because XLA_FLAGS and the CPU device count are read once, at backend start. JAX
runs on 1 CPU device and on N = the core count (`jax_num_cpu_devices`, the batch split over a mesh of
them, BatchNorm global, as selax's step), PyTorch on 1 and N intra-op threads. PyTorch rows are skipped
when torch is missing.

A second table times single layers of the CIFAR ResNet-18 (3x3 conv 64->64 on [64, 32, 32, 64], BatchNorm +
ReLU) in process CPU seconds, JAX (default threads) vs PyTorch (1 thread, channels_last), to locate the gap.

A third kind of row times whole selax train steps (`selax.train.Experiment.train_step` on its own
batches: data, augmentation, method loss, update) of `configs/default.py` and of `configs/folder.py` on the
digits upsampled to 28 px, on 1 and N devices, in images/s of the unlabeled stream.

Usage:
  python experiments/bench_models.py                          # ~15 min on 2 idle cores
  python experiments/bench_models.py --xla-variants all       # also the XLA flag variants on the CIFAR ResNet-18
  python experiments/bench_models.py --steps 3 --cases small_cnn --no-layers
  python experiments/bench_models.py --rounds 5 --cases small_cnn_28 --runs "" --no-layers   # medians of 5
                                                              # interleaved passes, steadier on a shared machine
Writes experiments/results/bench_models.json.
"""

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time

BATCH = 64
# name -> (encoder name in selax.models, its fields, image shape [H, W, C], description)
CASES = {
    "small_cnn": ("small_cnn", {}, (8, 8, 1), "small CNN 8x8x1"),
    "small_cnn_28": ("small_cnn", {}, (28, 28, 1), "small CNN 28x28x1"),
    "small_cnn_32": ("small_cnn", {}, (32, 32, 3), "small CNN 32x32x3"),
    "resnet18_cifar": ("resnet18_cifar", {}, (32, 32, 3), "ResNet-18 CIFAR 32"),
    "resnet18_imagenet": ("resnet18", {}, (96, 96, 3), "ResNet-18 ImNet 96"),
    "wide_resnet28_2": ("wide_resnet28_8", dict(widen_factor=2), (32, 32, 3), "WRN-28-2 32x32"),
    "vit_s16_64": ("vit_s16", dict(image_size=64), (64, 64, 3), "ViT-S/16 64x64"),
}
# name -> (XLA_FLAGS, computation dtype); all tried on the CIFAR ResNet-18, the case with a known gap.
JAX_VARIANTS = {
    "default": ("", "float32"),
    "bfloat16": ("", "bfloat16"),
    "xnnpack": ("--xla_cpu_use_xnnpack=true", "float32"),
    "fast_math": ("--xla_cpu_enable_fast_math=true", "float32"),
    "single_thread_eigen": ("--xla_cpu_multi_thread_eigen=false", "float32"),
    "ynn_convolution": ("--xla_cpu_experimental_ynn_fusion_type=+individual_convolution", "float32"),
    "ynn_no_reduce": ("--xla_cpu_experimental_ynn_fusion_type=-reduce", "float32"),
    "onednn_convolution": ("--xla_cpu_experimental_onednn_fusion_type=+individual_convolution", "float32"),
}
VARIANT_CASE = "resnet18_cifar"
# Whole selax train steps (data, multi-crop augmentation, method loss, update): name -> (config, description).
RUNS = {
    "default": ("default.py", "configs/default.py"),
    "folder_28": ("folder.py", "folder.py, 28 px digits"),
}


def time_steps(step, steps: int, warmup: int = 2) -> dict:
    """Runs `step()` `warmup` times (the first includes compilation), then `steps` timed times.

    Returns the first call's wall time, and wall and process CPU seconds per timed step. On a shared
    machine CPU time is the steadier figure for single-threaded runs (it ignores waiting for a core).
    """
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        step()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return {
        "first_step_s": first,
        "step_s": (time.perf_counter() - start) / steps,
        "cpu_s_per_step": (time.process_time() - cpu_start) / steps,
    }


def jax_train_step(case: str, dtype_name: str):
    """The selax encoder's jitted train step `train_step(state, batch)` (state donated, replicated), its
    initial state and a random batch split over every device.

    The batch is an argument, never a closed-over array: jit would embed it as a replicated constant,
    and every device would then run the whole batch (the 2-device rows before 2026-12-07 did).
    """
    import flax.linen as nn  # pylint: disable=import-outside-toplevel
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import optax  # pylint: disable=import-outside-toplevel

    from selax import sharding  # pylint: disable=import-outside-toplevel
    from selax.models import build_encoder  # pylint: disable=import-outside-toplevel

    encoder_name, fields, shape, _ = CASES[case]
    encoder = build_encoder(encoder_name, dtype=jnp.dtype(dtype_name), **fields)
    classifier = nn.Dense(10)
    mesh = sharding.data_mesh()
    images = jax.device_put(jax.random.normal(jax.random.key(0), (BATCH, *shape)), sharding.batch_sharded(mesh))
    labels = jax.device_put(jax.random.randint(jax.random.key(1), (BATCH,), 0, 10), sharding.batch_sharded(mesh))
    variables = encoder.init(jax.random.key(2), images)
    features = jax.eval_shape(lambda: encoder.apply(variables, images))  # [B, D]; D follows `fields`.
    params = {
        "encoder": variables["params"],
        "classifier": classifier.init(jax.random.key(3), jnp.zeros(features.shape))["params"],
    }
    optimizer = optax.sgd(0.01, momentum=0.9)
    state = jax.device_put((params, variables.get("batch_stats", {}), optimizer.init(params)), sharding.replicated(mesh))

    def loss_fn(params, batch_stats, images, labels):
        features, updates = encoder.apply(
            {"params": params["encoder"], "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        logits = classifier.apply({"params": params["classifier"]}, features)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates["batch_stats"]

    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, batch):
        params, batch_stats, opt_state = state
        (_, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state

    return train_step, state, (images, labels)


def jax_row(case: str, dtype_name: str, devices: int, steps: int) -> dict:
    """Times the selax encoder's train step in this process, on `devices` CPU devices."""
    import jax  # pylint: disable=import-outside-toplevel

    jax.config.update("jax_num_cpu_devices", devices)
    train_step, state, batch = jax_train_step(case, dtype_name)

    def step():
        nonlocal state
        state = jax.block_until_ready(train_step(state, batch))

    return time_steps(step, steps)


def write_digits_folder(root: str, size: int = 28) -> str:
    """sklearn's digits upsampled to `size` px grey PNGs, `root/train/<digit>/<n>.png`; returns `root/train`."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        path = os.path.join(root, "train", str(label), f"{index:04d}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pixels = np.uint8(np.round(image * 255 / 16))
        Image.fromarray(pixels).resize((size, size), Image.BICUBIC).save(path)
    return os.path.join(root, "train")


def selax_run_row(run: str, devices: int, steps: int) -> dict:
    """Times `selax.train.Experiment.train_step` of a shipped config (its own batch, data and method),
    reading each step's batch first, on `devices` CPU devices."""
    import tempfile  # pylint: disable=import-outside-toplevel

    import jax  # pylint: disable=import-outside-toplevel

    jax.config.update("jax_num_cpu_devices", devices)
    from selax import sharding, train  # pylint: disable=import-outside-toplevel
    from selax.config_fields import sibling  # pylint: disable=import-outside-toplevel

    config_file, _ = RUNS[run]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = sibling(os.path.join(root, "configs", config_file), config_file[:-3]).get_config()
    with tempfile.TemporaryDirectory() as folder:
        if run == "folder_28":
            config.dataset.train_dir = write_digits_folder(folder)
        experiment = train.Experiment(config, sharding.data_mesh())
        state, step_index = experiment.init_state(), 0

        def step():
            nonlocal state, step_index
            state, metrics = experiment.train_step(state, experiment.load_batch(step_index))
            jax.block_until_ready(metrics)
            step_index += 1

        return dict(time_steps(step, steps), batch=config.batch.unlabeled)


def torch_models(case: str):
    """The same encoder + classifier as selax's, built from torch.nn layers (same shapes and FLOPs)."""
    import torch  # pylint: disable=import-outside-toplevel
    import torch.nn as tnn  # pylint: disable=import-outside-toplevel

    class BasicBlock(tnn.Module):
        def __init__(self, c_in: int, width: int, stride: int):
            super().__init__()
            self.body = tnn.Sequential(
                tnn.Conv2d(c_in, width, 3, stride, 1, bias=False),
                tnn.BatchNorm2d(width),
                tnn.ReLU(),
                tnn.Conv2d(width, width, 3, 1, 1, bias=False),
                tnn.BatchNorm2d(width),
            )
            self.shortcut = tnn.Identity()
            if stride != 1 or c_in != width:
                self.shortcut = tnn.Sequential(
                    tnn.Conv2d(c_in, width, 1, stride, bias=False), tnn.BatchNorm2d(width)
                )

        def forward(self, x):
            return (self.body(x) + self.shortcut(x)).relu()

    class PreActBlock(tnn.Module):
        """WideResNet's block: BN-LReLU-conv3x3(stride)-BN-LReLU-conv3x3, 1x1 conv shortcut on a shape change."""

        def __init__(self, c_in: int, width: int, stride: int):
            super().__init__()
            self.bn1, self.bn2 = tnn.BatchNorm2d(c_in), tnn.BatchNorm2d(width)
            self.conv1 = tnn.Conv2d(c_in, width, 3, stride, 1, bias=False)
            self.conv2 = tnn.Conv2d(width, width, 3, 1, 1, bias=False)
            self.shortcut = None if stride == 1 and c_in == width else tnn.Conv2d(c_in, width, 1, stride, bias=False)

        def forward(self, x):
            activated = tnn.functional.leaky_relu(self.bn1(x), 0.1)
            out = self.conv2(tnn.functional.leaky_relu(self.bn2(self.conv1(activated)), 0.1))
            return out + (x if self.shortcut is None else self.shortcut(x))

    class ViT(tnn.Module):
        """ViT-S/16: patch embedding, class token, learned positions, pre-norm GELU blocks, final norm."""

        def __init__(self, image_size: int, patch: int = 16, dim: int = 384, depth: int = 12, heads: int = 6):
            super().__init__()
            self.patches = tnn.Conv2d(3, dim, patch, patch)
            self.cls = tnn.Parameter(torch.zeros(1, 1, dim))
            self.positions = tnn.Parameter(torch.zeros(1, 1 + (image_size // patch) ** 2, dim))
            layer = tnn.TransformerEncoderLayer(
                dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            self.blocks = tnn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
            self.norm = tnn.LayerNorm(dim, eps=1e-6)

        def forward(self, x):
            tokens = self.patches(x).flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.positions
            return self.norm(self.blocks(tokens))[:, 0]

    encoder_name, fields, (height, _, channels), _ = CASES[case]
    if encoder_name == "small_cnn":
        layers, c_in, size = [], channels, height
        for i, width in enumerate((32, 64, 128)):
            layers += [tnn.Conv2d(c_in, width, 3, 1, 1, bias=False), tnn.BatchNorm2d(width), tnn.ReLU()]
            if i < 2 and size >= 4:
                layers.append(tnn.AvgPool2d(2))
                size //= 2
            c_in = width
    elif encoder_name == "wide_resnet28_8":
        k, layers, c_in = fields["widen_factor"], [tnn.Conv2d(channels, 16, 3, 1, 1, bias=False)], 16
        for width, stride in zip((16 * k, 32 * k, 64 * k), (1, 2, 2)):
            for index in range(4):
                layers.append(PreActBlock(c_in, width, stride if index == 0 else 1))
                c_in = width
        layers += [tnn.BatchNorm2d(c_in), tnn.LeakyReLU(0.1)]
    elif encoder_name == "vit_s16":
        return tnn.Sequential(ViT(fields["image_size"]), tnn.Linear(384, 10))
    else:
        cifar = encoder_name == "resnet18_cifar"
        layers = [
            tnn.Conv2d(channels, 64, 3 if cifar else 7, 1 if cifar else 2, 1 if cifar else 3, bias=False),
            tnn.BatchNorm2d(64),
            tnn.ReLU(),
        ] + ([] if cifar else [tnn.MaxPool2d(3, 2, 1)])
        c_in = 64
        for stage in range(4):
            for index in range(2):
                layers.append(BasicBlock(c_in, 64 * 2**stage, 2 if stage > 0 and index == 0 else 1))
                c_in = 64 * 2**stage
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c_in, 10))


def torch_row(case: str, channels_last: bool, threads: int, steps: int) -> dict:
    """Times the PyTorch twin's train step in this process, on `threads` intra-op threads."""
    import torch  # pylint: disable=import-outside-toplevel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    _, _, (height, width, channels), _ = CASES[case]
    model = torch_models(case).train()
    images = torch.randn(BATCH, channels, height, width)
    labels = torch.randint(0, 10, (BATCH,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return time_steps(step, steps)


def jax_layer_times(steps: int) -> dict[str, float]:
    """Process CPU seconds per call of single ResNet-18 layers in JAX (forward kept in every gradient)."""
    import flax.linen as nn  # pylint: disable=import-outside-toplevel
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    x = jax.random.normal(jax.random.key(0), (BATCH, 32, 32, 64))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 64, 64)) * 0.05
    cotangent = jax.random.normal(jax.random.key(2), x.shape)
    conv = lambda x, kernel: jax.lax.conv_general_dilated(
        x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    conv_loss = lambda x, kernel: jnp.sum(conv(x, kernel) * cotangent)
    batch_norm = nn.BatchNorm(use_running_average=False, momentum=0.9)
    bn_variables = batch_norm.init(jax.random.key(3), x)

    def bn_loss(params, x):
        out, _ = batch_norm.apply({**bn_variables, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(nn.relu(out) * cotangent)

    def im2col_kernel_grad(x, kernel):
        """The kernel gradient as one matmul of the input's 3x3 patches with the cotangent."""
        patches = jax.lax.conv_general_dilated_patches(
            x, (3, 3), (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )  # [B, H, W, C * 9], feature order (C, kh, kw)
        grad = patches.reshape(-1, patches.shape[-1]).T @ cotangent.reshape(-1, cotangent.shape[-1])
        return conv(x, kernel), grad.reshape(x.shape[-1], 3, 3, -1).transpose(1, 2, 0, 3)

    calls = {
        "conv fwd": (jax.jit(conv), (x, kernel)),
        "conv fwd + input grad": (jax.jit(jax.value_and_grad(conv_loss, 0)), (x, kernel)),
        "conv fwd + kernel grad": (jax.jit(jax.value_and_grad(conv_loss, 1)), (x, kernel)),
        "conv fwd + kernel grad, im2col": (jax.jit(im2col_kernel_grad), (x, kernel)),
        "BN+ReLU fwd + grads": (jax.jit(jax.value_and_grad(bn_loss, (0, 1))), (bn_variables["params"], x)),
    }
    return {
        name: time_steps(lambda: jax.block_until_ready(fn(*args)), steps)["cpu_s_per_step"]
        for name, (fn, args) in calls.items()
    }


def torch_layer_times(steps: int) -> dict[str, float]:
    """The same layers in PyTorch, 1 thread, channels_last."""
    import torch  # pylint: disable=import-outside-toplevel

    torch.set_num_threads(1)
    x = torch.randn(BATCH, 64, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()
    conv = torch.nn.Conv2d(64, 64, 3, 1, 1, bias=False).to(memory_format=torch.channels_last)
    batch_norm = torch.nn.BatchNorm2d(64)
    cotangent = torch.randn(x.shape).contiguous(memory_format=torch.channels_last)

    def conv_fwd():
        with torch.no_grad():
            conv(x)

    calls = {
        "conv fwd": conv_fwd,
        "conv fwd + input grad": lambda: torch.autograd.grad(conv(x), [x], cotangent),
        "conv fwd + kernel grad": lambda: torch.autograd.grad(conv(x), [conv.weight], cotangent),
        "BN+ReLU fwd + grads": lambda: torch.autograd.grad(
            batch_norm(x).relu(), [x, batch_norm.weight, batch_norm.bias], cotangent
        ),
    }
    return {name: time_steps(fn, steps)["cpu_s_per_step"] for name, fn in calls.items()}


def run_worker(row: dict, steps: int) -> dict | None:
    """Runs one row in a fresh interpreter (with its XLA_FLAGS); None when it fails (e.g. torch missing)."""
    env = dict(os.environ, XLA_FLAGS=row.get("xla_flags", ""))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(row), "--steps", str(steps)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        print(
            f"  {row['framework']} {row['case']} {row.get('variant', '')}: failed: {result.stderr.strip().splitlines()[-1:]}"
        )
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def row_label(row: dict) -> str:
    """The printed name of a row's case."""
    return RUNS[row["case"]][1] if row["framework"] == "selax" else CASES[row["case"]][3]


def median_round(row_rounds: list[dict]) -> dict:
    """A row's result from its rounds: the round of median images/s (the lower middle one for an even
    count), with every round's images/s as `images_per_s_rounds`."""
    ordered = sorted(row_rounds, key=lambda result: result["images_per_s"])
    return dict(
        ordered[(len(ordered) - 1) // 2], images_per_s_rounds=[result["images_per_s"] for result in row_rounds]
    )


def convolutional_net(case: str) -> bool:
    """Whether PyTorch runs `case` channels_last (its faster CPU layout for every conv net here, the small
    CNN included: 6,584 vs 5,486 images/s at 8 px, 1,044 vs 774 at 28 px on 2 threads, 2026-12-06)."""
    return not case.startswith("vit")


def plan(cases: list[str], xla_variants: list[str], runs: list[str]) -> list[dict]:
    """Rows to run: JAX on 1 and all-core CPU devices (plus `xla_variants` on the CIFAR ResNet-18, on 1),
    then PyTorch on 1 and all threads."""
    rows = []
    for case in cases:
        for variant in xla_variants if case == VARIANT_CASE else ["default"]:
            flags, dtype = JAX_VARIANTS[variant]
            for devices in sorted({1, os.cpu_count()}) if variant == "default" else [1]:
                rows.append(
                    {
                        "framework": "jax",
                        "case": case,
                        "variant": variant + (f", {devices} devices" if devices > 1 else ""),
                        "devices": devices,
                        "xla_flags": flags,
                        "dtype": dtype,
                    }
                )
        for threads in sorted({1, os.cpu_count()}):
            rows.append(
                {
                    "framework": "torch",
                    "case": case,
                    "threads": threads,
                    "channels_last": convolutional_net(case),
                    "variant": f"{threads} thread{'s' * (threads > 1)}" + (", channels_last" * convolutional_net(case)),
                }
            )
    for run in runs:
        for devices in sorted({1, os.cpu_count()}):
            rows.append(
                {"framework": "selax", "case": run, "devices": devices, "variant": f"train step, {devices} device{'s' * (devices > 1)}"}
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument(
        "--rounds", type=int, default=1, help="passes over every row, interleaved; each row reports its median"
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {list(CASES)}")
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_models.json"),
    )
    parser.add_argument(
        "--xla-variants",
        default="default,bfloat16",
        help=f"comma-separated subset of {list(JAX_VARIANTS)}, or 'all'",
    )
    parser.add_argument("--no-layers", action="store_true", help="skip the single-layer table")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"whole train steps, a subset of {list(RUNS)} (empty: none)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        row = json.loads(args.worker)
        if row["case"] == "layers":
            timing = {
                "ops": (jax_layer_times if row["framework"] == "jax" else torch_layer_times)(args.steps)
            }
        elif row["framework"] == "selax":
            timing = selax_run_row(row["case"], row["devices"], args.steps)
        elif row["framework"] == "jax":
            timing = jax_row(row["case"], row["dtype"], row["devices"], args.steps)
        else:
            timing = torch_row(row["case"], row["channels_last"], row["threads"], args.steps)
        print(json.dumps({**row, **timing}))
        return
    if args.rounds < 1 or args.steps < 1:
        raise ValueError(f"--rounds and --steps must be at least 1, got {args.rounds} and {args.steps}.")
    unknown = (set(args.cases.split(",")) - set(CASES) - {""}) | (set(args.runs.split(",")) - set(RUNS) - {""})
    if unknown:
        raise ValueError(f"Unknown cases or runs {sorted(unknown)}; choose from {list(CASES)} and {list(RUNS)}.")
    xla_variants = list(JAX_VARIANTS) if args.xla_variants == "all" else args.xla_variants.split(",")
    if set(xla_variants) - set(JAX_VARIANTS):
        raise ValueError(
            f"Unknown XLA variants {sorted(set(xla_variants) - set(JAX_VARIANTS))}; choose from "
            f"{list(JAX_VARIANTS)} or 'all'."
        )
    rows = plan([c for c in args.cases.split(",") if c], xla_variants, [r for r in args.runs.split(",") if r])
    rounds: list[list[dict]] = [[] for _ in rows]  # Each row's results, one per round.
    print(
        f"{'round':>5} {'case':<20} {'framework':<6} {'variant':<26} {'images/s':>9} {'step s':>8} {'first s':>8}"
        f" {'cpu s':>7} {'load':>5}"
    )
    for round_index in range(args.rounds):
        for row, row_rounds in zip(rows, rounds):
            result = run_worker(row, args.steps)
            if result is None:
                continue
            result["images_per_s"] = result.get("batch", BATCH) / result["step_s"]
            result["load_average_1min"] = os.getloadavg()[0]
            row_rounds.append(result)
            print(
                f"{round_index:>5} {row_label(row):<20} {row['framework']:<6} {row['variant']:<26}"
                f" {result['images_per_s']:>9.1f} {result['step_s']:>8.3f} {result['first_step_s']:>8.2f}"
                f" {result['cpu_s_per_step']:>7.3f} {result['load_average_1min']:>5.1f}",
                flush=True,
            )
    results = [median_round(row_rounds) for row_rounds in rounds if row_rounds]
    if args.rounds > 1:
        print(f"\n{'case':<20} {'framework':<6} {'variant':<26} {'images/s, median (range) of rounds':>36}")
        for result in results:
            low, high = min(result["images_per_s_rounds"]), max(result["images_per_s_rounds"])
            print(
                f"{row_label(result):<20} {result['framework']:<6} {result['variant']:<26}"
                f" {result['images_per_s']:>14.1f} ({low:.1f}-{high:.1f})"
            )
    layers = {}
    if not args.no_layers:
        for framework in ("jax", "torch"):
            result = run_worker({"framework": framework, "case": "layers"}, args.steps)
            if result is not None:
                layers[framework] = result["ops"]
        print(f"\n{'layer (CPU s per call)':<32} " + " ".join(f"{framework:>8}" for framework in layers))
        for op in next(iter(layers.values()), {}):
            print(
                f"{op:<32} "
                + " ".join(f"{layers[framework].get(op, float('nan')):>8.4f}" for framework in layers)
            )
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(
            {
                "batch": BATCH,
                "steps": args.steps,
                "rounds": args.rounds,
                "machine": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "xla_variants": xla_variants,
                "rows": results,
                "layer_cpu_s": layers,
            },
            f,
            indent=1,
        )
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
