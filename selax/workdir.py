"""One run per workdir: an exclusive `fcntl.flock` on `WORKDIR/.selax.lock`, whose JSON names the holder.

The kernel releases a flock when its process dies, however it dies, so a lock file whose lock is free
but which still names a holder was left by a run that did not end cleanly (killed): it is taken over
with a warning.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Iterator

from absl import logging

LOCK_FILE = ".selax.lock"


def _holder(fd: int) -> str | None:
    """The holder that the lock file names (`PID ... on host ..., started ...`), or None when empty."""
    text = os.pread(fd, 4096, 0).decode(errors="replace")
    if not text.strip():
        return None
    try:
        record = json.loads(text)
        return f"PID {record['pid']} on host {record['host']}, started {record['started']}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return f"an unreadable holder record {text[:100]!r}"


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
    """Holds `workdir` for this process while the context runs.

    Raises `RuntimeError` naming the workdir and the holder (host, PID, start time) when another run
    holds it. A multi-process job takes it on process 0 only: its other processes share the workdir.
    """
    fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"The workdir {workdir} is in use by another selax run ({_holder(fd)}). Wait for it to end"
                " (or stop it), or choose another --workdir."
            ) from None
        stale = _holder(fd)
        if stale is not None:
            logging.warning(
                "Taking over the workdir %s from a run that ended without releasing it (%s).", workdir, stale
            )
        started = datetime.datetime.now().isoformat(timespec="seconds")
        record = json.dumps(dict(host=socket.gethostname(), pid=os.getpid(), started=started))
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # A clean end: the next run finds no holder to warn about.
    finally:
        os.close(fd)  # Releases the flock (as the death of the process would).
