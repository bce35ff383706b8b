"""Entry point: `python -m selax.main --config=configs/default.py --workdir=DIR [--config.field=value ...]`."""

import logging as logging_std

from absl import app, flags, logging
from ml_collections import config_flags

from selax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard logs and metrics.json.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(logging_std.Filter):
    """Drops INFO records of orbax, whose per-save chatter would bury the progress line."""

    def filter(self, record: logging_std.LogRecord) -> bool:
        return record.levelno > logging_std.INFO or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
    logging.get_absl_handler().addFilter(_QuietLibraries())
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.info("Config:\n%s", _CONFIG.value)
    train.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
