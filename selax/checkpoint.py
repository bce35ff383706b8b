"""Checkpoints through orbax: periodic saves, keep the last few, resume from the latest."""

import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging


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


def read_pretrained(path: str) -> dict[str, Any]:
    """`{'params': ..., ['batch_stats': ...]}` from a converted checkpoint (`selax.models.convert`) or
    from the latest checkpoint of a selax workdir (a pre-training run, for a fine-tuning stage)."""
    path = os.path.expanduser(path)
    managed = os.path.join(path, "checkpoints")
    if os.path.isdir(managed):
        step = ocp.CheckpointManager(os.path.abspath(managed)).latest_step()
        if step is None:
            raise FileNotFoundError(f"{managed} holds no finished checkpoint to start from.")
        state = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(managed, str(step), "state")))
        return {"params": state["params"], "batch_stats": state["batch_stats"]}
    from selax.models.convert import load_converted  # pylint: disable=g-import-not-at-top

    return load_converted(path)


# Modules of a selax workdir that belong to its method, not to the representation: a checkpoint's head
# of another shape (SwAV's free prototypes, when Suave needs one per class) is not loaded.
METHOD_MODULES = ("head", "linear_head")


def load_pretrained(variables: dict[str, Any], path: str) -> dict[str, Any]:
    """`variables` with the modules found in the checkpoint at `path` (see `read_pretrained`) replaced.

    Every module the checkpoint has (`encoder`, `projector`, and from a selax workdir also `head` and
    `linear_head`) must match the model's tree and shapes exactly, except the method's modules
    (`METHOD_MODULES`): one of those that does not match keeps its fresh initialization, with a
    warning (the pipeline SwAV -> Suave re-initializes the prototypes, as the paper does). Modules the
    checkpoint lacks keep their fresh initialization: a converted SwAV checkpoint has no prototypes.
    """
    pretrained = read_pretrained(path)
    merged = {collection: dict(tree) for collection, tree in variables.items()}
    for collection, modules in pretrained.items():
        for module, tree in modules.items():
            if module not in merged.get(collection, {}):
                if module in METHOD_MODULES:
                    logging.warning("%s: %s/%s is not in the model; not loaded.", path, collection, module)
                    continue
                raise ValueError(f"{path} has {collection}/{module}, which the model does not have.")
            expected = jax.tree_util.tree_map(lambda x: tuple(x.shape), merged[collection][module])
            found = jax.tree_util.tree_map(lambda x: tuple(x.shape), tree)
            if expected != found:
                if module in METHOD_MODULES:
                    logging.warning(
                        "%s: %s/%s has other shapes than the model's (another method's head); it starts"
                        " fresh.\n  model: %s\n  checkpoint: %s", path, collection, module, expected, found
                    )
                    continue
                raise ValueError(
                    f"{path}: {collection}/{module} does not match the model (check config.model.encoder and"
                    f" its kwargs).\n  model: {expected}\n  checkpoint: {found}"
                )
            merged[collection][module] = jax.tree_util.tree_map(jnp.asarray, tree)
    return merged
