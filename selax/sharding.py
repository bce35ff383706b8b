"""The training mesh and how arrays are laid out on it: batches split along `data`; the train state
replicated, or split along `data` too (FSDP-style) so that each device holds 1/n of the large arrays.

Only shardings are chosen here; XLA's partitioner inserts the all-gathers and reduce-scatters that a
sharded state needs inside the jitted step.
"""

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
STATE_SHARDINGS = ("replicated", "fsdp")
# Arrays with fewer elements than this stay replicated under "fsdp": splitting biases and BatchNorm
# scales saves nothing and adds a collective per array.
FSDP_MIN_SIZE = 2**16


def cpu_device_count(batch_sizes: Sequence[int], cores: int) -> int:
    """How many CPU devices a one-process run on `cores` cores uses: the most, up to one per core, that
    every size in `batch_sizes` is a multiple of (1 when no larger count is)."""
    return max(n for n in range(1, max(cores, 1) + 1) if all(size % n == 0 for size in batch_sizes))


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over all devices (of every process) with the single axis `data`."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def fsdp_sharding(mesh: Mesh, shape: tuple[int, ...], min_size: int = FSDP_MIN_SIZE) -> NamedSharding:
    """The largest axis of `shape` that the `data` axis divides, split over it; arrays smaller than
    `min_size` elements, or with no such axis, replicated."""
    num_shards = mesh.shape[DATA_AXIS]
    if num_shards == 1 or math.prod(shape) < min_size:
        return replicated(mesh)
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % num_shards == 0:
            return NamedSharding(mesh, P(*(DATA_AXIS if a == axis else None for a in range(len(shape)))))
    return replicated(mesh)


def state_shardings(mesh: Mesh, abstract_state: Any, kind: str) -> Any:
    """A sharding for every array of `abstract_state` (a pytree of arrays or `jax.ShapeDtypeStruct`).

    `kind`: "replicated" (every device holds the whole state: plain data parallelism) or "fsdp" (params,
    optimizer state and the method's extras split by `fsdp_sharding`; the step's results are the same).
    """
    if kind not in STATE_SHARDINGS:
        raise ValueError(f"config.state_sharding={kind!r} is not one of {STATE_SHARDINGS}.")
    if kind == "replicated":
        return jax.tree_util.tree_map(lambda _: replicated(mesh), abstract_state)
    return jax.tree_util.tree_map(lambda leaf: fsdp_sharding(mesh, leaf.shape), abstract_state)


def bytes_per_device(tree: Any) -> dict[jax.Device, int]:
    """How many bytes of `tree`'s arrays each device holds."""
    held: dict[jax.Device, int] = {}
    for leaf in jax.tree_util.tree_leaves(tree):
        for shard in leaf.addressable_shards:
            held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
    return held
