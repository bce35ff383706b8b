"""What a run reports: a progress line with rate and ETA, TensorBoard scalars, metrics.json and a plot.

The history of scalars is appended to `WORKDIR/history.jsonl` as it is written, so that a resumed run
reports the whole run: it keeps the points up to the step it resumed from (those logged later by a
killed run are superseded) and rewrites the TensorBoard events from them, each step once. The training
means summed since the last record when a checkpoint is saved are kept in `WORKDIR/pending_sums.json`,
so that a run resumed there records the same means as one that ran through.
"""

import glob
import io
import json
import os
import time
from typing import Any, Mapping

import numpy as np

from absl import logging

HISTORY_FILE = "history.jsonl"
METRICS_FILE = "metrics.json"  # Written once, when the run has finished.
PENDING_SUMS_FILE = "pending_sums.json"
# Checkpoints whose pending sums are kept (more than any run keeps checkpoints of; they are tiny).
PENDING_SUMS_KEPT = 16

# `{name: {step: value}}`: every scalar logged, each step once.
History = dict[str, dict[int, float]]


def read_history(path: str, up_to_step: int) -> History:
    """The scalars of the history file at `path` logged at steps <= `up_to_step` (a later line of a step
    replaces an earlier one); empty when there is no file. A line cut short by a kill is skipped."""
    history: History = {}
    if not os.path.exists(path):
        return history
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry["step"] <= up_to_step:
                for name, value in entry["scalars"].items():
                    history.setdefault(name, {})[entry["step"]] = value
    return history


def _read_pending(path: str) -> dict[str, Any]:
    """The pending sums file at `path` (`Reporter.keep_sums`); empty when it is missing or cut short."""
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _history_lines(history: History) -> str:
    """`history` as the history file's lines, one per step."""
    steps: dict[int, dict[str, float]] = {}
    for name, points in history.items():
        for step, value in points.items():
            steps.setdefault(step, {})[name] = value
    return "".join(json.dumps(dict(step=step, scalars=steps[step])) + "\n" for step in sorted(steps))


WANDB_ID_FILE = "wandb_run_id"


def _wandb_run(workdir: str, project: str, run_config: Mapping[str, Any] | None) -> Any:
    """A Weights & Biases run of `project` whose id is kept in `workdir/WANDB_ID_FILE`, so that a resumed
    run logs to the same run."""
    try:
        import wandb  # pylint: disable=g-import-not-at-top
    except ImportError:
        raise ImportError(
            f"config.logging.wandb_project={project!r} needs Weights & Biases: pip install wandb (or leave it unset)."
        ) from None
    id_file = os.path.join(workdir, WANDB_ID_FILE)
    if os.path.exists(id_file):
        with open(id_file) as f:
            run_id = f.read().strip()
    else:
        run_id = wandb.util.generate_id()
        with open(id_file, "w") as f:
            f.write(run_id)
    return wandb.init(project=project, id=run_id, resume="allow", dir=workdir, config=dict(run_config or {}))


