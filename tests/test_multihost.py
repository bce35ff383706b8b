"""Two processes x 4 CPU devices on 127.0.0.1 (jax.distributed, gloo) train like one process x 8 devices."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

from selax import sharding, train
from selax.checkpoint import Checkpointer

from test_train import REPO, smoke_config

FLAGS = [
    "--config=configs/default.py:smoke",
    "--config.eval_every_steps=0",
    "--config.checkpoint.every_steps=2",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(workdir, num_processes: int, devices_per_process: int, steps: int) -> list[str]:
    """Runs selax.main as `num_processes` processes; returns their logs, failing on any error."""
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices_per_process))
    command = [
        sys.executable,
        "-m",
        "selax.main",
        f"--workdir={workdir}",
        *FLAGS,
        f"--config.num_steps={steps}",
    ]
    if num_processes > 1:
        port = _free_port()
        command += [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}"]
    processes = [
        subprocess.Popen(
            command + ([f"--process_id={i}"] if num_processes > 1 else []),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(num_processes)
    ]
    logs = []
    try:
        for process in processes:
            logs.append(process.communicate(timeout=400)[0])
    finally:
        for process in processes:
            process.kill()
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-4000:]
    return logs


def _final_params(workdir, step: int):
    target = train.Experiment(smoke_config(), sharding.data_mesh(jax.devices()[:1])).init_state()
    checkpointer = Checkpointer(str(workdir / "checkpoints"))
    try:
        return jax.device_get(checkpointer.restore(target, step).params)
    finally:
        checkpointer.close()


def test_two_processes_equal_one_process_and_resume_across_them(tmp_path):
    _launch(tmp_path / "one", num_processes=1, devices_per_process=8, steps=4)
    logs = _launch(tmp_path / "two", num_processes=2, devices_per_process=4, steps=4)
    assert "Process 1 of 2, 8 devices" in logs[1]

    one, two = _final_params(tmp_path / "one", 4), _final_params(tmp_path / "two", 4)
    differences = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), one, two)
    assert max(jax.tree_util.tree_leaves(differences)) <= 1e-5, differences

    # Both processes restore the two-process checkpoint and carry on.
    logs = _launch(tmp_path / "two", num_processes=2, devices_per_process=4, steps=6)
    assert all("Resumed from" in log for log in logs)
    assert os.path.isdir(tmp_path / "two" / "checkpoints" / "6")
    assert os.path.isfile(tmp_path / "two" / "metrics.json")
