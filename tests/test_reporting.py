"""The Reporter's history: a resumed run reports the whole run, each logged step once."""

import glob
import json
import os
import struct

import numpy as np

from selax.reporting import HISTORY_FILE, PENDING_SUMS_FILE, Reporter, read_history


def read_events(logdir) -> dict[str, list[tuple[int, float]]]:
    """`{tag: [(step, value), ...]}` of the scalars in every TensorBoard events file of `logdir`, in file
    order (TFRecord framing: 8-byte length, 4-byte CRC, the event, 4-byte CRC)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_a_resumed_run_supersedes_the_points_past_its_step_and_logs_each_step_once(tmp_path):
    killed = Reporter(str(tmp_path), 8)
    for step in (2, 4, 6):  # Then killed, its last checkpoint at step 4.
        killed.write_scalars(step, {"train/loss": float(step)})
    killed.write_scalars(4, {"test/top1": 0.5})

    resumed = Reporter(str(tmp_path), 8, start_step=4)
    assert resumed.values("train/loss") == [2.0, 4.0]
    for step in (6, 8):
        resumed.write_scalars(step, {"train/loss": 10.0 + step})
    resumed.write_scalars(4, {"test/top1": 0.5})  # Already there: not repeated.
    resumed.finish(str(tmp_path), {"test/top1": 0.7})

    expected = {"train/loss": [(2, 2.0), (4, 4.0), (6, 16.0), (8, 18.0)], "test/top1": [(4, 0.5)]}
    assert {name: sorted(points.items()) for name, points in resumed.history.items()} == expected
    lines = (tmp_path / HISTORY_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4, 6, 8]
    history = read_history(str(tmp_path / HISTORY_FILE), up_to_step=8)
    assert {name: sorted(points.items()) for name, points in history.items()} == expected
    assert len(glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))) == 1
    assert read_events(tmp_path / "tensorboard") == expected  # In step order, each step once.
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_sums_kept_with_a_checkpoint_are_resumed_exactly_and_only_at_its_step(tmp_path):
    first = Reporter(str(tmp_path), 12)
    assert first.resumed_sums() == (None, 0)  # A fresh run starts from nothing.
    loss = np.float32(1) / np.float32(3)  # Not a round number: it must come back to the bit.
    first.keep_sums(3, {"loss": loss}, 1)
    first.keep_sums(6, None, 0)  # Saved at a record: nothing pending.
    first.keep_sums(9, {"loss": 2 * loss}, 1)

    sums, count = Reporter(str(tmp_path), 12, start_step=9).resumed_sums()
    assert count == 1 and sums["loss"] == 2 * loss and sums["loss"].dtype == np.float32
    assert Reporter(str(tmp_path), 12, start_step=6).resumed_sums() == (None, 0)
    assert Reporter(str(tmp_path), 12, start_step=3).resumed_sums() == ({"loss": loss}, 1)

    # A run resumed at 3 saves 6 again: what a stopped run kept for later steps belongs to steps it redoes.
    Reporter(str(tmp_path), 12, start_step=3).keep_sums(6, {"loss": loss}, 2)
    assert Reporter(str(tmp_path), 12, start_step=9).resumed_sums() == (None, 0)
    assert Reporter(str(tmp_path), 12, start_step=6).resumed_sums() == ({"loss": loss}, 2)
    (tmp_path / PENDING_SUMS_FILE).write_text('{"6": {"ste')  # Cut short by a kill: nothing to resume.
    assert Reporter(str(tmp_path), 12, start_step=6).resumed_sums() == (None, 0)


def test_a_line_cut_short_by_a_kill_is_skipped(tmp_path):
    path = tmp_path / HISTORY_FILE
    path.write_text('{"step": 2, "scalars": {"train/loss": 1.5}}\n{"step": 4, "scal')
    assert read_history(str(path), up_to_step=10) == {"train/loss": {2: 1.5}}
    assert read_history(str(tmp_path / "absent.jsonl"), up_to_step=10) == {}


def test_wandb_logs_to_one_run_across_resumes(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class Run:
        def log(self, scalars, step):
            calls.append(("log", step, scalars))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(
        util=types.SimpleNamespace(generate_id=lambda: f"id{len(calls)}"),
        init=lambda **kwargs: calls.append(("init", kwargs["id"], kwargs["resume"], kwargs["project"])) or Run(),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    first = Reporter(str(tmp_path), 4, wandb_project="p", run_config={"seed": 0})
    first.write_scalars(2, {"train/loss": 1.0})
    Reporter(str(tmp_path), 4, start_step=2, wandb_project="p").finish(str(tmp_path), {})
    assert calls == [
        ("init", "id0", "allow", "p"), ("log", 2, {"train/loss": 1.0}), ("init", "id0", "allow", "p"), ("finish",)
    ]
    monkeypatch.setitem(sys.modules, "wandb", None)  # Not installed.
    import pytest

    with pytest.raises(ImportError, match="pip install wandb"):
        Reporter(str(tmp_path / "other"), 4, wandb_project="p")
