"""Two processes x 4 CPU devices on 127.0.0.1 (jax.distributed, gloo) train like one process x 8 devices,
and stop together on a SIGTERM to either or both."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from selax import sharding, train
from selax.checkpoint import Checkpointer

from test_train import REPO, smoke_config

FLAGS = [
    "--config=configs/default.py:smoke",
    "--config.eval_every_steps=0",
    "--config.checkpoint.every_steps=4",
]
STEPS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir, num_processes: int, devices_per_process: int, steps: int, *flags: str) -> list[subprocess.Popen]:
    """Starts selax.main as `num_processes` processes (logs to `workdir/../<name>-<i>.log`)."""
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices_per_process))
    command = [sys.executable, "-m", "selax.main", f"--workdir={workdir}", *FLAGS, f"--config.num_steps={steps}", *flags]
    if num_processes > 1:
        port = _free_port()
        command += [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}"]
    processes = []
    for i in range(num_processes):
        log = open(f"{workdir}-{i}.log", "w")
        processes.append(
            subprocess.Popen(
                command + ([f"--process_id={i}"] if num_processes > 1 else []),
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
            )
        )
    return processes


def _finish(workdir, processes: list[subprocess.Popen], returncode: int = 0) -> list[str]:
    """Waits for `processes`; their logs, failing unless each exits with `returncode`."""
    try:
        for process in processes:
            process.wait(timeout=400)
    finally:
        for process in processes:
            process.kill()
    logs = [open(f"{workdir}-{i}.log").read() for i in range(len(processes))]
    for process, log in zip(processes, logs):
        assert process.returncode == returncode, log[-4000:]
    return logs


def _checkpoints(workdir) -> list[int]:
    directory = workdir / "checkpoints"
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit()) if directory.is_dir() else []


def _terminate_when_logged(workdir, processes, which: list[int], text: str) -> None:
    """Sends SIGTERM to the processes `which` once each has logged `text` (after JAX's runtime started, so
    its preemption notice handler, not the default one, receives it)."""
    deadline = time.monotonic() + 300
    for index in which:
        while text not in open(f"{workdir}-{index}.log").read():
            assert all(p.poll() is None for p in processes) and time.monotonic() < deadline, "ended too soon"
            time.sleep(0.02)
    for index in which:
        processes[index].send_signal(signal.SIGTERM)


def _final_params(workdir, step: int):
    target = train.Experiment(smoke_config(), sharding.data_mesh(jax.devices()[:1])).init_state()
    checkpointer = Checkpointer(str(workdir / "checkpoints"))
    try:
        return jax.device_get(checkpointer.restore(target, step).params)
    finally:
        checkpointer.close()


def _stopped_step(logs: list[str]) -> int:
    """The step every process says it stopped at (the same one)."""
    steps = {int(re.search(r"Stopped by signal 15 at step (\d+) \(the step every process agreed on\)", log)[1]) for log in logs}
    assert len(steps) == 1, steps
    return steps.pop()


def test_two_processes_equal_one_process_and_stop_together_on_sigterm(tmp_path):
    """One process x 8 devices and two x 4 train alike; a SIGTERM to one process, then to both, stops the
    two at one agreed step with a checkpoint there, and the resumed job ends with the same params."""
    _finish(tmp_path / "one", _start(tmp_path / "one", 1, 8, STEPS, "--export="))  # Its params, not its CSV.
    two = tmp_path / "two"

    processes = _start(two, 2, 4, STEPS)
    _terminate_when_logged(two, processes, which=[1], text="Process 1 of 2, 8 devices")
    logs = _finish(two, processes, returncode=128 + signal.SIGTERM)
    assert "Process 1 of 2, 8 devices" in logs[1]
    first_stop = _stopped_step(logs)
    assert first_stop < STEPS and _checkpoints(two)[-1] == first_stop

    processes = _start(two, 2, 4, STEPS)
    _terminate_when_logged(two, processes, which=[0, 1], text="Resumed from")
    logs = _finish(two, processes, returncode=128 + signal.SIGTERM)
    assert all("Resumed from" in log for log in logs)
    second_stop = _stopped_step(logs)
    assert first_stop < second_stop < STEPS and _checkpoints(two)[-1] == second_stop

    _finish(two, _start(two, 2, 4, STEPS))
    one, resumed = _final_params(tmp_path / "one", STEPS), _final_params(two, STEPS)
    differences = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), one, resumed)
    assert max(jax.tree_util.tree_leaves(differences)) <= 1e-5, differences
    assert os.path.isfile(two / "metrics.json")
