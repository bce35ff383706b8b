"""Stateless, exactly-resumable index streams, per-process batch slices and global batch assembly.

Sampling scheme. A stream over M items with global batch B reads an endless sequence made of
per-epoch permutations, ``perm(seed, stream, 0) ++ perm(seed, stream, 1) ++ ...``, each a seeded
permutation of 0..M-1. Global step t takes positions ``t*B .. (t+1)*B - 1`` of that sequence, so a
batch can straddle an epoch boundary: nothing is dropped and no item repeats within an epoch. The
batch is a pure function of (seed, stream, t, M, B): resuming a run only needs the step number
(stored in the train state), and a killed-and-resumed run sees exactly the same batches.

Multi-host. Process p of P gets the contiguous slice ``p*B/P .. (p+1)*B/P`` of each global batch;
the slices are disjoint and their union is the global batch. `global_batch` turns per-process
numpy batches into one jax.Array sharded over the mesh's ``data`` axis.

Semi-supervised training uses two streams (`semi_supervised_streams`): unlabeled over every train
position, labeled over the labeled subset, each with its own batch size and epochs. Small datasets
index in-memory arrays (`selax.data.datasets.load_arrays`; the labeled positions come from
`selax.data.splits.labeled_subset`). ImageNet indexes two encoded data sources with
`selax.data.readers.gather_encoded`: unlabeled positions into ``imagenet2012`` train, labeled positions
``arange(len(subset))`` into ``imagenet2012_subset/1pct`` (or ``/10pct``) train.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

UNLABELED_STREAM = 0
LABELED_STREAM = 1


@functools.lru_cache(maxsize=8)
def _epoch_permutation(seed: int, stream: int, epoch: int, num_items: int) -> np.ndarray:
    """Read-only int64 [num_items]: the order of one epoch (cached; a pure function of its args)."""
    order = np.random.default_rng([seed, stream, epoch]).permutation(num_items)
    order.flags.writeable = False
    return order


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise ValueError(f"process_index {index} is not in 0..{count - 1}.")
    return index, count


def _local_size(global_batch_size: int, process_count: int) -> int:
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} must be a positive multiple of the "
            f"process count {process_count}."
        )
    return global_batch_size // process_count


def batch_items(
    seed: int,
    step: int,
    num_items: int,
    global_batch_size: int,
    stream: int = UNLABELED_STREAM,
    process_index: int | None = None,
    process_count: int | None = None,
) -> np.ndarray:
    """This process's slice of the global batch at ``step``, as items in 0..num_items-1.

    Args:
      seed: run seed; ``stream`` separates independent streams of one run.
      step: global step t >= 0.
      num_items: M, the stream's length.
      global_batch_size: B, a multiple of the process count.
      process_index, process_count: default to jax.process_index() / jax.process_count().
    Returns:
      int64 [B / process_count]: positions ``t*B + p*B/P ...`` of the epoch-permutation sequence.
    """
    if num_items < 1 or step < 0:
        raise ValueError(f"need num_items >= 1 and step >= 0, got {num_items} and {step}.")
    index, count = _process(process_index, process_count)
    local = _local_size(global_batch_size, count)
    positions = step * global_batch_size + index * local + np.arange(local, dtype=np.int64)
    epochs, offsets = np.divmod(positions, num_items)
    items = np.empty(local, dtype=np.int64)
    for epoch in np.unique(epochs):
        in_epoch = epochs == epoch
        items[in_epoch] = _epoch_permutation(seed, stream, int(epoch), num_items)[offsets[in_epoch]]
    return items


@dataclasses.dataclass(frozen=True, eq=False)
class IndexStream:
    """An endless, resumable stream of batches of positions into a split.

    Attributes:
      positions: int64 [M], the split positions this stream cycles over (all of the train split
        for the unlabeled stream, the labeled subset for the labeled one).
      global_batch_size: B, summed over processes.
      seed: run seed.
      stream: stream id, so that streams of one run draw independent orders.
    """

    positions: np.ndarray
    global_batch_size: int
    seed: int
    stream: int = UNLABELED_STREAM

    def local_batch(
        self, step: int, process_index: int | None = None, process_count: int | None = None
    ) -> np.ndarray:
        """int64 [B / process_count]: split positions of this process's slice at ``step``."""
        items = batch_items(
            self.seed,
            step,
            len(self.positions),
            self.global_batch_size,
            self.stream,
            process_index,
            process_count,
        )
        return self.positions[items]

    def epoch(self, step: int) -> float:
        """Epochs of this stream completed before ``step``."""
        return step * self.global_batch_size / len(self.positions)


def semi_supervised_streams(
    num_train: int,
    labeled_positions: np.ndarray,
    unlabeled_batch_size: int,
    labeled_batch_size: int,
    seed: int,
) -> tuple[IndexStream, IndexStream]:
    """(unlabeled, labeled) streams: all ``num_train`` positions, and the labeled subset.

    Args:
      num_train: N, the train split size.
      labeled_positions: int [L], positions of the labeled examples (`selax.data.splits`).
      unlabeled_batch_size, labeled_batch_size: global batch sizes.
      seed: run seed; the two streams draw independent orders from it.
    """
    unlabeled = IndexStream(
        np.arange(num_train, dtype=np.int64), unlabeled_batch_size, seed, UNLABELED_STREAM
    )
    labeled = IndexStream(
        np.asarray(labeled_positions, dtype=np.int64), labeled_batch_size, seed, LABELED_STREAM
    )
    return unlabeled, labeled


def global_batch(mesh: Mesh, local_batch: Any, axis: str = "data") -> Any:
    """Assembles per-process numpy batches (a pytree) into jax.Arrays sharded along ``axis``.

    Every leaf's leading dimension is this process's share of the global batch; the result has the
    global batch size, split over the devices of the mesh's ``axis``. Works on one process too.
    """
    sharding = NamedSharding(mesh, P(axis))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def eval_batches(
    num_examples: int,
    global_batch_size: int,
    num_devices: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches covering every position of a split exactly once, in order; the last one padded.

    Args:
      num_examples: N.
      global_batch_size: B, a multiple of the device count (default jax.device_count()) and of
        the process count.
    Yields:
      (positions int64 [B / P], mask bool [B / P]) for ceil(N / B) global batches: this process's
      slice; padded entries point at position 0 and have mask False.
    """
    devices = jax.device_count() if num_devices is None else num_devices
    if global_batch_size % devices:
        raise ValueError(
            f"eval batch size {global_batch_size} must be a multiple of the device count {devices}."
        )
    index, count = _process(process_index, process_count)
    local = _local_size(global_batch_size, count)
    for batch in range(math.ceil(num_examples / global_batch_size)):
        positions = batch * global_batch_size + index * local + np.arange(local, dtype=np.int64)
        mask = positions < num_examples
        yield np.where(mask, positions, 0), mask
