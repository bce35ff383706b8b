"""Checkpointer: resume past an unreadable checkpoint, a clear error when none restores, a full disk."""

import errno
import logging
import os
import re
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from selax import checkpoint
from selax.checkpoint import Checkpointer


NOISE = np.random.RandomState(0).randn(4096).astype(np.float32)  # Incompressible: the data files are large.


def _state(value: float) -> dict:
    return {"w": jnp.asarray(NOISE + value), "b": {"c": jnp.arange(4.0) + value}}


def _save(directory, *steps) -> None:
    checkpointer = Checkpointer(str(directory))
    for step in steps:
        checkpointer.save(step, _state(float(step)), force=True)
    checkpointer.close()


def _truncate_largest_file(step_directory) -> None:
    """Truncates the checkpoint's largest array data file (OCDBT's `d/` files)."""
    files = [
        os.path.join(root, name)
        for root, _, names in os.walk(step_directory)
        if os.path.basename(root) == "d"
        for name in names
    ]
    with open(max(files, key=os.path.getsize), "r+b") as f:
        f.truncate(8)


def test_an_unreadable_newest_checkpoint_is_moved_aside_and_the_previous_one_restores(tmp_path, caplog):
    directory = tmp_path / "checkpoints"
    _save(directory, 1, 2, 3)
    _truncate_largest_file(directory / "3")
    _truncate_largest_file(directory / "2")

    checkpointer = Checkpointer(str(directory))
    with caplog.at_level(logging.WARNING):
        state, step = checkpointer.restore_newest(_state(0.0))
    assert step == 1
    np.testing.assert_array_equal(state["w"], NOISE + 1.0)
    aside = sorted(os.listdir(tmp_path / "checkpoints_corrupt"))
    assert [name.split("-")[0] for name in aside] == ["2", "3"]
    assert sorted(name for name in os.listdir(directory) if name.isdigit()) == ["1"]
    moved = [r.getMessage() for r in caplog.records if "moved it aside" in r.getMessage()]
    assert len(moved) == 2 and all("resumed from checkpoint 1" in m for m in moved), moved
    assert "OUT_OF_RANGE" in moved[0] and "TensorStore" not in moved[0], moved[0]
    # The run goes on: step 2 is saved again where the unreadable one was.
    checkpointer.save(2, _state(2.5), force=True)
    checkpointer.close()
    state, step = Checkpointer(str(directory)).restore_newest(_state(0.0))
    assert step == 2 and float(state["b"]["c"][0]) == 2.5


def test_when_no_checkpoint_restores_one_error_says_what_to_do_and_nothing_moves(tmp_path):
    directory = tmp_path / "checkpoints"
    _save(directory, 1, 2)
    for step in ("1", "2"):
        _truncate_largest_file(directory / step)
    expected = r"No checkpoint in .*checkpoints restores(.|\n)*step 2:(.|\n)*step 1:(.|\n)*move .*checkpoints away"
    with pytest.raises(RuntimeError, match=expected):
        Checkpointer(str(directory)).restore_newest(_state(0.0))
    assert not (tmp_path / "checkpoints_corrupt").exists()
    assert Checkpointer(str(tmp_path / "empty")).restore_newest(_state(0.0))[1] is None


def test_a_full_disk_stops_with_one_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    directory = tmp_path / "checkpoints"
    checkpointer = Checkpointer(str(directory))
    checkpointer.save(1, _state(1.0), force=True)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(OSError, match=r"Not enough disk space in .*checkpoints to save checkpoint 2: it needs"
                       r" about .* MiB \(\d+ bytes\), 1000 bytes are free; the last complete"
                       r" checkpoint \(step 1\) is kept") as error:
        checkpointer.save(2, _state(2.0), force=True)
    assert error.value.errno == errno.ENOSPC
    needed = int(re.search(r"\((\d+) bytes\)", str(error.value)).group(1))
    assert checkpoint.state_bytes(_state(2.0)) == 4096 * 4 + 4 * 4 < needed < 2 * 4096 * 4 + (1 << 20)
    monkeypatch.undo()

    # A write that fails for lack of space, as orbax reports it, gives the same message.
    def failing_save(*args, **kwargs):
        cause = ValueError("RESOURCE_EXHAUSTED: Failed writing")
        raise ValueError("Error writing ...\nmany lines") from cause

    monkeypatch.setattr(checkpointer._manager, "save", failing_save)
    with pytest.raises(OSError, match=r"checkpoint 3: .*a write failed \(ValueError: RESOURCE_EXHAUSTED"):
        checkpointer.save(3, _state(3.0), force=True)
    monkeypatch.undo()
    checkpointer.close()
    state, step = Checkpointer(str(directory)).restore_newest(_state(0.0))
    assert step == 1 and float(state["b"]["c"][0]) == 1.0