class Reporter:
    """Writes scalars to `workdir`'s history file and TensorBoard event files, and logs a progress line.

    Every process keeps the history (the loop reads it back: `values`); only the process with
    `active=True` (process 0) writes files. A run resumed at `start_step` starts from the history up
    to that step.
    """

    def __init__(
        self,
        workdir: str,
        total_steps: int,
        start_step: int = 0,
        *,
        active: bool = True,
        wandb_project: str | None = None,
        run_config: Mapping[str, Any] | None = None,
    ):
        self._total_steps = total_steps
        self._active = active
        self._wandb = _wandb_run(workdir, wandb_project, run_config) if active and wandb_project else None
        self._workdir = workdir
        path = os.path.join(workdir, HISTORY_FILE)
        self.history = read_history(path, start_step)
        self._pending_path = os.path.join(workdir, PENDING_SUMS_FILE)
        self._start_step = start_step
        self._file = self._writer = None
        if active:
            from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

            with open(path + ".tmp", "w") as f:
                f.write(_history_lines(self.history))
            os.replace(path + ".tmp", path)
            self._file = open(path, "a")
            logdir = os.path.join(workdir, "tensorboard")
            # The events are rewritten from the history: the earlier runs' files would repeat its steps
            # and hold the points it superseded.
            for events in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
                os.remove(events)
            self._writer = SummaryWriter(logdir=logdir)
            for name, points in sorted(self.history.items()):
                for step, value in sorted(points.items()):
                    self._writer.add_scalar(name, value, step)
            self._writer.flush()
        self._last_time = None
        self._last_step = None

    def start_timer(self, step: int) -> None:
        self._last_time, self._last_step = time.perf_counter(), step

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Records `scalars` at `step`: in the history, its file (flushed, so a kill keeps them) and
        TensorBoard. A point already recorded with the same value (a finished run run again) is skipped."""
        scalars = {
            name: float(value)
            for name, value in scalars.items()
            if self.history.get(name, {}).get(step) != float(value)
        }
        if not scalars:
            return
        for name, value in scalars.items():
            self.history.setdefault(name, {})[step] = value
        if self._active:
            self._file.write(json.dumps(dict(step=step, scalars=scalars)) + "\n")
            self._file.flush()
            for name, value in scalars.items():
                self._writer.add_scalar(name, value, step)
            self._writer.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def write_figure(self, step: int, name: str, figure: Any) -> None:
        """Saves a matplotlib figure as `workdir/<name>.png` and as image `pictures/<name>` in TensorBoard."""
        if not self._active:
            return
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        with open(os.path.join(self._workdir, f"{name}.png"), "wb") as f:
            f.write(buffer.getvalue())
        from PIL import Image  # pylint: disable=g-import-not-at-top

        pixels = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        self._writer.add_image(f"pictures/{name}", pixels, step, dataformats="HWC")
        self._writer.flush()
        if self._wandb is not None:
            import wandb  # pylint: disable=g-import-not-at-top

            self._wandb.log({f"pictures/{name}": wandb.Image(pixels)}, step=step)

    def keep_sums(self, step: int, sums: Mapping[str, Any] | None, count: int) -> None:
        """Keeps, with the checkpoint of `step`, the metric `sums` of the `count` steps since the last
        record (`count == 0`: none), for a run resumed at `step` (`resumed_sums`). Process 0 writes."""
        if not self._active:
            return
        kept = {s: v for s, v in _read_pending(self._pending_path).items() if int(s) < step}
        if count:
            kept[str(step)] = dict(steps=count, sums={k: float(v) for k, v in sums.items()})
        kept = dict(sorted(kept.items(), key=lambda item: int(item[0]))[-PENDING_SUMS_KEPT:])
        with open(self._pending_path + ".tmp", "w") as f:
            json.dump(kept, f)
        os.replace(self._pending_path + ".tmp", self._pending_path)

    def resumed_sums(self) -> tuple[dict[str, np.float32] | None, int]:
        """`(sums, count)` kept (`keep_sums`) with the checkpoint this run resumed from; `(None, 0)` if none."""
        pending = _read_pending(self._pending_path).get(str(self._start_step)) if self._start_step else None
        if pending is None:
            return None, 0
        return {k: np.float32(v) for k, v in pending["sums"].items()}, int(pending["steps"])

    def values(self, name: str) -> list[float]:
        """The values of scalar `name` logged so far (resumed runs: since the start), in step order."""
        return [value for _, value in sorted(self.history.get(name, {}).items())]

    def progress(self, step: int, scalars: Mapping[str, float], images_per_step: int) -> float:
        """Logs `step/total loss=... images/s ETA` since the last call; returns the measured images/s."""
        now = time.perf_counter()
        steps = step - self._last_step
        seconds = max(now - self._last_time, 1e-9)
        images_per_second = steps * images_per_step / seconds
        eta = (self._total_steps - step) * seconds / max(steps, 1)
        self._last_time, self._last_step = now, step
        if self._active:
            shown = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
            logging.info(
                "step %d/%d %s | %.0f img/s | ETA %s",
                step,
                self._total_steps,
                shown,
                images_per_second,
                _format_duration(eta),
            )
        return images_per_second

    def finish(self, workdir: str, final_metrics: Mapping[str, float]) -> None:
        """Writes `metrics.json` and `curves.png` (training curves) into `workdir`."""
        if not self._active:
            return
        with open(os.path.join(workdir, METRICS_FILE), "w") as f:
            json.dump(dict(final_metrics), f, indent=2, sort_keys=True)
        plot_curves(self.history, os.path.join(workdir, "curves.png"))
        self._writer.close()
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()


# Panels of `curves.png`, by what a scalar measures: the first whose test matches its name.
PANELS = (
    ("losses", lambda name: "loss" in name),
    ("accuracy, NMI, ARI", lambda name: any(k in name for k in ("top1", "nmi", "ari", "accuracy"))),
    ("learning rate", lambda name: "learning_rate" in name),
    ("other", lambda name: True),
)


def plot_curves(history: Mapping[str, Mapping[int, float]], path: str) -> None:
    """The scalars with more than one point against step, one panel per kind (`PANELS`); per-head copies
    of a metric (`*_head<t>`) are left out (their mean and best are drawn).

    Drawn on a bare `Figure`, so it leaves pyplot's backend alone (inline plots in notebooks keep working).
    """
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

    panels: dict[str, list[str]] = {}
    for name in sorted(history):
        if len(history[name]) > 1 and "_head" not in name:
            title = next(title for title, matches in PANELS if matches(name.split("/", 1)[-1]))
            panels.setdefault(title, []).append(name)
    ordered = [(title, panels[title]) for title, _ in PANELS if title in panels]
    fig = Figure(figsize=(4.6 * max(len(ordered), 1), 4.2))
    axes = fig.subplots(1, max(len(ordered), 1), squeeze=False)
    for ax, (title, names) in zip(axes[0], ordered):
        for name in names:
            steps, values = zip(*sorted(history[name].items()))
            ax.plot(steps, values, label=name, linewidth=1.2)
        values = [v for name in names for v in history[name].values()]
        if title == "losses" and min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{seconds:02d}"
