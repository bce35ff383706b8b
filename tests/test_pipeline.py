"""selax.data.pipeline: resumable streams, per-process slices, global arrays, eval batches."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from selax.data import pipeline
from selax.data.datasets import ArraySplit


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_process_slices_are_disjoint_and_make_up_the_global_batch(process_count):
    for step in range(7):
        whole = pipeline.batch_items(5, step, 11, 8, process_index=0, process_count=1)
        parts = [
            pipeline.batch_items(5, step, 11, 8, process_index=p, process_count=process_count)
            for p in range(process_count)
        ]
        assert all(len(part) == 8 // process_count for part in parts)
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_every_epoch_is_a_permutation_without_drops():
    num_items, batch = 10, 4  # batches straddle epoch boundaries
    steps = 3 * num_items // batch + 1
    stream = np.concatenate(
        [pipeline.batch_items(0, t, num_items, batch, process_index=0, process_count=1) for t in range(steps)]
    )
    for epoch in range(3):
        np.testing.assert_array_equal(
            np.sort(stream[epoch * num_items : (epoch + 1) * num_items]), np.arange(num_items)
        )
    first, second = stream[:num_items], stream[num_items : 2 * num_items]
    assert not np.array_equal(first, second)


def test_batch_larger_than_the_stream_spans_several_epochs():
    items = pipeline.batch_items(0, 1, 3, 7, process_index=0, process_count=1)
    # positions 7..13: the last two of epoch 2, all of epoch 3, the first two of epoch 4
    assert len(items) == 7 and set(items[2:5]) == {0, 1, 2}


def test_resumed_stream_sees_exactly_the_same_batches():
    def run(stream, steps):
        return [stream.local_batch(t, 0, 1) for t in steps]

    positions = np.arange(100, 137)
    fresh = run(pipeline.IndexStream(positions, 6, seed=9), range(20))
    before = run(pipeline.IndexStream(positions, 6, seed=9), range(8))
    pipeline._epoch_permutation.cache_clear()  # as in a new process
    after = run(pipeline.IndexStream(positions, 6, seed=9), range(8, 20))
    np.testing.assert_array_equal(np.concatenate(fresh), np.concatenate(before + after))
    assert set(np.concatenate(fresh)) == set(positions)


def test_two_streams_have_their_own_sizes_and_orders():
    labeled = np.array([3, 8, 12, 20, 31])
    unlabeled, labeled_stream = pipeline.semi_supervised_streams(40, labeled, 8, 2, seed=0)
    ids_u = np.concatenate([unlabeled.local_batch(t, 0, 1) for t in range(5)])
    ids_l = np.concatenate([labeled_stream.local_batch(t, 0, 1) for t in range(5)])
    assert len(ids_u) == 40 and len(ids_l) == 10
    np.testing.assert_array_equal(np.sort(ids_u), np.arange(40))
    np.testing.assert_array_equal(np.sort(ids_l), np.repeat(labeled, 2))
    assert labeled_stream.epoch(5) == 2.0 and unlabeled.epoch(5) == 1.0
    order_u = pipeline.batch_items(0, 0, 40, 40, pipeline.UNLABELED_STREAM, 0, 1)
    order_l = pipeline.batch_items(0, 0, 40, 40, pipeline.LABELED_STREAM, 0, 1)
    assert not np.array_equal(order_u, order_l)


def test_bad_batch_sizes_are_rejected():
    with pytest.raises(ValueError, match="multiple of the process count 4"):
        pipeline.batch_items(0, 0, 10, 6, process_index=0, process_count=4)
    with pytest.raises(ValueError, match="process_index 2"):
        pipeline.batch_items(0, 0, 10, 6, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="multiple of the device count 8"):
        next(pipeline.eval_batches(10, 12, num_devices=8, process_index=0, process_count=1))


@pytest.mark.parametrize("num_examples", [37, 40, 3])
def test_eval_batches_cover_every_example_once(num_examples):
    seen = []
    for process in range(2):
        for positions, mask in pipeline.eval_batches(num_examples, 16, 8, process, 2):
            assert positions.shape == mask.shape == (8,)
            assert np.all(positions[~mask] == 0)
            seen.append(positions[mask])
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(num_examples))


def test_global_batch_shards_local_batch_over_data_axis():
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    split = ArraySplit(
        images=np.arange(20 * 4, dtype=np.uint8).reshape(20, 2, 2, 1),
        labels=np.arange(20, dtype=np.int32) % 3,
        ids=np.arange(20, dtype=np.int32) + 100,
        num_classes=3,
    )
    positions = pipeline.IndexStream(np.arange(20), 16, seed=1).local_batch(0)
    local = {"images": split.images[positions], "ids": split.ids[positions]}
    batch = pipeline.global_batch(mesh, local)
    assert batch["images"].shape == (16, 2, 2, 1) and batch["ids"].shape == (16,)
    assert batch["images"].sharding.spec == P("data")
    assert len(batch["images"].addressable_shards) == jax.device_count()
    np.testing.assert_array_equal(np.asarray(batch["ids"]), positions + 100)
    np.testing.assert_array_equal(np.asarray(batch["images"]), split.images[positions])
