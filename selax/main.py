"""Entry point: `python -m selax.main --config=configs/default.py --workdir=DIR [--config.field=value ...]`.

Trains (`selax.train.run`, after the pre-training stage `config.pretrain` where the config names one),
then writes the test split's predictions, features and embeddings to `DIR/export/test.{csv,npz}`
(`selax.results.export`; `--export=test,train` for more splits, `--export=` for none).
"""

import logging as logging_std
import os

import jax

from absl import app, flags, logging
from ml_collections import config_flags

from selax import config_fields, results, sharding, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, TensorBoard logs and metrics.json."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for a multi-process run without auto-detection."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
_EXPORT = flags.DEFINE_list(
    "export", ["test"], "Splits whose predictions are written to WORKDIR/export at the end (selax.export); empty: none."
)
flags.mark_flags_as_required(["config", "workdir"])


def _initialize_distributed() -> None:
    """Starts JAX's multi-process runtime: with the explicit `--coordinator_address/--num_processes/
    --process_id`, or as `jax.distributed.initialize()` detects the cluster (SLURM, Open MPI, Kubernetes,
    Cloud TPU, $JAX_COORDINATOR_ADDRESS); on a machine of none of them, the run is one process."""
    if _COORDINATOR.value is not None:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        return
    try:
        jax.distributed.initialize()
    except ValueError as error:
        if "coordinator_address" not in str(error):  # Anything but "no cluster found" is the user's to see.
            raise


def _use_every_core(config) -> None:
    """A one-process run with no CPU device count set ($JAX_NUM_CPU_DEVICES, jax_num_cpu_devices) splits
    its batches over one CPU device per core (`sharding.cpu_device_count`): selax's whole train step,
    whose augmentation, Sinkhorn and loss ops one device runs one after another, is 1.3-1.8x faster on
    2 CPU devices than on one (experiments/bench_models.py). Accelerators' devices are not affected."""
    if jax.config.jax_num_cpu_devices >= 0 or jax.distributed.is_initialized():
        return
    stages = [config, config_fields.pretraining_config(config)] if config.pretrain else [config]
    batch_sizes = [size for stage in stages for size in stage.batch.values() if size > 0]
    jax.config.update("jax_num_cpu_devices", sharding.cpu_device_count(batch_sizes, len(os.sched_getaffinity(0))))


class _QuietLibraries(logging_std.Filter):
    """Drops INFO records of orbax, whose per-save chatter would bury the progress line."""

    def filter(self, record: logging_std.LogRecord) -> bool:
        return record.levelno > logging_std.INFO or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
    logging.get_absl_handler().addFilter(_QuietLibraries())
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    _initialize_distributed()
    _use_every_core(_CONFIG.value)
    logging.info(
        "Process %d of %d, %d devices.", jax.process_index(), jax.process_count(), jax.device_count()
    )
    logging.info("Config:\n%s", _CONFIG.value)
    train.run(_CONFIG.value, _WORKDIR.value)
    if _EXPORT.value and jax.process_count() == 1:  # Multi-process runs: python -m selax.export afterwards.
        for split, path in results.export(_WORKDIR.value, _EXPORT.value).items():
            logging.info("Predictions of the %s split: %s", split, path)


if __name__ == "__main__":
    app.run(main)
