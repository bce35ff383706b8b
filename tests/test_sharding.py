"""selax.sharding: which arrays the FSDP layout splits, and over which axis."""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec as P

from selax import sharding


@pytest.fixture(scope="module")
def mesh():
    return sharding.data_mesh(jax.devices()[:8])


@pytest.mark.parametrize(
    "shape, spec",
    [
        ((3, 3, 64, 128), P(None, None, None, "data")),  # the largest axis divisible by 8
        ((2048, 1000), P("data", None)),  # largest first: 2048 before 1000 (both divisible)
        ((1000, 2049), P("data", None)),  # 2049 is not divisible by 8: the next largest axis
        ((65537,), P()),  # no axis divisible by 8
        ((128, 128), P()),  # below FSDP_MIN_SIZE: splitting saves nothing worth a collective
        ((), P()),
    ],
)
def test_fsdp_splits_the_largest_divisible_axis_of_large_arrays(mesh, shape, spec):
    assert sharding.fsdp_sharding(mesh, shape).spec == spec


def test_fsdp_on_one_device_is_replicated():
    one = sharding.data_mesh(jax.devices()[:1])
    assert sharding.fsdp_sharding(one, (2048, 1000)).spec == P()


def test_state_shardings_and_bytes_per_device(mesh):
    state = {"kernel": jnp.zeros((256, 512), jnp.float32), "bias": jnp.zeros((512,), jnp.float32)}
    layouts = {kind: sharding.state_shardings(mesh, state, kind) for kind in sharding.STATE_SHARDINGS}
    assert layouts["replicated"]["kernel"].spec == P()
    assert layouts["fsdp"]["kernel"].spec == P(None, "data") and layouts["fsdp"]["bias"].spec == P()
    placed = jax.device_put(state, layouts["fsdp"])
    held = sharding.bytes_per_device(placed)
    assert set(held) == set(mesh.devices.flat)
    assert set(held.values()) == {256 * 512 * 4 // 8 + 512 * 4}
    with pytest.raises(ValueError, match="state_sharding='zero' is not one of"):
        sharding.state_shardings(mesh, state, "zero")


@pytest.mark.parametrize(
    "batch_sizes, cores, expected",
    [((256, 40, 256), 2, 2), ((256, 40, 256), 6, 4), ((256, 40, 256), 16, 8), ((64, 16, 128), 1, 1), ((63, 21), 4, 3), ((7,), 4, 1)],
)
def test_cpu_device_count_is_the_most_up_to_the_cores_that_every_batch_divides_into(batch_sizes, cores, expected):
    assert sharding.cpu_device_count(batch_sizes, cores) == expected
