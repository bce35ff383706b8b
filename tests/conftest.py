"""Shared test setup: 8 simulated CPU devices, a private tfds data dir, and small configs."""

import os

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)

# Subprocesses started by the tests (selax.main) see the same 8 devices.
os.environ["JAX_NUM_CPU_DEVICES"] = "8"


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
