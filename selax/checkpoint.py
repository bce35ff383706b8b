"""Checkpoints through orbax: periodic saves, keep the last few, resume from the newest that restores."""

import contextlib
import errno
import functools
import gc
import os
import shutil
import sys
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils
from orbax.checkpoint._src.metadata import array_metadata_store  # As orbax 0.12 builds its default handler.

# A save needs the state's bytes plus this fraction and this many bytes of metadata free on the disk.
SPACE_MARGIN, SPACE_OVERHEAD_BYTES = 0.05, 64 << 10


def on_every_process(flag: bool) -> bool:
    """Whether `flag` holds on every process; a collective that every process calls."""
    if jax.process_count() == 1:
        return flag
    return bool(np.all(multihost_utils.process_allgather(np.asarray(flag))))


def state_bytes(state: Any) -> int:
    """The bytes of the arrays of `state` (global sizes), about what a checkpoint of it writes."""
    return sum(int(leaf.nbytes) for leaf in jax.tree_util.tree_leaves(state) if hasattr(leaf, "nbytes"))


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and the errors it was raised from, outermost first (orbax wraps TensorStore's errors)."""
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    return chain


def _summary(error: BaseException) -> str:
    """The first line of the innermost cause of `error` (TensorStore's status, without its spec dump)."""
    root = _causes(error)[-1]
    first_line = (str(root).splitlines() or [""])[0]
    return f"{type(root).__name__}: {first_line[:300]}"


_DISK_FULL_MARKS = ("RESOURCE_EXHAUSTED", "No space left")  # How TensorStore and the OS say it.


def _is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or one it was raised from) is a write that ran out of disk space."""
    return any(
        getattr(cause, "errno", None) == errno.ENOSPC or any(mark in str(cause) for mark in _DISK_FULL_MARKS)
        for cause in _causes(error)
    )


@functools.cache
def _save_arrays_whole_on_cpu() -> None:
    """On CPU every replica of an array lives in the same host memory, so orbax's replica-parallel save
    (each of R replicas writes 1/R of every array) buys nothing and compiles a slice per array shape at
    the first save (18 s for the tiny ResNet-50 on 8 CPU devices, more than its 6 training steps). It
    is turned off for CPU runs, as orbax itself does for GPUs (in orbax's process-wide handler of
    `jax.Array`, which then writes each array from its first replica; registered once per process)."""
    if jax.default_backend() == "cpu":
        handler = ocp.type_handlers.ArrayHandler(
            use_replica_parallel=False, array_metadata_store=array_metadata_store.Store()
        )
        ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


class Checkpointer:
    """An orbax `CheckpointManager` over `directory` holding the train state pytree under `state`.

    Every process must call `save`/`restore`/`restore_newest` (orbax coordinates multi-host writes).
    Saves are asynchronous; `close()` waits for the last one.
    """

    def __init__(self, directory: str, *, keep: int = 3, every_steps: int = 1):
        self.directory = os.path.abspath(directory)
        _save_arrays_whole_on_cpu()
        policies = ocp.checkpoint_managers
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                # Every `every_steps`, and at the step a multi-process job agrees on after a SIGTERM.
                save_decision_policy=policies.AnySavePolicy(
                    [policies.FixedIntervalPolicy(every_steps), policies.PreemptionCheckpointingPolicy()]
                ),
                preservation_policy=policies.LatestN(keep),
                create=True,
            ),
        )
        self._needed_bytes = 0  # What the last save needs on the disk, for the message of a full disk.
        self._saving: int | None = None  # The step of the last save started, maybe still being written.

    @property
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    @property
    def aside_directory(self) -> str:
        """Where checkpoints that do not restore are moved: beside `directory`, out of orbax's sight."""
        return self.directory + "_corrupt"

    def should_save(self, step: int) -> bool:
        """Whether `step` is one to save: the interval's, or the preemption sync point of a multi-process
        job (`reached_preemption`). Every process calls it at every step: the sync protocol needs that."""
        return self._manager.should_save(step)

    def reached_preemption(self, step: int) -> bool:
        """Whether a multi-process job has reached the step its processes agreed to stop at after one of
        them received SIGTERM (JAX's preemption sync; always False in a single process)."""
        return self._manager.reached_preemption(step)

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves `state` at `step` when `should_save` says so (or `force`); returns whether it saved.

        Raises `OSError(ENOSPC)` naming the directory and the space a checkpoint needs when the disk
        has too little free space (checked before the save) or a write fails for lack of it; the
        checkpoints already complete are left as they are.
        """
        if not (force or self._manager.should_save(step)):
            return False
        with self._disk_full_is_one_message(self._saving):
            self._manager.wait_until_finished()  # The previous save's bytes are on the disk.
        self._needed_bytes = int(state_bytes(state) * (1 + SPACE_MARGIN)) + SPACE_OVERHEAD_BYTES
        free = shutil.disk_usage(self.directory).free
        if not on_every_process(free >= self._needed_bytes):
            raise self._disk_full(step, f"{free} bytes are free")
        self._saving = step
        with self._disk_full_is_one_message(step):
            return self._manager.save(
                step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=force
            )

    def _disk_full(self, step: int | None, detail: str) -> OSError:
        previous = max((s for s in self._manager.all_steps() if s != step), default=None)
        kept = "no checkpoint is complete yet"
        if previous is not None:
            kept = f"the last complete checkpoint (step {previous}) is kept"
        return OSError(
            errno.ENOSPC,
            f"Not enough disk space in {self.directory} to save checkpoint {step}: it needs about"
            f" {self._needed_bytes / 2**20:.1f} MiB ({self._needed_bytes} bytes), {detail}; {kept}. Free"
            " some space (or move the workdir to a larger disk) and run the same command to resume.",
        )

    @contextlib.contextmanager
    def _disk_full_is_one_message(self, step: int | None) -> Iterator[None]:
        """Turns orbax's error of a write that ran out of space into `_disk_full`'s message."""
        try:
            yield
        except Exception as error:  # pylint: disable=broad-except
            if not _is_disk_full(error):
                raise
            raise self._disk_full(step, f"a write failed ({_summary(error)})") from None

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

    def restore_newest(self, target: Any) -> tuple[Any, int | None]:
        """`(state, step)` of the newest checkpoint that restores on every process into `target`'s layout;
        `(target, None)` when there is no checkpoint.

        The newer ones that do not restore are moved aside to `aside_directory/<step>-<time>`, with a
        warning naming both steps. When none restores, nothing is moved (a changed config, rather than
        corrupt files, is the likely cause) and a `RuntimeError` says what to do.
        """
        failures: dict[int, str] = {}
        for step in sorted(self._manager.all_steps(), reverse=True):
            state, failure = self._try_restore(target, step)
            if on_every_process(not failure):
                self._move_aside(failures, step)
                return state, step
            failures[step] = failure or "it failed to restore on another process"
        if failures:
            listed = "\n".join(f"  step {step}: {failure}" for step, failure in failures.items())
            raise RuntimeError(
                f"No checkpoint in {self.directory} restores into this run's state:\n{listed}\nIf the config"
                " changed since they were written, rerun with the config that wrote them; to start afresh"
                f" instead, move {self.directory} away (or choose another --workdir)."
            )
        return target, None

    def _try_restore(self, target: Any, step: int) -> tuple[Any, str]:
        """`(state, "")`, or `(None, what failed)` when checkpoint `step` does not restore. The failed
        read's pending coroutines, which Python would print one traceback each, are dropped quietly."""
        previous, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
        try:
            return self.restore(target, step), ""
        except Exception as error:  # pylint: disable=broad-except  (any unreadable checkpoint)
            return None, _summary(error)
        finally:
            gc.collect()
            sys.unraisablehook = previous

    def _move_aside(self, failures: dict[int, str], restored: int) -> None:
        """Process 0 moves the checkpoints of `failures` to `aside_directory`; every process then sees
        the directory without them."""
        if not failures:
            return
        if jax.process_index() == 0:
            os.makedirs(self.aside_directory, exist_ok=True)
            for step, failure in failures.items():
                aside = os.path.join(self.aside_directory, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
                os.rename(os.path.join(self.directory, str(step)), aside)
                logging.warning(
                    "Checkpoint %d in %s does not restore (%s); moved it aside to %s and resumed from"
                    " checkpoint %d instead.", step, self.directory, failure, aside, restored
                )
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("selax: unreadable checkpoints moved aside")
        self._manager.reload()

    def close(self) -> None:
        with self._disk_full_is_one_message(self._saving):
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
