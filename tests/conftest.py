"""Shared test setup: 8 simulated CPU devices, a private tfds data dir, a shared compilation cache."""

import os
import tempfile

import jax
import pytest

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
