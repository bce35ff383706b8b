"""Checkpoints through orbax: periodic saves, keep the last few, resume from the latest."""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """An orbax `CheckpointManager` over `directory` holding the train state pytree under `state`.

    Every process must call `save`/`restore` (orbax coordinates multi-host writes). Saves are
    asynchronous; `close()` waits for the last one.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3, save_interval_steps: int = 1):
        self._manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, save_interval_steps=save_interval_steps, create=True
            ),
        )

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves `state` at `step` when the interval says so (or `force`); returns whether it saved."""
        return self._manager.save(
            step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=force
        )

    def restore(self, target: Any, step: int | None = None) -> Any:
        """Restores the state at `step` (default: latest) with the shapes, dtypes and shardings of `target`."""
        step = self.latest_step if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint to restore in {self._manager.directory}.")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )
        return restored["state"]

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
