"""Shared test setup: 8 simulated CPU devices, fast-compiling XLA flags, a private tfds data dir, a shared compilation cache."""

import os
import tempfile

# The suite runs many short programs, each compiled once, so it compiles them for compile time: LLVM's
# optimizations of XLA:CPU's generated code cost more than they save here (a random normal of rank 4
# compiles in 3 s with them, 0.3 s without), and XLA's older elemental emitters compile faster than its
# fusion emitters (the CIFAR-100 smoke step: 10.0 s -> 5.4 s). Values agree to float32 rounding; the XLA
# programs are the same, only their machine code differs. Set before JAX starts; the commands that the
# tests run inherit it.
_COMPILE_FAST = ["--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"]
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *_COMPILE_FAST]).strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
# Subprocesses started by the tests (selax.main) see the same 8 devices...
os.environ["JAX_NUM_CPU_DEVICES"] = "8"
# ... and, like this process, reuse compiled programs: the resume tests run one program many times.
_CACHE = tempfile.mkdtemp(prefix="selax-test-jax-cache-")
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

from selax.methods.base import StepInputs  # noqa: E402  (after the device count is set)

# SimCLR's exact 1% subset list (tfds checks its sha256 before preparing imagenet2012_subset/1pct).
SUBSET_LIST_1PCT = os.path.join(os.path.dirname(__file__), "data", "imagenet_subsets", "1percent.txt")


@pytest.fixture(scope="session", autouse=True)
def tfds_data_dir(tmp_path_factory) -> str:
    """Datasets are built once per test session in a private directory (also for subprocesses)."""
    path = str(tmp_path_factory.mktemp("tensorflow_datasets"))
    previous = os.environ.get("TFDS_DATA_DIR")
    os.environ["TFDS_DATA_DIR"] = path
    yield path
    if previous is None:
        del os.environ["TFDS_DATA_DIR"]
    else:
        os.environ["TFDS_DATA_DIR"] = previous


def loss_of(method_module, hp, apply_fn, params, batch_stats, extras, views, labels, step, rng):
    """`method_module.loss_fn` called on the `StepInputs` of these values."""
    return method_module.loss_fn(hp, params, StepInputs(apply_fn, batch_stats, extras, views, labels, step, rng))


def write_image_folders(root) -> dict[str, str]:
    """Small folders of a user's images under `root`: `train/<class>/` (3 classes: red RGB PNGs, blue
    JPEGs, grey PNGs of sizes 10-20 px, 8 each, plus a truncated PNG, a text file and a hidden file),
    `test/<class>/` (3 each) and a nested `unlabeled/` folder (6 images). Returns the three paths."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = {"a_red": (200, 30, 30), "b_blue": (30, 30, 200), "c_grey": (128,)}

    def save(path, colour, index):
        path.parent.mkdir(parents=True, exist_ok=True)
        size = (10 + index % 11, 12 + index % 9)
        noise = rng.integers(-25, 25, (size[1], size[0], len(colour)))
        pixels = np.clip(np.array(colour)[None, None] + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels[..., 0] if len(colour) == 1 else pixels)
        image.save(path)

    for split, count in (("train", 8), ("test", 3)):
        for name, colour in colours.items():
            suffix = ".jpg" if name == "b_blue" else ".png"
            for index in range(count):
                save(root / split / name / f"{index:02d}{suffix}", colour, index)
    (root / "train" / "a_red" / "notes.txt").write_text("not an image")
    (root / "train" / "b_blue" / ".DS_Store").write_bytes(b"\0\0")
    broken = (root / "train" / "c_grey" / "00.png").read_bytes()
    (root / "train" / "c_grey" / "broken.png").write_bytes(broken[: len(broken) // 2])
    for index in range(6):
        colour = list(colours.values())[index % 3]
        save(root / "unlabeled" / f"batch{index % 2}" / f"u{index}.png", colour, index)
    return {name: str(root / name) for name in ("train", "test", "unlabeled")}


@pytest.fixture(scope="session")
def image_folders(tmp_path_factory) -> dict[str, str]:
    """`write_image_folders` once per session (read-only: tests that change files make their own)."""
    return write_image_folders(tmp_path_factory.mktemp("user_images"))
