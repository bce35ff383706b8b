"""The workdir lock: a second run refuses naming the holder; a lock left by a dead run is taken over."""

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from selax import workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_second_run_on_a_workdir_refuses_naming_the_holder(tmp_path):
    with workdir.lock(str(tmp_path)):
        with pytest.raises(RuntimeError, match=rf"workdir {tmp_path} is in use by another selax run \(PID"
                           rf" {os.getpid()} on host {socket.gethostname()}, started 20\d\d-"):
            with workdir.lock(str(tmp_path)):
                pass
    with workdir.lock(str(tmp_path)):  # Released at the end: the next run takes it, with no warning.
        record = json.loads((tmp_path / workdir.LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert (tmp_path / workdir.LOCK_FILE).read_text() == ""


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_warning(tmp_path, caplog):
    code = (
        "import os, sys; from selax import workdir\n"
        f"with workdir.lock({str(tmp_path)!r}):\n"
        "    print(os.getpid(), flush=True); os._exit(1)  # dies holding the lock, as under kill -9\n"
    )
    dead = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    pid = int(dead.stdout.split()[0])
    assert json.loads((tmp_path / workdir.LOCK_FILE).read_text())["pid"] == pid
    with caplog.at_level(logging.WARNING):
        with workdir.lock(str(tmp_path)):
            assert json.loads((tmp_path / workdir.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert any(f"ended without releasing it (PID {pid} on host" in r.getMessage() for r in caplog.records)
